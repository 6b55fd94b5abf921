"""Scenario `claims`: what one claim costs with 10 and with 1,000,000 jobs queued.

A migrated database gets 10 companies with a backlog of `dispatch` jobs (10, 1,000, then 1,000,000,
spread over them, all due) and 10 `channel_setup` jobs. Timed, each in its own write transaction that is
rolled back (so every repetition sees the same queue): a `channel_setup` claim of 10 (the rare kind
behind a large backlog) and a `dispatch` claim of 200 (the worker's batch; with 10 queued it can take
only 10, so compare its full claims at 1,000 and at 1,000,000). Figures: the median and the worst of 20
repetitions, per backlog. A claim should cost the same whatever the backlog.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from common import PY, database_url, record
from openmmp.kit.db import Database
from openmmp.models import Company, Job
from openmmp.queue.sql import Claimer

COMPANIES = 10
REPEAT = 20
CHUNK = 50_000


async def _fill(db: Database, companies: list[int], count: int, now: int) -> None:
    """`count` more due dispatch jobs, spread over `companies`, inserted in chunks."""
    for start in range(0, count, CHUNK):
        rows = [
            {"kind": "dispatch", "company_id": companies[n % len(companies)], "run_at": now - 1_000 + n % 997}
            for n in range(start, min(count, start + CHUNK))
        ]
        async with db.write_sessions() as session, session.begin():
            await session.execute(insert(Job), rows)


async def _timed(db: Database, kind: str, limit: int, now: int, available: int) -> list[float]:
    claimer = Claimer(kind=kind, lease_ms=60_000, skip_locked=not db.is_sqlite)
    timings = []
    for _ in range(REPEAT):
        async with db.write_sessions() as session:
            transaction = await session.begin()
            started = time.perf_counter()
            claimed = await claimer.claim(session, limit=limit, now=now)
            timings.append((time.perf_counter() - started) * 1000)
            assert len(claimed) == min(limit, available), (kind, len(claimed))
            await transaction.rollback()
    return timings


async def _measure(url: str, backlogs: list[int]) -> dict[str, Any]:
    db = Database(url)
    now = int(time.time() * 1000)
    figures: dict[str, Any] = {}
    try:
        async with db.write_sessions() as session, session.begin():
            made = [Company(name=f"Bench {n}") for n in range(COMPANIES)]
            session.add_all(made)
            await session.flush()
            companies = [company.id for company in made]
            await session.execute(
                insert(Job),
                [{"kind": "channel_setup", "company_id": c, "run_at": now} for c in companies[:10]],
            )
        queued = 0
        for backlog in backlogs:
            await _fill(db, companies, backlog - queued, now)
            queued = backlog
            if not db.is_sqlite:
                # Outside a transaction: statistics gathered in one that is rolled back are discarded.
                async with db.engine.connect() as connection:
                    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    await autocommit.exec_driver_sql("ANALYZE jobs")
            setup = await _timed(db, "channel_setup", 10, now, 10)
            dispatch = await _timed(db, "dispatch", 200, now, backlog)
            label = f"{backlog:,}".replace(",", "_")
            figures[f"setup_claim_ms_p50_at_{label}"] = round(statistics.median(setup), 2)
            figures[f"setup_claim_ms_max_at_{label}"] = round(max(setup), 2)
            figures[f"dispatch_claim_ms_p50_at_{label}"] = round(statistics.median(dispatch), 2)
            figures[f"dispatch_claim_ms_max_at_{label}"] = round(max(dispatch), 2)
    finally:
        await db.dispose()
    return figures


def claims(kind: str, work: Path, queued: int) -> dict[str, Any]:
    url = database_url(kind, work, "claims")
    env = {**os.environ, "OPENMMP_DATABASE_URL": url}
    subprocess.run([PY, "-m", "openmmp.cli", "migrate"], env=env, check=True)
    figures = asyncio.run(_measure(url, [10, 1_000, queued]))
    record(
        "claim-cost",
        kind,
        f"{COMPANIES} companies; a channel_setup claim of 10 and a dispatch claim of 200, "
        f"median/max of {REPEAT}, with 10, 1,000 and {queued:,} dispatch jobs queued",
        figures,
    )
    return figures
