"""The billing CDR of N messages exported end to end, and Get Channel Summary over them.

Starts a sandbox `openmmp serve` on a fresh SQLite database once (the demo company and channels), stops it,
and stores N messages of the demo SMS channel straight into the database: a year of traffic in creation
order, mostly READ and DELIVERED, some SENT, FAIL (half of them after the upstream accepted them) and
PENDING, a tenth as 2-segment SMS. It then fills the channel tallies from them with the statement the
migration that adds them runs (timed), starts `serve` again (its workers in a child process) and measures:

- Get Channel Summary over the whole year, for the channel and for all the company's channels (median and
  95th percentile of 20 calls): read from the tallies, so it should not grow with N;
- Create billing request for the year, followed to DONE (rows, seconds, rows per second, peak resident
  memory of the worker), then Download billing streamed to nothing (bytes, seconds, peak memory of the API).

Prints one JSON line and appends a row to bench/results.md.

Usage (from bench/): ../.venv/bin/python cdr_export.py [--messages 10000000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from common import OPENMMP, ROOT, children, free_port, record, rss_mib, stop, wait_up

YEAR_MS = 365 * 86_400_000
BATCH = 50_000
MIGRATION = ROOT / "src/openmmp/migrations/versions/2026-12-07_message_tallies.py"
# status (api.md §2), whether the upstream accepted it, share in 100
MIX = (
    [(5, True)] * 70
    + [(4, True)] * 15
    + [(2, True)] * 8
    + [(3, True)] * 2
    + [(3, False)] * 3
    + [(1, False)] * 2
)


def backfill_sql() -> str:
    spec = importlib.util.spec_from_file_location("tallies_migration", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.BACKFILL)


def rows(company_id: int, channel_id: int, count: int, start_ms: int) -> Iterator[tuple[Any, ...]]:
    step = YEAR_MS / count
    content = json.dumps({"type": "text", "message": "Your code is 4711"})
    for n in range(count):
        status, accepted = MIX[n % len(MIX)]
        created = start_ms + int(n * step)
        yield (
            str(uuid.UUID(int=n + 1)),
            company_id,
            channel_id,
            f"bench-{n}",
            "0" * 64,
            f"8551{n % 10_000_000:07d}",
            f"8551{n % 10_000_000:07d}",
            content,
            status,
            f"up-{n}" if accepted else None,
            2 if n % 10 == 0 else 1,
            int(n % 3 == 0),
            created,
            created + 2000,
        )


def seed(database: Path, company_id: int, channel_id: int, count: int, start_ms: int) -> None:
    connection = sqlite3.connect(database)
    try:
        generated = rows(company_id, channel_id, count, start_ms)
        while batch := [row for _, row in zip(range(BATCH), generated, strict=False)]:
            connection.executemany(
                "INSERT INTO messages (public_id, company_id, channel_id, client_message_id, request_hash, "
                "phone, recipient, content, status, provider_message_id, segments, priority, attempts, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                batch,
            )
            connection.commit()
    finally:
        connection.close()


def sql(database: Path, statement: str, *params: Any) -> list[Any]:
    connection = sqlite3.connect(database)
    try:
        result = connection.execute(statement, params).fetchall()
        connection.commit()
        return result
    finally:
        connection.close()


def timings(http: httpx.Client, params: dict[str, Any]) -> tuple[float, float]:
    """(median, 95th percentile) ms of 20 Get Channel Summary calls."""
    spent = []
    for _ in range(20):
        started = time.perf_counter()
        http.get("/api/v1/summary/channel", params=params).raise_for_status()
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    return round(statistics.median(spent), 1), round(spent[18], 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openmmp-cdr-") as folder:
        work = Path(folder)
        database = work / "openmmp.db"
        port = free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENMMP_DATA_DIR": str(work / "data"),
            "OPENMMP_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "OPENMMP_LOG_LEVEL": "WARNING",
            "OPENMMP_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        subprocess.run([*OPENMMP, "migrate"], env=env, check=True, capture_output=True)
        serve = subprocess.Popen([*OPENMMP, "serve", "--sandbox", "--port", str(port)], env=env)
        wait_up(f"http://127.0.0.1:{port}/readyz")
        stop(serve)
        demo = json.loads((work / "data" / "demo.json").read_text())
        [(company_id, channel_id)] = sql(
            database, "SELECT company_id, id FROM channels WHERE public_id = ?", demo["channels"]["SMS"]
        )
        start_ms = int(time.time() * 1000) - YEAR_MS - 3_600_000
        started = time.perf_counter()
        seed(database, company_id, channel_id, args.messages, start_ms)
        seed_s = time.perf_counter() - started
        sql(database, "DELETE FROM message_tallies")
        started = time.perf_counter()
        sql(database, backfill_sql())
        backfill_s = time.perf_counter() - started
        [(tally_rows,)] = sql(database, "SELECT count(*) FROM message_tallies")
        serve = subprocess.Popen([*OPENMMP, "serve", "--sandbox", "--port", str(port)], env=env)
        try:
            wait_up(f"http://127.0.0.1:{port}/readyz")
            figures = run(f"http://127.0.0.1:{port}", demo, serve, start_ms)
        finally:
            stop(serve)
        db_gib = database.stat().st_size / 2**30
    figures = {
        "messages": args.messages,
        "seed_s": round(seed_s, 1),
        "tallies_backfill_s": round(backfill_s, 1),
        "tally_rows": tally_rows,
        **figures,
        "database_gib": round(db_gib, 2),
    }
    settings = (
        f"{args.messages:,} messages of one SMS channel over a year (stored straight into the database), "
        "1 serve --sandbox with its worker process; summary: 20 calls over the year; CDR of the year "
        "exported by its background task, then downloaded"
    )
    record("cdr-export", "sqlite", settings, figures)


def run(base: str, demo: dict[str, Any], serve: subprocess.Popen[bytes], start_ms: int) -> dict[str, Any]:
    period = {"fromDate": start_ms, "toDate": int(time.time() * 1000)}
    with httpx.Client(base_url=base, headers={"apiKey": demo["apiKey"]}, timeout=600) as http:
        one_median, one_p95 = timings(http, {**period, "accountId": demo["channels"]["SMS"]})
        all_median, all_p95 = timings(http, period)
        total = http.get("/api/v1/summary/channel", params=period).json()["total"]
        started = time.perf_counter()
        task = http.post("/api/v1/billing/cdr", json=period)
        task.raise_for_status()
        task_id = task.json()["id"]
        last_shown = 0.0
        while (state := http.get(f"/api/v1/billing/cdr/{task_id}").json())["status"] < 3:
            if time.perf_counter() - last_shown > 15:
                last_shown = time.perf_counter()
                print(f"export {state['progress']} %", flush=True)
            time.sleep(1)
        export_s = time.perf_counter() - started
        assert state["cause"] == "DONE", state
        worker_peak = max((rss_mib(child)[1] for child in children(serve.pid)), default=0.0)
        started = time.perf_counter()
        size = 0
        lines = 0
        with http.stream("GET", f"/api/v1/billing/cdr/{task_id}/download") as download:
            for piece in download.iter_bytes():
                size += len(piece)
                lines += piece.count(b"\n")
        download_s = time.perf_counter() - started
    cdr_rows = state["summary"]["rows"]
    assert lines == cdr_rows + 1, (lines, cdr_rows)
    return {
        "summary_total": total,
        "summary_channel_ms_median": one_median,
        "summary_channel_ms_p95": one_p95,
        "summary_company_ms_median": all_median,
        "summary_company_ms_p95": all_p95,
        "cdr_rows": cdr_rows,
        "export_s": round(export_s, 1),
        "export_rows_per_s": round(cdr_rows / export_s),
        "peak_rss_mib_worker": round(worker_peak, 1),
        "download_mib": round(size / 2**20, 1),
        "download_s": round(download_s, 1),
        "peak_rss_mib_api": round(rss_mib(serve.pid)[1], 1),
    }


if __name__ == "__main__":
    main()
