"""What each upstream needs to act for a channel (api.md §4.2), checked before anything is stored.

Credentials are stored encrypted and never returned; these models only validate and normalise them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from openmmp.errors import ErrorCode, ErrorItem, Invalid
from openmmp.kit.schemas import RequestModel
from openmmp.models.channel import Application

Secret = Field(min_length=1, max_length=4096)
Ident = Field(min_length=1, max_length=200)


class Credentials(RequestModel):
    pass


class ViberCredentials(Credentials):
    service_id: int = Field(ge=1, description="Viber Business Messages service id")
    label: Literal["transaction", "promotion"] | None = None


class ViberBotCredentials(Credentials):
    auth_token: str = Secret
    sender_name: str = Field(min_length=1, max_length=28)
    sender_avatar: str | None = Field(default=None, max_length=2000)


class RcsCredentials(Credentials):
    agent_id: str = Ident
    service_account_json: str = Field(min_length=2, max_length=20_000)

    @field_validator("service_account_json")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ValueError("must be the service account key file's JSON text") from exc
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return value


class WhatsappCredentials(Credentials):
    phone_number_id: str = Ident
    waba_id: str = Ident
    access_token: str = Secret
    app_secret: str = Secret


class ZaloCredentials(Credentials):
    oa_id: str = Ident
    app_id: str = Ident
    access_token: str = Secret
    refresh_token: str = Secret
    secret_key: str = Secret


class AppleCredentials(Credentials):
    business_id: str = Ident
    msp_id: str = Ident
    secret: str = Secret


class FacebookCredentials(Credentials):
    page_id: str = Ident
    page_access_token: str = Secret
    app_secret: str = Secret


class TelegramCredentials(Credentials):
    bot_token: str = Secret


class SmppCredentials(Credentials):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=16)
    password: str = Field(min_length=1, max_length=9)
    source_addr: str = Field(min_length=1, max_length=21)


class EmailCredentials(Credentials):
    from_: str = Field(alias="from", min_length=3, max_length=320)
    smtp_url: str | None = Field(default=None, max_length=2000)


CREDENTIALS: dict[Application, type[Credentials]] = {
    Application.VIBER: ViberCredentials,
    Application.RCS: RcsCredentials,
    Application.SMS: SmppCredentials,
    Application.APPLE: AppleCredentials,
    Application.TELEGRAM: TelegramCredentials,
    Application.FACEBOOK: FacebookCredentials,
    Application.ZALO: ZaloCredentials,
    Application.ZALO_ZNS: ZaloCredentials,
    Application.VIBER_BOT: ViberBotCredentials,
    Application.WHATSAPP: WhatsappCredentials,
    Application.MMS: SmppCredentials,
    Application.EMAIL: EmailCredentials,
}


def credentials_json_schema() -> dict[str, Any]:
    """The OpenAPI schema of `credentials`: one of the per-application shapes."""
    variants = []
    for application, model in CREDENTIALS.items():
        schema = model.model_json_schema(by_alias=True)
        schema["title"] = f"{application.name} credentials (applicationId {application.value})"
        variants.append(schema)
    return {
        "type": "object",
        "description": "Per applicationId; stored encrypted, never returned.",
        "anyOf": variants,
    }


def validate_credentials(application: Application, raw: dict[str, Any]) -> Credentials:
    """Parse `raw` for `application`, or raise a 400 naming each bad field as `credentials.<field>`."""
    model = CREDENTIALS[application]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        items = []
        for error in exc.errors():
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = f"required for {application.name} channels"
            elif error["type"] == "extra_forbidden":
                message = f"not a {application.name} credential field"
            items.append(ErrorItem(name=f"credentials{path}", code=ErrorCode.INVALID, message=message))
        raise Invalid(items[0].message, items=items) from exc
