"""The dispatcher keeps `rounds_in_flight` claim → send → record rounds under way at once."""

from __future__ import annotations

import asyncio

from openmmp.dispatch.flows import Dispatcher
from openmmp.kit.http import HttpClient
from openmmp.kit.limits import LocalLimiter
from openmmp.providers.base import ProviderContext
from openmmp.providers.registry import REGISTRY

CLOSED = "http://127.0.0.1:1"


class _SlowRounds(Dispatcher):
    """Each round takes a while (a slow upstream); records how many overlap."""

    under_way = 0
    most = 0
    rounds = 0

    async def run_once(self) -> int:
        self.under_way += 1
        self.most = max(self.most, self.under_way)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.under_way -= 1
        self.rounds += 1
        return 1


async def _overlap(app, rounds_in_flight: int) -> tuple[int, int]:
    settings = app.state.settings.model_copy(deep=True)
    settings.dispatch.rounds_in_flight = rounds_in_flight
    http = HttpClient(timeout=1.0)
    dispatcher = _SlowRounds(
        app.state.db,
        app.state.keyring,
        settings,
        {p.name: ProviderContext(http, CLOSED, CLOSED, sandbox=False) for p in REGISTRY.providers},
        LocalLimiter(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await task
    await http.aclose()
    return dispatcher.most, dispatcher.rounds


async def test_rounds_overlap_up_to_the_setting(app):
    most, rounds = await _overlap(app, 4)
    assert most == 4
    # 0.5 s of 0.05 s rounds, four at a time: far more than one at a time could do (10).
    assert rounds > 20


async def test_one_round_in_flight_runs_rounds_one_after_another(app):
    most, rounds = await _overlap(app, 1)
    assert most == 1
    assert rounds <= 11
