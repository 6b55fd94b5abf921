"""A campaign's run (api.md §4.6): broadcast it, pause, resume and cancel it, send one contact its message.

Each change is made with the campaign's row locked, so it never crosses a runner's step (campaigns/
runner.py), which locks the row too: a pause committed here is seen by the next step, and no step is
half-way through when it is. The runner does the sending; these only change what it does next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.campaigns import repository
from openmmp.campaigns.runner import client_message_id, send_params
from openmmp.campaigns.schemas import (
    BulkCampaignBroadcastRequest,
    BulkCampaignBroadcastResponse,
    BulkCampaignContact,
    BulkCampaignConversationRequest,
    BulkCampaignConversationResponse,
)
from openmmp.campaigns.service import CampaignNotFound
from openmmp.errors import Conflict, ErrorCode, ErrorItem, Invalid
from openmmp.kit.crypto import Keyring
from openmmp.kit.ids import new_public_id
from openmmp.kit.phone import normalise_phone
from openmmp.kit.time import now_ms
from openmmp.kit.zones import local_time
from openmmp.messages.rendering import param_texts
from openmmp.messages.service import messages
from openmmp.models import Campaign, CampaignContact, Channel, Message, Template
from openmmp.models.campaign import BroadcastType, CampaignStatus, ContactStatus
from openmmp.models.message import CAUSES, MessageStatus
from openmmp.models.template import TemplateStatus, TemplateType
from openmmp.templates import flows
from openmmp.templates import service as templates
from openmmp.templates.broadcast import TemplateSubscriber, send_item


async def _own(session: AsyncSession, subject: Subject, public_id: str) -> Campaign:
    campaign = await repository.lock_own(session, subject, public_id)
    if campaign is None:
        raise CampaignNotFound("No such campaign")
    return campaign


def _status(campaign: Campaign) -> str:
    return CampaignStatus(campaign.status).name


def _schedule(request: BulkCampaignBroadcastRequest, now: int) -> int | None:
    if request.broadcast_type == BroadcastType.SEND_NOW:
        if request.schedule_time is not None:
            raise Invalid("SEND_NOW (2) takes no scheduleTime", name="scheduleTime")
        return None
    given = request.schedule_time
    if given is None:
        raise Invalid("required for SCHEDULER (1)", name="scheduleTime")
    if isinstance(given, str):
        try:
            given = local_time(given, request.time_zone or "UTC")
        except ValueError as exc:
            raise Invalid(str(exc), name="scheduleTime") from None
    if given <= now:
        raise Invalid("must be in the future", name="scheduleTime")
    return given


async def _add_inline(
    session: AsyncSession, campaign: Campaign, channel: Channel, given: Sequence[BulkCampaignContact]
) -> None:
    """The broadcast's own contacts, all or none: a phone that is not one is a 400 naming it."""
    region = channel.settings.get("defaultCountry")
    rows: list[dict[str, Any]] = []
    faults: list[ErrorItem] = []
    for n, contact in enumerate(given):
        try:
            phone = normalise_phone(contact.phone, region)
        except ValueError as exc:
            faults.append(ErrorItem(name=f"contacts[{n}].phone", code=ErrorCode.INVALID, message=str(exc)))
            continue
        params = param_texts(contact.params)
        rows.append({"phone": phone, "params": params, "client_message_id": contact.client_message_id})
    if faults:
        raise Invalid(f"{len(faults)} contacts are not phones; none was added", items=faults[:100])
    added = await repository.add_contacts(session, campaign.id, rows)
    campaign.contacts_total += added


def _answer(campaign: Campaign) -> BulkCampaignBroadcastResponse:
    assert campaign.job_id is not None
    return BulkCampaignBroadcastResponse(
        campaign_id=campaign.public_id,
        job_id=campaign.job_id,
        status=CampaignStatus(campaign.status),
        total_contact=campaign.contacts_total,
    )


async def broadcast(
    session: AsyncSession, subject: Subject, public_id: str, request: BulkCampaignBroadcastRequest
) -> BulkCampaignBroadcastResponse:
    """Start the campaign (STARTED): its contacts not sent yet go out now or at `scheduleTime`.

    A campaign already STARTED or PROCESSING answers with its run (the broadcast's contacts added to it);
    so does the same `requestId` again. A DONE campaign runs again for the contacts added since (those
    sent are never sent again). 409 for a PAUSED (resume it) or CANCELLED campaign; 400 naming
    `contacts` for a campaign without any."""
    campaign = await _own(session, subject, public_id)
    if request.request_id is not None and request.request_id == campaign.request_id:
        return _answer(campaign)
    if campaign.status == CampaignStatus.CANCELLED:
        raise Conflict("the campaign is CANCELLED", name="campaignId")
    if campaign.status == CampaignStatus.PAUSED:
        raise Conflict("the campaign is PAUSED: resume it", name="campaignId")
    now = now_ms()
    schedule = _schedule(request, now)
    if campaign.expired_date is not None and campaign.expired_date <= (schedule or now):
        raise Invalid("the campaign's expiredDate has passed by then", name="scheduleTime")
    if request.contacts:
        channel = await session.get(Channel, campaign.channel_id)
        assert channel is not None  # the campaign's row references it
        await _add_inline(session, campaign, channel, request.contacts)
    if campaign.contacts_total == 0:
        raise Invalid("the campaign has no contacts: upload them, or give contacts", name="contacts")
    if campaign.status in repository.RUNNING:
        return _answer(campaign)
    campaign.status = int(CampaignStatus.STARTED)
    campaign.broadcast_type = int(request.broadcast_type)
    campaign.schedule_time = schedule
    campaign.time_zone = request.time_zone
    campaign.job_id = new_public_id()
    campaign.request_id = request.request_id
    campaign.reason = None
    campaign.watch_from = await repository.last_queued(session, campaign.id)
    campaign.updated_at = now
    return _answer(campaign)


