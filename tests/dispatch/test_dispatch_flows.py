"""The dispatcher against the real database: what happens when the shared limiter is unreachable."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update
from tests.conftest import Tenant, viber_credentials

from openmmp.dispatch.flows import Dispatcher
from openmmp.kit.http import HttpClient
from openmmp.kit.time import now_ms
from openmmp.models import Channel, Job, Message
from openmmp.providers.base import ProviderContext
from openmmp.providers.registry import REGISTRY
from openmmp.queue.redis_limiter import RedisLimiter

CLOSED = "http://127.0.0.1:1"  # nothing listens: a send attempt would fail and count an attempt


async def test_sending_pauses_without_an_attempt_when_redis_is_unreachable(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel
):
    channel = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(
            update(Channel).where(Channel.public_id == channel["publicId"]).values(status=3)
        )
    sent = await client.post(
        f"/api/v1/channel/{channel['publicId']}/broadcast",
        json={"phone": "85512345670", "message": {"type": "text", "message": "hi"}},
        headers=tenant.headers,
    )
    assert sent.status_code == 200
    http = HttpClient(timeout=1.0)
    limiter = RedisLimiter("redis://127.0.0.1:1/0")
    settings = app.state.settings
    dispatcher = Dispatcher(
        app.state.db,
        app.state.keyring,
        settings,
        {p.name: ProviderContext(http, CLOSED, CLOSED, sandbox=False) for p in REGISTRY.providers},
        limiter,
    )
    try:
        before = now_ms()
        while await dispatcher.run_once():  # other tests' jobs may be claimed too; all pause the same way
            pass
    finally:
        await limiter.aclose()
        await http.aclose()
    async with app.state.db.read_sessions() as session:
        message = (
            await session.execute(select(Message).where(Message.public_id == sent.json()["messageId"]))
        ).scalar_one()
        job = (await session.execute(select(Job).where(Job.message_id == message.id))).scalar_one()
    assert message.status == 1
    assert job.attempts == 0
    assert job.lease_until == 0
    assert job.run_at >= before + settings.dispatch.limiter_unavailable_pause_seconds * 1000
