"""All SQL about messages. Tenant reads filter on the subject's company (`company_id` parameter)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import bindparam, insert, literal_column, select

from openmmp.kit.ids import canonical_public_id
from openmmp.messages import tallies
from openmmp.models import Channel, Job, Message, MessageEvent, MessagePart
from openmmp.models.message import MessageStatus
from openmmp.queue.notify import JOBS, notify

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.auth import Subject


DISPATCH = "dispatch"
"""The kind of a message's send job."""
FALLBACK = "fallback"
"""The job kind that tries a message's next fallback channel (messages/fallback.py)."""

# The hot statements, built once (building an expression costs more than running it on SQLite).
_BY_CLIENT_IDS = select(Message).where(
    Message.company_id == bindparam("company_id"),
    Message.client_message_id.in_(bindparam("client_ids", expanding=True)),
)
# A company's message with its channel: Get Message Status.
_WITH_CHANNEL = (
    select(Message, Channel)
    .join(Channel, Channel.id == Message.channel_id)
    .where(Message.company_id == bindparam("company_id"))
)
_BY_PUBLIC_ID = _WITH_CHANNEL.where(Message.public_id == bindparam("id"))
_BY_CLIENT_ID = _WITH_CHANNEL.where(Message.client_message_id == bindparam("id"))
_HISTORY = (
    select(MessageEvent).where(MessageEvent.message_id == bindparam("message_id")).order_by(MessageEvent.id)
)
# Sends are stored through the tables, not the ORM: its bulk insert path cost ~250 µs of CPU per single
# send (half as much again as the rest of the transaction), and the rows are plain dicts already.
_MESSAGES = cast("Table", Message.__table__)
# Each row is matched to its id by its unique public id: asking SQLAlchemy to return the ids in the rows'
# order (`sort_by_parameter_order`) made it insert one row per statement on SQLite, ~60 µs of a batch
# item's ~200.
_INSERT_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.public_id, _MESSAGES.c.id)
_JOBS = cast("Table", Job.__table__)
# Their dispatch jobs, one per message, made by the database from the inserted rows.
_INSERT_DISPATCH_JOBS = insert(_JOBS).from_select(
    [
        "kind",
        "company_id",
        "channel_id",
        "message_id",
        "priority",
        "run_at",
        "lease_until",
        "attempts",
        "created_at",
    ],
    select(
        literal_column(f"'{DISPATCH}'"),
        _MESSAGES.c.company_id,
        _MESSAGES.c.channel_id,
        _MESSAGES.c.id,
        _MESSAGES.c.priority,
        _MESSAGES.c.created_at,
        literal_column("0"),
        literal_column("0"),
        _MESSAGES.c.created_at,
    )
    .where(_MESSAGES.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_MESSAGES.c.id),
)


async def by_client_ids(
    session: AsyncSession, company_id: int, client_ids: Sequence[str]
) -> dict[str, Message]:
    if not client_ids:
        return {}
    parameters = {"company_id": company_id, "client_ids": list(client_ids)}
    return {m.client_message_id: m for m in (await session.execute(_BY_CLIENT_IDS, parameters)).scalars()}


