"""All SQL of the callback receivers: raw events (de-duplicated), message and channel look-ups."""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import and_, bindparam, delete, exists, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from openmmp.kit.ids import canonical_public_id, new_public_id
from openmmp.models import Channel, Conversation, Message, MessagePart, ProviderEvent
from openmmp.models.message import EventOutcome, MessageStatus

if TYPE_CHECKING:
    from sqlalchemy import Table

_CHANNEL = select(Channel).where(Channel.public_id == bindparam("public_id"))  # built once: every callback


async def channel_by_public_id(session: AsyncSession, public_id: str) -> Channel | None:
    """Callbacks are not tenant requests: the channel is found by its id and proven by the signature."""
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    return (await session.execute(_CHANNEL, {"public_id": canonical})).scalar_one_or_none()


async def record_event(
    session: AsyncSession,
    *,
    channel_id: int,
    dedupe_key: str,
    provider_message_id: str | None,
    outcome: str,
    raw: str,
) -> int | None:
    """Store a raw event once per (channel, dedupe key); None when it was seen before."""
    key = dedupe_key[:300]
    row = {
        "channel_id": channel_id,
        "dedupe_key": key,
        "provider_message_id": provider_message_id,
        "outcome": outcome,
        "raw": raw,
    }
    return (await record_events(session, [row])).get((channel_id, key))


_EVENTS = cast("Table", ProviderEvent.__table__)
"""Raw events are inserted on the table, not the entity: the ORM's insert path would flush the session."""


def _events_insert(dialect: str) -> Any:
    """An insert of raw events that skips those seen before (the same channel and dedupe key)."""
    insert = _dialect_insert(dialect)(_EVENTS)
    return insert.on_conflict_do_nothing(index_elements=["channel_id", "dedupe_key"])


def _dialect_insert(dialect: str) -> Any:
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _insert(session: AsyncSession) -> Any:
    return _dialect_insert(session.get_bind().dialect.name)


async def create_conversation(session: AsyncSession, channel: Channel, external_id: str, now: int) -> None:
    """Create the (channel, end user) conversation unless it exists; safe against a concurrent twin."""
    statement = (
        _insert(session)(Conversation)
        .values(
            public_id=new_public_id(),
            company_id=channel.company_id,
            channel_id=channel.id,
            external_id=external_id,
            name="",
            avatar_url="",
            language="",
            country="",
            subscribed=True,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["channel_id", "external_id"])
    )
    await session.execute(statement)


async def set_outcome(session: AsyncSession, event_id: int, outcome: str) -> None:
    await session.execute(update(ProviderEvent).where(ProviderEvent.id == event_id).values(outcome=outcome))


async def set_outcomes(session: AsyncSession, event_ids: list[int], outcome: str) -> None:
    if event_ids:
        statement = update(ProviderEvent).where(ProviderEvent.id.in_(event_ids)).values(outcome=outcome)
        await session.execute(statement)


