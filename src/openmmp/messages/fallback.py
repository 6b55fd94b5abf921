"""Fallback from one channel to the next (api.md §4.3): each leg a message of its own, one at a time.

A send may name channels to try next (or inherit its channel's `settings.fallback`); the plan, checked
when the send was accepted, rides on the message (`messages.fallback`: leg, root, rest, afterSeconds,
next). Two things make a `fallback` job for a leg: its FAIL (the status machine adds it in the same
transaction), and its timer (added with the message, due `afterSeconds` after it). The workers' sweep
takes the due ones and, for a leg that is neither DELIVERED nor READ nor followed already, makes the next
leg: a new message on the next channel to the same phone, with its dispatch job and its own timer, in the
transaction that marks this leg followed (`next`). So a leg is followed once, whichever trigger comes
first and however often the sweep runs. A leg still PENDING when its timer runs out is FAILed (cause
`FALLBACK`), so the phone gets one message; one already SENT cannot be called back, and a late
delivery of it is reported as a status like any other, never sent again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.ids import new_public_id
from openmmp.messages import repository
from openmmp.messages import status as status_machine
from openmmp.models import Channel, Job, Message
from openmmp.models.channel import SENDING_STATUSES
from openmmp.models.message import MessageStatus
from openmmp.providers.registry import REGISTRY
from openmmp.queue.sql import acknowledge

_FINISHED = (MessageStatus.DELIVERED, MessageStatus.READ)


async def run_due(session: AsyncSession, *, now: int, skip_locked: bool, limit: int = 200) -> int:
    """Follow the legs whose fallback job is due (a batch per call); returns how many legs were made."""
    statement = (
        select(Job)
        .where(Job.kind == repository.FALLBACK, Job.run_at <= now)
        .order_by(Job.run_at, Job.id)
        .limit(limit)
    )
    if skip_locked:
        statement = statement.with_for_update(skip_locked=True)
    jobs = list((await session.execute(statement)).scalars())
    if not jobs:
        return 0
    ids = sorted({job.message_id for job in jobs if job.message_id is not None})
    legs = {
        m.id: m
        for m in (
            await session.execute(
                select(Message)
                .where(Message.id.in_(ids))
                .order_by(Message.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
    }
    made = 0
    for message_id in ids:
        leg = legs.get(message_id)
        if leg is not None and _due(leg, now):
            made += await _follow(session, leg, now)
    await acknowledge(session, [job.id for job in jobs])
    return made


def _due(leg: Message, now: int) -> bool:
    """Its job ran out: the leg has channels left, no follower yet, and neither delivered nor expired."""
    plan = leg.fallback
    if not plan or not plan.get("rest") or plan.get("next"):
        return False
    if leg.status in _FINISHED:
        return False
    return leg.expire_at is None or leg.expire_at > now


async def _follow(session: AsyncSession, leg: Message, now: int) -> int:
    """Make the next leg on the first channel of the plan that can still send; 1 when one was made."""
    plan: dict[str, Any] = dict(leg.fallback or {})
    rest: list[dict[str, Any]] = list(plan["rest"])
    while rest:
        target, rest = rest[0], rest[1:]
        channel = (
            await session.execute(
                select(Channel).where(
                    Channel.public_id == target["accountId"], Channel.company_id == leg.company_id
                )
            )
        ).scalar_one_or_none()
        if channel is None or channel.status not in SENDING_STATUSES:
            continue  # deleted or stopped since the send was accepted: the next one
        provider = REGISTRY.for_application(channel.application_id)
        if provider is None:
            continue
        public_id = new_public_id()
        row = {
            "public_id": public_id,
            "company_id": leg.company_id,
            "channel_id": channel.id,
            "conversation_id": None,
            "client_message_id": public_id,
            "request_id": leg.request_id,
            "request_hash": leg.request_hash,
            "phone": leg.phone,
            "recipient": leg.phone,
            "content": target["message"],
            "status": int(MessageStatus.PENDING),
            "priority": leg.priority,
            "attempts": 0,
            "expire_at": leg.expire_at,
            "created_at": now,
            "updated_at": now,
            "parent_id": leg.parent_id or leg.id,
            "fallback": {
                "leg": int(plan.get("leg", 0)) + 1,
                "root": plan["root"],
                "rest": rest,
                "afterSeconds": plan.get("afterSeconds"),
            },
        }
        ids = await repository.insert_with_jobs(session, [row])
        await repository.insert_fallback_timers(session, [row], ids)
        status_machine.count_steps(session, channel.application_id, MessageStatus.PENDING)
        leg.fallback = {**plan, "next": public_id}
        if leg.status == MessageStatus.PENDING:
            # Not sent yet: it never will be, so the phone gets one message.
            own = await session.get(Channel, leg.channel_id)
            assert own is not None
            change = status_machine.Change(
                leg,
                MessageStatus.FAIL,
                now,
                "FALLBACK",
                "Not sent before its fallback timer ran out; the next channel was tried",
            )
            await status_machine.apply(session, [change], {own.id: own})
        await session.flush()
        return 1
    leg.fallback = {**plan, "rest": []}
    return 0
