"""Rules for channels: credentials checked per application and sealed, webhook endpoint and secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.channels import repository
from openmmp.channels.credentials import validate_credentials
from openmmp.channels.schemas import ChannelSettings, CreateChannelRequest, EditChannelRequest
from openmmp.errors import NotFound
from openmmp.kit.crypto import Keyring, new_webhook_secret
from openmmp.models import Channel, Job
from openmmp.models.channel import ChannelStatus, WebhookStatus
from openmmp.providers.applications import Application
from openmmp.providers.base import Credentials
from openmmp.providers.registry import REGISTRY
from openmmp.webhooks.guard import check_target
from openmmp.webhooks.service import webhooks


class ChannelNotFound(NotFound):
    default_name = "accountId"


@dataclass(frozen=True)
class Saved:
    """A channel after a change, with the webhook secret in clear when this change created it."""

    channel: Channel
    new_webhook_secret: str | None = None


def _seal(keyring: Keyring, credentials: Credentials) -> str:
    return keyring.encrypt(json.dumps(credentials.model_dump(by_alias=True, exclude_none=True)))


def _settings(settings: ChannelSettings) -> dict[str, Any]:
    return settings.model_dump(by_alias=True, exclude_none=True)


def not_available_cause(application: Application) -> str:
    """The `cause` of a channel whose application cannot send yet (REQUEST until its provider lands)."""
    return f"Sending on {application.name} is {REGISTRY.unavailable_reason(application)}"


def initial_status(application: Application, *, sandbox: bool) -> tuple[ChannelStatus, str | None]:
    """Where a new channel (or one with new credentials) starts: REQUEST with the cause when its
    application cannot send yet; PROCESSING when its upstream must first learn our callback URL (a
    set-up job does that); LAUNCH otherwise."""
    provider = REGISTRY.for_application(application)
    if provider is None:
        return ChannelStatus.REQUEST, not_available_cause(application)
    if provider.needs_setup(sandbox=sandbox):
        return ChannelStatus.PROCESSING, None
    return ChannelStatus.LAUNCH, None


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
    ) -> Saved:
        """`allow_private_webhooks`: see webhooks.guard (sandbox or the operator's opt-in).

        The channel starts as `initial_status` says; a PROCESSING one gets its set-up job in the same
        transaction (channels/tasks.py).
        """
        credentials = validate_credentials(request.application_id, request.credentials)
        if request.webhook_url:
            await check_target(request.webhook_url, allow_private=allow_private_webhooks, name="webhookUrl")
        secret = new_webhook_secret() if request.webhook_url else None
        status, cause = initial_status(request.application_id, sandbox=sandbox)
        channel = Channel(
            company_id=subject.company_id,
            name=request.name,
            application_id=int(request.application_id),
            status=status,
            status_cause=cause,
            credentials=_seal(keyring, credentials),
            settings=_settings(request.settings),
            webhook_url=request.webhook_url,
            webhook_secret=keyring.encrypt(secret) if secret else None,
            webhook_status=WebhookStatus.ACTIVATED,
        )
        session.add(channel)
        await session.flush()
        if channel.status == ChannelStatus.PROCESSING:
            _queue_setup(session, channel)
        return Saved(channel, secret)

    async def get(self, session: AsyncSession, subject: Subject, *, public_id: str) -> Channel:
        channel = await repository.get(session, subject, public_id)
        if channel is None:
            raise ChannelNotFound("No such channel")
        return channel

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
    ) -> Saved:
        channel = await self.get(session, subject, public_id=public_id)
        if request.webhook_url is not None:
            await check_target(request.webhook_url, allow_private=allow_private_webhooks, name="webhookUrl")
        secret = None
        if request.name is not None:
            channel.name = request.name
        if request.credentials is not None:
            credentials = validate_credentials(Application(channel.application_id), request.credentials)
            channel.credentials = _seal(keyring, credentials)
            status, _ = initial_status(Application(channel.application_id), sandbox=sandbox)
            if status == ChannelStatus.PROCESSING:
                channel.status, channel.status_cause = status, None
                _queue_setup(session, channel)
        if request.settings is not None:
            channel.settings = {**channel.settings, **_settings(request.settings)}
        if request.webhook_url is not None:
            channel.webhook_url = request.webhook_url
            channel.webhook_status = WebhookStatus.ACTIVATED
            await webhooks.release_held(session, channel=channel)
            if channel.webhook_secret is None:
                secret = new_webhook_secret()
                channel.webhook_secret = keyring.encrypt(secret)
        await session.flush()
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


def open_credentials(keyring: Keyring, channel: Channel) -> dict[str, Any]:
    """The channel's credentials in clear (wire names), for adapters only. Never log the result."""
    opened: dict[str, Any] = json.loads(keyring.decrypt(channel.credentials))
    return opened


channels = ChannelService()
