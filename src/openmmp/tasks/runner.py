"""The task runner: claims task jobs and runs each task step by step, every step committed with its output.

A handler (`TaskHandler`, one per task `type`) does the work in steps: each step is handed the checkpoint
the last one returned and returns the next, with the items processed so far and the step's part of the
result file. The runner calls the step outside any transaction, then commits in one transaction the new
checkpoint, the progress and the output (appended to the result file), counting the step on the task
(`step`) only where it is still the count it read. So a step's output is in the file exactly when its
checkpoint is: a worker that dies mid-task (SIGKILL included) loses its lease, another claims the job
and starts again from the last committed checkpoint, nothing lost and no piece written twice; and a
runner whose lease ran out while another took over commits nothing.

Tasks share the workers fairly: a process runs at most `concurrency` at once, and after
`time_slice_seconds` of steps a task hands its job back, due at once, so that the claim (which rotates
across companies, queue/sql.py) lets the tasks waiting take their turn. A step that fails is tried again
later from the same checkpoint (`TaskRetry`, or an unexpected error, with back-off); `TaskFailed` ends
the task FAIL, and so does an unexpected error that is the step's `max_attempts`-th failed try in a row.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from openmmp.kit.db import Database
from openmmp.kit.retry import backoff_ms
from openmmp.kit.time import now_ms
from openmmp.models import BackgroundTask, Job
from openmmp.models.task import TaskStatus
from openmmp.queue.sql import Claimer, acknowledge, reschedule
from openmmp.settings import TaskSettings
from openmmp.tasks import repository
from openmmp.tasks.service import KIND

log = structlog.get_logger(__name__)

INTERNAL_ERROR = "The task failed because of an internal error"
"""What a company reads of a task ended by unexpected errors: never their text, which may hold internals."""
_POLL_S = 1.0
"""Longest wait for due tasks when nothing wakes the runner (a task retried later comes due unannounced)."""
_CLAIM_GAP_S = 0.1
"""Shortest time between two looks for due tasks that found none: wake-ups come with every send."""


@dataclass(frozen=True)
class TaskRun:
    """What one step of a task is handed."""

    public_id: str
    company_id: int
    channel_id: int | None
    params: Mapping[str, Any]
    checkpoint: Mapping[str, Any] | None
    """What the last committed step returned as its checkpoint; None for the first step."""


@dataclass(frozen=True)
class Step:
    """What a step did: where the next one starts, and what it adds to the task.

    `processed` is the count of items done so far (not in this step alone); `output` is appended to the
    result file; `finished` makes the task DONE with `summary`. `total` sets the item count once known.
    """

    checkpoint: dict[str, Any]
    processed: int
    output: bytes = b""
    finished: bool = False
    summary: dict[str, Any] | None = None
    total: int | None = None


class TaskHandler(Protocol):
    """Runs the tasks of one `type`. Register it in `workers.task_handlers`.

    `step` must depend only on its `TaskRun`: a step may run again after a crash, from the same checkpoint
    (its output is kept once; what it does elsewhere must bear being done twice). It should take seconds
    and is cut at the lease (`OPENMMP_TASKS__LEASE_SECONDS`). Raise `TaskRetry` for what may work later,
    `TaskFailed` to end the task with a message for its company; anything else is an internal error,
    tried again a few times.
    """

    @property
    def type(self) -> str: ...

    @property
    def media_type(self) -> str:
        """The media type of the result file, e.g. `text/csv`."""
        ...

    async def step(self, run: TaskRun) -> Step: ...


class TaskRetry(Exception):
    """The step cannot be done now: it runs again from the same checkpoint, after `after_s` seconds when
    given (a wait for a quota: not counted as a failed try), else after a back-off that grows with the
    tries that failed in a row. The task stays PROCESSING."""

    def __init__(self, message: str = "", *, after_s: float | None = None) -> None:
        super().__init__(message)
        self.after_s = after_s


class TaskFailed(Exception):
    """The task cannot be done: it ends FAIL with `message`, which its company reads (say what, plainly;
    no secrets, no internals)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Claimed:
    """A claimed task as its runner goes through it: the step it is at and the lease it holds."""

    task_id: int
    public_id: str
    company_id: int
    channel_id: int | None
    type: str
    params: dict[str, Any]
    checkpoint: dict[str, Any] | None
    step: int
    job_id: int
    lease_until: int
    attempts: int
    """The step's tries that failed in a row (the job's `attempts`)."""

    def run(self) -> TaskRun:
        return TaskRun(self.public_id, self.company_id, self.channel_id, self.params, self.checkpoint)


def _where(exc: BaseException) -> list[str]:
    """The innermost frames of `exc`'s traceback as `file:line function`: where it failed, without its
    text (which may carry what the handler was handling, credentials included)."""
    return [
        f"{'/'.join(frame.filename.split('/')[-2:])}:{frame.lineno} {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)[-5:]
    ]


