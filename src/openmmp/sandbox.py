"""Sandbox wiring: what the platform tells the built-in simulators that a real upstream learns elsewhere.

Only used in sandbox mode. A real Viber BM partner registers its callback URL with the aggregator out of
band; here the platform registers each service with the simulator. End users are played by the
simulator: `POST /sandbox/viber-bot/{accountId}/inbound` makes one write to the bot.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from openmmp.api_keys.auth import CompanyKey
from openmmp.channels.service import channels, open_credentials
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import AppError, ErrorCode, Invalid, responses
from openmmp.kit.db import SessionDep
from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.kit.phone import normalise_phone
from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.models.channel import Application


class SimulatorUnavailable(AppError):
    status_code = 503
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_name = "simulator"


async def register_viber_service(
    http: HttpClient, base_url: str, *, service_id: int, callback_url: str
) -> None:
    try:
        response = await http.post(
            f"{base_url}/_sandbox/services/{service_id}", json={"callbackUrl": callback_url}
        )
    except HttpUnreachable as exc:
        raise SimulatorUnavailable("The Viber simulator is not reachable") from exc
    if not response.ok:
        raise SimulatorUnavailable(f"The Viber simulator refused the registration ({response.status_code})")


async def viber_bot_inbound(http: HttpClient, base_url: str, *, auth_token: str, body: dict[str, Any]) -> Any:
    try:
        response = await http.post(
            f"{base_url}/_sandbox/inbound", json=body, headers={"X-Viber-Auth-Token": auth_token}
        )
    except HttpUnreachable as exc:
        raise SimulatorUnavailable("The Viber Bot simulator is not reachable") from exc
    if not response.ok:
        raise SimulatorUnavailable(f"The Viber Bot simulator refused the message ({response.status_code})")
    return response.json()


class SandboxInbound(RequestModel):
    """An end user writing to the bot: new, or known by `userId`; with `phone`, they share it first."""

    name: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=7000)
    user_id: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)


class SandboxInboundResult(ResponseModel):
    user_id: str
    message_token: str


router = APIRouter(prefix="/sandbox", tags=["Sandbox"])


@router.post(
    "/viber-bot/{account_id}/inbound",
    summary="Sandbox: make an end user write to a Viber Bot channel",
    description="The simulator plays the user and calls back, signed like Viber; a type 2 webhook follows.",
    response_model=SandboxInboundResult,
    responses=responses(400, 401, 403, 404, 503),
)
async def viber_bot_inbound_endpoint(
    account_id: str,
    body: SandboxInbound,
    request: Request,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> SandboxInboundResult:
    channel = await channels.get(session, subject, public_id=account_id)
    if channel.application_id != Application.VIBER_BOT:
        raise Invalid("not a Viber Bot channel", name="accountId")
    user: dict[str, Any] = {"name": body.name}
    if body.user_id:
        user["userId"] = body.user_id
    base_url = settings.provider_base_url("viber-bot")
    auth_token = open_credentials(keyring, channel)["authToken"]
    if body.phone:
        try:
            phone = normalise_phone(body.phone, channel.settings.get("defaultCountry"))
        except ValueError as exc:
            raise Invalid(str(exc), name="phone") from exc
        # The user shares their number first (Viber's share-phone button), so the platform learns it.
        shared = await viber_bot_inbound(
            request.app.state.http, base_url, auth_token=auth_token, body={**user, "phone": phone}
        )
        user["userId"] = shared["userId"]
    answer = await viber_bot_inbound(
        request.app.state.http, base_url, auth_token=auth_token, body={**user, "text": body.text}
    )
    return SandboxInboundResult(
        user_id=str(answer.get("userId", "")), message_token=str(answer.get("messageToken", ""))
    )