async def record_events(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[tuple[int, str], int]:
    """Store raw events (the columns of `record_event`, dedupe keys cut to 300) in one statement, each
    once per (channel, dedupe key): the ids of those stored now, by (channel id, dedupe key)."""
    if not rows:
        return {}
    statement = _record_events(session.get_bind().dialect.name)
    return {(channel_id, key): id_ for id_, channel_id, key in (await session.execute(statement, rows)).all()}


@functools.cache
def _record_events(dialect: str) -> Any:
    """`record_events`' statement, built and compiled once: executed with many rows, SQLAlchemy sends them
    as one multi-row INSERT ("insertmanyvalues"), whatever their number."""
    return _events_insert(dialect).returning(_EVENTS.c.id, _EVENTS.c.channel_id, _EVENTS.c.dedupe_key)


async def messages_by_token(
    session: AsyncSession,
    tokens: Collection[tuple[int, str]],
    unread_of: Collection[tuple[int, str]] = (),
) -> tuple[dict[tuple[int, str], list[Message]], dict[tuple[int, str], list[Message]]]:
    """The messages carrying each (channel id, upstream message id), and those of each (channel id,
    recipient) of `unread_of` not read yet (SENT or DELIVERED, for read watermarks); read afresh and
    locked in one statement (FOR UPDATE, in id order, as `message_for` and `lock_unread_up_to` lock),
    each list in id order."""
    if not tokens:
        return {}, {}
    by_token = tuple_(Message.channel_id, Message.provider_message_id).in_(list(tokens))
    condition: ColumnElement[bool] = by_token
    if unread_of:
        unread = and_(
            tuple_(Message.channel_id, Message.recipient).in_(list(unread_of)),
            Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]),
        )
        condition = or_(by_token, unread)
    statement = (
        select(Message)
        .where(condition)
        .order_by(Message.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    found: dict[tuple[int, str], list[Message]] = {}
    unread_by_user: dict[tuple[int, str], list[Message]] = {}
    wanted_users = set(unread_of)
    wanted_tokens = set(tokens)
    states = (MessageStatus.SENT, MessageStatus.DELIVERED)
    for message in (await session.execute(statement)).scalars():
        token = (message.channel_id, message.provider_message_id or "")
        if token in wanted_tokens:
            found.setdefault(token, []).append(message)
        user = (message.channel_id, message.recipient)
        if user in wanted_users and message.status in states:
            unread_by_user.setdefault(user, []).append(message)
    return found, unread_by_user


async def message_for(
    session: AsyncSession, channel_id: int, provider_message_id: str, user_id: str | None, *, lock: bool
) -> Message | None:
    """The message a report is about; with `lock`, its row is locked (FOR UPDATE) and read afresh.

    Reports about one message can be applied by two transactions at once (the callback, and the
    dispatcher reconciling a report that overtook its commit): the lock makes the second one see the
    first one's status, so a step is never recorded twice.
    """
    parameters = {"channel_id": channel_id, "token": provider_message_id}
    if user_id is not None:
        parameters["user"] = user_id
    statement = _message_for(by_user=user_id is not None, lock=lock)
    return (await session.execute(statement, parameters)).scalar_one_or_none()


@functools.cache
def _message_for(*, by_user: bool, lock: bool) -> Any:
    """`message_for`'s four statements, each built once (one runs per delivery report)."""
    statement = select(Message).where(
        Message.channel_id == bindparam("channel_id"), Message.provider_message_id == bindparam("token")
    )
    if by_user:
        statement = statement.where(Message.recipient == bindparam("user"))
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    # The latest, should the upstream have handed the token out before (an SMSC counting again from 1).
    return statement.order_by(Message.id.desc()).limit(1)


async def part_for(session: AsyncSession, channel_id: int, provider_message_id: str) -> MessagePart | None:
    """The part of a message sent in parts that a report names (the latest, should the upstream have
    handed its id out before), or None when it names no part."""
    statement = (
        select(MessagePart)
        .where(MessagePart.channel_id == channel_id, MessagePart.provider_message_id == provider_message_id)
        .order_by(MessagePart.id.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def tokens_of_parts(session: AsyncSession, tokens: Collection[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (channel id, upstream message id) name a part of a message sent in parts."""
    if not tokens:
        return set()
    statement = select(MessagePart.channel_id, MessagePart.provider_message_id).where(
        tuple_(MessagePart.channel_id, MessagePart.provider_message_id).in_(list(tokens))
    )
    return {(row[0], row[1]) for row in await session.execute(statement)}


async def lock_parts(session: AsyncSession, message_id: int) -> tuple[Message, list[MessagePart]]:
    """A message sent in parts, locked (FOR UPDATE: two parts' reports are applied one after the
    other), and its parts as they are now, in order."""
    message = (
        await session.execute(
            select(Message)
            .where(Message.id == message_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    parts = await session.execute(
        select(MessagePart)
        .where(MessagePart.message_id == message_id)
        .order_by(MessagePart.number)
        .execution_options(populate_existing=True)
    )
    return message, list(parts.scalars())


async def lock_unread_up_to(session: AsyncSession, message: Message) -> list[Message]:
    """Lock the same user's messages on the channel up to `message` that are not read yet, by id.

    Returns the earlier ones still SENT or DELIVERED (read afresh); `message` itself is locked and
    refreshed too. Locks are always taken in id order, so two `seen` reports of one user cannot deadlock.
    """
    statement = (
        select(Message)
        .where(
            Message.channel_id == message.channel_id,
            Message.recipient == message.recipient,
            Message.id <= message.id,
            Message.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]) | (Message.id == message.id),
        )
        .order_by(Message.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    unread = (MessageStatus.SENT, MessageStatus.DELIVERED)
    rows = list((await session.execute(statement)).scalars())
    return [m for m in rows if m.id != message.id and m.status in unread]


async def lock_behind_up_to(
    session: AsyncSession, channel_id: int, recipient: str, *, up_to_ms: int, statuses: Collection[int]
) -> list[Message]:
    """Lock the channel's messages to `recipient` that reached their status (one of `statuses`) up to
    `up_to_ms`, in id order: a watermark by time moves them on. The time a message became SENT (or
    DELIVERED) is what counts, not when it was accepted: one still queued at the watermark was not
    delivered nor read by then."""
    statement = (
        select(Message)
        .where(
            Message.channel_id == channel_id,
            Message.recipient == recipient,
            Message.updated_at <= up_to_ms,
            Message.status.in_(list(statuses)),
        )
        .order_by(Message.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(statement)).scalars())


async def matchable(
    session: AsyncSession, *, tokens: Collection[str] | None, limit: int
) -> list[tuple[ProviderEvent, Channel]]:
    """UNMATCHED status reports whose token a message, or a part of one, now carries (optionally only
    these tokens)."""
    statement = (
        select(ProviderEvent, Channel)
        .join(Channel, Channel.id == ProviderEvent.channel_id)
        .where(
            ProviderEvent.outcome == EventOutcome.UNMATCHED,
            or_(
                exists().where(
                    Message.channel_id == ProviderEvent.channel_id,
                    Message.provider_message_id == ProviderEvent.provider_message_id,
                ),
                exists().where(
                    MessagePart.channel_id == ProviderEvent.channel_id,
                    MessagePart.provider_message_id == ProviderEvent.provider_message_id,
                ),
            ),
        )
        .order_by(ProviderEvent.id)
        .limit(limit)
    )
    if tokens is not None:
        statement = statement.where(ProviderEvent.provider_message_id.in_(list(tokens)))
    return [(row[0], row[1]) for row in await session.execute(statement)]


async def give_up_unmatched(session: AsyncSession, *, older_than: int) -> int:
    """Reports that never matched a message within the grace period are UNKNOWN from now on."""
    result = await session.execute(
        update(ProviderEvent)
        .where(ProviderEvent.outcome == EventOutcome.UNMATCHED, ProviderEvent.received_at < older_than)
        .values(outcome=EventOutcome.UNKNOWN)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def prune(session: AsyncSession, *, older_than: int, limit: int) -> int:
    """Delete up to `limit` raw events received before `older_than` (epoch ms), oldest first."""
    oldest = (
        select(ProviderEvent.id)
        .where(ProviderEvent.received_at < older_than)
        .order_by(ProviderEvent.received_at)
        .limit(limit)
    )
    result = await session.execute(delete(ProviderEvent).where(ProviderEvent.id.in_(oldest)))
    return int(getattr(result, "rowcount", 0) or 0)