async def insert_with_jobs(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Insert messages and, in the same transaction, one dispatch job each (the outbox)."""
    inserted = await session.execute(_INSERT_MESSAGES, rows)
    by_public_id: dict[str, int] = {row.public_id: row.id for row in inserted}
    ids = [by_public_id[row["public_id"]] for row in rows]
    await session.execute(_INSERT_DISPATCH_JOBS, {"ids": ids})
    counted = tallies.Changes()
    counted.created(rows)
    await counted.write(session)
    await notify(session, JOBS)
    return ids


async def find(
    session: AsyncSession,
    subject: Subject,
    *,
    public_id: str | None = None,
    client_message_id: str | None = None,
) -> tuple[Message, Channel] | None:
    if public_id is not None:
        canonical = canonical_public_id(public_id)
        if canonical is None:
            return None
        statement, value = _BY_PUBLIC_ID, canonical
    else:
        # Stored ids never hold NUL (bodies refuse it), and PostgreSQL refuses a query that does.
        if client_message_id is None or "\x00" in client_message_id:
            return None
        statement, value = _BY_CLIENT_ID, client_message_id
    row = (await session.execute(statement, {"company_id": subject.company_id, "id": value})).first()
    return (row[0], row[1]) if row else None


async def history(session: AsyncSession, message_id: int) -> list[MessageEvent]:
    return list((await session.execute(_HISTORY, {"message_id": message_id})).scalars())


async def record_parts(session: AsyncSession, sent: Sequence[tuple[Message, tuple[str, ...]]]) -> None:
    """Keep the parts of messages that went as several upstream messages, and how many there were."""
    await tallies.record_parts(session, [(message, len(parts)) for message, parts in sent])
    table = cast("Table", Message.__table__)
    await session.execute(
        table.update().where(table.c.id == bindparam("b_id")).values(segments=bindparam("b_segments")),
        [{"b_id": message.id, "b_segments": len(parts)} for message, parts in sent],
    )
    await session.execute(
        insert(MessagePart),
        [
            {
                "message_id": message.id,
                "channel_id": message.channel_id,
                "number": number,
                "provider_message_id": token,
                "status": MessageStatus.SENT,
            }
            for message, parts in sent
            for number, token in enumerate(parts, start=1)
        ],
    )


def fallback_job(
    company_id: int, channel_id: int, message_id: int, priority: int, run_at: int
) -> dict[str, Any]:
    """The row of a `fallback` job: try the message's next channel at `run_at` (messages/fallback.py)."""
    return {
        "kind": FALLBACK,
        "company_id": company_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "priority": priority,
        "run_at": run_at,
        "lease_until": 0,
        "attempts": 0,
        "created_at": run_at,
    }


async def insert_fallback_timers(session: AsyncSession, rows: list[dict[str, Any]], ids: list[int]) -> None:
    """For the new messages whose fallback has a timer: a `fallback` job due when it runs out."""
    timers = [
        fallback_job(
            row["company_id"],
            row["channel_id"],
            message_id,
            row["priority"],
            row["created_at"] + int(row["fallback"]["afterSeconds"]) * 1000,
        )
        for row, message_id in zip(rows, ids, strict=True)
        if row.get("fallback") and row["fallback"]["rest"] and row["fallback"].get("afterSeconds")
    ]
    if timers:
        await session.execute(insert(Job), timers)


async def legs_of(session: AsyncSession, root_id: int) -> list[tuple[Message, Channel]]:
    """The later legs of a fallback chain (by its first message's id), in order, with their channels."""
    statement = (
        select(Message, Channel)
        .join(Channel, Channel.id == Message.channel_id)
        .where(Message.parent_id == root_id)
        .order_by(Message.id)
    )
    return [(row[0], row[1]) for row in await session.execute(statement)]


async def of_applications(
    session: AsyncSession,
    subject: Subject,
    applications: Sequence[int],
    ids: Sequence[str],
    *,
    by_client_id: bool,
) -> list[Message]:
    """The company's messages on channels of `applications`, by public id or by clientMessageId."""
    if by_client_id:
        column, wanted = Message.client_message_id, [i for i in ids if "\x00" not in i]
    else:
        column, wanted = Message.public_id, [c for c in map(canonical_public_id, ids) if c is not None]
    if not wanted or not applications:
        return []
    statement = (
        select(Message)
        .join(Channel, Channel.id == Message.channel_id)
        .where(
            Message.company_id == subject.company_id,
            Channel.application_id.in_(applications),
            column.in_(wanted),
        )
        .order_by(Message.id)
    )
    return list((await session.execute(statement)).scalars())


async def to_phone(
    session: AsyncSession,
    subject: Subject,
    phone: str,
    *,
    channel_id: int | None = None,
    before_id: int | None = None,
    limit: int,
) -> list[tuple[Message, Channel]]:
    """The company's messages to `phone` (E.164 digits, as sends store it), newest first, with their
    channels: up to `limit` of those with ids below `before_id` (keyset paging), of one channel if given.

    Read as a range of `ix_messages_recipient` (channel_id, recipient, id) per channel of the company. A
    message to a conversation (BOT channels) or to an e-mail address has another recipient: not found here.
    """
    statement = (
        select(Message, Channel)
        .join(Channel, Channel.id == Message.channel_id)
        # `company_id + 0`: on the bare column SQLite, which keeps no statistics, chose the
        # (company_id, client_message_id) index and read every message of the company; this way it reads
        # the company's channels, then each one's range of the recipient index (as PostgreSQL does).
        .where(
            (Message.company_id + 0) == subject.company_id,
            Channel.company_id == subject.company_id,
            Message.recipient == phone,
        )
    )
    if channel_id is not None:
        statement = statement.where(Message.channel_id == channel_id)
    if before_id is not None:
        statement = statement.where(Message.id < before_id)
    rows = await session.execute(statement.order_by(Message.id.desc()).limit(limit))
    return [(row[0], row[1]) for row in rows]
