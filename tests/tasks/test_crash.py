"""A worker process running a task is killed with SIGKILL mid-task; another process finishes the task.

The result file is whole and has every line once: what the killed process committed stays, what it had
not committed is done again by the next, from the committed checkpoint. The workers are real processes
(`python -m tests.tasks.counting`, a runner with the counting handler) over the tests' database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.harness import wait_until
from tests.tasks.counting import expected, params

from openmmp.models.task import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 1.0


def _worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.tasks.counting", database_url, str(LEASE_S)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"},
            stdout=output,
            stderr=output,
        )


async def test_a_task_survives_its_worker_killed_mid_task(
    task_database_url, task_client, owner, create_task, task_row, jobs_of, tmp_path
):
    task_id = await create_task(owner, params(400, 4, sleep_s=0.02))
    first = _worker(task_database_url, tmp_path / "worker-1.log")
    try:

        async def under_way():
            return (await task_row(task_id)).processed >= 80

        await wait_until(under_way, timeout=60, what="the first worker to be under way")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = await task_row(task_id)
    assert killed_at.status == TaskStatus.PROCESSING
    assert killed_at.processed < 400, (tmp_path / "worker-1.log").read_text()

    second = _worker(task_database_url, tmp_path / "worker-2.log")
    try:

        async def done():
            return (await task_row(task_id)).status == TaskStatus.DONE

        await wait_until(done, timeout=90, what="the second worker to finish the task")
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=10)
        except subprocess.TimeoutExpired:
            second.kill()
    answer = await task_client.get(f"/api/v1/background-task/{task_id}/download", headers=owner.headers)
    assert answer.content == expected(400)
    assert await jobs_of(owner) == []
