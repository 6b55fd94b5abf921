"""The SQL outbox queue: claim with a lease, acknowledge, retry later. SQLite and PostgreSQL.

Claims are fair across companies: each claim first lists the companies that have jobs (a skip scan over
the `(company_id, priority, run_at)` index, cheap however long one company's backlog is), then takes an
equal share of ready jobs from each, transactional before campaign traffic. PostgreSQL skips rows other
workers hold (`FOR UPDATE SKIP LOCKED`); SQLite serialises claims with its `BEGIN IMMEDIATE` transaction.
A claimed job carries `lease_until`; a worker that dies loses its lease and the job is claimed again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.models import Job

_LANES = text(
    """
    WITH RECURSIVE lanes(company_id) AS (
        SELECT MIN(company_id) FROM jobs WHERE kind = :kind
        UNION ALL
        SELECT (SELECT MIN(j.company_id) FROM jobs j WHERE j.kind = :kind AND j.company_id > lanes.company_id)
        FROM lanes WHERE lanes.company_id IS NOT NULL
    )
    SELECT company_id FROM lanes WHERE company_id IS NOT NULL LIMIT :max_lanes
    """
)


@dataclass
class Claimer:
    """Claims jobs of one kind. Keeps a rotating start so no company is always served first."""

    kind: str
    lease_ms: int
    skip_locked: bool
    max_lanes: int = 1000
    _turn: int = 0

    async def claim(self, session: AsyncSession, *, limit: int, now: int) -> list[Job]:
        """Lease up to `limit` ready jobs, shared fairly across companies. Caller commits."""
        lanes = [
            row[0] for row in await session.execute(_LANES, {"kind": self.kind, "max_lanes": self.max_lanes})
        ]
        if not lanes:
            return []
        self._turn = (self._turn + 1) % len(lanes)
        active = lanes[self._turn :] + lanes[: self._turn]
        claimed: list[Job] = []
        # Equal shares first; what a short lane leaves unused goes to the lanes that had more.
        while active and len(claimed) < limit:
            share = max(1, math.ceil((limit - len(claimed)) / len(active)))
            still_full = []
            for company_id in active:
                wanted = min(share, limit - len(claimed))
                if wanted <= 0:
                    break
                got = await self._take(session, company_id, wanted, now)
                claimed += got
                if len(got) == wanted:
                    still_full.append(company_id)
            active = still_full
        return claimed

    async def _take(self, session: AsyncSession, company_id: int, count: int, now: int) -> list[Job]:
        statement = (
            select(Job)
            .where(
                Job.kind == self.kind, Job.company_id == company_id, Job.run_at <= now, Job.lease_until < now
            )
            .order_by(Job.priority, Job.run_at, Job.id)
            .limit(count)
        )
        if self.skip_locked:
            statement = statement.with_for_update(skip_locked=True)
        jobs = list((await session.execute(statement)).scalars())
        if jobs:
            lease_until = now + self.lease_ms
            await session.execute(
                update(Job).where(Job.id.in_([j.id for j in jobs])).values(lease_until=lease_until)
            )
            for job in jobs:
                job.lease_until = lease_until
        return jobs


async def acknowledge(session: AsyncSession, job_ids: Sequence[int]) -> None:
    """The jobs are done: delete them."""
    if job_ids:
        await session.execute(delete(Job).where(Job.id.in_(job_ids)))


async def reschedule(session: AsyncSession, changes: Sequence[tuple[int, int, bool]]) -> None:
    """For each (job id, run_at, count_attempt): release the lease and run it again at `run_at`."""
    if not changes:
        return
    jobs = cast(Table, Job.__table__)
    statement = (
        update(jobs)
        .where(jobs.c.id == bindparam("job_id"))
        .values(run_at=bindparam("new_run_at"), lease_until=0, attempts=jobs.c.attempts + bindparam("extra"))
    )
    await session.execute(
        statement,
        [{"job_id": job_id, "new_run_at": run_at, "extra": int(count)} for job_id, run_at, count in changes],
    )
