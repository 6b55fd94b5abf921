"""Consent routes (api.md §4.7: Zalo's "Send Consent request" and "Check Zalo Channel Consent Status").

One pair of routes per `consent_path` that providers declaring `asks_consent` use, under
`/api/v1/{consent_path}/{accountId}/consent`: POST asks the end user at `phone` for consent through the
channel, GET reads the consent's state. Bodies and answers are the providers' own models (the MMP names,
e.g. ZaloRequestConsentRequest), so the OpenAPI document shows them; every provider on one path shares
them. Calls run with the channel's credentials, renewed once when the upstream finds them stale
(channels/renewal.py). Annotations are evaluated when the routes are made (no postponed annotations).
"""

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from openmmp.api_keys.auth import CompanyKey
from openmmp.channels import repository
from openmmp.channels.agents import upstream
from openmmp.channels.renewal import Renewal
from openmmp.channels.service import ChannelNotFound
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import Invalid, responses
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import request_database
from openmmp.kit.phone import normalise_phone
from openmmp.kit.schemas import AccountId
from openmmp.models import Channel
from openmmp.providers.base import Consent, Provider
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings

_UPSTREAM = (
    " Asked of the upstream now: 400 naming `upstream` when it refuses (in its words), 502 when it cannot "
    "be reached."
)
_PHONE = Annotated[
    str, Query(min_length=1, max_length=32, description="The end user's phone, e.g. 84987654321")
]


def _phone(channel: Channel, raw: str) -> str:
    try:
        return normalise_phone(raw, channel.settings.get("defaultCountry"))
    except ValueError as exc:
        raise Invalid(str(exc), name="phone") from None


def consent_router(path: str, providers: list[Provider]) -> APIRouter:
    """The consent routes of the providers that declare `consent_path` == `path`."""
    first = providers[0]
    request_model = first.consent_request_model
    assert request_model is not None
    assert "phone" in request_model.model_fields
    assert all(
        (p.consent_request_model, p.consent_answer_model, p.consent_status_model)
        == (request_model, first.consent_answer_model, first.consent_status_model)
        for p in providers
    ), f"the providers under /{path} must share their consent models"
    answer_model, status_model = first.consent_answer_model, first.consent_status_model
    by_application = {int(p.application): p for p in providers}
    kinds = ", ".join(p.application.name for p in providers)
    name = path.title()
    router = APIRouter(prefix=f"/{path}/{{accountId}}/consent", tags=[f"{name} consent"])

    async def load(
        request: Request, keyring: Keyring, subject: CompanyKey, account_id: str
    ) -> tuple[Channel, Provider, Renewal]:
        db = request_database(request)
        async with db.read_sessions() as session, session.begin():
            channel = await repository.get(session, subject, account_id)
        if channel is None or channel.application_id not in by_application:
            raise ChannelNotFound(f"No such channel of {kinds}")
        return channel, by_application[channel.application_id], Renewal(db, keyring)

    async def ask(
        request: Request,
        settings: Settings,
        keyring: Keyring,
        subject: CompanyKey,
        account_id: str,
        body: Any,
    ) -> Consent:
        channel, provider, renewal = await load(request, keyring, subject, account_id)
        phone = _phone(channel, body.phone)
        fields = body.model_dump(by_alias=True, exclude_none=True, exclude={"phone"})
        ctx = settings.provider_context(provider, request.app.state.http)
        return await upstream(
            renewal.call(
                channel,
                provider,
                ctx,
                lambda credentials: provider.request_consent(ctx, credentials, phone, fields),
            )
        )

    @router.post(
        "",
        summary="Send Consent request",
        description=f"Asks the end user at `phone` for consent through the channel ({kinds}); the user "
        "answers on the phone, and `GET` on the same path tells the answer." + _UPSTREAM,
        response_model=answer_model,
        responses=responses(400, 401, 403, 404, 413, 502),
    )
    async def request_consent(
        account_id: AccountId,
        body: request_model,  # type: ignore[valid-type]
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> Any:
        consent = await ask(request, settings, keyring, subject, account_id, body)
        return answer_model.of(consent)

    @router.get(
        "",
        summary=f"Check {name} Channel Consent Status",
        description="The end user's consent at `phone`: GRANTED, REQUESTED (asked, no answer yet), REFUSED "
        "or NONE, with the upstream's own code and when it lapses." + _UPSTREAM,
        response_model=status_model,
        responses=responses(400, 401, 403, 404, 502),
    )
    async def consent_status(
        account_id: AccountId,
        phone: _PHONE,
        subject: CompanyKey,
        request: Request,
        keyring: KeyringDep,
        settings: SettingsDep,
    ) -> Any:
        channel, provider, renewal = await load(request, keyring, subject, account_id)
        normalised = _phone(channel, phone)
        ctx = settings.provider_context(provider, request.app.state.http)
        consent = await upstream(
            renewal.call(
                channel,
                provider,
                ctx,
                lambda credentials: provider.consent_status(ctx, credentials, normalised),
            )
        )
        return status_model.of(consent)

    return router


def _paths() -> dict[str, list[Provider]]:
    paths: dict[str, list[Provider]] = defaultdict(list)
    for provider in REGISTRY.providers:
        if provider.asks_consent:
            paths[provider.consent_path].append(provider)
    return paths


routers = [consent_router(path, providers) for path, providers in _paths().items()]
CONSENT_TAGS = [
    {
        "name": f"{path.title()} consent",
        "description": "Asking end users for their consent through the channel ("
        + ", ".join(p.application.name for p in providers)
        + "), and reading it",
    }
    for path, providers in _paths().items()
]
