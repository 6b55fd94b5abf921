"""Rules for channels: credentials checked per application and sealed, webhook endpoint and secret."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.channels import repository
from openmmp.channels.credentials import validate_credentials
from openmmp.channels.schemas import ChannelSettings, CreateChannelRequest, EditChannelRequest
from openmmp.companies import repository as companies
from openmmp.errors import AppError, BadRequest, Conflict, ErrorCode, Forbidden, Invalid, NotFound
from openmmp.kit.crypto import Keyring, new_webhook_secret
from openmmp.models import Channel, Job
from openmmp.models.channel import ChannelStatus, WebhookStatus
from openmmp.providers.applications import Application
from openmmp.providers.base import Credentials
from openmmp.providers.registry import REGISTRY
from openmmp.webhooks.guard import check_target, check_upstream_targets
from openmmp.webhooks.service import webhooks

_CAUSE_LENGTH = 500


class ChannelNotFound(NotFound):
    default_name = "accountId"


class CompanyNotFound(NotFound):
    default_name = "companyId"


class IdentityTaken(Conflict):
    """The upstream account is another channel's (whose, is not said)."""


class UpstreamRefused(BadRequest):
    """The upstream refused what the platform asked on the company's behalf (its words in the message)."""

    default_name = "upstream"


class UpstreamUnavailable(AppError):
    status_code = 502
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_name = "upstream"


class ChannelExists(Conflict):
    """A channel with the public id chosen ahead (`ChannelService.create(public_id=...)`) exists."""

    default_name = "publicId"


async def _owner(session: AsyncSession, subject: Subject, company_public_id: str | None) -> tuple[int, bool]:
    """(company id the channel is for, whether the partner acts for it). A partner may create a channel
    for a company it onboarded; any other `companyId` looks absent."""
    if company_public_id is None:
        return subject.company_id, False
    company = await companies.get_by_public_id(session, company_public_id) if subject.is_partner else None
    if company is None or company.partner_id != subject.company_id:
        raise CompanyNotFound("No such company")
    return company.id, True


def identity_fingerprint(keyring: Keyring, application: Application, credentials: Credentials) -> str | None:
    """The keyed fingerprint of the upstream account `credentials` act as, or None when there is none."""
    identity = credentials.identity()
    return None if identity is None else fingerprint_of(keyring, application, identity)


def fingerprint_of(keyring: Keyring, application: Application, identity: str) -> str:
    """The keyed fingerprint of an upstream account of `application` (`Credentials.identity`)."""
    return keyring.fingerprint(f"{int(application)}:{identity}")


async def _identity(
    session: AsyncSession,
    keyring: Keyring,
    application: Application,
    credentials: Credentials,
    *,
    channel: Channel | None,
    operator: bool,
) -> str | None:
    """The fingerprint of the upstream account `credentials` act as, after checking it may be bound.

    `operator`: the operator side binds it (a partner key, or the sandbox's own playground). An identity
    the operator assigns (Viber BM service ids) can only be bound that way; any identity held by another
    channel is a 409, before anything is stored or asked of the upstream.
    """
    fingerprint = identity_fingerprint(keyring, application, credentials)
    if fingerprint is None:
        return None
    if channel is not None and channel.identity_fingerprint == fingerprint:
        return fingerprint  # the same account as before: nothing new is bound
    name = credentials.identity_name()
    if credentials.operator_assigned and not operator:
        raise Forbidden("assigned by the operator: your partner creates such channels for you", name=name)
    holder = await repository.by_fingerprint(session, fingerprint)
    if holder is not None and (channel is None or holder.id != channel.id):
        raise IdentityTaken("already used by another channel", name=name)
    return fingerprint


async def _flush_claiming(session: AsyncSession, name: str) -> None:
    """Flush; a concurrent claim of the same upstream account (the unique index) is the same 409, and so
    is a concurrent creation with the same chosen public id."""
    try:
        await session.flush()
    except IntegrityError as exc:
        if "identity_fingerprint" in str(exc.orig):
            raise IdentityTaken("already used by another channel", name=name) from exc
        if "public_id" in str(exc.orig):
            raise ChannelExists("a channel with this public id exists") from exc
        raise


@dataclass(frozen=True)
class Saved:
    """A channel after a change, with the webhook secret in clear when this change created it."""

    channel: Channel
    new_webhook_secret: str | None = None