class TaskRunner:
    """Runs the background tasks of the types in `handlers`, from any number of processes at once.

    `run_once()` claims what this process has room for and runs each to the end of its turn (tests, CLI);
    `run(stop)` loops until `stop` is set, then lets each task finish its step and hands it back. Call
    `wake()` after committing new tasks to cut the idle wait short.
    """

    def __init__(self, db: Database, handlers: Mapping[str, TaskHandler], settings: TaskSettings) -> None:
        self.db = db
        self.handlers = dict(handlers)
        self.settings = settings
        self._lease_ms = int(settings.lease_seconds * 1000)
        # One job per claim, from the next company with due tasks after the last one served: tasks are
        # few and long, so a strict rotation costs nothing and no company's backlog takes two slots
        # while another's waits.
        self.claimer = Claimer(kind=KIND, lease_ms=self._lease_ms, skip_locked=not db.is_sqlite, max_lanes=1)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()

    def wake(self) -> None:
        """New tasks were committed: look for them now."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim up to `concurrency` due tasks and run each to the end of its turn; returns how many."""
        claimed = await self._claim(self.settings.concurrency)
        await asyncio.gather(*(self._turn_logged(c) for c in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event) -> None:
        """Run tasks until `stop` is set, `concurrency` at most at once; a freed slot is filled at once."""
        self._stop = stop
        running: set[asyncio.Task[None]] = set()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                claimed: list[_Claimed] = []
                room = self.settings.concurrency - len(running)
                if room > 0:
                    try:
                        claimed = await self._claim(room)
                    except Exception:
                        log.exception("task_claim_failed")
                    for c in claimed:
                        turn = asyncio.create_task(self._turn_logged(c), name=f"openmmp-task-{c.public_id}")
                        running.add(turn)
                        turn.add_done_callback(running.discard)
                    if not claimed:
                        await asyncio.sleep(_CLAIM_GAP_S)
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {stopping, waking, *running}, timeout=_POLL_S, return_when=asyncio.FIRST_COMPLETED
                )
                waking.cancel()
        finally:
            stopping.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _claim(self, limit: int) -> list[_Claimed]:
        """Lease up to `limit` due task jobs, companies in turn, and mark their tasks PROCESSING.

        Jobs whose task has ended (a runner that was taken over ended it and could not acknowledge them)
        are acknowledged here. A task of a type this runner has no handler for stays PENDING.
        """
        now = now_ms()
        async with self.db.read_sessions() as session, session.begin():
            if not await repository.any_due(session, kind=KIND, now=now):
                return []
        async with self.db.write_sessions() as session, session.begin():
            jobs: list[Job] = []
            while len(jobs) < limit and (one := await self.claimer.claim(session, limit=1, now=now)):
                jobs += one
            if not jobs:
                return []
            tasks = await repository.of_jobs(session, [job.id for job in jobs])
            await acknowledge(session, [job.id for job in jobs if job.id not in tasks])
            pending = [
                t.id for t in tasks.values() if t.status == TaskStatus.PENDING and t.type in self.handlers
            ]
            await repository.start(session, pending, now=now)
        return [
            self._claimed(tasks[job.id], job.lease_until, job.attempts) for job in jobs if job.id in tasks
        ]

    @staticmethod
    def _claimed(task: BackgroundTask, lease_until: int, attempts: int) -> _Claimed:
        assert task.job_id is not None
        return _Claimed(
            task_id=task.id,
            public_id=task.public_id,
            company_id=task.company_id,
            channel_id=task.channel_id,
            type=task.type,
            params=task.params,
            checkpoint=task.checkpoint,
            step=task.step,
            job_id=task.job_id,
            lease_until=lease_until,
            attempts=attempts,
        )

    async def _turn_logged(self, claimed: _Claimed) -> None:
        try:
            await self._turn(claimed)
        except Exception as exc:
            # The database went away while recording: the lease runs out and the step is run again.
            log.error(
                "task_turn_failed", task=claimed.public_id, error_type=type(exc).__name__, where=_where(exc)
            )

    async def _turn(self, claimed: _Claimed) -> None:
        """Run the task's steps until it ends, waits, was taken over, or its time slice is used up."""
        handler = self.handlers.get(claimed.type)
        if handler is None:
            # A worker of another version (a rolling upgrade) may know it: not the task's failure.
            log.warning("task_type_unknown", task=claimed.public_id, type=claimed.type)
            await self._retry(claimed, self.settings.retry_max_seconds)
            return
        loop = asyncio.get_running_loop()
        slice_ends = loop.time() + self.settings.time_slice_seconds
        while True:
            try:
                async with asyncio.timeout(self.settings.lease_seconds):
                    done = await handler.step(claimed.run())
                hand_back = not done.finished and (loop.time() >= slice_ends or self._stop.is_set())
                go_on = await self._commit(claimed, done, handler.media_type, hand_back=hand_back)
            except TaskRetry as exc:
                log.info("task_step_retry", task=claimed.public_id, reason=str(exc), after_s=exc.after_s)
                await self._retry(claimed, exc.after_s)
                return
            except TaskFailed as exc:
                log.info("task_failed", task=claimed.public_id, type=claimed.type, reason=exc.message)
                await self._end_failed(claimed, exc.message[:500] or INTERNAL_ERROR)
                return
            except Exception as exc:
                log.error(
                    "task_step_failed",
                    task=claimed.public_id,
                    type=claimed.type,
                    step=claimed.step,
                    attempt=claimed.attempts + 1,
                    error_type=type(exc).__name__,
                    where=_where(exc),
                )
                await self._failed_try(claimed)
                return
            if not go_on:
                return

    async def _commit(self, claimed: _Claimed, done: Step, media_type: str, *, hand_back: bool) -> bool:
        """Commit a step: checkpoint, progress and output together, fenced by the task's step count.
        Returns whether this runner goes on with the task."""
        now = now_ms()
        values: dict[str, Any] = {
            "checkpoint": done.checkpoint,
            "processed": done.processed,
            "updated_at": now,
        }
        if done.total is not None:
            values["total"] = done.total
        if done.summary is not None:
            values["summary"] = done.summary
        if done.output:
            values["result_bytes"] = BackgroundTask.result_bytes + len(done.output)
        if done.finished:
            values |= {
                "status": int(TaskStatus.DONE),
                "finished_at": now,
                "job_id": None,
                "result_media_type": media_type,
            }
        async with self.db.write_sessions() as session, session.begin():
            if not await repository.advance(session, claimed.task_id, step=claimed.step, values=values):
                log.info("task_taken_over", task=claimed.public_id, step=claimed.step)
                return False
            await repository.append_result(session, claimed.task_id, done.output)
            holds = await repository.holds_job(session, claimed.job_id, lease_until=claimed.lease_until)
            if holds and done.finished:
                await acknowledge(session, [claimed.job_id])
            elif holds:
                # Handed back: leased until now, i.e. due at once for whichever runner claims next.
                lease_until = now if hand_back else now + self._lease_ms
                await repository.lease_job(session, claimed.job_id, until=lease_until)
                claimed.lease_until = lease_until
        claimed.step += 1
        claimed.checkpoint = done.checkpoint
        claimed.attempts = 0
        if done.finished:
            log.info("task_done", task=claimed.public_id, type=claimed.type, steps=claimed.step)
        # A job another runner claimed meanwhile is left to it: its next commit finds the step taken and
        # stops; the job is claimed again once that lease runs out and goes on from this checkpoint.
        return holds and not done.finished and not hand_back

    async def _retry(self, claimed: _Claimed, after_s: float | None) -> None:
        now = now_ms()
        if after_s is None:
            delay = backoff_ms(claimed.attempts + 1, base_s=1, max_s=self.settings.retry_max_seconds)
        else:
            delay = max(0, int(after_s * 1000))
        async with self.db.write_sessions() as session, session.begin():
            if await repository.holds_job(session, claimed.job_id, lease_until=claimed.lease_until):
                await reschedule(session, [(claimed.job_id, now + delay, after_s is None)])

    async def _failed_try(self, claimed: _Claimed) -> None:
        """An unexpected error: try the step again after a back-off, or end the task at the last try."""
        attempts = claimed.attempts + 1
        if attempts >= self.settings.max_attempts:
            await self._end_failed(claimed, INTERNAL_ERROR)
            return
        delay = backoff_ms(attempts, base_s=1, max_s=self.settings.retry_max_seconds)
        async with self.db.write_sessions() as session, session.begin():
            if await repository.holds_job(session, claimed.job_id, lease_until=claimed.lease_until):
                await reschedule(session, [(claimed.job_id, now_ms() + delay, True)])

    async def _end_failed(self, claimed: _Claimed, error: str) -> None:
        now = now_ms()
        values = {"status": int(TaskStatus.FAIL), "error": error, "finished_at": now, "updated_at": now}
        async with self.db.write_sessions() as session, session.begin():
            if not await repository.advance(
                session, claimed.task_id, step=claimed.step, values={**values, "job_id": None}
            ):
                log.info("task_taken_over", task=claimed.public_id, step=claimed.step)
                return
            if await repository.holds_job(session, claimed.job_id, lease_until=claimed.lease_until):
                await acknowledge(session, [claimed.job_id])
