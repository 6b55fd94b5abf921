"""The campaign runner (in the workers): it hands each running campaign's contacts to the outbox, paced.

Each step of a campaign runs in one transaction with the campaign's row locked (PostgreSQL: a second
worker skips it; SQLite: its write transaction holds the database). The step takes the next contacts not
sent yet, sends each as Broadcast Template Message would (its checks, its idempotency by `clientMessageId`,
`cmp-<campaign>-<contact>` unless the contact gave its own) at campaign priority, which every transactional
send overtakes in the outbox, and marks them IN_QUEUE with their message in the same transaction. So a
contact is sent at most once, however often its campaign is paused, resumed or started again or its
worker killed: a step either committed its messages and its contacts' marks, or neither.

Pacing: the step tops the channel's campaign sends in the outbox up to `queue_ahead_seconds` of the
channel's limit (dispatch holds the sends themselves to that limit), so the channel is never idle while a
campaign has contacts left, and a pause or a cancel takes effect within those seconds. Before each step the
campaign waits out the channel's quiet hours, stops at its `expiredDate`, and pauses itself when the
channel or the template can no longer send, or when too many of its recent sends failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.campaigns import repository
from openmmp.channels.limits import channel_limit
from openmmp.errors import AppError, Invalid
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.time import now_ms
from openmmp.kit.zones import quiet_until, zone
from openmmp.messages.service import messages
from openmmp.models import Campaign, CampaignContact, Channel, Company, Template
from openmmp.models.campaign import CampaignStatus
from openmmp.models.channel import SENDING_STATUSES
from openmmp.models.message import MessageStatus, Priority
from openmmp.models.template import TemplateStatus, TemplateType
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings
from openmmp.templates import flows
from openmmp.templates import service as templates
from openmmp.templates.broadcast import TemplateSubscriber, preflight, send_item

log = structlog.get_logger(__name__)

MAX_STEP = 1000
"""Contacts one step sends at most (one batch of sends, as Broadcast Template Message takes)."""


def client_message_id(campaign: Campaign, contact: CampaignContact) -> str:
    """The send's idempotency key: the contact's own, else one of the campaign and the contact."""
    return contact.client_message_id or f"cmp-{campaign.public_id}-{contact.id}"


def send_params(variables: Sequence[str], given: Mapping[str, Any]) -> dict[str, Any]:
    """The contact's parameters that the template takes: a contacts file's other columns are no concern of
    its sends. Invalid naming each variable the contact has no value for (`params.<name>`)."""
    params = {name: given[name] for name in variables if name in given}
    preflight(variables, [params], names=[""])
    return params


def _why(error: AppError) -> str:
    items = [f"{item.name}: {item.message}" if item.name else item.message for item in error.items]
    return "; ".join(items) or error.message


def _wire_why(errors: Sequence[dict[str, Any]]) -> str:
    return "; ".join(f"{e['name']}: {e['message']}" if e.get("name") else str(e["message"]) for e in errors)


class CampaignRunner:
    def __init__(
        self, db: Database, keyring: Keyring, settings: Settings, *, on_commit: Callable[[], None]
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.settings = settings
        self.on_commit = on_commit
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("campaign_round_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.campaigns.tick_seconds)

    async def run_once(self) -> int:
        """A step of each running campaign whose time has come; the contacts queued."""
        async with self.db.read_sessions() as session:
            due = await repository.due(session, now_ms())
        queued = 0
        for campaign_id in due:
            try:
                queued += await self.step(campaign_id)
            except Exception:
                log.exception("campaign_step_failed", campaign_id=campaign_id)
        if queued:
            self.on_commit()
        return queued

    async def step(self, campaign_id: int) -> int:
        """Queue the campaign's next contacts, as many as its channel's pace allows; the number queued."""
        async with self.db.write_sessions() as session, session.begin():
            campaign = await repository.lock(session, campaign_id, skip_locked=not self.db.is_sqlite)
            if campaign is None or campaign.status not in repository.RUNNING:
                return 0
            now = now_ms()
            if campaign.schedule_time is not None and campaign.schedule_time > now:
                return 0
            if campaign.expired_date is not None and now >= campaign.expired_date:
                left = await repository.left_to_send(session, campaign.id)
                _set(campaign, CampaignStatus.DONE, f"expired: {left} contacts were not sent", now)
                log.info("campaign_expired", campaign=campaign.public_id, not_sent=left)
                return 0
            channel = await session.get(Channel, campaign.channel_id)
            template = await session.get(Template, campaign.template_id)
            provider = REGISTRY.for_application(channel.application_id) if channel is not None else None
            if channel is None or provider is None or channel.status not in SENDING_STATUSES:
                return _pause(campaign, "the channel cannot send (it is not LAUNCH or ACCEPT)", now)
            if template is None or template.status != TemplateStatus.APPROVED:
                return _pause(campaign, "the template is no longer APPROVED", now)
            quiet = channel.settings.get("quietHours")
            if quiet:
                until = quiet_until(quiet["start"], quiet["end"], quiet["timeZone"], now)
                if until is not None:
                    local = dt.datetime.fromtimestamp(until / 1000, zone(quiet["timeZone"]))
                    campaign.reason = (
                        f"quiet hours of the channel until {local.isoformat(timespec='minutes')}"
                    )
                    return 0
            failing = await self._failing(session, campaign)
            if failing is not None:
                log.warning("campaign_auto_paused", campaign=campaign.public_id, reason=failing)
                return _pause(campaign, failing, now)
            limit = channel_limit(channel, provider, self.settings)
            ahead = math.ceil(limit.rate * self.settings.campaigns.queue_ahead_seconds + limit.burst)
            room = min(MAX_STEP, ahead - await repository.in_flight(session, campaign.company_id, channel.id))
            if room <= 0:
                return 0
            contacts = await repository.next_contacts(
                session, campaign.id, room, skip_locked=not self.db.is_sqlite
            )
            if not contacts:
                if await repository.left_to_send(session, campaign.id) == 0:
                    _set(campaign, CampaignStatus.DONE, None, now)
                    log.info("campaign_done", campaign=campaign.public_id)
                return 0
            await self._send(session, campaign, channel, template, contacts)
            if campaign.started_at is None:
                campaign.started_at = now
            _set(campaign, CampaignStatus.PROCESSING, None, now)
            return len(contacts)

    async def _failing(self, session: AsyncSession, campaign: Campaign) -> str | None:
        """Why the campaign should pause itself: too many of its recent sends failed; else None."""
        config = self.settings.campaigns
        if config.auto_pause_failure_rate >= 1:
            return None
        outcomes = await repository.recent_outcomes(session, campaign, config.auto_pause_window)
        settled = [s for s in outcomes if s != MessageStatus.PENDING]
        if len(settled) < config.auto_pause_min_sends:
            return None
        failed = sum(1 for s in settled if s == MessageStatus.FAIL)
        if failed / len(settled) < config.auto_pause_failure_rate:
            return None
        return (
            f"auto-paused: {failed} of the last {len(settled)} sends failed "
            f"(OPENMMP_CAMPAIGNS__AUTO_PAUSE_FAILURE_RATE {config.auto_pause_failure_rate:g})"
        )

    async def _send(
        self,
        session: AsyncSession,
        campaign: Campaign,
        channel: Channel,
        template: Template,
        contacts: list[CampaignContact],
    ) -> None:
        """Send `contacts` the template in this transaction; mark each IN_QUEUE with its message, or FAIL
        with why it cannot be sent (its parameters do not fit the template, its phone is not one the
        channel sends to, ...)."""
        company = await session.get(Company, campaign.company_id)
        assert company is not None  # the campaign's row references it
        subject = Subject(company.id, company.public_id, company.type, 0)
        variables = templates.variables_of(template)
        items: list[dict[str, Any]] = []
        sending: list[CampaignContact] = []
        params: list[dict[str, Any]] = []
        failed: dict[int, str] = {}
        for contact in contacts:
            try:
                given = send_params(variables, contact.params)
                subscriber = TemplateSubscriber.model_construct(
                    phone=contact.phone, params=given, client_message_id=client_message_id(campaign, contact)
                )
                items.append(send_item(template, subscriber, None, name=""))
            except Invalid as exc:
                failed[contact.id] = _why(exc)
                continue
            sending.append(contact)
            params.append(given)
        answers = await messages.broadcast_batch(
            session,
            self.keyring,
            subject,
            account_id=channel.public_id,
            items=items,
            priority=Priority.CAMPAIGN,
        )
        if template.type == TemplateType.CONVERSATION:
            await flows.start(
                session,
                self.keyring,
                subject,
                template=template,
                answers=answers,
                params=params,
            )
        queued: list[tuple[int, str]] = []
        for contact, answer in zip(sending, answers, strict=True):
            if "errors" in answer:
                failed[contact.id] = _wire_why(answer["errors"])
            else:
                queued.append((contact.id, answer["messageId"]))
        await repository.mark_queued(session, queued)
        await repository.mark_failed(session, failed)


def _set(campaign: Campaign, status: CampaignStatus, reason: str | None, now: int) -> None:
    campaign.status = int(status)
    campaign.reason = reason
    campaign.updated_at = now


def _pause(campaign: Campaign, reason: str, now: int) -> int:
    _set(campaign, CampaignStatus.PAUSED, reason, now)
    return 0
