"""Whole-system test bed: real OpenMMP processes, the simulators as a process, and a webhook receiver.

Everything talks over real HTTP on 127.0.0.1. Processes are started with `python -m openmmp.cli` and can
be killed for real (SIGKILL). The webhook receiver runs in the test's event loop (uvicorn), verifies the
Standard Webhooks signature of every delivery, and can be taken down and brought back on its port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.webhooks.signing import verify

OPENMMP = [sys.executable, "-m", "openmmp.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """One `openmmp` process with its output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen([*OPENMMP, *self.args], env=self.env, stdout=log, stderr=log)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM if self.popen and self.popen.poll() is None else signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def wait_until(
    check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(interval)


async def wait_http(url: str, *, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                return (await client.get(url, timeout=1)).status_code < 500
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=timeout, what=url)


@dataclass
class Delivery:
    webhook_id: str
    body: dict[str, Any]
    raw: bytes
    signature_ok: bool


@dataclass
class WebhookReceiver:
    """Records signed webhook deliveries; `fail_next` answers 503 to that many requests first."""

    secrets: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    refused_ids: list[str] = field(default_factory=list)
    fail_next: int = 0
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        raw = await request.body()
        if self.fail_next > 0:
            self.fail_next -= 1
            self.refused_ids.append(request.headers.get("webhook-id", ""))
            return Response(status_code=503, content=b"try later")
        body = orjson.loads(raw)
        secret = self.secrets.get(body.get("publicId", ""), "")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.deliveries.append(
            Delivery(headers["webhook-id"], body, raw, bool(secret) and verify(secret, raw, headers))
        )
        return Response(status_code=204)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        await wait_until(
            lambda: self._server is not None and self._server.started, timeout=5, what="receiver"
        )

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None

    def of_message(self, message_id: str) -> list[Delivery]:
        return [
            d for d in self.deliveries if d.body.get("messageId") == message_id and d.body.get("type") == 1
        ]


@dataclass
class System:
    """The running platform: API base URL, simulator base URL, processes, and the receiver.

    On PostgreSQL the API (`serve --no-workers`) and the workers (`openmmp worker`) are separate
    processes; on SQLite one `openmmp serve` runs both, as the README recommends.
    """

    api: str
    sim: str
    processes: dict[str, Process]
    receiver: WebhookReceiver
    env: dict[str, str]
    log_dir: Path
    api_port: int
    separate_workers: bool
    partner_key: str = ""

    def start_api(self) -> Process:
        args = ["serve", "--port", str(self.api_port)]
        if self.separate_workers:
            args.append("--no-workers")
        process = Process("api", args, self.env, self.log_dir).start()
        self.processes["api"] = process
        return process

    def start_worker(self) -> Process:
        process = Process("worker", ["worker"], self.env, self.log_dir).start()
        self.processes["worker"] = process
        return process

    async def kill_workers(self) -> None:
        """SIGKILL the process that runs the workers (on SQLite that is the API process too)."""
        self.processes["worker" if self.separate_workers else "api"].kill(signal.SIGKILL)

    async def restart_workers(self) -> None:
        if self.separate_workers:
            self.start_worker()
        else:
            self.start_api()
            await wait_http(f"{self.api}/readyz")

    def logs(self) -> str:
        return "\n".join(f"===== {n}\n{p.log()[-6000:]}" for n, p in self.processes.items())


def system_env(
    *, database_url: str, data_dir: Path, api_port: int, sim_port: int, secret: str
) -> dict[str, str]:
    return {
        **os.environ,
        "OPENMMP_DATABASE_URL": database_url,
        "OPENMMP_DATA_DIR": str(data_dir),
        "OPENMMP_SECRET_KEY": secret,
        "OPENMMP_SANDBOX": "true",
        "OPENMMP_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
        "OPENMMP_PROVIDERS__VIBER_BOT_BASE_URL": f"http://127.0.0.1:{sim_port}/viber-bot",
        "OPENMMP_PROVIDERS__VIBER_BASE_URL": f"http://127.0.0.1:{sim_port}/viber",
        "OPENMMP_PROVIDERS__TIMEOUT_SECONDS": "2",
        "OPENMMP_DISPATCH__RETRY_BASE_SECONDS": "0.1",
        "OPENMMP_DISPATCH__RETRY_MAX_SECONDS": "0.5",
        "OPENMMP_DISPATCH__LEASE_SECONDS": "5",
        "OPENMMP_DISPATCH__SWEEP_INTERVAL_SECONDS": "0.2",
        "OPENMMP_WEBHOOKS__RETRY_SCHEDULE_S": "[0.1, 0.2, 0.4]",
        "OPENMMP_WEBHOOKS__POLL_INTERVAL_MAX_S": "0.1",
        "OPENMMP_LOG_LEVEL": "INFO",
    }