async def pause(session: AsyncSession, subject: Subject, public_id: str) -> Campaign:
    """STARTED or PROCESSING → PAUSED (a PAUSED one stays so); 409 for any other."""
    campaign = await _own(session, subject, public_id)
    if campaign.status == CampaignStatus.PAUSED:
        return campaign
    if campaign.status not in repository.RUNNING:
        raise Conflict(f"the campaign is {_status(campaign)}: only a running one pauses", name="campaignId")
    campaign.status = int(CampaignStatus.PAUSED)
    campaign.reason = "paused by the company"
    campaign.updated_at = now_ms()
    return campaign


async def resume(session: AsyncSession, subject: Subject, public_id: str) -> Campaign:
    """PAUSED → STARTED, its failure rate counted afresh (a running one stays so); 409 for any other."""
    campaign = await _own(session, subject, public_id)
    if campaign.status in repository.RUNNING:
        return campaign
    if campaign.status != CampaignStatus.PAUSED:
        raise Conflict(f"the campaign is {_status(campaign)}: only a PAUSED one resumes", name="campaignId")
    campaign.status = int(CampaignStatus.STARTED)
    campaign.reason = None
    campaign.watch_from = await repository.last_queued(session, campaign.id)
    campaign.updated_at = now_ms()
    return campaign


async def cancel(session: AsyncSession, subject: Subject, public_id: str) -> Campaign:
    """Any campaign not DONE → CANCELLED for good: its contacts not sent stay so (a CANCELLED one stays
    so); 409 for a DONE one."""
    campaign = await _own(session, subject, public_id)
    if campaign.status == CampaignStatus.CANCELLED:
        return campaign
    if campaign.status == CampaignStatus.DONE:
        raise Conflict("the campaign is DONE", name="campaignId")
    left = await repository.left_to_send(session, campaign.id)
    campaign.status = int(CampaignStatus.CANCELLED)
    campaign.reason = f"cancelled by the company: {left} contacts were not sent"
    campaign.updated_at = now_ms()
    return campaign


async def message(
    session: AsyncSession,
    keyring: Keyring,
    subject: Subject,
    public_id: str,
    request: BulkCampaignConversationRequest,
) -> BulkCampaignConversationResponse:
    """Send Bulk Contact Message: the campaign's template to one contact now, as a transactional send.

    The contact is the campaign's (added when new). A contact is sent once: one sent already (by this or
    by the campaign's run) answers with its message; one the run could not send (FAIL: its parameters did
    not fit) is tried again. 409 for a CANCELLED campaign."""
    campaign = await _own(session, subject, public_id)
    if campaign.status == CampaignStatus.CANCELLED:
        raise Conflict("the campaign is CANCELLED", name="campaignId")
    channel = await session.get(Channel, campaign.channel_id)
    template = await session.get(Template, campaign.template_id)
    # The campaign's row references both.
    assert channel is not None
    assert template is not None
    try:
        phone = normalise_phone(request.phone, channel.settings.get("defaultCountry"))
    except ValueError as exc:
        raise Invalid(str(exc), name="phone") from None
    contact = await repository.contact_by_phone(session, campaign.id, phone, lock=True)
    if contact is None:
        added = await repository.add_contacts(
            session,
            campaign.id,
            [{"phone": phone, "params": {}, "client_message_id": request.client_message_id}],
        )
        campaign.contacts_total += added
        contact = await repository.contact_by_phone(session, campaign.id, phone, lock=True)
        assert contact is not None
    if contact.message_id is None and contact.status in (ContactStatus.NOT_SEND, ContactStatus.FAIL):
        await _send_one(session, keyring, subject, campaign, channel, template, contact, request)
    sent = await session.get(Message, contact.message_id) if contact.message_id is not None else None
    if sent is None:
        raise Invalid(contact.error or "the contact was not sent", name="phone")
    status = MessageStatus(sent.status)
    return BulkCampaignConversationResponse(
        campaign_id=campaign.public_id,
        phone=contact.phone,
        message_id=sent.public_id,
        client_message_id=sent.client_message_id,
        status=int(status),
        cause=CAUSES[status],
        contact_status=repository.contact_status_of(status),
    )


async def _send_one(
    session: AsyncSession,
    keyring: Keyring,
    subject: Subject,
    campaign: Campaign,
    channel: Channel,
    template: Template,
    contact: CampaignContact,
    request: BulkCampaignConversationRequest,
) -> None:
    """Send the contact its message in this transaction (a 400 naming the parameter or field that does
    not fit, and nothing sent), and mark it IN_QUEUE with it."""
    if template.status != TemplateStatus.APPROVED:
        raise Invalid("the campaign's template is no longer APPROVED", name="campaignId")
    if request.params is not None:
        contact.params = param_texts(request.params)
    if request.client_message_id is not None and contact.client_message_id is None:
        contact.client_message_id = request.client_message_id
    params = send_params(templates.variables_of(template), contact.params)
    subscriber = TemplateSubscriber.model_construct(
        phone=contact.phone, params=params, client_message_id=client_message_id(campaign, contact)
    )
    item = send_item(template, subscriber, None, name="")
    [answer] = await messages.broadcast_batch(
        session, keyring, subject, account_id=channel.public_id, items=[item]
    )
    if "errors" in answer:
        items = [ErrorItem.model_validate(e) for e in answer["errors"]]
        raise Invalid(items[0].message, items=items)
    if template.type == TemplateType.CONVERSATION:
        await flows.start(session, keyring, subject, template=template, answers=[answer], params=[params])
    await repository.mark_queued(session, [(contact.id, answer["messageId"])])
    await session.refresh(contact)
