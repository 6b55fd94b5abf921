"""All SQL about conversations (end users of BOT channels)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.ids import canonical_public_id
from openmmp.models import Conversation, InboundMessage


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


async def last_written_at(
    session: AsyncSession, channel_id: int, *, conversation_id: int | None, phone: str | None
) -> int | None:
    """When the end user last wrote to the channel (epoch ms): in the conversation, or from the phone
    in any of the channel's conversations; None when they never did."""
    who = []
    if conversation_id is not None:
        who.append(Conversation.id == conversation_id)
    if phone is not None:
        who.append(Conversation.phone == phone)
    if not who:
        return None
    statement = (
        select(func.max(InboundMessage.timestamp))
        .join(Conversation, Conversation.id == InboundMessage.conversation_id)
        .where(Conversation.channel_id == channel_id, InboundMessage.kind == "message", or_(*who))
    )
    found = (await session.execute(statement)).scalar_one_or_none()
    return int(found) if found is not None else None


async def started(
    session: AsyncSession, channel_ids: Sequence[int], from_ms: int, to_ms: int
) -> dict[int, int]:
    """How many conversations of each channel started in [from_ms, to_ms) (ranges of
    `ix_conversations_started`)."""
    if not channel_ids:
        return {}
    statement = (
        select(Conversation.channel_id, func.count())
        .where(
            Conversation.channel_id.in_(channel_ids),
            Conversation.created_at >= from_ms,
            Conversation.created_at < to_ms,
        )
        .group_by(Conversation.channel_id)
    )
    return {int(channel): int(count) for channel, count in await session.execute(statement)}
