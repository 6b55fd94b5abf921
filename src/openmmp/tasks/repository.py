"""All SQL about background tasks. Tenant reads start from `readable(subject)`: the choke point.

The runner's statements are not tenant-scoped: the workers serve every company, and they only touch the
tasks of jobs they claimed. Two fences keep a runner whose lease ran out from writing over the runner
that took its task over: the task's `step` for the task and its result file (`advance`), the job's
`lease_until` for the job (`holds_job`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Select, delete, func, insert, select, update

from openmmp.kit.ids import canonical_public_id
from openmmp.models import BackgroundTask, BackgroundTaskChunk, Job
from openmmp.models.task import TaskStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.auth import Subject

CHUNK_BYTES = 1024 * 1024
"""Largest piece of a result file in one row: what a download holds in memory per piece."""


def readable(subject: Subject) -> Select[BackgroundTask]:
    return select(BackgroundTask).where(BackgroundTask.company_id == subject.company_id)


async def get(session: AsyncSession, subject: Subject, public_id: str) -> BackgroundTask | None:
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    statement = readable(subject).where(BackgroundTask.public_id == canonical)
    return (await session.execute(statement)).scalar_one_or_none()


async def page(
    session: AsyncSession,
    subject: Subject,
    *,
    type: str | None,
    status: TaskStatus | None,
    offset: int,
    limit: int,
) -> tuple[int, list[BackgroundTask]]:
    """The company's tasks, newest first."""
    statement = readable(subject)
    if type is not None:
        statement = statement.where(BackgroundTask.type == type)
    if status is not None:
        statement = statement.where(BackgroundTask.status == int(status))
    total = (await session.execute(select(func.count()).select_from(statement.subquery()))).scalar_one()
    rows = await session.execute(statement.order_by(BackgroundTask.id.desc()).offset(offset).limit(limit))
    return total, list(rows.scalars())


async def chunks(session: AsyncSession, task_id: int, *, after: int, limit: int) -> list[tuple[int, bytes]]:
    """Up to `limit` pieces of the task's result file after piece `after`, as (seq, data), in order."""
    statement = (
        select(BackgroundTaskChunk.seq, BackgroundTaskChunk.data)
        .where(BackgroundTaskChunk.task_id == task_id, BackgroundTaskChunk.seq > after)
        .order_by(BackgroundTaskChunk.seq)
        .limit(limit)
    )
    return [(seq, data) for seq, data in await session.execute(statement)]


async def prune(session: AsyncSession, *, finished_before: int, limit: int) -> int:
    """Delete up to `limit` tasks that ended before `finished_before`, their result files with them (the
    chunks go by ON DELETE CASCADE); returns how many."""
    chosen = (
        select(BackgroundTask.id)
        .where(BackgroundTask.finished_at < finished_before)
        .order_by(BackgroundTask.finished_at)
        .limit(limit)
    )
    ids = list((await session.execute(chosen)).scalars())
    if ids:
        await session.execute(delete(BackgroundTask).where(BackgroundTask.id.in_(ids)))
    return len(ids)


# --- the runner -----------------------------------------------------------------------------------


async def any_due(session: AsyncSession, *, kind: str, now: int) -> bool:
    """Whether a job of `kind` is due: a read, so that an idle runner's wake-ups take no write lock."""
    statement = select(Job.id).where(Job.kind == kind, Job.run_at <= now).limit(1)
    return (await session.execute(statement)).first() is not None


async def of_jobs(session: AsyncSession, job_ids: Sequence[int]) -> dict[int, BackgroundTask]:
    """The PENDING and PROCESSING tasks of these jobs, by job id."""
    statement = select(BackgroundTask).where(
        BackgroundTask.job_id.in_(job_ids),
        BackgroundTask.status.in_([int(TaskStatus.PENDING), int(TaskStatus.PROCESSING)]),
    )
    return {
        task.job_id: task for task in (await session.execute(statement)).scalars() if task.job_id is not None
    }


async def start(session: AsyncSession, task_ids: Sequence[int], *, now: int) -> None:
    """PENDING tasks become PROCESSING."""
    if task_ids:
        await session.execute(
            update(BackgroundTask)
            .where(BackgroundTask.id.in_(task_ids), BackgroundTask.status == int(TaskStatus.PENDING))
            .values(status=int(TaskStatus.PROCESSING), updated_at=now)
            .execution_options(synchronize_session=False)
        )


async def advance(session: AsyncSession, task_id: int, *, step: int, values: Mapping[str, Any]) -> bool:
    """Commit a step's changes to a PROCESSING task still at `step`, counting the step; False (and nothing
    written) when it is not: another runner committed a step of it, or it ended, meanwhile."""
    statement = (
        update(BackgroundTask)
        .where(
            BackgroundTask.id == task_id,
            BackgroundTask.step == step,
            BackgroundTask.status == int(TaskStatus.PROCESSING),
        )
        .values(step=BackgroundTask.step + 1, **values)
        .execution_options(synchronize_session=False)
    )
    result = cast("CursorResult[Any]", await session.execute(statement))
    return int(result.rowcount) == 1


async def append_result(session: AsyncSession, task_id: int, data: bytes) -> None:
    """Add `data` to the end of the task's result file, in pieces of at most `CHUNK_BYTES`.

    Call it only after `advance` succeeded in the same transaction: that holds the task's row, so no other
    runner appends at once.
    """
    last = select(func.max(BackgroundTaskChunk.seq)).where(BackgroundTaskChunk.task_id == task_id)
    found = (await session.execute(last)).scalar_one_or_none()
    first = 0 if found is None else found + 1
    rows = [
        {"task_id": task_id, "seq": first + n, "data": data[offset : offset + CHUNK_BYTES]}
        for n, offset in enumerate(range(0, len(data), CHUNK_BYTES))
    ]
    if rows:
        await session.execute(insert(BackgroundTaskChunk), rows)


async def holds_job(session: AsyncSession, job_id: int, *, lease_until: int) -> bool:
    """Whether the job still carries the lease this runner gave it (no other runner claimed it since),
    locking its row until the transaction ends (PostgreSQL) so no claim comes in between."""
    statement = select(Job.lease_until).where(Job.id == job_id).with_for_update()
    return (await session.execute(statement)).scalar_one_or_none() == lease_until


async def lease_job(session: AsyncSession, job_id: int, *, until: int) -> None:
    """Lease the job until `until` (now: hand it back, due at once) and clear its count of failed tries:
    a step succeeded. Call it only where `holds_job` said so in the same transaction."""
    await session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(lease_until=until, run_at=until, attempts=0)
        .execution_options(synchronize_session=False)
    )
