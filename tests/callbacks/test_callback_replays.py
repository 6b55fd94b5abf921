"""Replays are bounded: a ping is stored once, an event older than the retention is not applied, and raw
events older than the retention are pruned."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select, update
from tests.callbacks.test_callback_endpoints import post, user_writes
from tests.conftest import Tenant

from openmmp.callbacks.service import prune_events
from openmmp.kit.time import now_ms
from openmmp.models import Channel, Conversation, ProviderEvent

DAY_MS = 86_400_000


async def _events(app: Any, account: str) -> list[ProviderEvent]:
    async with app.state.db.read_sessions() as session:
        statement = (
            select(ProviderEvent)
            .join(Channel, Channel.id == ProviderEvent.channel_id)
            .where(Channel.public_id == account)
            .order_by(ProviderEvent.id)
        )
        return list((await session.execute(statement)).scalars())


async def test_a_replayed_ping_is_stored_once(app, client: httpx.AsyncClient, bot: dict[str, Any]):
    ping = {"event": "webhook", "timestamp": now_ms(), "message_token": 424242, "chat_hostname": "SN-1"}
    answers = [await post(client, bot["publicId"], ping) for _ in range(5)]
    assert [a.json()["outcome"] for a in answers] == [
        "ping",
        "duplicate",
        "duplicate",
        "duplicate",
        "duplicate",
    ]
    assert [e.dedupe_key for e in await _events(app, bot["publicId"])] == ["webhook:424242"]


async def test_an_inbound_event_older_than_the_retention_is_answered_and_not_applied(
    app, client: httpx.AsyncClient, bot: dict[str, Any]
):
    retention_ms = int(app.state.settings.callbacks.event_retention_days * DAY_MS)
    old = {
        "event": "message",
        "timestamp": now_ms() - retention_ms - 60_000,
        "message_token": 777,
        "sender": {"id": "u-old", "name": "Old", "avatar": "", "country": "KH", "language": "km"},
        "message": {"type": "text", "text": "a replay from long ago"},
    }
    answer = await post(client, bot["publicId"], old)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "stale"
    assert await _events(app, bot["publicId"]) == []
    async with app.state.db.read_sessions() as session:
        found = await session.execute(
            select(func.count()).select_from(Conversation).where(Conversation.external_id == "u-old")
        )
        assert found.scalar_one() == 0


async def test_raw_events_older_than_the_retention_are_pruned(
    app, client: httpx.AsyncClient, tenant: Tenant, bot: dict[str, Any]
):
    await user_writes(client, bot["publicId"], "u-prune", 1)
    await user_writes(client, bot["publicId"], "u-prune", 2)
    events = await _events(app, bot["publicId"])
    assert len(events) == 2
    settings = app.state.settings.callbacks
    async with app.state.db.write_sessions() as session, session.begin():
        too_old = now_ms() - int(settings.event_retention_days * DAY_MS) - 1
        await session.execute(
            update(ProviderEvent).where(ProviderEvent.id == events[0].id).values(received_at=too_old)
        )
    async with app.state.db.write_sessions() as session, session.begin():
        pruned = await prune_events(session, settings)
    assert pruned >= 1
    assert [e.id for e in await _events(app, bot["publicId"])] == [events[1].id]
