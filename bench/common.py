"""Helpers every benchmark scenario shares: recording rows, ports, databases, processes and CPU time."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.md"
PY = sys.executable
OPENMMP = [PY, "-m", "openmmp.cli"]
HEADER = (
    "| date | commit | machine | scenario | database | settings | figures |\n|---|---|---|---|---|---|---|\n"
)
_TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    memory_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    # The load average over the last 1 / 5 minutes as the row is written: the run's own load plus
    # whatever else the machine was doing (a figure is comparable only to runs of similar load).
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, {memory_kib / 1024 / 1024:.0f} GiB, load {one:.1f} / {five:.1f}"


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def record(scenario: str, database: str, settings: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"scenario": scenario, "database": database, **figures}), flush=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `make bench` (bench/run.py).\n\n" + HEADER)
    row = (
        f"| {datetime.date.today()} | {commit()} | {machine()} | {scenario} | {database} | {settings} | "
        f"{', '.join(f'{k} {v}' for k, v in figures.items())} |\n"
    )
    with RESULTS.open("a") as handle:
        handle.write(row)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def database_url(kind: str, work: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{work / name}.db"
    base = os.environ.get("OPENMMP_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/openmmp_bench")
    db = f"{base.rsplit('/', 1)[1]}_{name}"
    admin = base.rsplit("/", 1)[0] + "/postgres"
    for sql in (f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'CREATE DATABASE "{db}"'):
        subprocess.run(["psql", admin, "-qc", sql], check=True)
    return base.rsplit("/", 1)[0] + "/" + db


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / _TICKS, 1)


def children(pid: int) -> list[int]:
    """The child processes of `pid` (e.g. `openmmp serve`'s worker processes)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a live process, MiB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return (int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_launched(base: str, channel: str, headers: dict[str, str]) -> None:
    for _ in range(300):
        status = httpx.get(f"{base}/api/v1/channel/{channel}/status", headers=headers, timeout=5).json()
        if status["status"] == 3:
            return
        time.sleep(0.1)
    raise RuntimeError(f"channel {channel} was not launched")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 2)