def _given_by_company(credentials: Credentials) -> None:
    """Refuse credentials from a company that would have the operator's own account act for it."""
    missing = credentials.operator_acts()
    if missing:
        raise Invalid(
            "required: without it the operator's own account would act for the channel",
            name=f"credentials.{missing}",
        )


def seal(keyring: Keyring, credentials: Credentials) -> str:
    return keyring.encrypt(json.dumps(credentials.model_dump(by_alias=True, exclude_none=True)))


def _settings(settings: ChannelSettings) -> dict[str, Any]:
    return settings.model_dump(by_alias=True, exclude_none=True)


def waits_for_its_provider(application: Application) -> ColumnElement[bool]:
    """Channels of `application` that an earlier version held in REQUEST because it could not send on
    the application yet ("Sending on ZALO is not available in this version of OpenMMP yet"), whatever
    reason that version gave."""
    return (Channel.status == ChannelStatus.REQUEST) & Channel.status_cause.startswith(
        f"Sending on {application.name} is ", autoescape=True
    )


def initial_status(application: Application, *, sandbox: bool) -> ChannelStatus:
    """Where a new channel (or one with new credentials) starts: PROCESSING when its upstream must first
    learn our callback URL (a set-up job does that); LAUNCH otherwise."""
    if REGISTRY.of(application).needs_setup(sandbox=sandbox):
        return ChannelStatus.PROCESSING
    return ChannelStatus.LAUNCH


def _queue_setup(session: AsyncSession, channel: Channel) -> None:
    session.add(Job(kind="channel_setup", company_id=channel.company_id, channel_id=channel.id))


