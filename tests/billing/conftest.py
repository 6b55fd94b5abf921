"""Messages of a channel made as the API and the status machine make them, for the billing tests."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import Channel, Message
from openmmp.models.message import MessageStatus
from tests.conftest import Tenant


async def send(client: httpx.AsyncClient, tenant: Tenant, account: str, count: int) -> None:
    items = [
        {"phone": f"85512{n:06d}", "message": {"type": "text", "message": f"Hello {n}"}} for n in range(count)
    ]
    response = await client.post(
        f"/api/v1/channel/{account}/broadcast/batch", json={"messages": items}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text


async def move(app: Any, channel_id: int, plan: list[tuple[MessageStatus, bool]]) -> None:
    """Move the channel's messages, in id order, as dispatch and callbacks would: the n-th message of
    `plan` goes to its status (with an upstream id when told); the ones past it stay."""
    async with app.state.db.write_sessions() as session, session.begin():
        found = await session.execute(
            select(Message).where(Message.channel_id == channel_id).order_by(Message.id)
        )
        messages = list(found.scalars())
        channel = await session.get(Channel, channel_id)
        assert channel is not None
        changes = [
            status_machine.Change(
                message, target, now_ms(), provider_message_id=f"up-{message.id}" if upstream else None
            )
            for message, (target, upstream) in zip(messages, plan, strict=False)
        ]
        await status_machine.apply(session, changes, {channel_id: channel})
