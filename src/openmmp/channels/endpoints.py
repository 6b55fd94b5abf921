from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from openmmp.api_keys.auth import CompanyKey
from openmmp.channels.onboarding import TOKEN_TTL_MS, onboarding
from openmmp.channels.schemas import (
    ChanelOnboardGenerateTokenRequest,
    ChanelOnboardGenerateTokenResponse,
    ChannelResponse,
    ChannelSaved,
    CommonGetChannelStatusResponse,
    CreateChannelRequest,
    EditChannelRequest,
    SetWebhookRequest,
    SetWebhookResponse,
)
from openmmp.channels.service import Saved, channels
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import responses
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import AccountId, Page, PageNumber, PageSize
from openmmp.models import Channel
from openmmp.providers.applications import Application, channel_type
from openmmp.providers.registry import REGISTRY
from openmmp.webhooks.guard import webhooks_allow_private

router = APIRouter(prefix="/channel", tags=["Channel"])
onboard_router = APIRouter(prefix="/onboard", tags=["Channel"])
"""The end of a sign-up, outside /api/v1: public, the admin's browser lands there (no API key)."""

_SIGNUPS = [provider for provider in REGISTRY.providers if provider.onboarding]
_SIGNUP_LIST = "\n".join(f"- `{p.name}` (applicationId {int(p.application)}): {p.title}" for p in _SIGNUPS)


def _read(channel: Channel) -> ChannelResponse:
    return ChannelResponse(
        public_id=channel.public_id,
        name=channel.name,
        application_id=channel.application_id,
        type=channel_type(channel.application_id),
        status=channel.status,
        webhook_url=channel.webhook_url,
        settings=channel.settings,
        created_date=channel.created_at,
    )


def channel_saved(saved: Saved) -> ChannelSaved:
    return ChannelSaved(**_read(saved.channel).model_dump(), webhook_secret=saved.new_webhook_secret)


