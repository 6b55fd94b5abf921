"""End-to-end scenario: N messages through the Viber and Viber Bot simulators to a local webhook receiver.

The platform runs as in production: on SQLite one `openmmp serve` with its workers, on PostgreSQL
`openmmp serve --no-workers` plus W `openmmp worker` processes. The simulators (`openmmp simulate`)
accept sends and post delivery and read callbacks back; every status change becomes a signed webhook to
bench/receiver.py. All N messages are accepted in batches of 1,000 as fast as the API takes them, so
the latencies include the time a message waits in the queue behind the ones accepted before it.

Figures: messages/s from the first accept to the last final (READ) webhook, p50/p99 of accept → SENT
webhook and accept → READ webhook (seconds), and the CPU seconds each process used.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from common import (
    OPENMMP,
    PY,
    ROOT,
    children,
    cpu_seconds,
    database_url,
    free_port,
    percentile,
    record,
    stop,
    wait_launched,
    wait_up,
)

BATCH = 1000
UNLIMITED = {"VIBER_REQUESTS": 1_000_000, "VIBER_BOT_REQUESTS": 1_000_000}
BOT_USERS = 300
SENT, READ = 2, 5


class Platform:
    """Simulators, receiver, API and workers as processes; torn down by `close`."""

    def __init__(
        self,
        kind: str,
        work: Path,
        workers: int,
        *,
        separate: bool | None = None,
        extra_env: dict[str, str] | None = None,
        unlimited: bool = False,
    ) -> None:
        """`unlimited`: the upstreams' published limits (Viber Bot: 500 requests per 10 s per bot, which
        caps one bot at ~48 messages/s) raised far beyond reach, in the simulators and in OpenMMP alike,
        and the simulators' callbacks in flight raised from 64 to 512, so that the run measures the
        platform rather than the limits."""
        self.kind = kind
        self.work = work
        name = f"e2e{workers}{'s' if separate else ''}"
        data = work / f"data-{kind}-{name}"
        self.env = {**os.environ, "OPENMMP_DATA_DIR": str(data), "OPENMMP_LOG_LEVEL": "WARNING"}
        self.env["OPENMMP_DATABASE_URL"] = database_url(kind, work, name)
        self.api_port, self.sim_port, self.hook_port = free_port(), free_port(), free_port()
        self.env.update(
            OPENMMP_SANDBOX="true",
            OPENMMP_PUBLIC_URL=f"http://127.0.0.1:{self.api_port}",
            OPENMMP_PROVIDERS__VIBER_BASE_URL=f"http://127.0.0.1:{self.sim_port}/viber",
            OPENMMP_PROVIDERS__VIBER_BOT_BASE_URL=f"http://127.0.0.1:{self.sim_port}/viber-bot",
            **(extra_env or {}),
        )
        knobs: list[str] = []
        if unlimited:
            for name, value in UNLIMITED.items():
                self.env[f"OPENMMP_LIMITS__{name}"] = str(value)
            knobs = [f"--set=viber.requests_per_second={UNLIMITED['VIBER_REQUESTS']}"]
            knobs += [f"--set=viber-bot.requests_per_window={UNLIMITED['VIBER_BOT_REQUESTS']}"]
            # Upstreams call back from many servers at once; the simulator's default of 64 callbacks in
            # flight, each answered after its batch commits, caps the rate at 64 / (callback latency).
            knobs += ["--callback-connections=512"]
        subprocess.run([*OPENMMP, "migrate"], env=self.env, check=True, capture_output=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.processes["simulator"] = subprocess.Popen(
            [*OPENMMP, "simulate", "--port", str(self.sim_port), "--no-track-keys", *knobs], env=self.env
        )
        self.processes["receiver"] = subprocess.Popen(
            [PY, str(ROOT / "bench" / "receiver.py"), "--port", str(self.hook_port)]
        )
        serve = ["serve", "--port", str(self.api_port)]
        self.separate = kind == "postgresql" if separate is None else separate
        self.url = self.env["OPENMMP_DATABASE_URL"]
        self.metrics = [f"http://127.0.0.1:{self.api_port}/metrics"]
        if self.separate:
            serve.append("--no-workers")
            for n in range(workers):
                port = free_port()
                self.metrics.append(f"http://127.0.0.1:{port}/metrics")
                env = {**self.env, "OPENMMP_METRICS_PORT": str(port)}
                self.processes[f"worker{n + 1}"] = subprocess.Popen([*OPENMMP, "worker"], env=env)
        self.processes["api"] = subprocess.Popen([*OPENMMP, *serve], env=self.env)
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.hook = f"http://127.0.0.1:{self.hook_port}"
        wait_up(f"{self.base}/readyz")
        wait_up(f"http://127.0.0.1:{self.sim_port}/viber/_sandbox/stats")
        wait_up(f"{self.hook}/count")
        demo = json.loads((data / "demo.json").read_text())
        self.headers = {"apiKey": demo["apiKey"]}
        self.viber = demo["channels"]["VIBER"]
        self.bot = demo["channels"]["VIBER_BOT"]
        for channel in (self.viber, self.bot):
            wait_launched(self.base, channel, self.headers)
            response = httpx.post(
                f"{self.base}/api/v1/channel/{channel}/webhook",
                json={"url": f"{self.hook}/hook"},
                headers=self.headers,
            )
            response.raise_for_status()

    def bot_users(self, count: int) -> list[str]:
        """Phones of `count` bot subscribers, learned from their first inbound message."""
        phones = [f"85597{n:06d}{n % 7}" for n in range(count)]
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as http:
            for phone in phones:
                http.post(
                    f"/sandbox/viber-bot/{self.bot}/inbound",
                    json={"name": "Bench", "text": "hi", "phone": phone},
                ).raise_for_status()
        # Each user shares their phone, then writes (two inbound webhooks): sends by phone are refused
        # until a user's share has made their conversation.
        seen = -1
        while seen != (seen := self.counts()["inbound"]) or seen < 2 * count:
            time.sleep(1)
        return phones

    def counts(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.hook}/count", timeout=10).json()
        return result

    def database_work(self) -> dict[str, float]:
        """SQL statements (by verb, and in all) and transactions so far, summed over API and workers."""
        totals: dict[str, float] = {}
        for url in self.metrics:
            for family in text_string_to_metric_families(httpx.get(url, timeout=30).text):
                for sample in family.samples:
                    if sample.name == "openmmp_db_statements_total":
                        verb = sample.labels["verb"].lower()
                        totals[verb] = totals.get(verb, 0.0) + sample.value
                        totals["statements"] = totals.get("statements", 0.0) + sample.value
                    elif sample.name == "openmmp_db_transactions_total":
                        totals["transactions"] = totals.get("transactions", 0.0) + sample.value
        return totals

    def pids(self) -> dict[str, int]:
        """Every live process by name; `openmmp serve`'s worker processes as `api_child1`, ..."""
        found: dict[str, int] = {}
        for name, process in self.processes.items():
            if process.poll() is None:
                found[name] = process.pid
                for n, child in enumerate(children(process.pid), 1):
                    found[f"{name}_child{n}"] = child
        return found

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids().items()}

    def openmmp_cpu(self, cpu: dict[str, float]) -> float:
        """CPU seconds of OpenMMP's own processes in `cpu` (API, workers; not simulators nor receiver)."""
        return sum(seconds for name, seconds in cpu.items() if name.startswith(("api", "worker")))

    def close(self) -> None:
        stop(*self.processes.values())


