"""The task runner: steps committed with their output, retries, failures, leases lost and taken over,
turns shared between tasks, and old tasks pruned (both databases)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
import structlog
from sqlalchemy import func, select, update
from tests.tasks.counting import SECRET_TEXT, TYPE, Counting, expected, params

from openmmp.kit.time import now_ms
from openmmp.models import BackgroundTask, BackgroundTaskChunk
from openmmp.models.task import TaskStatus
from openmmp.tasks import service as tasks
from openmmp.tasks.runner import INTERNAL_ERROR
from openmmp.tasks.schemas import progress

API = "/api/v1/background-task"


async def _download(client: httpx.AsyncClient, owner, task_id: str) -> bytes:
    answer = await client.get(f"{API}/{task_id}/download", headers=owner.headers)
    assert answer.status_code == 200, answer.text
    return answer.content


async def _chunks(task_app, task_row, task_id: str) -> int:
    task = await task_row(task_id)
    async with task_app.state.db.read_sessions() as session:
        statement = select(func.count()).where(BackgroundTaskChunk.task_id == task.id)
        return int((await session.execute(statement)).scalar_one())


class TestCreating:
    async def test_the_task_and_its_job_are_written_in_the_callers_transaction(
        self, task_app, owner, jobs_of
    ):
        class Rollback(Exception):
            pass

        with contextlib.suppress(Rollback):
            async with task_app.state.db.write_sessions() as session, session.begin():
                task = await tasks.create(
                    session, company_id=owner.company_id, type=TYPE, params=params(1, 1)
                )
                public_id = task.public_id
                raise Rollback
        async with task_app.state.db.read_sessions() as session:
            found = await session.execute(select(BackgroundTask).where(BackgroundTask.public_id == public_id))
            assert found.first() is None
        assert await jobs_of(owner) == []


class TestTaskRetry:
    async def test_the_step_runs_again_from_the_checkpoint_it_kept(
        self, task_client, owner, create_task, make_runner, task_row, jobs_of
    ):
        handler = Counting()
        task_id = await create_task(owner, params(10, 3, retry_at=4, retry_after_s=0))
        await make_runner(handler).run_once()
        task = await task_row(task_id)
        assert (task.status, task.processed, task.checkpoint) == (TaskStatus.PROCESSING, 3, {"next": 4})
        [job] = await jobs_of(owner)
        assert job.run_at <= now_ms()
        assert job.attempts == 0  # a wait the handler asked for is not a failed try

        await make_runner(handler).run_once()
        assert (await task_row(task_id)).status == TaskStatus.DONE
        assert await _download(task_client, owner, task_id) == expected(10)
        assert [start for _, start in handler.starts] == [1, 4, 4, 7, 10]

    async def test_without_a_wait_given_it_backs_off_and_counts_the_try(
        self, owner, create_task, make_runner, task_row, jobs_of, make_due
    ):
        task_id = await create_task(owner, params(10, 3, retry_at=4))
        runner = make_runner()
        await runner.run_once()
        [job] = await jobs_of(owner)
        assert job.attempts == 1
        assert job.run_at > now_ms()
        assert await runner.run_once() == 0  # not due yet
        await make_due(owner)
        await runner.run_once()
        assert (await task_row(task_id)).status == TaskStatus.DONE
        assert await jobs_of(owner) == []


class TestTaskFailed:
    async def test_the_task_fails_with_the_handlers_message(
        self, task_client, owner, create_task, make_runner, jobs_of
    ):
        task_id = await create_task(owner, params(10, 3, fail_at=7))
        await make_runner().run_once()
        shown = (await task_client.get(f"{API}/{task_id}", headers=owner.headers)).json()
        assert (shown["status"], shown["cause"]) == (4, "FAIL")
        assert shown["error"] == "the number 7 is unlucky"
        assert shown["processed"] == 6
        assert shown["finishedDate"] is not None
        assert shown["resultFile"] is None
        answer = await task_client.get(f"{API}/{task_id}/download", headers=owner.headers)
        assert answer.status_code == 409
        assert "failed" in answer.json()["errors"][0]["message"]
        assert await jobs_of(owner) == []


class TestUnexpectedErrors:
    async def test_their_text_reaches_neither_the_company_nor_the_logs(
        self, task_client, owner, create_task, make_runner, make_due, jobs_of
    ):
        task_id = await create_task(owner, params(10, 3, boom_at=4))
        runner = make_runner(max_attempts=2)
        with structlog.testing.capture_logs() as logs:
            await runner.run_once()
            [job] = await jobs_of(owner)
            assert job.attempts == 1
            running = (await task_client.get(f"{API}/{task_id}", headers=owner.headers)).json()
            assert (running["status"], running["error"]) == (2, None)
            await make_due(owner)
            await runner.run_once()
        shown = (await task_client.get(f"{API}/{task_id}", headers=owner.headers)).json()
        assert (shown["status"], shown["error"]) == (4, INTERNAL_ERROR)
        assert SECRET_TEXT not in str(logs)
        failures = [entry for entry in logs if entry["event"] == "task_step_failed"]
        assert [entry["error_type"] for entry in failures] == ["RuntimeError", "RuntimeError"]
        assert any("counting.py" in frame for frame in failures[0]["where"])
        assert await jobs_of(owner) == []

    async def test_a_step_that_works_on_a_later_try_goes_on(
        self, task_client, owner, create_task, make_runner, make_due, task_row
    ):
        handler = Counting()
        task_id = await create_task(owner, params(10, 3, boom_at=4, boom_times=1))
        runner = make_runner(handler, max_attempts=2)
        await runner.run_once()
        await make_due(owner)
        await runner.run_once()
        assert (await task_row(task_id)).status == TaskStatus.DONE
        assert await _download(task_client, owner, task_id) == expected(10)


class TestLostLease:
    async def test_a_runner_that_dies_mid_step_leaves_the_task_to_another_from_its_checkpoint(
        self, task_client, owner, create_task, make_runner, make_due, task_row
    ):
        gate = asyncio.Event()
        dying = Counting(gates={7: gate})
        task_id = await create_task(owner, params(10, 3))
        turn = asyncio.create_task(make_runner(dying).run_once())
        await asyncio.wait_for(dying.waiting[7].wait(), timeout=30)
        turn.cancel()  # as SIGKILL: nothing more of its step is written
        with contextlib.suppress(asyncio.CancelledError):
            await turn
        assert (await task_row(task_id)).processed == 6
        await make_due(owner)  # its lease ran out
        heir = Counting()
        await make_runner(heir).run_once()
        assert [start for _, start in heir.starts] == [7, 10]
        assert await _download(task_client, owner, task_id) == expected(10)

    async def test_a_runner_whose_lease_ran_out_writes_nothing_over_the_one_that_took_over(
        self, task_app, task_client, owner, create_task, make_runner, make_due, task_row, jobs_of
    ):
        gate = asyncio.Event()
        late = Counting(gates={4: gate})
        task_id = await create_task(owner, params(10, 3))
        with structlog.testing.capture_logs() as logs:
            turn = asyncio.create_task(make_runner(late).run_once())
            await asyncio.wait_for(late.waiting[4].wait(), timeout=30)
            await make_due(owner)  # its lease ran out while its step was under way
            await make_runner().run_once()  # another runner takes the task over and finishes it
            assert (await task_row(task_id)).status == TaskStatus.DONE
            gate.set()
            await turn  # the late step's commit finds the task moved on
        task = await task_row(task_id)
        assert (task.step, task.processed) == (4, 10)  # 1-3 by the first runner, 4-6, 7-9, 10 by the second
        assert await _chunks(task_app, task_row, task_id) == 4
        assert await _download(task_client, owner, task_id) == expected(10)
        assert [entry["event"] for entry in logs].count("task_taken_over") == 1
        assert await jobs_of(owner) == []

    async def test_when_the_late_runner_commits_first_the_other_stops_and_the_task_goes_on(
        self, task_client, owner, create_task, make_runner, make_due, task_row, jobs_of
    ):
        late_gate, heir_gate = asyncio.Event(), asyncio.Event()
        late, heir = Counting(gates={4: late_gate}), Counting(gates={4: heir_gate})
        task_id = await create_task(owner, params(10, 3))
        late_turn = asyncio.create_task(make_runner(late).run_once())
        await asyncio.wait_for(late.waiting[4].wait(), timeout=30)
        await make_due(owner)
        heir_turn = asyncio.create_task(make_runner(heir).run_once())
        await asyncio.wait_for(heir.waiting[4].wait(), timeout=30)
        # The late runner's step is still the next one: it is kept, and the late runner, no longer
        # holding the job, stops there.
        late_gate.set()
        await late_turn
        assert (await task_row(task_id)).processed == 6
        # The runner holding the job finds its step taken and stops without writing.
        heir_gate.set()
        await heir_turn
        task = await task_row(task_id)
        assert (task.step, task.processed, task.status) == (2, 6, TaskStatus.PROCESSING)
        [job] = await jobs_of(owner)
        assert job.run_at > now_ms()  # still leased by the second runner, until that lease runs out
        await make_due(owner)
        third = Counting()
        await make_runner(third).run_once()
        assert [start for _, start in third.starts] == [7, 10]
        assert await _download(task_client, owner, task_id) == expected(10)


class TestSharingTheWorkers:
    async def test_a_long_task_hands_its_turn_to_another_companys_waiting_task(
        self, owner, new_owner, create_task, make_runner, task_row
    ):
        long = await create_task(owner, params(30, 1, sleep_s=0.01))
        other = await new_owner()
        short = await create_task(other, params(2, 2))
        runner = make_runner(concurrency=1, time_slice_seconds=0.001)
        await runner.run_once()
        await runner.run_once()
        assert (await task_row(short)).status == TaskStatus.DONE
        assert (await task_row(long)).processed < 30
        while await runner.run_once():
            pass
        assert (await task_row(long)).status == TaskStatus.DONE

    async def test_a_process_runs_at_most_its_concurrency_at_once(
        self, owner, create_task, make_runner, task_row
    ):
        ids = [await create_task(owner, params(1, 1, sleep_s=0.05)) for _ in range(3)]
        runner = make_runner(concurrency=2)
        assert await runner.run_once() == 2
        assert await runner.run_once() == 1
        assert {(await task_row(task_id)).status for task_id in ids} == {TaskStatus.DONE}

    async def test_the_loop_starts_a_task_when_woken_and_hands_it_back_when_stopped(
        self, owner, create_task, make_runner, task_row, jobs_of
    ):
        runner = make_runner(time_slice_seconds=60)
        stop = asyncio.Event()
        loop = asyncio.create_task(runner.run(stop))
        try:
            task_id = await create_task(owner, params(1000, 1, sleep_s=0.01))
            runner.wake()
            for _ in range(1000):
                if (await task_row(task_id)).processed >= 3:
                    break
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.wait_for(loop, timeout=30)
        task = await task_row(task_id)
        assert task.status == TaskStatus.PROCESSING
        assert 3 <= task.processed < 1000
        [job] = await jobs_of(owner)
        assert job.run_at <= now_ms()  # handed back: due at once for the next worker

    async def test_a_type_without_a_handler_here_waits_for_a_worker_that_has_one(
        self, owner, create_task, make_runner, task_row, jobs_of
    ):
        task_id = await create_task(owner, params(1, 1), type="test_unknown")
        await make_runner().run_once()
        assert (await task_row(task_id)).status == TaskStatus.PENDING
        [job] = await jobs_of(owner)
        assert (job.attempts, job.run_at > now_ms()) == (0, True)


class TestPruning:
    async def test_ended_tasks_go_with_their_result_files_after_the_retention(
        self, task_app, owner, create_task, make_runner, task_row
    ):
        old, recent = await create_task(owner, params(3, 1)), await create_task(owner, params(3, 1))
        await make_runner().run_once()
        old_row = await task_row(old)
        assert await _chunks(task_app, task_row, old) == 3
        async with task_app.state.db.write_sessions() as session, session.begin():
            await session.execute(
                update(BackgroundTask).where(BackgroundTask.id == old_row.id).values(finished_at=1000)
            )
        async with task_app.state.db.write_sessions() as session, session.begin():
            assert await tasks.prune(session, finished_before=now_ms() - 60_000) == 1
        async with task_app.state.db.read_sessions() as session:
            left = await session.execute(
                select(BackgroundTask.public_id).where(BackgroundTask.id == old_row.id)
            )
            assert left.first() is None
            pieces = select(func.count()).where(BackgroundTaskChunk.task_id == old_row.id)
            assert (await session.execute(pieces)).scalar_one() == 0
        assert (await task_row(recent)).status == TaskStatus.DONE


class TestProgress:
    @pytest.mark.parametrize("total", [None, 0])
    def test_it_is_zero_while_the_total_is_unknown(self, total):
        task = BackgroundTask(status=int(TaskStatus.PROCESSING), total=total, processed=5)
        assert progress(task) == 0

    def test_it_reaches_100_only_once_done(self):
        running = BackgroundTask(status=int(TaskStatus.PROCESSING), total=10, processed=10)
        assert progress(running) == 99
        done = BackgroundTask(status=int(TaskStatus.DONE), total=10, processed=10)
        assert progress(done) == 100
