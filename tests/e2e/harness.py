"""Whole-system test bed: real OpenMMP processes, the simulators as a process, and a webhook receiver.

Everything talks over real HTTP on 127.0.0.1. Processes are started with `python -m openmmp.cli` and can
be killed for real (SIGKILL). The webhook receiver runs in the test's event loop (uvicorn), verifies the
Standard Webhooks signature of every delivery, and can be taken down, made to fail or to hang, and
brought back on its port. Fault tests also get a private PostgreSQL cluster and a private Redis server
(never the machine's shared ones, which other tests use at the same time), a crowd of concurrent API
clients that retry like a careful business system, and read access to the system's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import Tenant

from openmmp.kit.db import normalise_url
from openmmp.webhooks.signing import verify

OPENMMP = [sys.executable, "-m", "openmmp.cli"]
SIMULATOR_ARGS = ("--latency", "0.02", "--callback-retries", "8")
"""The simulator's callbacks are retried for ~50 s (0.2 s doubling), longer than a killed process takes
to come back on a busy machine: callbacks refused meanwhile are not lost."""
FINAL = frozenset({3, 4, 5})
"""Message statuses a message ends in: FAIL, DELIVERED, READ."""
SANDBOX_WEBHOOKS = {**{digit: [2, 4, 5] for digit in range(7)}, 7: [2, 4], 8: [3], 9: [2, 4, 5]}
"""The webhook statuses of a message in sandbox mode, by the last digit of its phone (README)."""


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

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def children(self) -> list[int]:
        """The process ids of its child processes (`serve`'s worker process)."""
        if self.popen is None:
            return []
        found: list[int] = []
        for task in Path(f"/proc/{self.popen.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(pid) for pid in (task / "children").read_text().split()]
        return found

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM if self.running else signal.SIGKILL)

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
    """`url` answers below 500. A process restarted under load may take seconds to answer (the clients and
    the upstream's callbacks it finds waiting are served first): slow is up, only no answer is down."""
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            try:
                return (await client.get(url, timeout=10)).status_code < 500
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=timeout, what=url)


# ---- the business's webhook receiver ------------------------------------------------------------------


@dataclass
class Delivery:
    webhook_id: str
    body: dict[str, Any]
    raw: bytes
    signature_ok: bool
    answered_at: float = 0.0
    """`time.monotonic()` when the receiver acknowledged it."""


@dataclass
class Attempt:
    """One request the receiver got, whatever it answered: `ok` (204), `refused` (503), `hung`."""

    webhook_id: str
    message_id: str | None
    status: int | None
    outcome: str
    arrived_at: float