def accept(platform: Platform, messages: int, bot_phones: list[str], bot_share: float) -> dict[str, float]:
    """Accept `messages` in batches of 1,000 (two calls in flight); returns messageId → accept time."""
    accepted: dict[str, float] = {}
    bot_every = round(1 / bot_share) if bot_share else 0

    def batch(start: int) -> None:
        count = min(BATCH, messages - start)
        channel, phones = _recipients(platform, bot_phones, start // BATCH, bot_every, start, count)
        items = [{"phone": phone, "message": {"type": "text", "message": "Bench {{n}}"}} for phone in phones]
        for item, n in zip(items, range(count), strict=True):
            item["params"] = {"n": str(start + n)}
        response = httpx.post(
            f"{platform.base}/api/v1/channel/{channel}/broadcast/batch",
            json={"messages": items},
            headers=platform.headers,
            timeout=120,
        )
        now = time.time()
        for message_id in _accepted(response):
            accepted[message_id] = now

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(batch, range(0, messages, BATCH)))
    return accepted


def _recipients(
    platform: Platform,
    bot_phones: list[str],
    number: int,
    bot_every: int,
    start: int,
    count: int,
    offset: int = 0,
) -> tuple[str, list[str]]:
    """The channel and phones of batch `number` starting at message `start`: every `bot_every`-th batch
    goes to the bot's subscribers, the others to Viber numbers (`offset` keeps two runs' numbers apart)."""
    if bot_every and number % bot_every == 0:
        return platform.bot, [bot_phones[(start + n) % len(bot_phones)] for n in range(count)]
    return platform.viber, [f"85512{offset + start + n:06d}{(start + n) % 7}" for n in range(count)]


