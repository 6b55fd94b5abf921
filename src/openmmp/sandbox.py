"""Sandbox mode's own routes: play an end user of any channel through its provider's simulator.

Only mounted in sandbox mode. `POST /sandbox/{accountId}/inbound` makes a sandbox end user write to the
channel; the simulator calls back signed like its upstream, and a `type: 2` webhook follows. The older
`POST /sandbox/{provider}/{accountId}/inbound` (e.g. `/sandbox/viber-bot/...`) is the same, with the
provider named.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from openmmp.api_keys.auth import CompanyKey
from openmmp.channels.service import channels, open_credentials
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import AppError, ErrorCode, ErrorItem, Invalid, responses
from openmmp.kit.db import SessionDep
from openmmp.kit.phone import normalise_phone
from openmmp.kit.schemas import AccountId, RequestModel, ResponseModel
from openmmp.providers.base import ProviderError, SandboxUser
from openmmp.providers.registry import REGISTRY


class SimulatorUnavailable(AppError):
    status_code = 503
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_name = "simulator"


class SandboxInbound(RequestModel):
    """An end user writing to a channel; with `phone`, they write from (or share) that number.

    `userId` picks an end user the simulator made up before (on providers that have such ids).
    """

    name: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=7000)
    phone: str | None = Field(default=None, max_length=32)
    user_id: str | None = Field(default=None, max_length=200)


class SandboxInboundResult(ResponseModel):
    user_id: str
    message_token: str


router = APIRouter(prefix="/sandbox", tags=["Sandbox"])


async def _inbound(
    account_id: str,
    provider_name: str | None,
    body: SandboxInbound,
    request: Request,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> SandboxInboundResult:
    channel = await channels.get(session, subject, public_id=account_id)
    provider = REGISTRY.for_application(channel.application_id)
    if provider is None or not provider.receives_messages:
        raise Invalid("this channel does not receive messages", name="accountId")
    if provider_name is not None and provider_name != provider.name:
        raise Invalid(f"not a {provider_name} channel", name="accountId")
    phone = None
    if body.phone:
        try:
            phone = normalise_phone(body.phone, channel.settings.get("defaultCountry"))
        except ValueError as exc:
            raise Invalid(str(exc), name="phone") from exc
    user = SandboxUser(name=body.name, text=body.text, phone=phone, user_id=body.user_id)
    try:
        written = await provider.sandbox_inbound(
            settings.provider_context(provider, request.app.state.http),
            open_credentials(keyring, channel),
            user,
        )
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        raise Invalid(message, items=[ErrorItem(name=name, code=ErrorCode.INVALID, message=message)]) from exc
    except ProviderError as exc:
        raise SimulatorUnavailable(f"The {provider.title} simulator: {exc.message}") from exc
    return SandboxInboundResult(user_id=written.user_id, message_token=written.message_token)


@router.post(
    "/{accountId}/inbound",
    summary="Sandbox: make an end user write to a channel",
    description="The channel's simulator plays the user and calls back signed like its upstream; a type 2 "
    "webhook follows. Viber Business Messages needs `phone` (its users write from a number); on a bot, "
    "`phone` shares the user's number first, so later sends may address them by it.",
    response_model=SandboxInboundResult,
    responses=responses(400, 401, 403, 404, 503),
)
async def inbound(
    account_id: AccountId,
    body: SandboxInbound,
    request: Request,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> SandboxInboundResult:
    return await _inbound(account_id, None, body, request, subject, session, keyring, settings)


@router.post(
    "/{provider}/{accountId}/inbound",
    summary="Sandbox: make an end user write to a channel (with its provider named)",
    description="The same as `POST /sandbox/{accountId}/inbound`; `provider` must be the channel's.",
    response_model=SandboxInboundResult,
    responses=responses(400, 401, 403, 404, 503),
    deprecated=True,
)
async def provider_inbound(
    provider: str,
    account_id: AccountId,
    body: SandboxInbound,
    request: Request,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> SandboxInboundResult:
    return await _inbound(account_id, provider, body, request, subject, session, keyring, settings)
