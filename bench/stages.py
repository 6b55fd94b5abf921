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
- other: the event loop itself, garbage collection, the LISTEN connection, idle polling.

A stage's milliseconds per message are its share of the process's samples times the CPU the process
used (from /proc) over the messages. The collapsed stacks are kept beside the results, in
bench/profiles/, one gzip file per process and run.
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
HTTP_SERVER = ("/uvicorn/", "/starlette/", "/fastapi/", "openmmp/ops/middleware.py", "/httptools/")
STAGES = [*dict.fromkeys(stage for stage, _, _ in MARKERS), "http-in", "other"]


def stage_of(frames: list[str]) -> str:
    """The stage of one sample, `frames` from the outermost ("function (path:line)")."""
    for frame in frames:
        function, _, where = frame.partition(" (")
        for stage, path, prefix in MARKERS:
            if path in where and function.startswith(prefix):
                return stage
    if any(marker in frame for frame in frames for marker in HTTP_SERVER):
        return "http-in"
    return "other"


def shares(collapsed: str) -> dict[str, float]:
    """py-spy's raw output (one "frame;frame;... count" per line) → each stage's share of the samples."""
    counts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {stage: counts[stage] / total for stage in STAGES}


def stages(kind: str, work: Path, messages: int, workers: int, *, separate: bool | None) -> dict[str, Any]:
    platform = Platform(kind, work, workers, separate=separate, unlimited=True)
    mode = f"API + {workers} worker(s)" if platform.separate else "1 serve"
    tag = f"{datetime.date.today()}-{commit()}-{kind}-{'separate' if platform.separate else 'serve'}"
    PROFILES.mkdir(exist_ok=True)
    try:
        bot_phones = platform.bot_users(BOT_USERS)
        started = time.time()
        accept(platform, messages, bot_phones, 0.5)
        # py-spy follows the drain: the sends, callbacks and webhooks of the messages just accepted.
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
