"""All SQL of campaigns: tenant-scoped reads, pages with filters, contact counts, contact inserts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.kit.ids import canonical_public_id
from openmmp.models import Campaign, CampaignContact, Channel, Template


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


async def contact_counts(session: AsyncSession, campaign_id: int) -> dict[int, int]:
    """How many contacts of the campaign are in each status (one range of `ix_campaign_contacts_status`)."""
    statement = (
        select(CampaignContact.status, func.count())
        .where(CampaignContact.campaign_id == campaign_id)
        .group_by(CampaignContact.status)
    )
    return {int(status): int(count) for status, count in await session.execute(statement)}


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
