"""Channels whose upstream account the platform runs for the company (`Provider.manages_agents`: RBM agents).

The company describes its account (a profile) and the platform, as the upstream's partner, creates it,
edits it, invites test devices, asks for the brand's verification and for a launch per region, and says
which phones the account reaches. Everything here goes through the provider contract, so it knows no
upstream by name.

Upstream calls never run inside a database transaction: the channel is read in a short read session, the
upstream is asked, and what changed is written in a short write session (on SQLite a write transaction
holds the database's only write lock). A state the upstream reports (launched, suspended, ...) changes the
channel's status through `change_status`, which tells the company with a `type: 4` webhook exactly as a
state change arriving in a callback does.

An account made upstream cannot be deleted there (RBM agents cannot), so whatever can refuse the new
channel is checked before the upstream is asked, and once it has made the account the channel is made
whatever else happens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from openmmp.api_keys.auth import Subject
from openmmp.channels import repository
from openmmp.channels.schemas import (
    ChannelSettings,
    CreateChannelRequest,
    EditChannelRequest,
)
from openmmp.channels.service import (
    ChannelNotFound,
    Saved,
    UpstreamRefused,
    UpstreamUnavailable,
    change_status,
    channels,
    open_credentials,
)
from openmmp.errors import Invalid
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.phone import normalise_phone
from openmmp.models import BackgroundTask, Channel
from openmmp.models.channel import ChannelStatus
from openmmp.providers.base import (
    AgentState,
    PhoneCapabilities,
    Provider,
    ProviderContext,
    ProviderError,
    TesterResult,
)
from openmmp.tasks import service as tasks
from openmmp.webhooks.guard import check_target

T = TypeVar("T")

NOT_LAUNCHED_CAUSE = "not launched yet: reaches its test devices only"
PHONE_CHECK = "phone_check"
"""The background task that checks which phones a channel reaches (channels/phone_check.py)."""


@dataclass(frozen=True)
class AgentSpec:
    """What CreateOrEditChannelRequest asks for: the channel, and the account's profile (wire names)."""

    name: str
    profile: Mapping[str, Any]
    webhook_url: str | None
    settings: ChannelSettings


@dataclass(frozen=True)
class AgentChannel:
    """A channel of the provider's application, with its credentials in clear (never log them)."""

    channel: Channel
    credentials: dict[str, Any]


async def upstream(call: Awaitable[T], *, field_prefix: str = "") -> T:
    """The upstream's answer, or the API error that says what went wrong: a ValueError("<field>: ...")
    names the field at fault (400), a final refusal is a 400 in the upstream's words, an upstream that
    could not be reached a 502."""
    try:
        return await call
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        if not message:
            field, message = "", field
        raise Invalid(message or "not accepted", name=f"{field_prefix}{field}".rstrip(".") or None) from None
    except ProviderError as exc:
        if exc.retryable:
            raise UpstreamUnavailable(f"the upstream could not be reached: {exc}") from None
        raise UpstreamRefused(str(exc)) from None


