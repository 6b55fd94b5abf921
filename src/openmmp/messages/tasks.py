"""Periodic message work: messages still SENT when their expiry passes become FAIL (api.md §4.3)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import Channel, Message
from openmmp.models.message import MessageStatus
from openmmp.providers.registry import REGISTRY


async def expire_sent(session: AsyncSession, *, limit: int = 500) -> int:
    """FAIL up to `limit` SENT messages whose expiry has passed; returns how many. A message of an upstream
    that reports no delivery (`Provider.reports_delivery`) stays SENT: that is all it will ever be."""
    now = now_ms()
    silent = [int(p.application) for p in REGISTRY.providers if not p.reports_delivery]
    statement = (
        select(Message)
        .where(Message.status == MessageStatus.SENT, Message.expire_at.is_not(None), Message.expire_at <= now)
        .limit(limit)
    )
    if silent:
        statement = statement.join(Channel, Channel.id == Message.channel_id).where(
            Channel.application_id.not_in(silent)
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
