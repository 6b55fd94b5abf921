"""Rules for background tasks: how other domains start one, what a company may see and download.

A domain starts a task with `create` inside its own transaction, so the task exists exactly when the
change that asked for it is committed, with its outbox job beside it (architecture.md invariant 1); the
workers' `TaskRunner` (tasks/runner.py) runs it with the handler registered for its `type`. Services
never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.errors import Conflict, NotFound
from openmmp.kit.db import Database
from openmmp.models import BackgroundTask, Job
from openmmp.models.task import TaskStatus
from openmmp.queue.notify import notify
from openmmp.tasks import repository

KIND = "task"
"""The outbox job kind of background tasks."""
NOTIFY_CHANNEL = "openmmp_tasks"
"""The PostgreSQL NOTIFY channel that wakes the task runners when a task is created."""
_CHUNKS_PER_READ = 4
"""Pieces of a result file read per transaction while it is downloaded (each at most 1 MiB)."""


class TaskNotFound(NotFound):
    default_name = "taskId"


class TaskNotDone(Conflict):
    default_name = "taskId"


async def create(
    session: AsyncSession,
    *,
    company_id: int,
    type: str,
    params: Mapping[str, Any],
    channel_id: int | None = None,
    total: int | None = None,
) -> BackgroundTask:
    """Queue a task of `type` for the company, in the caller's transaction (never commits); PENDING.

    `params` (JSON) is what the handler of `type` is handed at every step; keep it to the request, not
    bulk data. `total` is the number of items, when known now (progress is `processed` of it). After the
    commit, wake the workers of this process (`request.app.state.wake_workers()` in the API) for a
    prompt start; on PostgreSQL every worker is notified by the commit itself.
    """
    job = Job(kind=KIND, company_id=company_id, channel_id=channel_id)
    session.add(job)
    await session.flush()
    task = BackgroundTask(
        company_id=company_id,
        channel_id=channel_id,
        job_id=job.id,
        type=type,
        params=dict(params),
        total=total,
    )
    session.add(task)
    await session.flush()
    await notify(session, NOTIFY_CHANNEL)
    return task


async def get(session: AsyncSession, subject: Subject, *, public_id: str) -> BackgroundTask:
    """The company's task; `TaskNotFound` (404) for another company's, as for one that does not exist."""
    task = await repository.get(session, subject, public_id)
    if task is None:
        raise TaskNotFound("No such background task")
    return task


async def search(
    session: AsyncSession,
    subject: Subject,
    *,
    type: str | None = None,
    status: TaskStatus | None = None,
    page: int,
    size: int,
) -> tuple[int, list[BackgroundTask]]:
    """The company's tasks, newest first, optionally of one `type` and `status`: (total, this page)."""
    return await repository.page(
        session, subject, type=type, status=status, offset=(page - 1) * size, limit=size
    )


async def finished(session: AsyncSession, subject: Subject, *, public_id: str) -> BackgroundTask:
    """The company's task whose result file can be read: `TaskNotDone` (409) until it is DONE."""
    task = await get(session, subject, public_id=public_id)
    if task.status == TaskStatus.FAIL:
        raise TaskNotDone("The task failed: it has no result file")
    if task.status != TaskStatus.DONE:
        raise TaskNotDone("The task is not done yet: its result file can be downloaded once it is DONE")
    return task


async def result(db: Database, task: BackgroundTask) -> AsyncIterator[bytes]:
    """The result file of a DONE task, piece by piece, a few pieces per read transaction: memory stays
    flat however large the file, and no transaction stays open while the reader is slow.

    Reads sessions of its own (a request's transaction ends before its response is streamed). Ends early
    when the task is pruned meanwhile; its `result_bytes` tells the reader the file was cut short.
    """
    after = -1
    while True:
        async with db.read_sessions() as session, session.begin():
            pieces = await repository.chunks(session, task.id, after=after, limit=_CHUNKS_PER_READ)
        for seq, data in pieces:
            after = seq
            yield data
        if len(pieces) < _CHUNKS_PER_READ:
            return


async def prune(session: AsyncSession, *, finished_before: int, limit: int = 100) -> int:
    """Delete up to `limit` DONE and FAIL tasks that ended before `finished_before` (epoch ms), with their
    result files; returns how many. Bounded so one sweep never holds the write lock for long."""
    return await repository.prune(session, finished_before=finished_before, limit=limit)
