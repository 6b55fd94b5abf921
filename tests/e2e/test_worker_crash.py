"""The process running the workers is killed with SIGKILL in the middle of 2,000 messages.

Nothing is lost (every message reaches a final status) and nothing is sent twice: Viber BM accepted
each `seq` once. A send whose answer was lost with the process is presented again after the restart
with the same `seq`, and the upstream collapses it into the original (counted as `duplicates`).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import System, wait_until

pytestmark = pytest.mark.e2e
TOTAL = 2000


async def test_every_message_reaches_a_final_status_and_no_seq_is_accepted_twice(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    channel = await viber_channel()
    account = channel["publicId"]
    phones = [f"85512{n:06d}" for n in range(TOTAL)]  # last digits 0-9: every sandbox outcome
    ids = []
    for start in range(0, TOTAL, 500):
        items = [
            {"phone": p, "message": {"type": "text", "message": "crash test"}}
            for p in phones[start : start + 500]
        ]
        response = await api.post(
            f"/api/v1/channel/{account}/broadcast/batch", json={"messages": items}, headers=company.headers
        )
        assert response.status_code == 200, response.text
        ids += [m["messageId"] for m in response.json()["messages"]]
    assert len(ids) == TOTAL

    async def some_sent() -> bool:
        return bool((await sim.get("/viber/_sandbox/stats")).json()["accepted"] > 0)

    await wait_until(some_sent, timeout=20, what="sending under way")
    await asyncio.sleep(0.3)
    await system.kill_workers()
    await asyncio.sleep(0.5)
    await system.restart_workers()

    final = {3, 4, 5}  # 7 → DELIVERED, 8 → FAIL, the others READ
    pending = set(ids)

    async def all_final() -> bool:
        for message_id in list(pending)[:200]:
            status = (await api.get(f"/api/v1/message/{message_id}/status", headers=company.headers)).json()
            if status["status"] in final:
                pending.discard(message_id)
        return not pending

    await wait_until(all_final, timeout=240, interval=0.5, what="every message in a final status")
    stats = (await sim.get("/viber/_sandbox/stats", params={"detail": 1})).json()
    ours = {k: v for k, v in stats["acceptedByKey"].items() if k.startswith(f"{channel['_serviceId']}:")}
    assert len(ours) == TOTAL - TOTAL // 10  # every message but the digit-8 ones
    assert set(ours.values()) == {1}  # each seq accepted exactly once
