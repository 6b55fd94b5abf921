"""The API process is killed with SIGKILL while 32 clients broadcast, then restarted; the clients carry on.

On SQLite the killed process is `openmmp serve` with the workers embedded (as the README recommends); on
PostgreSQL it is `serve --no-workers`, and the separate worker keeps sending meanwhile.

- Invariant 1 holds at the moment of the crash: no message without its dispatch job, no job without its
  message (read in the database).
- Every request answered 200 has its message, which reaches a final status.
- The clients retry the requests that got no answer with the same clientMessageId; whether the killed
  process had committed them or not, each ends with exactly one message (nothing lost, nothing doubled).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import FINAL, BroadcastClients, System, wait_until

pytestmark = pytest.mark.e2e
CLIENTS = 32


async def test_an_api_killed_under_load_loses_no_accepted_message_and_clients_carry_on(
    api: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    channel = await viber_channel()
    account = channel["publicId"]
    load = BroadcastClients(system.api, company.headers, account, clients=CLIENTS, digits=range(8))
    stop = asyncio.Event()
    clients = asyncio.create_task(load.run(stop))
    try:
        await wait_until(lambda: len(load.answered) >= 150, timeout=60, what="load under way")
        before_kill = len(load.answered)
        await system.kill_api()
        # The process is gone: whatever it committed is all there is. Invariant 1, read in the database.
        breaches = await system.outbox_breaches()
        committed = {
            str(row[0])
            for row in await system.sql(
                "SELECT client_message_id FROM messages WHERE channel_id = :c",
                c=await system.channel_id(account),
            )
        }
        await asyncio.sleep(0.5)  # the clients meet a closed port meanwhile
        await system.restart_api()
        back_at = time.monotonic()

        def everyone_carried_on() -> bool:
            return min(load.per_client_since(back_at).values()) >= 3

        await wait_until(everyone_carried_on, timeout=60, what="every client sending again")
    finally:
        stop.set()
        await asyncio.wait_for(clients, timeout=120)

    assert breaches == {"pending messages without a job": 0, "jobs without a message": 0}
    assert not load.errors, load.errors[:5]
    interrupted = [cid for cid, answer in load.answered.items() if answer.interrupted]
    assert interrupted, "the kill interrupted no request: it did not happen under load"

    # Every answered request has exactly one message, with the id it was answered with.
    async def all_final() -> dict[str, int] | None:
        statuses = await system.statuses(account)
        return statuses if all(s in FINAL for s in statuses.values()) else None

    statuses = await wait_until(all_final, timeout=120, interval=0.5, what="every message final")
    answered_ids = {answer.message_id for answer in load.answered.values()}
    assert set(statuses) == answered_ids  # no message the clients do not know of, none missing
    assert len(answered_ids) == len(load.answered)  # one message per clientMessageId
    assert await system.outbox_breaches() == {
        "pending messages without a job": 0,
        "jobs without a message": 0,
    }
    # What a client sees: the status of an interrupted request, read by its clientMessageId.
    for client_message_id in interrupted[:20]:
        status = await api.get(
            "/api/v1/message/status", params={"clientMessageId": client_message_id}, headers=company.headers
        )
        assert status.status_code == 200, status.text
        assert status.json()["messageId"] == load.answered[client_message_id].message_id
        assert status.json()["status"] in FINAL
    # Requests the process had committed but not answered were answered after the restart, by the replay.
    unanswered_commits = [cid for cid in interrupted if cid in committed]
    print(
        f"accepted before the kill: {before_kill}, in all: {len(load.answered)}, "
        f"interrupted requests: {len(interrupted)} ({load.interruptions}), "
        f"of which already committed: {len(unanswered_commits)}"
    )