@router.post(
    "",
    summary="Create a channel",
    description="`webhookSecret` is in the answer only when this call created the channel's webhook secret. "
    "An upstream account (a Viber service, a bot token, a WhatsApp number, ...) belongs to one channel: "
    "a second channel on it is a 409 naming the credential. A partner key may create a channel for a "
    "company it onboarded (`companyId`); that is how channels whose identity the operator assigns "
    "(Viber Business Messages `serviceId`) are made.",
    status_code=201,
    response_model=ChannelSaved,
    responses=responses(400, 401, 403, 404, 409, 413),
)
async def create_channel(
    body: CreateChannelRequest,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> ChannelSaved:
    allow_private = webhooks_allow_private(settings)
    return channel_saved(
        await channels.create(
            session,
            keyring,
            subject,
            request=body,
            allow_private_webhooks=allow_private,
            sandbox=settings.sandbox,
            allowed_hosts=settings.providers.allowed_host_list,
        )
    )


@router.get(
    "",
    summary="List the company's channels",
    response_model=Page[ChannelResponse],
    responses=responses(400, 401, 403),
)
async def list_channels(
    subject: CompanyKey,
    session: SessionDep,
    application_id: Annotated[Application | None, Query(alias="applicationId")] = None,
    page: PageNumber = 1,
    size: PageSize = 20,
) -> Page[ChannelResponse]:
    total, items = await channels.list(session, subject, application_id=application_id, page=page, size=size)
    return Page[ChannelResponse](total=total, page=page, size=size, items=[_read(c) for c in items])


@router.get(
    "/{accountId}",
    summary="Get channel information",
    response_model=ChannelResponse,
    responses=responses(401, 403, 404),
)
async def get_channel(account_id: AccountId, subject: CompanyKey, session: SessionDep) -> ChannelResponse:
    return _read(await channels.get(session, subject, public_id=account_id))


@router.post(
    "/{accountId}",
    summary="Edit a channel (name, credentials, settings, webhook URL)",
    description="New credentials that name another upstream account follow the rules of creation (403 for "
    "an operator-assigned identity, 409 for one another channel holds).",
    response_model=ChannelSaved,
    responses=responses(400, 401, 403, 404, 409, 413),
)
async def edit_channel(
    account_id: AccountId,
    body: EditChannelRequest,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> ChannelSaved:
    saved = await channels.edit(
        session,
        keyring,
        subject,
        public_id=account_id,
        request=body,
        allow_private_webhooks=webhooks_allow_private(settings),
        sandbox=settings.sandbox,
        allowed_hosts=settings.providers.allowed_host_list,
    )
    return channel_saved(saved)


@router.get(
    "/{accountId}/status",
    summary="Get Channel Status",
    response_model=CommonGetChannelStatusResponse,
    responses=responses(401, 403, 404),
)
async def get_channel_status(
    account_id: AccountId, subject: CompanyKey, session: SessionDep
) -> CommonGetChannelStatusResponse:
    channel = await channels.get(session, subject, public_id=account_id)
    return CommonGetChannelStatusResponse(
        public_id=channel.public_id,
        application_id=channel.application_id,
        status=channel.status,
        cause=channel.status_cause,
    )


@router.post(
    "/{accountId}/webhook",
    summary="Set the channel's webhook endpoint",
    description="Also re-activates a FAILED endpoint: the events kept (HELD) meanwhile go out again. The "
    "channel keeps its signing secret unless you give one or ask for `rotateSecret`.",
    response_model=SetWebhookResponse,
    responses=responses(400, 401, 403, 404, 413),
)
async def set_channel_webhook(
    account_id: AccountId,
    body: SetWebhookRequest,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> SetWebhookResponse:
    channel, secret = await channels.set_webhook(
        session,
        keyring,
        subject,
        public_id=account_id,
        url=body.url,
        secret=body.secret,
        rotate_secret=body.rotate_secret,
        allow_private_webhooks=webhooks_allow_private(settings),
    )
    assert channel.webhook_url is not None
    return SetWebhookResponse(url=channel.webhook_url, secret=secret, status=channel.webhook_status)


@router.post(
    "/onboard/token",
    summary="Generate token for onboarding (" + ", ".join(p.title for p in _SIGNUPS) + ")",
    description="For applications whose upstream hands a company its account through a sign-up:\n\n"
    + _SIGNUP_LIST
    + "\n\nSend the company's admin to `url`. When they have signed up, the upstream sends their browser "
    "to `/onboard/{provider}/callback`, which makes the channel (with `name` and `webhookUrl`) for this "
    "company, without anybody handling its credentials. The `token` is single-use and works for "
    f"{TOKEN_TTL_MS // 60_000} minutes, for as long as the key that asked for it does. 400 naming "
    "`applicationId` for an application without a sign-up (or one the operator has not set up).",
    response_model=ChanelOnboardGenerateTokenResponse,
    responses=responses(400, 401, 403, 413),
)
async def generate_onboard_token(
    body: ChanelOnboardGenerateTokenRequest,
    subject: CompanyKey,
    request: Request,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> ChanelOnboardGenerateTokenResponse:
    issued = await onboarding.issue(
        keyring, subject, request=body, settings=settings, http=request.app.state.http
    )
    return ChanelOnboardGenerateTokenResponse(
        token=issued.token, url=issued.url, expired_at=issued.expires_at
    )


@onboard_router.get(
    "/{provider}/callback",
    summary="End of a sign-up: make the channel",
    description="Where an upstream's sign-up sends the admin's browser (the redirect URL the operator "
    "registers with it, `{public URL}/onboard/{provider}/callback`), with the token as `state` and the "
    "upstream's own answer in the query (WhatsApp: `code`, `waba_id`, `phone_number_id`). Public: the "
    "token proves who asked. The platform finishes the sign-up with the upstream and makes the channel as "
    "Create a channel would; the answer is that channel, with `webhookSecret` when it has a webhook URL "
    "(shown this once). Refused, with nothing made: 401 for a token that is changed, expired or whose key "
    "is revoked, 409 for one used before, 400 for an answer that cannot be used or that the upstream "
    "refused, 502 when the upstream could not be reached.",
    status_code=201,
    response_model=ChannelSaved,
    responses=responses(400, 401, 403, 404, 409, 502),
)
async def onboarding_callback(
    provider: Annotated[
        str,
        Path(description="The provider whose sign-up ended: " + ", ".join(f"`{p.name}`" for p in _SIGNUPS)),
    ],
    state: Annotated[
        str,
        Query(min_length=1, max_length=8192, description="The token of Generate token for onboarding"),
    ],
    request: Request,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> ChannelSaved:
    answer = {name: value for name, value in request.query_params.items() if name != "state"}
    saved = await onboarding.finish(
        request.app.state.db,
        keyring,
        provider_name=provider,
        state=state,
        answer=answer,
        settings=settings,
        http=request.app.state.http,
    )
    return channel_saved(saved)
