"""The one status machine (api.md §2), used by the dispatcher, the callback receivers and the sweepers.

Status only moves forward: PENDING < SENT < DELIVERED < READ, FAIL terminal after PENDING or SENT. A READ
that skips DELIVERED records the implied DELIVERED first. Every recorded step is a history row (with the
provider's raw event) and a `type: 1` webhook, written in the caller's transaction, and counted in
`openmmp_messages_total` when that transaction commits; the channel's tallies (messages/tallies.py) change
in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.metrics import MESSAGES, count_on_commit
from openmmp.messages import tallies
from openmmp.messages.repository import fallback_job
from openmmp.models import Channel, Job, Message, MessageEvent
from openmmp.models.message import CAUSES, MessageStatus
from openmmp.providers.registry import REGISTRY
from openmmp.queue.notify import WEBHOOKS, notify
from openmmp.webhooks import service as webhooks

if TYPE_CHECKING:
    from prometheus_client import Counter


@functools.cache
def _counter(application: int, status: MessageStatus) -> Counter:
    return MESSAGES.labels(REGISTRY.label(application), status.name)


def count_steps(session: AsyncSession, application: int, status: MessageStatus, amount: int = 1) -> None:
    """Count `amount` messages of `application` reaching `status` once the session's transaction commits."""
    count_on_commit(session, _counter(application, status), amount)


_INSERT_EVENTS = insert(cast(Table, MessageEvent.__table__))

_PROGRESS = {
    MessageStatus.PENDING: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
}


def steps(current: int, target: int) -> list[MessageStatus]:
    """The statuses to record to go from `current` to `target`; empty when `target` is no progress."""
    if current in (MessageStatus.FAIL, MessageStatus.READ) or current == target:
        return []
    if target == MessageStatus.FAIL:
        return [MessageStatus.FAIL] if current in (MessageStatus.PENDING, MessageStatus.SENT) else []
    now, goal = _PROGRESS[MessageStatus(current)], _PROGRESS[MessageStatus(target)]
    if goal <= now:
        return []
    recorded = []
    if target == MessageStatus.READ and now < _PROGRESS[MessageStatus.DELIVERED]:
        if now < _PROGRESS[MessageStatus.SENT]:
            recorded.append(MessageStatus.SENT)
        recorded.append(MessageStatus.DELIVERED)
    elif target == MessageStatus.DELIVERED and now < _PROGRESS[MessageStatus.SENT]:
        recorded.append(MessageStatus.SENT)
    recorded.append(MessageStatus(target))
    return recorded


@dataclass(frozen=True, slots=True)
class Change:
    """A request to move `message` to `target` at `timestamp` (epoch ms)."""

    message: Message
    target: MessageStatus
    timestamp: int
    error_code: str | None = None
    error_message: str | None = None
    raw: Mapping[str, Any] | None = None
    provider_message_id: str | None = None


def status_webhook(
    message: Message, channel: Channel, status: MessageStatus, timestamp: int
) -> dict[str, Any]:
    """The `type: 1` body of api.md §5.1, field for field; a message of a fallback chain also says which
    leg it is (`leg`, from 0) and, after the first, the chain's first message (`parentMessageId`)."""
    body = {
        "messageId": message.public_id,
        "cause": CAUSES[status],
        "clientMessageId": message.client_message_id,
        "timestamp": timestamp,
        "type": 1,
        "status": int(status),
        "publicId": channel.public_id,
        "applicationId": channel.application_id,
    }
    if message.fallback:
        leg = int(message.fallback.get("leg", 0))
        body["leg"] = leg
        if leg:
            body["parentMessageId"] = message.fallback.get("root")
    return body


def _falls_back(message: Message) -> bool:
    """A FAIL of this message tries the next channel: it has one, and has not tried it yet."""
    plan = message.fallback
    return bool(plan and plan.get("rest") and not plan.get("next"))


async def apply(session: AsyncSession, changes: list[Change], channels: Mapping[int, Channel]) -> int:
    """Apply `changes` in order (several may concern one message); returns how many steps were recorded.

    The messages must be loaded in `session`; their rows are updated through the ORM, history rows are
    inserted in one statement and a webhook per step (when the channel has a webhook URL) in another.
    """
    events: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    fallbacks: list[dict[str, Any]] = []
    steps_by_label: dict[tuple[int, MessageStatus], int] = {}
    counted = tallies.Changes()
    for change in changes:
        message = change.message
        recorded = steps(message.status, change.target)
        if not recorded:
            continue
        channel = channels[message.channel_id]
        # Upstream clocks and ours differ by milliseconds; keep each message's history in time order.
        timestamp = max(change.timestamp, message.updated_at)
        if change.provider_message_id is not None:
            message.provider_message_id = change.provider_message_id
        for status in recorded:
            is_target = status == change.target
            events.append(
                {
                    "message_id": message.id,
                    "status": int(status),
                    "timestamp": timestamp,
                    "error_code": change.error_code if is_target else None,
                    "error_message": change.error_message if is_target else None,
                    "raw": dict(change.raw) if is_target and change.raw is not None else None,
                }
            )
            delivery = webhooks.delivery_row(
                channel=channel,
                event_type=1,
                body=status_webhook(message, channel, status, timestamp),
                ordering_key=message.public_id,
            )
            if delivery is not None:
                deliveries.append(delivery)
            key = (channel.application_id, status)
            steps_by_label[key] = steps_by_label.get(key, 0) + 1
        counted.moved(message, message.status, change.target)
        message.status = int(change.target)
        message.updated_at = timestamp
        if change.target == MessageStatus.FAIL:
            message.error_code = change.error_code
            message.error_message = (change.error_message or "")[:500] or None
            if _falls_back(message):
                fallbacks.append(
                    fallback_job(
                        message.company_id, message.channel_id, message.id, message.priority, timestamp
                    )
                )
    await counted.write(session)
    if events:
        # Core inserts: the ORM's bulk path would flush the session first and cost more than the rows.
        await session.execute(_INSERT_EVENTS, events)
        await webhooks.insert_deliveries(session, deliveries)
        await notify(session, WEBHOOKS)
        for (application, status), amount in steps_by_label.items():
            count_steps(session, application, status, amount)
    if fallbacks:
        # The next channel is tried by the workers' fallback sweep (messages/fallback.py).
        await session.execute(insert(Job), fallbacks)
    return len(events)
