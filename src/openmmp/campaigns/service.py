"""Bulk campaigns (api.md §4.6): create, read, list; their contacts come from imports (campaigns/imports.py).

A campaign sends one APPROVED template of one of the company's channels. It is created PENDING, gets its
contacts, then is broadcast. Everything here is the company's own: another company's campaign is a 404,
as one that does not exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.campaigns import repository
from openmmp.campaigns.schemas import (
    PROGRESS_FIELDS,
    BulkCampaign,
    BulkCampaignChannelResponse,
    BulkCampaignProgress,
    CreateBulkCampaignRequest,
)
from openmmp.channels.limits import channel_limit
from openmmp.channels.service import ChannelNotFound, channels
from openmmp.errors import Invalid, NotFound
from openmmp.kit.time import now_ms
from openmmp.models import Campaign, Channel
from openmmp.models.campaign import CampaignStatus, CampaignType
from openmmp.models.template import TemplateType
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings
from openmmp.templates import service as templates


class CampaignNotFound(NotFound):
    default_name = "campaignId"


@dataclass(frozen=True)
class Shown:
    """A campaign with the public ids of its channel and template."""

    campaign: Campaign
    account_id: str
    template_id: str


async def create(session: AsyncSession, subject: Subject, request: CreateBulkCampaignRequest) -> Shown:
    """A new PENDING campaign on the company's channel, with an APPROVED template of it whose type is the
    campaign's (a CONVERSATION campaign runs the template's flow with each contact)."""
    [target] = request.channels
    try:
        channel = await channels.get(session, subject, public_id=target.account_id)
    except ChannelNotFound:
        raise ChannelNotFound("No such channel", name="channels[0].accountId") from None
    try:
        template = await templates.sendable(session, subject, public_id=target.template_id, channel=channel)
    except Invalid as exc:
        raise Invalid(exc.items[0].message, name="channels[0].templateId") from None
    except NotFound:
        raise CampaignNotFound("No such template", name="channels[0].templateId") from None
    if TemplateType(template.type).value != CampaignType(request.type).value:
        wanted = CampaignType(request.type).name
        raise Invalid(f"the template is not {wanted}, as the campaign is", name="channels[0].templateId")
    now = now_ms()
    if request.expired_date is not None and request.expired_date <= now:
        raise Invalid("must be in the future", name="expiredDate")
    campaign = Campaign(
        company_id=subject.company_id,
        channel_id=channel.id,
        template_id=template.id,
        name=request.name,
        type=int(request.type),
        category=request.category,
        expired_date=request.expired_date,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    await session.flush()
    return Shown(campaign, channel.public_id, template.public_id)


async def get(session: AsyncSession, subject: Subject, public_id: str) -> Shown:
    campaign = await repository.get(session, subject, public_id)
    if campaign is None:
        raise CampaignNotFound("No such campaign")
    [(account_id, template_id)] = (await repository.sending_on(session, [campaign])).values()
    return Shown(campaign, account_id, template_id)


async def page(
    session: AsyncSession,
    subject: Subject,
    *,
    name: str | None,
    status: int | None,
    type_: int | None,
    page: int,
    size: int,
) -> tuple[int, list[Shown]]:
    total, found = await repository.page(
        session, subject, name=name, status=status, type_=type_, offset=(page - 1) * size, limit=size
    )
    on = await repository.sending_on(session, found)
    return total, [Shown(c, *on[c.id]) for c in found]


async def progress(session: AsyncSession, campaign: Campaign, settings: Settings) -> BulkCampaignProgress:
    """The contacts counted per status (a queued one in its message's) and, while the campaign runs or
    waits for its time, the rate it is sent at and the time the contacts left take at that rate."""
    counts = await repository.progress_counts(session, campaign.id)
    by_field = {
        PROGRESS_FIELDS[status]: count for status, count in counts.items() if status in PROGRESS_FIELDS
    }
    shown = BulkCampaignProgress(total=sum(counts.values()), **by_field)
    channel = await session.get(Channel, campaign.channel_id)
    provider = REGISTRY.for_application(channel.application_id) if channel is not None else None
    if channel is None or provider is None:
        return shown
    rate = channel_limit(channel, provider, settings).rate
    shown.rate_per_second = round(rate, 3)
    if campaign.status in repository.RUNNING:
        waiting = max(0, (campaign.schedule_time or 0) - now_ms()) / 1000
        shown.eta_seconds = math.ceil(waiting + (shown.not_send + shown.in_queue) / rate)
    return shown


def response(shown: Shown, progress: BulkCampaignProgress | None = None) -> BulkCampaign:
    campaign = shown.campaign
    return BulkCampaign(
        public_id=campaign.public_id,
        name=campaign.name,
        type=CampaignType(campaign.type),
        category=campaign.category,
        status=CampaignStatus(campaign.status),
        cause=CampaignStatus(campaign.status).name,
        channels=[BulkCampaignChannelResponse(account_id=shown.account_id, template_id=shown.template_id)],
        broadcast_type=campaign.broadcast_type,
        schedule_time=campaign.schedule_time,
        expired_date=campaign.expired_date,
        total_contact=campaign.contacts_total,
        job_id=campaign.job_id,
        time_zone=campaign.time_zone,
        started_date=campaign.started_at,
        reason=campaign.reason,
        progress=progress,
        created_date=campaign.created_at,
        updated_date=campaign.updated_at,
    )