class Agents:
    """The agent management of one provider (one per provider that `manages_agents`)."""

    def __init__(self, provider: Provider) -> None:
        assert provider.manages_agents
        self.provider = provider

    async def load(self, db: Database, keyring: Keyring, subject: Subject, public_id: str) -> AgentChannel:
        """The company's channel of this provider's application; 404 for any other channel."""
        async with db.read_sessions() as session, session.begin():
            channel = await repository.get(session, subject, public_id)
        if channel is None or channel.application_id != int(self.provider.application):
            raise ChannelNotFound(f"No such {self.provider.application.name} channel")
        return AgentChannel(channel, open_credentials(keyring, channel))

    async def record(self, db: Database, channel: Channel, state: AgentState) -> Channel:
        """Bring the channel's status in line with `state` (a `type: 4` webhook when it changes)."""
        async with db.write_sessions() as session, session.begin():
            fresh = await session.get(Channel, channel.id)
            if fresh is None:
                raise ChannelNotFound(f"No such {self.provider.application.name} channel")
            await change_status(session, fresh, ChannelStatus[state.status], state.cause)
            return fresh

    async def create(
        self,
        db: Database,
        keyring: Keyring,
        subject: Subject,
        ctx: ProviderContext,
        spec: AgentSpec,
        *,
        allow_private_webhooks: bool,
    ) -> Saved:
        if spec.webhook_url:
            await check_target(spec.webhook_url, allow_private=allow_private_webhooks, name="webhookUrl")
        credentials = await upstream(self.provider.create_agent(ctx, spec.profile), field_prefix="agent.")
        request = CreateChannelRequest(
            name=spec.name,
            application_id=self.provider.application,
            credentials=credentials,
            webhook_url=spec.webhook_url,
            settings=spec.settings,
        )
        async with db.write_sessions() as session, session.begin():
            saved = await channels.create(
                session,
                keyring,
                subject,
                request=request,
                allow_private_webhooks=allow_private_webhooks,
                sandbox=ctx.sandbox,
                by_platform=True,
            )
            if saved.channel.status in (ChannelStatus.LAUNCH, ChannelStatus.PROCESSING):
                saved.channel.status = int(ChannelStatus.ACCEPT)
                saved.channel.status_cause = NOT_LAUNCHED_CAUSE
        return saved

    async def edit(
        self,
        db: Database,
        keyring: Keyring,
        subject: Subject,
        ctx: ProviderContext,
        public_id: str,
        spec: AgentSpec,
        *,
        allow_private_webhooks: bool,
    ) -> Saved:
        """The profile as a whole replaces the account's upstream; name and settings change as Edit a
        channel changes them (a webhook URL only when given)."""
        found = await self.load(db, keyring, subject, public_id)
        if spec.webhook_url:
            await check_target(spec.webhook_url, allow_private=allow_private_webhooks, name="webhookUrl")
        await upstream(self.provider.edit_agent(ctx, found.credentials, spec.profile), field_prefix="agent.")
        changes: dict[str, Any] = {"name": spec.name, "settings": spec.settings}
        if spec.webhook_url is not None:
            changes["webhook_url"] = spec.webhook_url
        async with db.write_sessions() as session, session.begin():
            return await channels.edit(
                session,
                keyring,
                subject,
                public_id=public_id,
                request=EditChannelRequest(**changes),
                allow_private_webhooks=allow_private_webhooks,
                sandbox=ctx.sandbox,
            )

    async def state(
        self, db: Database, found: AgentChannel, ctx: ProviderContext
    ) -> tuple[Channel, AgentState]:
        """The account's state asked of the upstream now, recorded on the channel."""
        state = await upstream(self.provider.agent_state(ctx, found.credentials))
        return await self.record(db, found.channel, state), state

    async def add_testers(
        self, found: AgentChannel, ctx: ProviderContext, phones: Sequence[str]
    ) -> list[TesterResult]:
        normalised = list(dict.fromkeys(phones_of(found.channel, phones, field="phones")))
        return await upstream(self.provider.add_testers(ctx, found.credentials, normalised))

    async def capabilities(self, found: AgentChannel, ctx: ProviderContext, phone: str) -> PhoneCapabilities:
        try:
            normalised = normalise_phone(phone, found.channel.settings.get("defaultCountry"))
        except ValueError as exc:
            raise Invalid(str(exc), name="phone") from None
        return await upstream(self.provider.capabilities(ctx, found.credentials, normalised))

    async def check_phones(self, db: Database, found: AgentChannel, phones: Sequence[str]) -> BackgroundTask:
        """Queue the check of `phones` as a background task; its result file has a row per phone, in the
        order given, a phone that is not a valid number included (with why)."""
        region = found.channel.settings.get("defaultCountry")
        checked: list[list[str]] = []
        for raw in phones:
            try:
                checked.append([normalise_phone(raw, region)])
            except ValueError as exc:
                checked.append([raw, str(exc)])
        async with db.write_sessions() as session, session.begin():
            return await tasks.create(
                session,
                company_id=found.channel.company_id,
                channel_id=found.channel.id,
                type=PHONE_CHECK,
                params={"phones": checked},
                total=len(checked),
            )


def phones_of(channel: Channel, phones: Sequence[str], *, field: str) -> list[str]:
    """`phones` in E.164 digits (national numbers in the channel's default country); 400 naming the first
    that is not a valid number (`field[i]`)."""
    region = channel.settings.get("defaultCountry")
    normalised = []
    for index, raw in enumerate(phones):
        try:
            normalised.append(normalise_phone(raw, region))
        except ValueError as exc:
            raise Invalid(str(exc), name=f"{field}[{index}]") from None
    return normalised
