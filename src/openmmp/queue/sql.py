"""The SQL outbox queue: claim with a lease, acknowledge, retry later. SQLite and PostgreSQL.

A job is due when `run_at` has passed. Claiming one leases it by moving its `run_at` (and `lease_until`)
to the end of the lease: a worker that dies loses its lease and the job is simply due again, so "due"
needs no second condition and one index serves every query here: `(kind, company_id, priority, run_at)`.

Claims are fair across companies: each claim lists the companies with due work of its kind (a skip scan
over that index: two seeks per company, however long any company's backlog is), starting after the
company the previous claim stopped at, and takes an equal share of due jobs from each, transactional
before campaign traffic. With more such companies than `max_lanes`, the next claim goes on where this one
stopped, so every company with due work is served in turn. PostgreSQL skips rows other workers hold
(`FOR UPDATE SKIP LOCKED`); SQLite serialises claims with its `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from openmmp.models import Job
from openmmp.models.message import Priority

NO_COMPANY = 2**62
"""Above every company id: "no upper bound" for the lanes' skip scan."""

# Companies with jobs of :kind in (:after, :before), in id order, keeping those with a due job: the earliest
# run_at of each (company, priority) is one index probe (`Priority` has the two values bound as
# :transactional and :campaign). Scalar MIN subqueries rather than EXISTS: PostgreSQL may turn an EXISTS
# into one hashed scan of every due job (1.7 s with 1,000,000 queued, when its statistics lag behind).
_LANES = text(
    """
    WITH RECURSIVE lanes(company_id) AS (
        SELECT MIN(company_id) FROM jobs WHERE kind = :kind AND company_id > :after
        UNION ALL
        SELECT (SELECT MIN(j.company_id) FROM jobs j WHERE j.kind = :kind AND j.company_id > lanes.company_id)
        FROM lanes WHERE lanes.company_id IS NOT NULL AND lanes.company_id < :before
    )
    SELECT company_id FROM lanes
    WHERE company_id IS NOT NULL AND company_id < :before
      AND ((SELECT MIN(d.run_at) FROM jobs d WHERE d.kind = :kind AND d.company_id = lanes.company_id
            AND d.priority = :transactional) <= :now
           OR (SELECT MIN(d.run_at) FROM jobs d WHERE d.kind = :kind AND d.company_id = lanes.company_id
               AND d.priority = :campaign) <= :now)
    LIMIT :max_lanes
    """
)
_PRIORITIES = {"transactional": int(Priority.TRANSACTIONAL), "campaign": int(Priority.CAMPAIGN)}
assert set(_PRIORITIES.values()) == {int(p) for p in Priority}, "a new Priority needs its range in _LANES"


@dataclass
class Claimer:
    """Claims jobs of one kind; remembers where it stopped so that every company is served in turn."""

    kind: str
    lease_ms: int
    skip_locked: bool
    max_lanes: int = 1000
    _after: int = -1
    """The company the next claim starts after."""

    async def _lanes(self, session: AsyncSession, now: int) -> list[int]:
        """Companies with due work, starting after `_after` and wrapping around, at most `max_lanes`."""

        async def scan(after: int, before: int, limit: int) -> list[int]:
            parameters = {
                "kind": self.kind,
                "now": now,
                "after": after,
                "before": before,
                "max_lanes": limit,
                **_PRIORITIES,
            }
            return [row[0] for row in await session.execute(_LANES, parameters)]

        # Read once: another round's claim may move it while this one waits for the database.
        after = self._after
        lanes = await scan(after, NO_COMPANY, self.max_lanes)
        if len(lanes) < self.max_lanes and after >= 0:
            lanes += await scan(-1, after + 1, self.max_lanes - len(lanes))
        return lanes

    async def claim(self, session: AsyncSession, *, limit: int, now: int) -> list[Job]:
        """Lease up to `limit` due jobs, shared fairly across companies. Caller commits."""
        lanes = await self._lanes(session, now)
        if not lanes:
            return []
        active = lanes
        served: set[int] = set()
        claimed: list[Job] = []
        taken: dict[int, list[int]] = {}
        # Equal shares first; what a short lane leaves unused goes to the lanes that had more (past the
        # jobs this claim already took from them: they are leased only when it ends).
        while active and len(claimed) < limit:
            share = max(1, math.ceil((limit - len(claimed)) / len(active)))
            still_full = []
            for company_id in active:
                wanted = min(share, limit - len(claimed))
                if wanted <= 0:
                    break
                mine = taken.setdefault(company_id, [])
                got = await self._take(session, company_id, wanted, now, mine)
                mine += [job.id for job in got]
                claimed += got
                served.add(company_id)
                if len(got) == wanted:
                    still_full.append(company_id)
            active = still_full
        if claimed:
            lease_until = now + self.lease_ms
            await session.execute(
                update(Job)
                .where(Job.id.in_([j.id for j in claimed]))
                .values(lease_until=lease_until, run_at=lease_until)
                # The claimed jobs are told below; matching the statement against every object of the
                # session ("evaluate") was a tenth of a worker's database time.
                .execution_options(synchronize_session=False)
            )
            for job in claimed:
                # As stored: the objects are not dirtied, so the commit flushes nothing more for them.
                set_committed_value(job, "lease_until", lease_until)
                set_committed_value(job, "run_at", lease_until)
        # Next time start after the last company served (all served: one further, so the first rotates).
        # Companies are served in lane order, which wraps around past the highest id, so the last one
        # served is the lane before the first unserved one, not the largest id below it.
        unserved = [company for company in lanes if company not in served]
        self._after = lanes[0] if not unserved else lanes[lanes.index(unserved[0]) - 1]
        return claimed

    async def _take(
        self, session: AsyncSession, company_id: int, count: int, now: int, skip: list[int]
    ) -> list[Job]:
        """Up to `count` of the company's due jobs, oldest first, other than those in `skip`."""
        jobs: list[Job] = []
        for priority in Priority:  # transactional first; each a range of the index
            if len(jobs) >= count:
                break
            statement = (
                select(Job)
                .where(
                    Job.kind == self.kind,
                    Job.company_id == company_id,
                    Job.priority == int(priority),
                    Job.run_at <= now,
                )
                .order_by(Job.run_at, Job.id)
                .limit(count - len(jobs) + len(skip))
            )
            if self.skip_locked:
                statement = statement.with_for_update(skip_locked=True)
            skipped = set(skip)
            found = [job for job in (await session.execute(statement)).scalars() if job.id not in skipped]
            jobs += found[: count - len(jobs)]
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
