"""SMS end to end (issue 13): N single sends through OpenMMP's SMPP binds to the shared SMSC simulator.

The platform runs as in production, not in sandbox mode: its binds go to the channel's own `host` and
`port`, here `../shared/bench/smsc_sim.py` (standard library only; it answers every submit_sm and sends
a DELIVRD receipt `--dlr-delay` seconds later). On SQLite one `openmmp serve` with its worker process, on
PostgreSQL `openmmp serve --no-workers` plus W `openmmp worker` processes (each keeps the channel's
binds). A partner company is bootstrapped, a company onboarded, and one SMS channel created with its
webhooks to bench/receiver.py and a rate limit of 5,000/s (so the limit is not what is measured).

Load: N messages from 32 concurrent HTTP clients, each message one `POST /api/v1/channel/{id}/broadcast`
(a short GSM-7 text, one segment). Figures: accepted/s; end to end msg/s = DELIVERED webhooks (type 1,
status 4) received for accepted messages / time from the first request to the last such webhook;
accept → DELIVERED webhook p50/p99; receipts lost (accepted − DELIVERED webhooks), the SMSC's own
counters (receipts sent vs answered) and the messages' statuses in the database; the CPU of OpenMMP's
processes per message. Each row carries the peer's figures on this machine (Jasmin 0.11.1 with the same
simulator, ../shared/bench/README.md) and our ratio to them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import aiohttp
import httpx
import orjson
from sqlalchemy import text

from common import (
    OPENMMP,
    PY,
    ROOT,
    cpu_seconds,
    database_url,
    free_port,
    percentile,
    record,
    stop,
    wait_launched,
    wait_up,
)
from e2e import Platform
from openmmp.kit.db import Database

SMSC = ROOT.parent / "shared" / "bench" / "smsc_sim.py"
TEXT = "Your code is 4711"
"""GSM-7, one segment."""
CLIENTS = 32
SENT, FAIL, DELIVERED = 2, 3, 4
# The peer (Jasmin 0.11.1) on this machine with the same simulator, receipt delay 0.1 s, 10,000 messages
# from 32 clients: end to end msg/s (../shared/bench/README.md).
PEER_STOCK = 26.6
PEER_PATCHED = 194.8
TARGET_OVER_STOCK = 10
TARGET_OVER_PATCHED = 2
STATUSES = text(
    "SELECT m.status, count(*) FROM messages m JOIN channels c ON c.id = m.channel_id "
    "WHERE c.public_id = :channel GROUP BY m.status"
)
STALL_S = 60.0
"""Waiting for receipts ends when no DELIVERED webhook has come for this long (the rest are lost)."""


class SmsPlatform(Platform):
    """The SMSC simulator, the receiver, and OpenMMP (not in sandbox mode) as processes, with a company
    and a launched SMS channel whose binds are up; torn down by `close` (processes as in `Platform`)."""

    def __init__(
        self,
        kind: str,
        work: Path,
        workers: int,
        *,
        binds: int,
        window: int,
        separate: bool | None = None,
        worker_processes: int | None = None,
        dlr_delay: float = 0.1,
        rate_limit: float = 5000.0,
    ) -> None:
        self.kind = kind
        self.work = work
        name = f"sms{workers}{'s' if separate else ''}"
        data = work / f"data-{kind}-{name}"
        data.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "OPENMMP_DATA_DIR": str(data), "OPENMMP_LOG_LEVEL": "WARNING"}
        self.env["OPENMMP_DATABASE_URL"] = database_url(kind, work, name)
        self.api_port, self.smsc_port, self.hook_port = free_port(), free_port(), free_port()
        self.env.update(
            OPENMMP_SANDBOX="false",
            OPENMMP_PROVIDERS__ALLOWED_HOSTS="127.0.0.1",
            OPENMMP_WEBHOOKS__ALLOW_PRIVATE="true",
        )
        self.url = self.env["OPENMMP_DATABASE_URL"]
        self.stats_file = work / f"smsc-stats-{name}.json"
        self.stats_file.unlink(missing_ok=True)
        self.log_path = work / f"openmmp-{name}.log"
        self.smsc_log_path = work / f"smsc-{name}.log"
        self._logs: list[IO[bytes]] = []
        subprocess.run([*OPENMMP, "migrate"], env=self.env, check=True, capture_output=True)
        # Before any server starts: it also makes the data folder's secret, which they all share.
        partner_key = self._partner_key()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        smsc_args = [PY, str(SMSC), "--port", str(self.smsc_port), "--dlr-delay", str(dlr_delay)]
        smsc_args += ["--stats-file", str(self.stats_file), "--log-interval", "0"]
        self.processes["smsc"] = subprocess.Popen(
            smsc_args, stdout=self._log(self.smsc_log_path), stderr=subprocess.STDOUT
        )
        self.processes["receiver"] = subprocess.Popen(
            [PY, str(ROOT / "bench" / "receiver.py"), "--port", str(self.hook_port)]
        )
        serve = ["serve", "--no-sandbox", "--port", str(self.api_port)]
        self.separate = kind == "postgresql" if separate is None else separate
        self.metrics = [f"http://127.0.0.1:{self.api_port}/metrics"]
        platform_log = self._log(self.log_path)
        if worker_processes is not None and not self.separate:
            serve += ["--worker-processes", str(worker_processes)]
        if self.separate:
            serve.append("--no-workers")
            for n in range(workers):
                port = free_port()
                self.metrics.append(f"http://127.0.0.1:{port}/metrics")
                env = {**self.env, "OPENMMP_METRICS_PORT": str(port)}
                self.processes[f"worker{n + 1}"] = subprocess.Popen(
                    [*OPENMMP, "worker"], env=env, stderr=platform_log
                )
        self.processes["api"] = subprocess.Popen([*OPENMMP, *serve], env=self.env, stderr=platform_log)
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.hook = f"http://127.0.0.1:{self.hook_port}"
        try:
            wait_up(f"{self.base}/readyz")
            wait_up(f"{self.hook}/count")
            self.headers = {"apiKey": self._company_key(partner_key)}
            self.channel = self._channel(binds, window, rate_limit)
            wait_launched(self.base, self.channel, self.headers)
            # Each process with workers keeps the binds (serve's default: one worker process).
            linked = workers if self.separate else max(1, 1 if worker_processes is None else worker_processes)
            self._wait_bound(binds * linked)
        except BaseException:
            self.close()
            for path in (self.log_path, self.smsc_log_path):
                tail = path.read_text(errors="replace").splitlines()[-20:] if path.exists() else []
                print(f"--- the last lines of {path.name}:", *tail, sep="\n", file=sys.stderr)
            raise

    def _log(self, path: Path) -> IO[bytes]:
        handle = path.open("ab")
        self._logs.append(handle)
        return handle

    def _partner_key(self) -> str:
        """`openmmp bootstrap`: the operator's partner company and its key."""
        partner = subprocess.run(
            [*OPENMMP, "bootstrap", "--name", "Bench operator", "--json"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        key: str = json.loads(partner.stdout.strip().splitlines()[-1])["apiKey"]
        return key

    def _company_key(self, partner_key: str) -> str:
        """A company onboarded with the partner's key: its own first key."""
        onboarded = httpx.post(
            f"{self.base}/api/v1/onboard",
            json={
                "company": {"name": "Bench SMS company", "country": "KH"},
                "admin": {"name": "Bench", "email": "bench@example.com"},
            },
            headers={"apiKey": partner_key},
            timeout=30,
        )
        onboarded.raise_for_status()
        key: str = onboarded.json()["apiKey"]
        return key

    def _channel(self, binds: int, window: int, rate_limit: float) -> str:
        created = httpx.post(
            f"{self.base}/api/v1/channel",
            json={
                "name": "Bench SMS",
                "applicationId": 3,
                "webhookUrl": f"{self.hook}/hook",
                "credentials": {
                    "host": "127.0.0.1",
                    "port": self.smsc_port,
                    "systemId": "bench",
                    "password": "bench",
                    "sourceAddr": "BENCH",
                    "binds": binds,
                    "window": window,
                },
                "settings": {"rateLimitPerSecond": rate_limit},
            },
            headers=self.headers,
            timeout=30,
        )
        if created.status_code != 201:
            raise RuntimeError(f"the SMS channel was refused: {created.status_code} {created.text}")
        channel: str = created.json()["publicId"]
        return channel

    def smsc_stats(self) -> dict[str, Any]:
        try:
            stats: dict[str, Any] = json.loads(self.stats_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return stats

    def _wait_bound(self, sessions: int) -> None:
        """Until the workers' binds are up at the SMSC (its stats file is written every second)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if int(self.smsc_stats().get("sessions_open", 0)) >= sessions:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{sessions} bind(s) to the SMSC did not come up; see {self.log_path}")

    def statuses(self) -> dict[int, int]:
        """The channel's messages by status, as the database has them."""

        async def read() -> dict[int, int]:
            db = Database(self.url)
            try:
                async with db.read_sessions() as session:
                    rows = await session.execute(STATUSES, {"channel": self.channel})
                    return {int(status): int(count) for status, count in rows}
            finally:
                await db.dispose()

        return asyncio.run(read())

    def close(self) -> None:
        # OpenMMP first, so that its binds end by its own unbind rather than by the SMSC going away.
        stop(*(process for name, process in self.processes.items() if name.startswith(("api", "worker"))))
        super().close()
        for handle in self._logs:
            handle.close()


def database_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL server process on this machine (by pid): the server's share
    of the work, as long as nothing else uses it during the run."""
    found: dict[int, float] = {}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                pid = int(comm.parent.name)
                found[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _compact(counts: Mapping[Any, int]) -> str:
    """`{4: 9998, 3: 2}` as `4:9998+3:2` (a row's figures are separated by commas), `0` when empty."""
    return "+".join(f"{key}:{count}" for key, count in sorted(counts.items())) or "0"


def log_problems(path: Path, limit: int = 8) -> tuple[Counter[str], list[str]]:
    """Warnings and errors in the platform's JSON logs: how many of each event, and the first lines."""
    events: Counter[str] = Counter()
    first: list[str] = []
    if not path.exists():
        return events, first
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            event = str(entry.get("event", "?")) if isinstance(entry, dict) else "?"
        except orjson.JSONDecodeError:
            event = "unstructured"
        events[event] += 1
        if len(first) < limit:
            first.append(line[:600])
    return events, first


async def _send(
    base: str, channel: str, headers: dict[str, str], messages: int, clients: int
) -> tuple[dict[str, float], list[float], Counter[str]]:
    """`messages` single sends from `clients` concurrent clients; messageId → accept time, the requests'
    latencies (ms) and the refusals by cause."""
    accepted: dict[str, float] = {}
    latencies: list[float] = []
    refused: Counter[str] = Counter()
    numbers = itertools.count()
    run = uuid.uuid4().hex[:8]
    url = f"{base}/api/v1/channel/{channel}/broadcast"
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as http:

        async def client() -> None:
            while (n := next(numbers)) < messages:
                body = {
                    "phone": f"85512{n:06d}0",
                    "clientMessageId": f"sms-{run}-{n}",
                    "message": {"type": "text", "message": TEXT},
                }
                started = time.perf_counter()
                try:
                    async with http.post(url, json=body) as response:
                        answer = await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    refused[type(exc).__name__] += 1
                    continue
                if status != 200:
                    refused[f"http_{status}"] += 1
                    continue
                accepted[orjson.loads(answer)["messageId"]] = time.time()
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(client() for _ in range(clients)))
    return accepted, latencies, refused


def _wait_for_receipts(platform: SmsPlatform, expected: int, timeout: float) -> bool:
    """Until DELIVERED and FAIL webhooks cover `expected` messages, or none has come for STALL_S."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        by_status = platform.counts()["byStatus"]
        final = int(by_status.get(str(DELIVERED), 0)) + int(by_status.get(str(FAIL), 0))
        if final >= expected:
            return True
        if final != seen:
            seen, since = final, time.monotonic()
        elif time.monotonic() - since > STALL_S:
            return False
        time.sleep(0.5)
    return False


def sms(
    kind: str,
    work: Path,
    messages: int,
    workers: int = 1,
    *,
    binds: int = 1,
    window: int = 10,
    separate: bool | None = None,
    worker_processes: int | None = None,
) -> dict[str, Any]:
    """`worker_processes`: `openmmp serve --worker-processes` (without `separate`; 0 runs the workers in
    the API's process), serve's own default when None."""
    platform = SmsPlatform(
        kind,
        work,
        workers,
        binds=binds,
        window=window,
        separate=separate,
        worker_processes=worker_processes,
    )
    try:
        work_before = platform.database_work()
        cpu_before = platform.cpu()
        database_cpu_before = database_cpu() if kind == "postgresql" else {}
        load_cpu_before = time.process_time()
        started = time.time()
        accepted, latencies, refused = asyncio.run(
            _send(platform.base, platform.channel, platform.headers, messages, CLIENTS)
        )
        accept_seconds = time.time() - started
        load_cpu = time.process_time() - load_cpu_before
        complete = _wait_for_receipts(platform, len(accepted), 3600)
        cpu = {name: round(s - cpu_before.get(name, 0.0), 1) for name, s in platform.cpu().items()}
        if kind == "postgresql":
            used = [s - database_cpu_before.get(pid, 0.0) for pid, s in database_cpu().items()]
            cpu["postgresql"] = round(sum(used), 1)
        work_after = platform.database_work()
        events = httpx.get(f"{platform.hook}/dump", timeout=120).json()
        statuses = platform.statuses()
    finally:
        platform.close()
    # After the SMSC's exit: its last counters (written as it stops).
    smsc = platform.smsc_stats()
    problems, first_problems = log_problems(platform.log_path)
    for line in first_problems:
        print(f"openmmp log: {line}", flush=True)

    sent_at: dict[str, float] = {}
    delivered_at: dict[str, float] = {}
    repeated = Counter[int]()
    for message_id, status, at in events:
        if status == SENT:
            sent_at.setdefault(message_id, at)
        elif status == DELIVERED:
            if message_id in delivered_at:
                repeated[status] += 1
            delivered_at.setdefault(message_id, at)
    to_sent = [sent_at[m] - t for m, t in accepted.items() if m in sent_at]
    to_report = [delivered_at[m] - t for m, t in accepted.items() if m in delivered_at]
    delivered = len(to_report)
    last = max((delivered_at[m] for m in accepted if m in delivered_at), default=time.time())
    end_to_end = round(delivered / (last - started), 1) if delivered else 0.0
    openmmp_cpu = platform.openmmp_cpu(cpu)
    figures: dict[str, Any] = {
        "messages": messages,
        "accepted": len(accepted),
        "refused": _compact(refused),
        "complete": complete,
        "accepted_per_s": round(len(accepted) / accept_seconds, 0),
        "accept_p50_ms": percentile(latencies, 0.5),
        "accept_p99_ms": percentile(latencies, 0.99),
        "end_to_end_per_s": end_to_end,
        "report_p50_s": percentile(to_report, 0.5),
        "report_p99_s": percentile(to_report, 0.99),
        "sent_p50_s": percentile(to_sent, 0.5),
        "sent_p99_s": percentile(to_sent, 0.99),
        "delivered_webhooks": delivered,
        "receipts_lost": len(accepted) - delivered,
        "fail_webhooks": sum(1 for _, status, _ in events if status == FAIL),
        "repeated_delivered_webhooks": repeated[DELIVERED],
        "db_statuses": _compact(statuses),
        "db_all_delivered": statuses.get(DELIVERED, 0) == sum(statuses.values()) == len(accepted),
        "smsc_binds": smsc.get("binds"),
        "smsc_submit_sm": smsc.get("submit_sm"),
        "smsc_throttled": smsc.get("throttled"),
        "smsc_dlr_sent": smsc.get("dlr_sent"),
        "smsc_dlr_resp_ok": smsc.get("dlr_resp_ok"),
        "smsc_dlr_resp_err": smsc.get("dlr_resp_err"),
        "smsc_dlr_pending": smsc.get("dlr_pending"),
        **{f"cpu_s_{name}": seconds for name, seconds in cpu.items()},
        "cpu_s_load": round(load_cpu, 1),
        "cpu_ms_per_message_openmmp": round(openmmp_cpu * 1000 / max(len(accepted), 1), 2),
        **(
            {
                "cpu_ms_per_message_with_postgresql": round(
                    (openmmp_cpu + cpu["postgresql"]) * 1000 / max(len(accepted), 1), 2
                )
            }
            if "postgresql" in cpu
            else {}
        ),
        **{
            f"sql_{name}_per_message": round(
                (work_after[name] - work_before.get(name, 0.0)) / max(len(accepted), 1), 1
            )
            for name in ("statements", "transactions")
            if name in work_after
        },
        "log_problems": _compact(problems),
        "peer_stock_per_s": PEER_STOCK,
        "peer_patched_per_s": PEER_PATCHED,
        "ratio_to_stock": round(end_to_end / PEER_STOCK, 1),
        "ratio_to_patched": round(end_to_end / PEER_PATCHED, 2),
        f"target_{TARGET_OVER_STOCK}x_stock_{TARGET_OVER_STOCK * PEER_STOCK:g}": (
            "met" if end_to_end >= TARGET_OVER_STOCK * PEER_STOCK else "NOT met"
        ),
        f"target_{TARGET_OVER_PATCHED}x_patched_{TARGET_OVER_PATCHED * PEER_PATCHED:g}": (
            "met" if end_to_end >= TARGET_OVER_PATCHED * PEER_PATCHED else "NOT met"
        ),
    }
    if platform.separate:
        mode = f"API + {workers} worker(s)"
    elif worker_processes is None:
        mode = "1 serve with workers"
    else:
        mode = f"1 serve --worker-processes {worker_processes}"
    setting = (
        f"{messages} single POST /broadcast (1 GSM-7 segment), {CLIENTS} clients, SMS channel binds {binds} "
        f"window {window} rateLimitPerSecond 5000, smsc_sim.py receipt delay 0.1 s, {mode}; peer: Jasmin "
        f"0.11.1 same simulator (../shared/bench/README.md)"
    )
    record("sms-end-to-end", kind, setting, figures)
    return figures
