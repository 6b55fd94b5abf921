"""Stages: where OpenMMP's CPU goes per message, from a py-spy profile of an end-to-end run.

The end-to-end platform (bench/e2e.py, upstream limits raised, no status reads) accepts N messages; then
py-spy samples every OpenMMP process (the API, its worker processes or the separate workers) while the
backlog drains. Each sample goes to the first stage its stack enters, from the outermost frame in:

- accept: the send endpoints (`messages/endpoints.py`) and what they call;
- callback: the providers' callbacks (`callbacks/`: verify, store, apply, its webhooks enqueued);
- dispatch: claim, send, record (`dispatch/`);
- webhook: claim, sign, deliver, record (`webhooks/tasks.py`);
- sweeps: the workers' periodic work and channel set-up (`workers.py` `_periodic`);
- metrics: `/metrics` scrapes (`ops/`);
- http-in: the HTTP server around the endpoints (uvicorn, Starlette, FastAPI, our middleware) when no
  endpoint is on the stack: parsing, routing, writing the answer;
- http-out: the HTTP client (aiohttp) writing a request or reading an answer outside the task that
  made it (sends and webhook deliveries alike);
- database: SQLAlchemy and the driver running a statement. SQLAlchemy's asyncio layer runs them in a
  greenlet whose stack starts at `Session.execute`, apart from the task that asked: py-spy cannot tell
  which stage a statement served, so all of them are counted here;
- event-loop: the loop's own turns (uvloop is native code: its waits are in here too, so this is an
  upper bound);
- other: garbage collection, the LISTEN connection, anything else.

Samples of threads that only wait (aiosqlite's thread, which our inline connections never use, and the
worker's metrics server) are left out. A stage's milliseconds per message are its share of the remaining
samples times the CPU the process used (from /proc) over the messages. The collapsed stacks are kept
beside the results, in bench/profiles/, one gzip file per process and run.
"""

from __future__ import annotations

import datetime
import gzip
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import ROOT, commit, record
from e2e import BOT_USERS, READ, Platform, accept, wait_for

PROFILES = ROOT / "bench" / "profiles"
PY_SPY = str(Path(ROOT / ".venv" / "bin" / "py-spy"))
RATE = 100  # samples per second: enough for shares of a few tenths of a percent over a minute

# (stage, path fragment, function name prefix or "" for any): the first match from the root in wins.
MARKERS: list[tuple[str, str, str]] = [
    ("accept", "openmmp/messages/endpoints.py", "broadcast"),
    ("accept", "openmmp/messages/endpoints.py", "conversation"),
    ("status-read", "openmmp/messages/endpoints.py", "get_status"),
    ("callback", "openmmp/callbacks/", ""),
    ("dispatch", "openmmp/dispatch/", ""),
    ("webhook", "openmmp/webhooks/tasks.py", ""),
    ("sweeps", "openmmp/workers.py", "Workers._periodic"),
    ("metrics", "openmmp/ops/endpoints.py", ""),
]
# py-spy names a frame's file relative to its import root: "(uvicorn/server.py:86)".
HTTP_SERVER = ("(uvicorn/", "(starlette/", "(fastapi/", "(openmmp/ops/middleware.py", "(httptools/")
DATABASE = ("(sqlalchemy/", "(openmmp/kit/db.py", "(aiosqlite/", "(asyncpg/", "(greenlet/")
WAITING = ("_connection_worker_thread (", "serve_forever (")
HTTP_CLIENT = ("(aiohttp/",)
LOOP = ("Runner.run ", "BaseEventLoop.run_forever ", "BaseEventLoop._run_once ", "Handle._run ")
STAGES = [
    *dict.fromkeys(stage for stage, _, _ in MARKERS),
    "http-in",
    "http-out",
    "database",
    "event-loop",
    "other",
]


