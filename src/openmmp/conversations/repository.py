"""All SQL about conversations (end users of BOT channels)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.ids import canonical_public_id
from openmmp.models import Conversation


async def get_on_channel(session: AsyncSession, channel_id: int, public_id: str) -> Conversation | None:
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    statement = select(Conversation).where(
        Conversation.channel_id == channel_id, Conversation.public_id == canonical
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def latest_with_phone(session: AsyncSession, channel_id: int, phone: str) -> Conversation | None:
    statement = (
        select(Conversation)
        .where(Conversation.channel_id == channel_id, Conversation.phone == phone)
        .order_by(Conversation.updated_at.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def by_external_id(session: AsyncSession, channel_id: int, external_id: str) -> Conversation | None:
    statement = select(Conversation).where(
        Conversation.channel_id == channel_id, Conversation.external_id == external_id
    )
    return (await session.execute(statement)).scalar_one_or_none()
