"""LISTEN/NOTIFY: a committed send wakes a listening worker at once (PostgreSQL); SQLite just polls."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import update
from tests.conftest import Tenant, viber_credentials

from openmmp.models import Channel
from openmmp.queue.notify import JOBS, WEBHOOKS, Listener


async def test_a_committed_broadcast_wakes_the_listener(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel
):
    db = app.state.db
    channel = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    async with db.write_sessions() as session, session.begin():
        await session.execute(
            update(Channel).where(Channel.public_id == channel["publicId"]).values(status=3)
        )
    body = {"phone": "85512345670", "message": {"type": "text", "message": "wake up"}}
    if db.is_sqlite:
        # Nothing to listen to: the send still commits (NOTIFY is skipped), workers find it by polling.
        response = await client.post(
            f"/api/v1/channel/{channel['publicId']}/broadcast", json=body, headers=tenant.headers
        )
        assert response.status_code == 200
        return
    woken = {JOBS: asyncio.Event(), WEBHOOKS: asyncio.Event()}
    listener = Listener(db.url, {name: event.set for name, event in woken.items()})
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    try:
        await asyncio.wait_for(listener.listening.wait(), timeout=10)
        for event in woken.values():
            event.clear()  # the listener wakes everyone once when it (re)connects
        response = await client.post(
            f"/api/v1/channel/{channel['publicId']}/broadcast", json=body, headers=tenant.headers
        )
        assert response.status_code == 200
        await asyncio.wait_for(woken[JOBS].wait(), timeout=5)
        assert not woken[WEBHOOKS].is_set()
    finally:
        stop.set()
        await task


async def test_the_listener_survives_an_unreachable_database():
    listener = Listener("postgresql://nobody@127.0.0.1:1/none", {JOBS: lambda: None})
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.sleep(0.3)
    assert not listener.listening.is_set()
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