def stage_of(frames: list[str]) -> str | None:
    """The stage of one sample, `frames` from the outermost ("function (path:line)"); None for a thread
    that only waits."""
    if any(wait in frame for frame in frames for wait in WAITING):
        return None
    for frame in frames:
        function, _, where = frame.partition(" (")
        for stage, path, prefix in MARKERS:
            if path in where and function.startswith(prefix):
                return stage
    # Below the event loop: the stack of what the loop runs (the roots above it are uvicorn's or typer's).
    loop = [n for n, frame in enumerate(frames) if frame.startswith(LOOP)]
    task = frames[loop[-1] + 1 :] if loop else frames
    if any(marker in frame for frame in task for marker in HTTP_SERVER):
        return "http-in"
    if any(marker in frame for frame in frames for marker in DATABASE):
        return "database"
    if any(marker in frame for frame in task for marker in HTTP_CLIENT):
        return "http-out"
    if loop and not task:
        return "event-loop"
    return "other"


def shares(collapsed: str) -> dict[str, float]:
    """py-spy's raw output (one "frame;frame;... count" per line) → each stage's share of the samples."""
    counts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        stage = stage_of(stack.split(";")) if stack and count.isdigit() else None
        if stage is not None:
            counts[stage] += int(count)
    total = sum(counts.values()) or 1
    return {stage: counts[stage] / total for stage in STAGES}


def stages(kind: str, work: Path, messages: int, workers: int, *, separate: bool | None) -> dict[str, Any]:
    platform = Platform(kind, work, workers, separate=separate, unlimited=True)
    mode = f"API + {workers} worker(s)" if platform.separate else "1 serve"
    tag = f"{datetime.date.today()}-{commit()}-{kind}-{'separate' if platform.separate else 'serve'}"
    PROFILES.mkdir(exist_ok=True)
    try:
        bot_phones = platform.bot_users(BOT_USERS)
        # py-spy follows the whole life of the messages: accepted, sent, called back, reported.
        pids = {name: pid for name, pid in platform.pids().items() if name.startswith(("api", "worker"))}
        cpu_before = platform.cpu()
        outputs = {name: work / f"{name}.txt" for name in pids}
        spies = [
            subprocess.Popen(
                [PY_SPY, "record", "-p", str(pid), "-r", str(RATE), "-f", "raw", "-o", str(outputs[name])],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        ]
        time.sleep(1)  # py-spy attaches
        started = time.time()
        accept(platform, messages, bot_phones, 0.5)
        done = wait_for(lambda: int(platform.counts()["byStatus"].get(str(READ), 0)) >= messages, 3600)
        elapsed = time.time() - started
        cpu = {name: seconds - cpu_before.get(name, 0.0) for name, seconds in platform.cpu().items()}
        for spy in spies:
            spy.send_signal(2)  # py-spy writes its profile on SIGINT
        for spy in spies:
            spy.wait(timeout=60)
    finally:
        platform.close()
    per_stage = dict.fromkeys(STAGES, 0.0)
    figures: dict[str, Any] = {"messages": messages, "complete": done}
    figures["messages_per_s_under_profiler"] = round(messages / elapsed, 1)
    for name, output in outputs.items():
        collapsed = output.read_text() if output.exists() else ""
        kept = PROFILES / f"{tag}-{name}.txt.gz"
        kept.write_bytes(gzip.compress(collapsed.encode()))
        process_ms = cpu.get(name, 0.0) * 1000 / messages
        figures[f"cpu_ms_per_message_{name}"] = round(process_ms, 2)
        for stage, share in shares(collapsed).items():
            per_stage[stage] += share * process_ms
    figures["cpu_ms_per_message_openmmp"] = round(sum(per_stage.values()), 2)
    figures.update({f"ms_{stage}": round(ms, 2) for stage, ms in per_stage.items()})
    figures["profiles"] = f"bench/profiles/{tag}-*.txt.gz"
    record("stages", kind, f"{messages} messages (50 % Viber Bot), upstream limits raised, {mode}", figures)
    return figures