@dataclass
class WebhookReceiver:
    """Records signed webhook deliveries.

    `fail_next` answers 503 to that many requests first; `script` is a list of behaviours for the next
    requests, one each (`"ok"`, `"503"`, `"hang"`); a hung request is held for `hang_seconds` (longer than
    the deliverer's timeout, so the deliverer gives up on it) and is not a delivery. `attempts` keeps every
    request in arrival order.
    """

    secrets: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    refused_ids: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    fail_next: int = 0
    script: list[str] = field(default_factory=list)
    hang_seconds: float = 3.5
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        raw = await request.body()
        arrived = time.monotonic()
        webhook_id = request.headers.get("webhook-id", "")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        message_id = body.get("messageId") if body.get("type") == 1 else None

        def attempt(outcome: str) -> None:
            self.attempts.append(Attempt(webhook_id, message_id, body.get("status"), outcome, arrived))

        behaviour = "ok"
        if self.fail_next > 0:
            self.fail_next -= 1
            behaviour = "503"
        elif self.script:
            behaviour = self.script.pop(0)
        if behaviour == "503":
            attempt("refused")
            self.refused_ids.append(webhook_id)
            return Response(status_code=503, content=b"try later")
        if behaviour == "hang":
            attempt("hung")
            await asyncio.sleep(self.hang_seconds)
            return Response(status_code=204)
        attempt("ok")
        secret = self.secrets.get(body.get("publicId", ""), "")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.deliveries.append(
            Delivery(webhook_id, body, raw, bool(secret) and verify(secret, raw, headers), time.monotonic())
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


# ---- the running platform -----------------------------------------------------------------------------


@dataclass
class System:
    """The running platform: API base URL, simulator base URL, processes, and the receiver.

    With `workers == 0` one `openmmp serve` runs the API and the workers (SQLite, as the README
    recommends); otherwise the API is `serve --no-workers` and `workers` `openmmp worker` processes run
    beside it (`separate_workers`).
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
    database_url: str = ""
    workers: int = 1
    _engine: AsyncEngine | None = None

    def start_api(self) -> Process:
        args = ["serve", "--port", str(self.api_port)]
        if self.separate_workers:
            args.append("--no-workers")
        process = Process("api", args, self.env, self.log_dir).start()
        self.processes["api"] = process
        return process

    def start_worker(self, name: str = "worker") -> Process:
        process = Process(name, ["worker"], self.env, self.log_dir).start()
        self.processes[name] = process
        return process

    async def kill_workers(self) -> None:
        """SIGKILL the process that runs the workers: on SQLite `serve`'s worker process together with the
        API (alone, it would finish its work in flight once the API is gone, which is no crash)."""
        if self.separate_workers:
            self.processes["worker"].kill(signal.SIGKILL)
            return
        api = self.processes["api"]
        children = api.children()
        api.kill(signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def restart_workers(self) -> None:
        if self.separate_workers:
            self.start_worker()
        else:
            self.start_api()
            await wait_http(f"{self.api}/readyz")

    async def kill_api(self) -> None:
        """SIGKILL the API process (with the workers embedded, they die with it)."""
        self.processes["api"].kill(signal.SIGKILL)

    async def restart_api(self, *, timeout: float = 60.0) -> None:
        self.start_api()
        await wait_http(f"{self.api}/readyz", timeout=timeout)

    def logs(self) -> str:
        return "\n".join(f"===== {n}\n{p.log()[-6000:]}" for n, p in self.processes.items())

    # -- the system's database, read directly (what a client cannot see: jobs, the outbox) --

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        """Run one read-only statement on the system's database; a fresh connection each time."""
        if self._engine is None:
            self._engine = create_async_engine(normalise_url(self.database_url), poolclass=NullPool)
        async with self._engine.connect() as connection:
            return list(await connection.execute(text(statement), params))

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # -- tenants and channels, through the API --

    async def onboard(self, api: httpx.AsyncClient) -> Tenant:
        number = random.randrange(10**9)
        body = {
            "company": {"name": f"E2E {number}"},
            "admin": {"name": "A", "email": f"e2e{number}@example.com"},
        }
        response = await api.post("/api/v1/onboard", json=body, headers={"apiKey": self.partner_key})
        assert response.status_code == 201, response.text
        return Tenant(response.json()["companyPublicId"], response.json()["apiKey"])

    async def channel(
        self,
        api: httpx.AsyncClient,
        company: Tenant,
        application_id: int,
        credentials: dict[str, Any],
        *,
        webhooks: bool = True,
        **settings: Any,
    ) -> dict[str, Any]:
        """Create a channel (its webhooks to the receiver unless `webhooks=False`); wait for its launch."""
        body: dict[str, Any] = {
            "name": f"e2e {application_id}",
            "applicationId": application_id,
            "credentials": credentials,
            "settings": {"defaultCountry": "KH", **settings},
        }
        if webhooks:
            body["webhookUrl"] = self.receiver.url
        created = await api.post("/api/v1/channel", json=body, headers=company.headers)
        assert created.status_code == 201, created.text
        channel: dict[str, Any] = created.json()
        if webhooks:
            self.receiver.secrets[channel["publicId"]] = channel["webhookSecret"]

        async def launched() -> bool:
            status = await api.get(f"/api/v1/channel/{channel['publicId']}/status", headers=company.headers)
            return bool(status.json()["status"] == 3)

        # The sandbox registers the channel's callback upstream through the worker's queue, behind
        # whatever an earlier test of the session left there.
        await wait_until(launched, timeout=90, what="channel launch")
        return channel

    async def viber_channel(
        self, api: httpx.AsyncClient, company: Tenant, *, webhooks: bool = True, **settings: Any
    ) -> dict[str, Any]:
        """A launched Viber Business Messages channel; `_serviceId` is its simulator service id."""
        service_id = random.randrange(1, 10**9)
        channel = await self.channel(
            api, company, 1, {"serviceId": service_id}, webhooks=webhooks, **settings
        )
        return {**channel, "_serviceId": service_id}

    async def channel_id(self, account: str) -> int:
        [row] = await self.sql("SELECT id FROM channels WHERE public_id = :p", p=account)
        return int(row[0])

    async def statuses(self, account: str) -> dict[str, int]:
        """Every message of the channel: its public id → status, read from the database."""
        rows = await self.sql(
            "SELECT m.public_id, m.status FROM messages m JOIN channels c ON c.id = m.channel_id "
            "WHERE c.public_id = :p",
            p=account,
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def outbox_breaches(self) -> dict[str, int]:
        """Invariant 1: a PENDING message always has its dispatch job, and a job always its message."""
        [[without_job]] = await self.sql(
            "SELECT count(*) FROM messages m WHERE m.status = 1 AND NOT EXISTS "
            "(SELECT 1 FROM jobs j WHERE j.kind = 'dispatch' AND j.message_id = m.id)"
        )
        [[without_message]] = await self.sql(
            "SELECT count(*) FROM jobs j WHERE j.kind = 'dispatch' AND NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.id = j.message_id)"
        )
        return {"pending messages without a job": without_job, "jobs without a message": without_message}

    async def sim_stats(self, *, detail: bool = False) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.sim, timeout=10) as sim:
            response = await sim.get("/viber/_sandbox/stats", params={"detail": 1} if detail else None)
            return dict(response.json())


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
        "OPENMMP_PROVIDERS__SMPP_BASE_URL": f"http://127.0.0.1:{sim_port}/smpp",
        "OPENMMP_PROVIDERS__SMTP_BASE_URL": f"http://127.0.0.1:{sim_port}/smtp",
        "OPENMMP_PROVIDERS__ZALO_BASE_URL": f"http://127.0.0.1:{sim_port}/zalo",
        "OPENMMP_PROVIDERS__ZALO_ZNS_BASE_URL": f"http://127.0.0.1:{sim_port}/zalo-zns",
        "OPENMMP_PROVIDERS__APPLE_BASE_URL": f"http://127.0.0.1:{sim_port}/apple",
        "OPENMMP_PROVIDERS__TIMEOUT_SECONDS": "2",
        "OPENMMP_DISPATCH__RETRY_BASE_SECONDS": "0.1",
        "OPENMMP_DISPATCH__RETRY_MAX_SECONDS": "0.5",
        "OPENMMP_DISPATCH__LEASE_SECONDS": "5",
        "OPENMMP_DISPATCH__SWEEP_INTERVAL_SECONDS": "0.2",
        "OPENMMP_WEBHOOKS__RETRY_SCHEDULE_S": "[0.1, 0.2, 0.4]",
        "OPENMMP_WEBHOOKS__MAX_ATTEMPTS": "300",  # the compressed schedule's bounded life: about 2 minutes
        "OPENMMP_WEBHOOKS__POLL_INTERVAL_MAX_S": "0.1",
        # A receiver that hangs is given up on after 2 s (the receiver's `hang` outlasts it), and a killed
        # process's claimed deliveries come back after 10 s instead of the default 2 minutes.
        "OPENMMP_WEBHOOKS__TIMEOUT_SECONDS": "2",
        "OPENMMP_WEBHOOKS__LEASE_S": "10",
        "OPENMMP_LOG_LEVEL": "INFO",
    }


