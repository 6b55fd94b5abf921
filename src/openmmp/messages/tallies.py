"""The counts of each channel's messages per status and hour (`message_tallies`), kept as messages change.

Every change is an added row, in the transaction of the change: a message created adds +1 at PENDING in the
hour it was created in; a message that moves adds -1 at the status it leaves and +1 at the one it reaches.
Rows are summed per key before they are written, one INSERT per transaction. A message accepted upstream
adds its segments once, when it leaves PENDING (SENT, DELIVERED or READ, or FAIL with an upstream id);
the extra parts of a long SMS add theirs when they are recorded. `fold` (the workers' periodic round)
merges the rows of a key into one, so a channel's summary reads a row per hour and status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.models import Message, MessageTally
from openmmp.models.message import MessageStatus

HOUR_MS = 3_600_000
FOLD_BATCH = 5000
"""New rows `fold` looks at in one round."""

Key = tuple[int, int, int]
"""(channel id, hour, status)."""

_TALLIES = cast(Table, MessageTally.__table__)
_INSERT = insert(_TALLIES)


def hour_of(epoch_ms: int) -> int:
    return epoch_ms - epoch_ms % HOUR_MS


class Changes:
    """Count changes of one transaction, summed per key."""

    def __init__(self) -> None:
        self._sums: dict[Key, list[int]] = {}

    def add(self, channel_id: int, created_at: int, status: int, messages: int, segments: int = 0) -> None:
        sums = self._sums.setdefault((channel_id, hour_of(created_at), int(status)), [0, 0])
        sums[0] += messages
        sums[1] += segments

    def created(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """New messages (their insert rows), PENDING."""
        for row in rows:
            self.add(row["channel_id"], row["created_at"], MessageStatus.PENDING, 1)

    def moved(self, message: Message, before: int, after: int) -> None:
        """`message` went from `before` to `after` (its `provider_message_id` as it is now)."""
        accepted = before == MessageStatus.PENDING and (
            after != MessageStatus.FAIL or message.provider_message_id is not None
        )
        self.add(message.channel_id, message.created_at, before, -1)
        self.add(message.channel_id, message.created_at, after, 1, message.segments if accepted else 0)

    async def write(self, session: AsyncSession) -> None:
        rows = [
            {"channel_id": c, "hour": h, "status": s, "messages": m, "segments": g}
            for (c, h, s), (m, g) in self._sums.items()
            if m or g
        ]
        self._sums.clear()
        if rows:
            await session.execute(_INSERT, rows)


async def record_parts(session: AsyncSession, sent: Sequence[tuple[Message, int]]) -> None:
    """Messages that went as several upstream messages (message, parts): the parts past the first."""
    changes = Changes()
    for message, parts in sent:
        changes.add(message.channel_id, message.created_at, MessageStatus.SENT, 0, parts - 1)
    await changes.write(session)


class Folder:
    """Merges the rows of each key that new rows were added to, from the oldest new row on; remembers how
    far it got, so a round reads only what came since (the first round of a process reads them all)."""

    def __init__(self) -> None:
        self._after = 0

    async def fold(self, session: AsyncSession) -> int:
        """One round: the keys of up to FOLD_BATCH new rows, each merged into one row. A key another
        worker merged meanwhile (its rows are no longer all there) is left to it. Returns the rows merged
        away."""
        new = (
            select(MessageTally.id, MessageTally.channel_id, MessageTally.hour, MessageTally.status)
            .where(MessageTally.id > self._after)
            .order_by(MessageTally.id)
            .limit(FOLD_BATCH)
        )
        found = (await session.execute(new)).all()
        if not found:
            return 0
        keys = {(c, h, s) for _, c, h, s in found}
        merged = 0
        for channel_id, hour, status in sorted(keys):
            merged += await _merge(session, channel_id, hour, status)
        self._after = found[-1][0]
        return merged


async def _merge(session: AsyncSession, channel_id: int, hour: int, status: int) -> int:
    rows = (
        await session.execute(
            select(MessageTally.id, MessageTally.messages, MessageTally.segments).where(
                MessageTally.channel_id == channel_id,
                MessageTally.hour == hour,
                MessageTally.status == status,
            )
        )
    ).all()
    if len(rows) < 2:
        return 0
    ids = [row[0] for row in rows]
    async with session.begin_nested() as savepoint:
        gone = await session.execute(delete(MessageTally).where(MessageTally.id.in_(ids)))
        if getattr(gone, "rowcount", 0) != len(ids):
            await savepoint.rollback()
            return 0
        messages, segments = sum(row[1] for row in rows), sum(row[2] for row in rows)
        if messages or segments:
            values = {"channel_id": channel_id, "hour": hour, "status": status}
            await session.execute(_INSERT, [values | {"messages": messages, "segments": segments}])
    return len(ids) - 1


async def totals(
    session: AsyncSession, channel_ids: Sequence[int], from_hour: int, to_hour: int
) -> dict[tuple[int, int], tuple[int, int]]:
    """(messages, segments) by (channel id, status) over the hours in [from_hour, to_hour)."""
    if not channel_ids:
        return {}
    statement = (
        select(
            MessageTally.channel_id,
            MessageTally.status,
            func.sum(MessageTally.messages),
            func.sum(MessageTally.segments),
        )
        .where(
            MessageTally.channel_id.in_(channel_ids),
            MessageTally.hour >= from_hour,
            MessageTally.hour < to_hour,
        )
        .group_by(MessageTally.channel_id, MessageTally.status)
    )
    return {(int(c), int(s)): (int(m or 0), int(g or 0)) for c, s, m, g in await session.execute(statement)}


async def by_hour(
    session: AsyncSession, channel_ids: Sequence[int], from_hour: int, to_hour: int
) -> dict[tuple[int, int, int], int]:
    """Messages by (channel id, hour, status) over the hours in [from_hour, to_hour): the portal's chart."""
    if not channel_ids:
        return {}
    statement = (
        select(
            MessageTally.channel_id, MessageTally.hour, MessageTally.status, func.sum(MessageTally.messages)
        )
        .where(
            MessageTally.channel_id.in_(channel_ids),
            MessageTally.hour >= from_hour,
            MessageTally.hour < to_hour,
        )
        .group_by(MessageTally.channel_id, MessageTally.hour, MessageTally.status)
    )
    return {(int(c), int(h), int(s)): int(m or 0) for c, h, s, m in await session.execute(statement)}
