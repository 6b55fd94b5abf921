"""All SQL about templates. Tenant reads start from `readable(subject)`: the choke point.

Reads answer a template with its channel's public id (the `accountId` of the wire), None for a template
that serves every channel of its application. Three reads are not a company's own: a partner's, of the
templates of the companies it onboarded (`reviewable`); the operator's on the machine (`by_public_id`,
`by_status`); and a callback's, of the template an upstream's verdict names (`by_upstream_id`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Select, func, or_, select

from openmmp.kit.ids import canonical_public_id
from openmmp.models import Channel, Company, ProviderEvent, Template
from openmmp.models.message import EventOutcome
from openmmp.models.template import TemplateStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.auth import Subject

Shown = tuple[Template, str | None]
"""A template and its channel's public id (None: it serves every channel of its application)."""


def _shown() -> Select[Template, str]:
    """Templates with their channel's public id (NULL, by the outer join, for those without a channel)."""
    return select(Template, Channel.public_id).outerjoin(Channel, Channel.id == Template.channel_id)


def readable(subject: Subject) -> Select[Template, str]:
    return _shown().where(Template.company_id == subject.company_id)


async def _one(session: AsyncSession, statement: Select[Template, str]) -> Shown | None:
    found = (await session.execute(statement)).first()
    return None if found is None else (found[0], found[1])


async def get(session: AsyncSession, subject: Subject, public_id: str) -> Shown | None:
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    return await _one(session, readable(subject).where(Template.public_id == canonical))


async def newest(session: AsyncSession, subject: Subject, *, offset: int, limit: int) -> list[Shown]:
    """The company's templates, newest first, whatever their status."""
    statement = readable(subject).order_by(Template.id.desc()).offset(offset).limit(limit)
    return [(row[0], row[1]) for row in await session.execute(statement)]


async def approved_page(
    session: AsyncSession,
    subject: Subject,
    *,
    channel: Channel | None,
    application_id: int | None,
    offset: int,
    limit: int,
) -> tuple[int, list[Shown]]:
    """The company's APPROVED templates, oldest first; with `channel`, those usable on it (its own, and
    its application's that have no channel)."""
    statement = readable(subject).where(Template.status == int(TemplateStatus.APPROVED))
    if channel is not None:
        statement = statement.where(
            Template.application_id == channel.application_id,
            or_(Template.channel_id.is_(None), Template.channel_id == channel.id),
        )
    if application_id is not None:
        statement = statement.where(Template.application_id == application_id)
    total = (await session.execute(select(func.count()).select_from(statement.subquery()))).scalar_one()
    rows = await session.execute(statement.order_by(Template.id).offset(offset).limit(limit))
    return total, [(row[0], row[1]) for row in rows]


async def reviewable(session: AsyncSession, subject: Subject, public_id: str) -> Shown | None:
    """A template of a company the partner `subject` onboarded; None for any other (and for any template
    when `subject` is no partner)."""
    canonical = canonical_public_id(public_id)
    if canonical is None or not subject.is_partner:
        return None
    statement = (
        _shown()
        .join(Company, Company.id == Template.company_id)
        .where(Company.partner_id == subject.company_id, Template.public_id == canonical)
    )
    return await _one(session, statement)


async def by_public_id(session: AsyncSession, public_id: str) -> Shown | None:
    """Any company's template: only for the operator's CLI, never for an API caller."""
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    return await _one(session, _shown().where(Template.public_id == canonical))


async def by_status(
    session: AsyncSession, status: TemplateStatus | None, *, limit: int
) -> list[tuple[Template, str | None, str]]:
    """Every company's templates (of one `status`), oldest first, with their channel's and company's
    public ids: only for the operator's CLI."""
    statement = (
        select(Template, Channel.public_id, Company.public_id)
        .outerjoin(Channel, Channel.id == Template.channel_id)
        .join(Company, Company.id == Template.company_id)
    )
    if status is not None:
        statement = statement.where(Template.status == int(status))
    rows = await session.execute(statement.order_by(Template.id).limit(limit))
    return [(row[0], row[1], row[2]) for row in rows]


async def by_upstream_id(
    session: AsyncSession, *, company_id: int, application_id: int, upstream_id: str
) -> Template | None:
    """The company's template that the upstream of `application_id` knows as `upstream_id`: what a verdict
    arriving on one of the company's channels is about. Another company's never matches."""
    statement = select(Template).where(
        Template.application_id == application_id,
        Template.upstream_id == upstream_id,
        Template.company_id == company_id,
    )
    return (await session.execute(statement.order_by(Template.id.desc()).limit(1))).scalar_one_or_none()


async def last_event_id(session: AsyncSession) -> int:
    """The id of the last callback event recorded (0 before any): those recorded later have greater ids,
    whichever API node received them and whatever its clock says."""
    return int(await session.scalar(select(func.max(ProviderEvent.id))) or 0)


async def template_events(
    session: AsyncSession, *, company_id: int, application_id: int, after: int
) -> list[str]:
    """The raw bodies of template callbacks recorded after the event `after` (`last_event_id`) on the
    company's channels of `application_id`, in arrival order: an event among them may have overtaken the
    commit of the submission it is about."""
    statement = (
        select(ProviderEvent.raw)
        .join(Channel, Channel.id == ProviderEvent.channel_id)
        .where(
            Channel.company_id == company_id,
            Channel.application_id == application_id,
            ProviderEvent.outcome == EventOutcome.TEMPLATE,
            ProviderEvent.id > after,
        )
        .order_by(ProviderEvent.id)
    )
    return list((await session.execute(statement)).scalars())
