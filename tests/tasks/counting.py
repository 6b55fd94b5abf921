"""A background task handler for the tests: counts from 1 to `to`, `per_step` numbers a step, writing the
CSV line `n,n²` for each (after a header), so the exact result file of any task is known ahead.

Its params also script misbehaviour at the step that starts at a given number: `retry_at` (TaskRetry
once, `retry_after_s` as given), `fail_at` (TaskFailed), `boom_at` (an unexpected error, `boom_times`
times, every time when absent), `sleep_s` (each step takes this long). A handler made with `gates` holds
the step starting at a number until the test opens its gate.

Run as a module it is a worker process of its own running only this handler, for crash tests:
`python -m tests.tasks.counting DATABASE_URL LEASE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Mapping
from typing import Any

from openmmp.kit.db import Database
from openmmp.kit.logs import configure_logging
from openmmp.settings import TaskSettings
from openmmp.tasks.runner import Step, TaskFailed, TaskRetry, TaskRun, TaskRunner

TYPE = "test_count"
SECRET_TEXT = "internal-detail-that-must-not-leak"


def expected(to: int) -> bytes:
    """The result file of a task counting to `to`."""
    return ("n,square\n" + "".join(f"{n},{n * n}\n" for n in range(1, to + 1))).encode()


def params(to: int, per_step: int, **behaviour: Any) -> dict[str, Any]:
    return {"to": to, "per_step": per_step, **behaviour}


class Counting:
    type = TYPE
    media_type = "text/csv"

    def __init__(self, gates: Mapping[int, asyncio.Event] | None = None, *, type: str = TYPE) -> None:
        self.type = type
        self.gates = dict(gates or {})
        self.waiting: dict[int, asyncio.Event] = {n: asyncio.Event() for n in self.gates}
        """Set when a step starting at that number is held at its gate."""
        self.starts: list[tuple[str, int]] = []
        """(task, first number) of every step begun, in order."""
        self._retried: set[str] = set()
        self._booms: Counter[str] = Counter()

    async def step(self, run: TaskRun) -> Step:
        p = run.params
        start = int(run.checkpoint["next"]) if run.checkpoint else 1
        self.starts.append((run.public_id, start))
        if p.get("sleep_s"):
            await asyncio.sleep(p["sleep_s"])
        if start in self.gates:
            self.waiting[start].set()
            await self.gates[start].wait()
        if start == p.get("retry_at") and run.public_id not in self._retried:
            self._retried.add(run.public_id)
            raise TaskRetry("not now", after_s=p.get("retry_after_s"))
        if start == p.get("fail_at"):
            raise TaskFailed(f"the number {start} is unlucky")
        if start == p.get("boom_at") and self._booms[run.public_id] < p.get("boom_times", 10**9):
            self._booms[run.public_id] += 1
            raise RuntimeError(SECRET_TEXT)
        end = min(int(p["to"]), start + int(p["per_step"]) - 1)
        lines = "".join(f"{n},{n * n}\n" for n in range(start, end + 1))
        finished = end >= p["to"]
        return Step(
            checkpoint={"next": end + 1},
            processed=end,
            output=(("n,square\n" if start == 1 else "") + lines).encode(),
            finished=finished,
            summary={"counted": end} if finished else None,
            total=int(p["to"]),
        )


async def _work(database_url: str, lease_seconds: float) -> None:
    db = Database(database_url)
    settings = TaskSettings(lease_seconds=lease_seconds, time_slice_seconds=0.5)
    runner = TaskRunner(db, {TYPE: Counting()}, settings)
    try:
        await runner.run(asyncio.Event())  # until killed
    finally:
        await db.dispose()


if __name__ == "__main__":
    configure_logging("INFO")
    asyncio.run(_work(sys.argv[1], float(sys.argv[2])))