def _accepted(response: httpx.Response) -> list[str]:
    """The message ids of a batch's answer; a refused item stops the run, naming its error."""
    response.raise_for_status()
    ids = []
    for item in response.json()["messages"]:
        if "messageId" not in item:
            raise RuntimeError(f"a send was refused: {item}")
        ids.append(item["messageId"])
    return ids


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def status_reads(
    platform: Platform, message_ids: list[str], rate: float, seconds: float
) -> subprocess.Popen[str]:
    """Start Get Message Status at `rate`/s over `message_ids` as its own process (bench/status_load.py)."""
    ids = platform.work / "status-ids.txt"
    ids.write_text("\n".join(message_ids))
    args = [PY, str(ROOT / "bench" / "status_load.py"), "--base", platform.base, "--ids", str(ids)]
    args += ["--key", platform.headers["apiKey"], "--rate", str(rate), "--seconds", str(seconds)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def end_to_end(
    kind: str,
    work: Path,
    messages: int,
    workers: int,
    bot_share: float = 0.5,
    status_rate: float = 500.0,
    separate: bool | None = None,
    unlimited: bool = False,
) -> dict[str, Any]:
    """`separate`: the API without workers plus `workers` worker processes (the default on PostgreSQL);
    on SQLite it splits the CPU between the API's work (accept, callbacks, reads) and the workers'."""
    platform = Platform(kind, work, workers, separate=separate, unlimited=unlimited)
    try:
        bot_phones = platform.bot_users(BOT_USERS) if bot_share else []
        work_before = platform.database_work()
        cpu_before = platform.cpu()
        started = time.time()
        accepted = accept(platform, messages, bot_phones, bot_share)
        accept_seconds = time.time() - started
        # Reads while the backlog drains: the status p99 a client sees under load.
        reader = status_reads(platform, list(accepted)[:10_000], status_rate, 20.0) if status_rate else None
        done = wait_for(lambda: int(platform.counts()["byStatus"].get(str(READ), 0)) >= messages, 3600)
        cpu = {name: round(s - cpu_before.get(name, 0.0), 1) for name, s in platform.cpu().items()}
        work_after = platform.database_work()
        reads = json.loads((reader.communicate()[0] or "{}").strip().splitlines()[-1]) if reader else {}
        events = httpx.get(f"{platform.hook}/dump", timeout=120).json()
    finally:
        platform.close()
    sent_at: dict[str, float] = {}
    read_at: dict[str, float] = {}
    for message_id, status, at in events:
        if status == SENT:
            sent_at.setdefault(message_id, at)
        elif status == READ:
            read_at.setdefault(message_id, at)
    to_sent = [sent_at[m] - t for m, t in accepted.items() if m in sent_at]
    to_read = [read_at[m] - t for m, t in accepted.items() if m in read_at]
    last = max(read_at.values()) if read_at else time.time()
    figures: dict[str, Any] = {
        "messages": messages,
        "finished": len(read_at),
        "complete": done,
        "messages_per_s": round(len(read_at) / (last - started), 1),
        "accept_per_s": round(messages / accept_seconds, 0),
        "sent_p50_s": percentile(to_sent, 0.5),
        "sent_p99_s": percentile(to_sent, 0.99),
        "final_p50_s": percentile(to_read, 0.5),
        "final_p99_s": percentile(to_read, 0.99),
        "webhooks": len(events),
        "status_rps": reads.get("rps"),
        "status_p50_ms": reads.get("p50_ms"),
        "status_p99_ms": reads.get("p99_ms"),
        "status_errors": reads.get("errors"),
        **{f"cpu_s_{name}": seconds for name, seconds in cpu.items()},
        "cpu_ms_per_message_openmmp": round(platform.openmmp_cpu(cpu) * 1000 / messages, 2),
        # Per message, the status reads' statements included (one SELECT or two per read).
        **{
            f"sql_{name}_per_message": round((work_after[name] - work_before.get(name, 0.0)) / messages, 1)
            for name in sorted(work_after)
        },
    }
    setting = f"{messages} messages ({int(bot_share * 100)} % Viber Bot), "
    setting += (
        f"status reads {status_rate:g}/s, "
        + ("upstream limits raised, " if unlimited else "")
        + (f"API + {workers} worker(s)" if platform.separate else "1 serve with workers")
    )
    record("end-to-end", kind, setting, figures)
    return figures


def paced_accept(
    platform: Platform, rate: float, seconds: float, bot_phones: list[str], bot_share: float
) -> dict[str, float]:
    """Accept `rate` messages/s for `seconds` on a fixed schedule (batches of 20, open loop); returns
    messageId → accept time."""
    accepted: dict[str, float] = {}
    size = 20
    total = int(rate * seconds) // size * size
    bot_every = round(1 / bot_share) if bot_share else 0
    started = time.monotonic()
    with httpx.Client(base_url=platform.base, headers=platform.headers, timeout=60) as http:
        for start in range(0, total, size):
            delay = started + start / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # Other phones than the burst's (offset 900,000): these are new messages, not replays.
            channel, phones = _recipients(
                platform, bot_phones, start // size, bot_every, start, size, offset=900_000
            )
            items = [{"phone": phone, "message": {"type": "text", "message": "Paced"}} for phone in phones]
            response = http.post(f"/api/v1/channel/{channel}/broadcast/batch", json={"messages": items})
            now = time.time()
            for message_id in _accepted(response):
                accepted[message_id] = now
    return accepted


def reads_under_load(
    kind: str,
    work: Path,
    messages: int,
    *,
    load: float = 0.8,
    status_rate: float = 100.0,
    seconds: float = 30.0,
    separate: bool | None = None,
) -> dict[str, Any]:
    """Get Message Status while the platform runs at `load` of its maximum: first `messages` as fast as
    the API takes them (the maximum, as `end_to_end` measures it), then a paced run at `load` × that
    rate for `seconds` with status reads at `status_rate`/s over the first run's messages."""
    workers = 2 if kind == "postgresql" else 1
    platform = Platform(kind, work, workers, separate=separate, unlimited=True)
    try:
        bot_phones = platform.bot_users(BOT_USERS)
        started = time.time()
        burst = accept(platform, messages, bot_phones, 0.5)
        done = wait_for(lambda: int(platform.counts()["byStatus"].get(str(READ), 0)) >= messages, 3600)
        maximum = messages / (time.time() - started)
        rate = round(load * maximum, 1)
        cpu_before = platform.cpu()
        reader = status_reads(platform, list(burst)[:10_000], status_rate, seconds)
        paced_started = time.time()
        paced = paced_accept(platform, rate, seconds, bot_phones, 0.5)
        expected = messages + len(paced)
        kept_up = wait_for(lambda: int(platform.counts()["byStatus"].get(str(READ), 0)) >= expected, 600)
        drained = time.time() - paced_started
        cpu = {name: round(s - cpu_before.get(name, 0.0), 1) for name, s in platform.cpu().items()}
        reads = json.loads((reader.communicate()[0] or "{}").strip().splitlines()[-1])
    finally:
        platform.close()
    figures: dict[str, Any] = {
        "complete": done and kept_up,
        "maximum_messages_per_s": round(maximum, 1),
        "paced_messages_per_s": rate,
        "paced_messages": len(paced),
        "paced_drained_s": round(drained, 1),
        "status_rps": reads.get("rps"),
        "status_p50_ms": reads.get("p50_ms"),
        "status_p99_ms": reads.get("p99_ms"),
        "status_max_ms": reads.get("max_ms"),
        "status_errors": reads.get("errors"),
        **{f"cpu_s_{name}": seconds for name, seconds in cpu.items()},
        "cpu_ms_per_message_openmmp": round(platform.openmmp_cpu(cpu) * 1000 / max(len(paced), 1), 2),
    }
    mode = f"API + {workers} worker(s)" if platform.separate else "1 serve"
    setting = (
        f"{messages} messages at full speed, then {int(load * 100)} % of that rate for {seconds:g} s with "
        f"status reads {status_rate:g}/s (50 % Viber Bot), upstream limits raised, {mode}"
    )
    record("status-reads-under-load", kind, setting, figures)
    return figures
