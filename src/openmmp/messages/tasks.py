"""Periodic message work: messages still SENT when their expiry passes become FAIL (api.md §4.3)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import Channel, Message
from openmmp.models.message import MessageStatus


async def expire_sent(session: AsyncSession, *, limit: int = 500) -> int:
    """FAIL up to `limit` SENT messages whose expiry has passed; returns how many."""
    now = now_ms()
    statement = (
        select(Message)
        .where(Message.status == MessageStatus.SENT, Message.expire_at.is_not(None), Message.expire_at <= now)
        .limit(limit)
    )
    expired = list((await session.execute(statement)).scalars())
    if not expired:
        return 0
    ids = {m.channel_id for m in expired}
    channels = {
        c.id: c for c in (await session.execute(select(Channel).where(Channel.id.in_(ids)))).scalars()
    }
    changes = [
        status_machine.Change(m, MessageStatus.FAIL, now, "EXPIRED", "Not delivered before the expiry time")
        for m in expired
    ]
    return await status_machine.apply(session, changes, channels)
