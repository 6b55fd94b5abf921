"""All SQL of campaigns: tenant-scoped reads, pages with filters, contact counts, contact inserts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.kit.ids import canonical_public_id
from openmmp.messages.repository import DISPATCH
from openmmp.models import Campaign, CampaignContact, Channel, Job, Message, Template
from openmmp.models.campaign import CampaignStatus, ContactStatus
from openmmp.models.message import MessageStatus, Priority


async def get(session: AsyncSession, subject: Subject, public_id: str) -> Campaign | None:
    """The company's campaign; None for another company's, as for one that does not exist."""
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    statement = select(Campaign).where(
        Campaign.public_id == canonical, Campaign.company_id == subject.company_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def page(
    session: AsyncSession,
    subject: Subject,
    *,
    name: str | None,
    status: int | None,
    type_: int | None,
    offset: int,
    limit: int,
) -> tuple[int, list[Campaign]]:
    """The company's campaigns, newest first, filtered by a part of the name, a status and a type."""
    statement = select(Campaign).where(Campaign.company_id == subject.company_id)
    if name:
        statement = statement.where(Campaign.name.icontains(name, autoescape=True))
    if status is not None:
        statement = statement.where(Campaign.status == status)
    if type_ is not None:
        statement = statement.where(Campaign.type == type_)
    total = (await session.execute(select(func.count()).select_from(statement.subquery()))).scalar_one()
    rows = await session.execute(statement.order_by(Campaign.id.desc()).offset(offset).limit(limit))
    return total, list(rows.scalars())


async def sending_on(session: AsyncSession, campaigns: Sequence[Campaign]) -> dict[int, tuple[str, str]]:
    """Each campaign's channel and template public ids, by campaign id."""
    if not campaigns:
        return {}
    statement = (
        select(Campaign.id, Channel.public_id, Template.public_id)
        .join(Channel, Channel.id == Campaign.channel_id)
        .join(Template, Template.id == Campaign.template_id)
        .where(Campaign.id.in_([c.id for c in campaigns]))
    )
    return {row[0]: (row[1], row[2]) for row in await session.execute(statement)}


async def add_contacts(session: AsyncSession, campaign_id: int, rows: Sequence[dict[str, Any]]) -> int:
    """Insert contacts (`phone`, `params`, ...) the campaign does not have yet; the number inserted. A
    phone the campaign has already (an earlier row, an earlier import, the same step run again after a
    crash) is skipped by the unique index, so an import is idempotent."""
    if not rows:
        return 0
    values = [{"campaign_id": campaign_id, **row} for row in rows]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(CampaignContact).values(values).on_conflict_do_nothing(index_elements=["campaign_id", "phone"])
    )
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


RUNNING = (CampaignStatus.STARTED, CampaignStatus.PROCESSING)
"""A campaign in these statuses has its contacts queued by the runner (campaigns/runner.py)."""
CLOSED = (CampaignStatus.DONE, CampaignStatus.CANCELLED)
"""A campaign in these statuses takes no contacts, and its event stream ends."""
_MESSAGE_TO_CONTACT = {
    MessageStatus.PENDING: ContactStatus.IN_QUEUE,
    MessageStatus.SENT: ContactStatus.SENT,
    MessageStatus.DELIVERED: ContactStatus.DELIVERED,
    MessageStatus.READ: ContactStatus.READ,
    MessageStatus.FAIL: ContactStatus.FAIL,
}


def contact_status_of(message_status: MessageStatus) -> ContactStatus:
    """A queued contact's status, as its message's goes."""
    return _MESSAGE_TO_CONTACT[message_status]


async def progress_counts(session: AsyncSession, campaign_id: int) -> dict[int, int]:
    """How many contacts of the campaign are in each status, a queued contact in its message's: IN_QUEUE
    while the message is PENDING, then SENT, DELIVERED, READ or FAIL as its message goes."""
    statement = (
        select(CampaignContact.status, Message.status, func.count())
        .select_from(CampaignContact)
        .outerjoin(Message, Message.id == CampaignContact.message_id)
        .where(CampaignContact.campaign_id == campaign_id)
        .group_by(CampaignContact.status, Message.status)
    )
    counts: dict[int, int] = {}
    for contact_status, message_status, count in await session.execute(statement):
        status = (
            _MESSAGE_TO_CONTACT[MessageStatus(message_status)]
            if message_status is not None
            else contact_status
        )
        counts[int(status)] = counts.get(int(status), 0) + int(count)
    return counts


async def due(session: AsyncSession, now: int) -> list[int]:
    """The running campaigns whose time has come, oldest first."""
    statement = (
        select(Campaign.id)
        .where(
            Campaign.status.in_([int(s) for s in RUNNING]),
            or_(Campaign.schedule_time.is_(None), Campaign.schedule_time <= now),
        )
        .order_by(Campaign.id)
    )
    return list((await session.execute(statement)).scalars())


