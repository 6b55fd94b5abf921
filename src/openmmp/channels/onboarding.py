"""Channels made through their upstream's sign-up flow (`Provider.onboarding`, e.g. WhatsApp's Embedded
Signup), so that a company never handles the channel's credentials itself.

1. `issue`: a company's key asks for a token. The token names that key, the application, the new
   channel's name and webhook URL, the public id the channel will get, and when it expires
   (`TOKEN_TTL_MS`). It is sealed with the server's token key (`Keyring.seal_token`): opaque to whoever
   holds it, unreadable once a bit of it changes, and stored nowhere. With it comes the provider's
   sign-up page (`Provider.onboarding_url`), which hands it back as `state` when it sends the admin's
   browser to `{public_url}/onboard/{provider}/callback`.
2. `finish`, on that callback: opens the token, checks that its key still stands, lets the provider
   finish upstream (`Provider.complete_onboarding`), and makes the channel through the channels service
   as `POST /api/v1/channel` would (credentials checked, one channel per upstream account, webhook URL
   checked, set-up job, status), with the public id the token names.

A token makes one channel at most: public ids are unique, so a second use is refused (409) before anything
is asked upstream, and of two uses at once one makes the channel and the other gets the 409 (whatever the
second sign-up did upstream is left unused). A key revoked since, or a company no longer active, makes
its tokens worthless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from openmmp.api_keys.auth import Subject, subject_of_key
from openmmp.channels import repository
from openmmp.channels.schemas import ChanelOnboardGenerateTokenRequest, CreateChannelRequest
from openmmp.channels.service import (
    ChannelExists,
    Saved,
    UpstreamRefused,
    UpstreamUnavailable,
    channels,
)
from openmmp.errors import Conflict, Invalid, NotFound, Unauthenticated
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.http import HttpClient
from openmmp.kit.ids import new_public_id
from openmmp.kit.time import now_ms
from openmmp.providers.applications import Application
from openmmp.providers.base import Provider, ProviderContext, ProviderError
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings
from openmmp.webhooks.guard import check_target, webhooks_allow_private

log = structlog.get_logger(__name__)

TOKEN_TTL_MS = 30 * 60 * 1000
"""How long a token works: long enough to sign up, short enough that a leaked one soon means nothing."""
_PURPOSE = "channel-onboarding"


class NoOnboarding(Invalid):
    default_name = "applicationId"


class NoSuchSignup(NotFound):
    default_name = "provider"


class TokenRefused(Unauthenticated):
    default_name = "state"


class TokenUsed(Conflict):
    default_name = "state"


@dataclass(frozen=True)
class OnboardingToken:
    """What a token carries (see the module's docstring)."""

    api_key_id: int
    application: Application
    name: str
    webhook_url: str | None
    public_id: str
    expires_at: int
    """Epoch ms."""

    def seal(self, keyring: Keyring) -> str:
        payload = {
            "p": _PURPOSE,
            "k": self.api_key_id,
            "a": int(self.application),
            "n": self.name,
            "w": self.webhook_url,
            "i": self.public_id,
            "e": self.expires_at,
        }
        return keyring.seal_token(orjson.dumps(payload).decode())

    @classmethod
    def open(cls, keyring: Keyring, token: str) -> OnboardingToken:
        """The token's content; `TokenRefused` (401) for anything this server did not seal as one."""
        payload = keyring.open_token(token)
        if payload is None:
            raise TokenRefused(
                "not an onboarding token of this platform (changed, cut short or made elsewhere)"
            )
        try:
            data = orjson.loads(payload)
            if data["p"] != _PURPOSE:
                raise ValueError("another kind of token")
            webhook_url = data["w"]
            return cls(
                api_key_id=int(data["k"]),
                application=Application(data["a"]),
                name=str(data["n"]),
                webhook_url=None if webhook_url is None else str(webhook_url),
                public_id=str(data["i"]),
                expires_at=int(data["e"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenRefused("not an onboarding token") from exc


@dataclass(frozen=True)
class Issued:
    """A sealed token, the sign-up page that carries it, and when it expires (epoch ms)."""

    token: str
    url: str
    expires_at: int


def callback_url(ctx: ProviderContext, provider: Provider) -> str:
    """Where `provider`'s sign-up sends the admin's browser back (its redirect URL, e.g. registered as
    such in the operator's Meta app)."""
    return f"{ctx.public_url}/onboard/{provider.name}/callback"


class OnboardingService:
    async def issue(
        self,
        keyring: Keyring,
        subject: Subject,
        *,
        request: ChanelOnboardGenerateTokenRequest,
        settings: Settings,
        http: HttpClient,
    ) -> Issued:
        """A token for the company of `subject` and the sign-up page it goes with.

        400 naming `applicationId` when the application's upstream hands out no accounts through a
        sign-up, or the operator has not configured it; 400 naming `webhookUrl` for a URL webhooks may
        not go to (checked again when the channel is made).
        """
        provider = REGISTRY.for_application(request.application_id)
        if provider is None or not provider.onboarding:
            raise NoOnboarding(
                f"{request.application_id.name} channels are not made through a sign-up: "
                "create them with POST /api/v1/channel"
            )
        if request.webhook_url:
            allow_private = webhooks_allow_private(settings)
            await check_target(request.webhook_url, allow_private=allow_private, name="webhookUrl")
        token = OnboardingToken(
            api_key_id=subject.api_key_id,
            application=request.application_id,
            name=request.name or provider.title,
            webhook_url=request.webhook_url,
            public_id=new_public_id(),
            expires_at=now_ms() + TOKEN_TTL_MS,
        )
        sealed = token.seal(keyring)
        ctx = settings.provider_context(provider, http)
        try:
            url = provider.onboarding_url(ctx, state=sealed, redirect_url=callback_url(ctx, provider))
        except ValueError as exc:
            raise NoOnboarding(str(exc)) from exc
        return Issued(token=sealed, url=url, expires_at=token.expires_at)

    async def finish(
        self,
        db: Database,
        keyring: Keyring,
        *,
        provider_name: str,
        state: str,
        answer: Mapping[str, str],
        settings: Settings,
        http: HttpClient,
    ) -> Saved:
        """Make the channel the token `state` asked for, from the sign-up's `answer` (its query).

        Owns its transactions, unlike other services: the upstream's steps take a while, and holding
        the database meanwhile (on SQLite the process's one write connection) would stall every writer.
        So it reads in one short transaction, asks upstream with none open, and writes in another.
        Nothing is stored when anything fails.
        """
        provider = REGISTRY.by_name(provider_name)
        if provider is None or not provider.onboarding:
            raise NoSuchSignup("No sign-up of that name")
        asked = OnboardingToken.open(keyring, state)
        if asked.application != provider.application:
            raise TokenRefused("this token is for another application's sign-up")
        if asked.expires_at <= now_ms():
            raise TokenRefused("this onboarding token has expired: ask for a new one")
        async with db.read_sessions() as session, session.begin():
            await subject_of_key(session, asked.api_key_id)
            used = await repository.public_id_taken(session, asked.public_id)
        if used:
            raise _used(asked)
        ctx = settings.provider_context(provider, http)
        credentials = await _complete(provider, ctx, answer)
        request = CreateChannelRequest.model_validate(
            {
                "name": asked.name,
                "applicationId": int(asked.application),
                "credentials": credentials,
                "webhookUrl": asked.webhook_url,
            }
        )
        async with db.write_sessions() as session, session.begin():
            subject = await subject_of_key(session, asked.api_key_id)
            try:
                saved = await channels.create(
                    session,
                    keyring,
                    subject,
                    request=request,
                    allow_private_webhooks=webhooks_allow_private(settings),
                    sandbox=settings.sandbox,
                    allowed_hosts=settings.providers.allowed_host_list,
                    public_id=asked.public_id,
                )
            except ChannelExists as exc:
                raise _used(asked) from exc
        log.info("channel_onboarded", channel=asked.public_id, provider=provider.name)
        return saved


def _used(asked: OnboardingToken) -> TokenUsed:
    return TokenUsed(f"this onboarding token has been used: it made the channel {asked.public_id}")


async def _complete(provider: Provider, ctx: ProviderContext, answer: Mapping[str, str]) -> dict[str, Any]:
    """The provider's server-to-server steps; their failures as the answer to the admin's browser."""
    try:
        return await provider.complete_onboarding(ctx, answer, redirect_url=callback_url(ctx, provider))
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        raise Invalid(message or name, name=name if message else "request") from exc
    except ProviderError as exc:
        log.warning(
            "onboarding_failed_upstream", provider=provider.name, code=exc.code, retryable=exc.retryable
        )
        said = f"{provider.title} answered {exc.code}: {exc.message}. Nothing was made"
        if exc.retryable:
            raise UpstreamUnavailable(f"{said}; sign up again in a moment (the same link)") from exc
        raise UpstreamRefused(said) from exc


onboarding = OnboardingService()