class ChannelService:
    async def create(
        self,
        session: AsyncSession,
        keyring: Keyring,
        subject: Subject,
        *,
        request: CreateChannelRequest,
        allow_private_webhooks: bool = False,
        sandbox: bool = False,
        allowed_hosts: Collection[str] = (),
        public_id: str | None = None,
        by_platform: bool = False,
    ) -> Saved:
        """`allow_private_webhooks`: see webhooks.guard (sandbox or the operator's opt-in);
        `allowed_hosts`: private upstream hosts the operator allows in credentials (outside sandbox mode,
        where they are used); `public_id`: the channel's, chosen ahead (an onboarding token names the
        channel it makes): `ChannelExists` (409) when a channel has it, so it is made once at most;
        `by_platform`: the platform made the credentials itself (`Provider.create_agent`), so they may
        leave the operator's own account to act for the channel (`Credentials.operator_acts`).

        The channel starts as `initial_status` says; a PROCESSING one gets its set-up job in the same
        transaction (channels/tasks.py).
        """
        if public_id is not None and await repository.public_id_taken(session, public_id):
            raise ChannelExists("a channel with this public id exists")
        company_id, for_company = await _owner(session, subject, request.company_id)
        credentials = validate_credentials(request.application_id, request.credentials)
        if not by_platform:
            _given_by_company(credentials)
        if not sandbox:
            await check_upstream_targets(credentials, allowed_hosts=allowed_hosts)
        fingerprint = await _identity(
            session,
            keyring,
            request.application_id,
            credentials,
            channel=None,
            operator=for_company or sandbox,
        )
        if request.webhook_url:
            await check_target(request.webhook_url, allow_private=allow_private_webhooks, name="webhookUrl")
        secret = new_webhook_secret() if request.webhook_url else None
        status = initial_status(request.application_id, sandbox=sandbox)
        channel = Channel(
            company_id=company_id,
            name=request.name,
            application_id=int(request.application_id),
            status=status,
            credentials=seal(keyring, credentials),
            identity_fingerprint=fingerprint,
            settings=_settings(request.settings),
            webhook_url=request.webhook_url,
            webhook_secret=keyring.encrypt(secret) if secret else None,
            webhook_status=WebhookStatus.ACTIVATED,
        )
        if public_id is not None:
            channel.public_id = public_id
        session.add(channel)
        await _flush_claiming(session, credentials.identity_name() if fingerprint else "credentials")
        if channel.status == ChannelStatus.PROCESSING:
            _queue_setup(session, channel)
        return Saved(channel, secret)

    async def get(self, session: AsyncSession, subject: Subject, *, public_id: str) -> Channel:
        channel = await repository.get(session, subject, public_id)
        if channel is None:
            raise ChannelNotFound("No such channel")
        return channel

    async def all_of(self, session: AsyncSession, subject: Subject) -> list[Channel]:
        return await repository.all_of(session, subject)

    async def list(
        self, session: AsyncSession, subject: Subject, *, application_id: int | None, page: int, size: int
    ) -> tuple[int, list[Channel]]:
        return await repository.page(
            session, subject, application_id=application_id, offset=(page - 1) * size, limit=size
        )

    async def edit(
        self,
        session: AsyncSession,
        keyring: Keyring,
        subject: Subject,
        *,
        public_id: str,
        request: EditChannelRequest,
        allow_private_webhooks: bool = False,
        sandbox: bool = False,
        allowed_hosts: Collection[str] = (),
    ) -> Saved:
        channel = await self.get(session, subject, public_id=public_id)
        if request.webhook_url is not None:
            await check_target(request.webhook_url, allow_private=allow_private_webhooks, name="webhookUrl")
        secret = None
        if request.name is not None:
            channel.name = request.name
        claimed = "credentials"
        if request.credentials is not None:
            application = Application(channel.application_id)
            credentials = validate_credentials(application, request.credentials)
            _given_by_company(credentials)
            if not sandbox:
                await check_upstream_targets(credentials, allowed_hosts=allowed_hosts)
            channel.identity_fingerprint = await _identity(
                session, keyring, application, credentials, channel=channel, operator=sandbox
            )
            if channel.identity_fingerprint is not None:
                claimed = credentials.identity_name()
            channel.credentials = seal(keyring, credentials)
            status = initial_status(Application(channel.application_id), sandbox=sandbox)
            if status == ChannelStatus.PROCESSING:
                channel.status, channel.status_cause = status, None
                _queue_setup(session, channel)
            elif status == ChannelStatus.LAUNCH and channel.status == ChannelStatus.REJECT:
                # The upstream refused the old credentials (an SMSC refusing the bind): try the new ones.
                channel.status, channel.status_cause = status, None
        if request.settings is not None:
            channel.settings = {**channel.settings, **_settings(request.settings)}
        if request.webhook_url is not None:
            channel.webhook_url = request.webhook_url
            channel.webhook_status = WebhookStatus.ACTIVATED
            await webhooks.release_held(session, channel=channel)
            if channel.webhook_secret is None:
                secret = new_webhook_secret()
                channel.webhook_secret = keyring.encrypt(secret)
        await _flush_claiming(session, claimed)
        return Saved(channel, secret)

    async def set_webhook(
        self,
        session: AsyncSession,
        keyring: Keyring,
        subject: Subject,
        *,
        public_id: str,
        url: str,
        secret: str | None,
        rotate_secret: bool = False,
        allow_private_webhooks: bool = False,
    ) -> tuple[Channel, str]:
        """Point the channel's events at `url`, signed with `secret`; without one the channel keeps its
        secret (a new one when it has none or `rotate_secret`). Returns the secret in force.

        Also (re-)activates the endpoint: a FAILED endpoint's HELD deliveries go out again.
        """
        channel = await self.get(session, subject, public_id=public_id)
        await check_target(url, allow_private=allow_private_webhooks, name="url")
        if secret is None and channel.webhook_secret is not None and not rotate_secret:
            secret = keyring.decrypt(channel.webhook_secret)
        secret = secret or new_webhook_secret()
        channel.webhook_url = url
        channel.webhook_secret = keyring.encrypt(secret)
        channel.webhook_status = WebhookStatus.ACTIVATED
        await webhooks.release_held(session, channel=channel)
        await session.flush()
        return channel, secret


async def change_status(
    session: AsyncSession,
    channel: Channel,
    status: ChannelStatus,
    cause: str | None,
    *,
    timestamp_ms: int | None = None,
) -> bool:
    """Record the channel's new state, as its upstream reports it, and tell the company with a `type: 4`
    webhook (api.md §5.3); returns False, and tells nobody, when nothing changed."""
    cause = cause[:_CAUSE_LENGTH] if cause else None
    if channel.status == status and channel.status_cause == cause:
        return False
    channel.status, channel.status_cause = int(status), cause
    await session.flush()
    await webhooks.enqueue_state(
        session,
        channel=channel,
        event_type=4,
        kind="channel",
        public_id=channel.public_id,
        status=int(status),
        cause=cause,
        timestamp_ms=timestamp_ms,
    )
    return True


def open_credentials(keyring: Keyring, channel: Channel) -> dict[str, Any]:
    """The channel's credentials in clear (wire names), for adapters only. Never log the result."""
    opened: dict[str, Any] = json.loads(keyring.decrypt(channel.credentials))
    return opened


channels = ChannelService()