@contextlib.asynccontextmanager
async def running_system(
    database_url: str,
    work_dir: Path,
    *,
    secret: str,
    workers: int = 0,
    env: Mapping[str, str] | None = None,
    simulator_args: Sequence[str] = SIMULATOR_ARGS,
    receiver: WebhookReceiver | None = None,
) -> AsyncIterator[System]:
    """Start simulator, API and workers over a migrated database; stop everything on the way out.

    `workers=0` runs the workers inside `openmmp serve`; `workers=N` runs N `openmmp worker` processes
    next to `serve --no-workers`. `env` overrides the system's environment (e.g. a Redis URL).
    """
    log_dir = work_dir / "e2e-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    api_port, sim_port = free_port(), free_port()
    environment = {
        **system_env(
            database_url=database_url,
            data_dir=work_dir / "data",
            api_port=api_port,
            sim_port=sim_port,
            secret=secret,
        ),
        **(env or {}),
    }
    receiver = receiver or WebhookReceiver()
    await receiver.start()
    simulator = Process(
        "simulator", ["simulate", "--port", str(sim_port), *simulator_args], environment, log_dir
    )
    system = System(
        api=f"http://127.0.0.1:{api_port}",
        sim=f"http://127.0.0.1:{sim_port}",
        processes={"simulator": simulator.start()},
        receiver=receiver,
        env=environment,
        log_dir=log_dir,
        api_port=api_port,
        separate_workers=workers > 0,
        database_url=database_url,
        workers=workers,
    )
    try:
        bootstrap = await asyncio.to_thread(
            subprocess.run,
            [*OPENMMP, "bootstrap", "--name", "E2E partner", "--json"],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        system.partner_key = orjson.loads(bootstrap.stdout)["apiKey"]
        system.start_api()
        for n in range(workers):
            system.start_worker("worker" if workers == 1 else f"worker{n}")
        await wait_http(f"{system.sim}/viber/_sandbox/stats")
        await wait_http(f"{system.api}/readyz", timeout=60)
        yield system
    finally:
        for process in system.processes.values():
            process.stop()
        await receiver.stop()
        await system.dispose()


async def send_one(
    api: httpx.AsyncClient, company: Tenant, account: str, body: dict[str, Any], path: str = "broadcast"
) -> str:
    """One send on a channel (`broadcast`, or `conversation`): its messageId."""
    response = await api.post(f"/api/v1/channel/{account}/{path}", json=body, headers=company.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["messageId"])


READ_OR_FAIL = frozenset({3, 5})
"""For a message expected READ: DELIVERED is final too, but READ follows it (FAIL ends the wait early)."""


async def final_status(
    api: httpx.AsyncClient, company: Tenant, message_id: str, until: frozenset[int] = FINAL
) -> dict[str, Any]:
    """A message's Get Message Status once its status is one of `until` (default: any final one)."""

    async def final() -> dict[str, Any] | None:
        status = (await api.get(f"/api/v1/message/{message_id}/status", headers=company.headers)).json()
        return status if status["status"] in until else None

    found: dict[str, Any] = await wait_until(final, timeout=60, interval=0.2, what=f"{message_id} final")
    return found


async def signed_webhooks(system: System, message_id: str, count: int) -> list[int]:
    """The statuses of a message's first `count` type 1 webhooks, each signed."""

    def seen() -> list[int] | None:
        deliveries = system.receiver.of_message(message_id)
        assert all(d.signature_ok for d in deliveries)
        return [d.body["status"] for d in deliveries] if len(deliveries) >= count else None

    found: list[int] = await wait_until(seen, timeout=30, what="signed status webhooks")
    return found


async def all_final(system: System, account: str, count: int) -> dict[str, int]:
    """The statuses of a channel's `count` messages, once every one is final."""

    async def final() -> dict[str, int] | None:
        statuses = await system.statuses(account)
        done = len(statuses) == count and all(s in FINAL for s in statuses.values())
        return statuses if done else None

    result: dict[str, int] = await wait_until(final, timeout=120, interval=0.5, what="every message final")
    return result


async def status_webhooks(system: System, account: str, count: int) -> dict[str, list[int]]:
    """The `type: 1` webhooks of a channel by message, each status in order of arrival, once `count` have
    come; every one must be signed."""

    def arrived() -> dict[str, list[int]] | None:
        seen: dict[str, list[int]] = {}
        for delivery in system.receiver.deliveries:
            if delivery.body.get("publicId") == account and delivery.body.get("type") == 1:
                assert delivery.signature_ok
                seen.setdefault(delivery.body["messageId"], []).append(delivery.body["status"])
        return seen if sum(len(v) for v in seen.values()) == count else None

    result: dict[str, list[int]] = await wait_until(arrived, timeout=30, what="signed status webhooks")
    return result


# ---- business systems calling the API -----------------------------------------------------------------


@dataclass
class Answered:
    message_id: str
    answered_at: float
    tries: int
    interrupted: bool
    """At least one try of this request got no answer (connection lost or refused, timeout, 5xx)."""


@dataclass
class BroadcastClients:
    """`clients` business systems, each sending one message after the other with its own clientMessageId.

    A try that gets no answer (connection refused or reset, timeout) or a 5xx is tried again with the
    same body and clientMessageId, as the API asks clients to do, until it gets an answer. Any 4xx ends
    the client with an entry in `errors` (none is expected). `answered` maps clientMessageId → answer.
    """

    api: str
    headers: dict[str, str]
    account: str
    clients: int = 32
    digits: Sequence[int] = tuple(range(10))
    retry_pause: float = 0.1
    pause: float = 0.0
    """Seconds each client waits between two messages (0: as fast as the API answers)."""
    give_up_after: float = 90.0
    answered: dict[str, Answered] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    interruptions: dict[str, int] = field(default_factory=dict)
    sent_phone: dict[str, str] = field(default_factory=dict)

    def accepted_since(self, moment: float) -> int:
        return sum(1 for a in self.answered.values() if a.answered_at >= moment)

    def per_client_since(self, moment: float) -> dict[int, int]:
        counts = dict.fromkeys(range(self.clients), 0)
        for client_message_id, answer in self.answered.items():
            if answer.answered_at >= moment:
                counts[int(client_message_id.split("-")[-2])] += 1
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        run_id = f"{random.randrange(16**6):06x}"
        async with httpx.AsyncClient(base_url=self.api, timeout=10, limits=limits) as http:
            await asyncio.gather(*(self._client(http, run_id, n, stop) for n in range(self.clients)))

    async def _client(self, http: httpx.AsyncClient, run_id: str, number: int, stop: asyncio.Event) -> None:
        sequence = 0
        while not stop.is_set():
            client_message_id = f"load-{run_id}-{number}-{sequence}"
            digit = self.digits[(number + sequence) % len(self.digits)]
            phone = f"8551{number:03d}{sequence:04d}"[:-1] + str(digit)
            self.sent_phone[client_message_id] = phone
            body = {
                "phone": phone,
                "message": {"type": "text", "message": f"load {number} {sequence}"},
                "clientMessageId": client_message_id,
            }
            if not await self._send(http, client_message_id, body):
                return
            sequence += 1
            if self.pause:
                await asyncio.sleep(self.pause)

    async def _send(self, http: httpx.AsyncClient, client_message_id: str, body: dict[str, Any]) -> bool:
        deadline = time.monotonic() + self.give_up_after
        tries = 0
        interrupted = False
        while True:
            tries += 1
            try:
                response = await http.post(
                    f"/api/v1/channel/{self.account}/broadcast", json=body, headers=self.headers
                )
            except httpx.TransportError as exc:
                kind = type(exc).__name__
                self.interruptions[kind] = self.interruptions.get(kind, 0) + 1
                interrupted = True
            else:
                if response.status_code == 200:
                    message_id = str(response.json()["messageId"])
                    self.answered[client_message_id] = Answered(
                        message_id, time.monotonic(), tries, interrupted
                    )
                    return True
                if response.status_code < 500 and response.status_code != 429:
                    self.errors.append(f"{client_message_id}: {response.status_code} {response.text[:300]}")
                    return False
                kind = f"HTTP {response.status_code}"
                self.interruptions[kind] = self.interruptions.get(kind, 0) + 1
                interrupted = True
            if time.monotonic() > deadline:
                self.errors.append(f"{client_message_id}: no answer after {tries} tries")
                return False
            await asyncio.sleep(self.retry_pause)


# ---- private servers: PostgreSQL and Redis that a test may stop and start -------------------------------


def postgres_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl (PostgreSQL 15 preferred), or None."""
    candidates = [Path("/usr/lib/postgresql/15/bin")]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port of 127.0.0.1, in a temporary directory.

    As root, the cluster belongs to the `postgres` OS user (PostgreSQL refuses to run as root).
    fsync and full-page writes are off: the server must survive being stopped or crashing, not a power
    cut (the operating system still has the data). Commits stay synchronous: with
    `synchronous_commit=off` a crash (`-m immediate`) loses transactions already reported committed.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="openmmp-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.txt"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.dir, user="postgres", group="postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/openmmp"

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        subprocess.run(
            [*self._as_postgres, *args],
            cwd=self.dir,
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (sessions told and ended) or `immediate` (a crash, recovered on start)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class PrivateRedis:
    """A throw-away `redis-server` on a free port of 127.0.0.1, without persistence."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / "redis.txt"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--protected-mode", "no",
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip

    async def start(self) -> None:
        self._spawn()

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        await wait_until(answers, timeout=20, what="redis-server")

    def kill(self) -> None:
        """Gone at once, as a crashed or unreachable Redis."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)


class CuttingProxy:
    """A TCP proxy to `target`; it cuts (resets) a connection when the client sends bytes containing
    `cut_on`, for the first `cuts` such connections, and passes everything else through."""

    def __init__(self, target: tuple[str, int], *, cut_on: bytes, cuts: int) -> None:
        self.target = target
        self.cut_on = cut_on
        self.cuts = cuts
        self.cut = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return

        def cut() -> None:
            client_writer.transport.abort()
            server_writer.transport.abort()

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watch: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    if watch and self.cut < self.cuts and self.cut_on in data:
                        self.cut += 1
                        cut()
                        return
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(OSError):
                writer.close()

        tasks = [
            asyncio.ensure_future(pump(client_reader, server_writer, True)),
            asyncio.ensure_future(pump(server_reader, client_writer, False)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks.difference_update(tasks)


# ---- the sandbox as `make run` starts it ----------------------------------------------------------------


class Sandbox:
    """`openmmp migrate` + `openmmp serve --sandbox` in a data folder of their own, like `make run`."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPENMMP_")},
            "OPENMMP_DATA_DIR": str(work_dir / "data"),
            "OPENMMP_DISPATCH__RETRY_BASE_SECONDS": "0.1",
            "OPENMMP_DISPATCH__RETRY_MAX_SECONDS": "0.5",
            "OPENMMP_WEBHOOKS__RETRY_SCHEDULE_S": "[0.1, 0.2, 0.4]",
            "OPENMMP_WEBHOOKS__MAX_ATTEMPTS": "300",  # the compressed schedule's bounded life: about 2 minutes
        }
        self.log_dir = work_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts = 0
        self.process: Process | None = None

    async def start(self) -> dict[str, Any]:
        """Start (migrating first, as `make run` does); returns the demo data the banner printed."""
        self.starts += 1
        migrate = await asyncio.create_subprocess_exec(*OPENMMP, "migrate", env=self.env)
        assert await migrate.wait() == 0
        self.process = Process(
            f"serve-{self.starts}", ["serve", "--sandbox", "--port", str(self.port)], self.env, self.log_dir
        ).start()
        await wait_http(f"{self.url}/readyz", timeout=60)
        demo: dict[str, Any] = json.loads((Path(self.env["OPENMMP_DATA_DIR"]) / "demo.json").read_text())
        return demo

    def stop(self, sig: int) -> None:
        assert self.process is not None
        self.process.kill(sig)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-8000:] for p in sorted(self.log_dir.glob("*.log")))