async def lock(session: AsyncSession, campaign_id: int, *, skip_locked: bool) -> Campaign | None:
    """The campaign, its row locked for this transaction (PostgreSQL; SQLite's write transaction holds
    the database). With `skip_locked`, None while another transaction holds it."""
    statement = select(Campaign).where(Campaign.id == campaign_id).with_for_update(skip_locked=skip_locked)
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_own(session: AsyncSession, subject: Subject, public_id: str) -> Campaign | None:
    """The company's campaign, its row locked for this transaction; None as `get` gives None."""
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    statement = (
        select(Campaign)
        .where(Campaign.public_id == canonical, Campaign.company_id == subject.company_id)
        .with_for_update()
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def in_flight(session: AsyncSession, company_id: int, channel_id: int) -> int:
    """The channel's campaign sends in the outbox, not yet sent (one range of `ix_jobs_claim`)."""
    statement = select(func.count()).where(
        Job.kind == DISPATCH,
        Job.company_id == company_id,
        Job.priority == int(Priority.CAMPAIGN),
        Job.channel_id == channel_id,
    )
    return int((await session.execute(statement)).scalar_one())


async def next_contacts(
    session: AsyncSession, campaign_id: int, limit: int, *, skip_locked: bool
) -> list[CampaignContact]:
    """The campaign's next contacts not sent yet, in the order they came, locked for this transaction
    (PostgreSQL: those another transaction holds, a Send Bulk Contact Message, are skipped)."""
    statement = (
        select(CampaignContact)
        .where(CampaignContact.campaign_id == campaign_id, CampaignContact.status == ContactStatus.NOT_SEND)
        .order_by(CampaignContact.id)
        .limit(limit)
    )
    if skip_locked:
        statement = statement.with_for_update(skip_locked=True)
    return list((await session.execute(statement)).scalars())


async def left_to_send(session: AsyncSession, campaign_id: int) -> int:
    statement = select(func.count()).where(
        CampaignContact.campaign_id == campaign_id, CampaignContact.status == ContactStatus.NOT_SEND
    )
    return int((await session.execute(statement)).scalar_one())


async def last_queued(session: AsyncSession, campaign_id: int) -> int:
    """The id of the contact queued last (0 for none)."""
    statement = select(func.max(CampaignContact.id)).where(
        CampaignContact.campaign_id == campaign_id, CampaignContact.status == ContactStatus.IN_QUEUE
    )
    return int((await session.execute(statement)).scalar_one() or 0)


async def recent_outcomes(session: AsyncSession, campaign: Campaign, window: int) -> list[int]:
    """The message statuses of the campaign's last `window` contacts queued since `watch_from`."""
    statement = (
        select(Message.status)
        .select_from(CampaignContact)
        .join(Message, Message.id == CampaignContact.message_id)
        .where(
            CampaignContact.campaign_id == campaign.id,
            CampaignContact.status == ContactStatus.IN_QUEUE,
            CampaignContact.id > campaign.watch_from,
        )
        .order_by(CampaignContact.id.desc())
        .limit(window)
    )
    return [int(status) for status in (await session.execute(statement)).scalars()]


async def mark_queued(session: AsyncSession, queued: Sequence[tuple[int, str]]) -> None:
    """Each (contact id, message public id): the contact is IN_QUEUE with that message."""
    if not queued:
        return
    contacts = cast(Table, CampaignContact.__table__)
    message_id = select(Message.id).where(Message.public_id == bindparam("message")).scalar_subquery()
    statement = (
        update(contacts)
        .where(contacts.c.id == bindparam("contact"))
        .values(status=int(ContactStatus.IN_QUEUE), message_id=message_id, error=None)
    )
    await session.execute(statement, [{"contact": c, "message": m} for c, m in queued])


async def mark_failed(session: AsyncSession, failed: Mapping[int, str]) -> None:
    """Each contact id: FAIL, with why (it was not sent)."""
    if not failed:
        return
    contacts = cast(Table, CampaignContact.__table__)
    statement = (
        update(contacts)
        .where(contacts.c.id == bindparam("contact"))
        .values(status=int(ContactStatus.FAIL), error=bindparam("why"))
    )
    await session.execute(statement, [{"contact": c, "why": why[:300]} for c, why in failed.items()])


async def contact_by_phone(
    session: AsyncSession, campaign_id: int, phone: str, *, lock: bool
) -> CampaignContact | None:
    statement = select(CampaignContact).where(
        CampaignContact.campaign_id == campaign_id, CampaignContact.phone == phone
    )
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()
