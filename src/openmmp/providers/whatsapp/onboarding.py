"""WhatsApp's Embedded Signup (providers.md §3): a company's admin hands its WhatsApp Business account to
the operator's Meta app, and the platform finishes server to server.

The admin is sent to Meta's sign-up dialog (`signup_url`; in sandbox mode the simulator's page
`{base_url}/_sandbox/signup`, which takes the same query) with the operator's app id, its Embedded Signup
configuration id, the core's `state` and our `redirect_uri`. The dialog sends the browser back there with
a short-lived, single-use `code` and the `waba_id` and `phone_number_id` the admin chose. Then
(`complete_signup`):

1. `GET /oauth/access_token?client_id&client_secret&code&redirect_uri` exchanges the code for a business
   token, which acts for that WhatsApp Business account (WABA) through the operator's app;
2. `POST /{waba_id}/subscribed_apps` subscribes the operator's app to the account's webhooks;
3. `POST /{phone_number_id}/register {"messaging_product": "whatsapp", "pin"}` registers the number with
   the Cloud API. `pin` becomes the number's two-step verification PIN: six random digits per sign-up,
   kept nowhere and never logged. Sending needs no PIN; only registering the number again (elsewhere)
   does, and its business can reset it in WhatsApp Manager.

The new channel's credentials are the two ids, the business token and the operator's app secret: Meta
signs the webhooks of every account subscribed to an app with that app's secret. The operator configures
the app with `OPENMMP_PROVIDERS__WHATSAPP_APP_ID`, `_APP_SECRET` and `_CONFIG_ID` (published sandbox
values in sandbox mode), and registers `{public_url}/onboard/whatsapp/callback` as a valid OAuth redirect
URI of the app.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, Field

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderContext, ProviderError
from openmmp.providers.viber_bot.errors import bad_response, transport_error
from openmmp.providers.whatsapp import errors

SANDBOX_APP_ID = "100000000000001"
SANDBOX_APP_SECRET = "sandbox-whatsapp-app-secret"  # noqa: S105 - published on purpose
"""The sandbox's Meta app (simulator and platform agree on it); deployments set their own."""
SANDBOX_CONFIG_ID = "200000000000001"
DIALOG_URL = "https://www.facebook.com/{version}/dialog/oauth"
"""Meta's sign-up dialog; `version` is the Graph API version of the base URL."""
DEFAULT_VERSION = "v21.0"
PIN_DIGITS = 6
ANSWER_MAX = 2000
"""Longest value of the dialog's answer taken (Meta's codes are a few hundred characters)."""
_VERSION = re.compile(r"v\d+\.\d+")
_META_ID = re.compile(r"\d{1,40}")


class WhatsappOptions(BaseModel):
    """The operator's Meta app, through which companies onboard their WhatsApp numbers (Embedded Signup)."""

    app_id: str = Field(
        default="",
        description="The operator's Meta app id, for WhatsApp onboarding (Embedded Signup); the "
        "simulator's published one in sandbox mode.",
    )
    app_secret: str = Field(
        default="",
        description="The operator's Meta app secret: it exchanges the sign-up codes, and is the appSecret "
        "of the channels onboarded through the app (Meta signs their webhooks with it).",
    )
    config_id: str = Field(
        default="",
        description="The Embedded Signup configuration id (Facebook Login for Business) of that app.",
    )


@dataclass(frozen=True)
class OperatorApp:
    """The operator's Meta app as the context configures it ("" for what is not configured)."""

    app_id: str
    app_secret: str
    config_id: str

    @classmethod
    def of(cls, ctx: ProviderContext) -> OperatorApp:
        return cls(
            app_id=ctx.option("app_id", SANDBOX_APP_ID),
            app_secret=ctx.secret("app_secret", SANDBOX_APP_SECRET),
            config_id=ctx.option("config_id", SANDBOX_CONFIG_ID),
        )

    @property
    def missing(self) -> list[str]:
        """The settings a sign-up needs that are not configured."""
        wanted = {"app id": self.app_id, "app secret": self.app_secret, "configuration id": self.config_id}
        return [name for name, value in wanted.items() if not value]


def signup_url(ctx: ProviderContext, *, state: str, redirect_url: str) -> str:
    """Meta's sign-up dialog (the simulator's page in sandbox mode) for one onboarding.

    Raises ValueError when the operator's app is not configured: a sign-up could not be finished.
    """
    app = OperatorApp.of(ctx)
    if app.missing:
        missing = ", ".join(app.missing)
        raise ValueError(
            f"WhatsApp onboarding is not set up on this platform (its Meta app lacks: {missing})"
        )
    query = urlencode(
        {
            "client_id": app.app_id,
            "config_id": app.config_id,
            "response_type": "code",
            "override_default_response_type": "true",
            "redirect_uri": redirect_url,
            "state": state,
        }
    )
    page = f"{ctx.base_url}/_sandbox/signup" if ctx.sandbox else DIALOG_URL.format(version=_version(ctx))
    return f"{page}?{query}"


def _version(ctx: ProviderContext) -> str:
    """The Graph API version the base URL names (`.../v21.0`), which the dialog's URL names too."""
    last = ctx.base_url.rstrip("/").rsplit("/", 1)[-1]
    return last if _VERSION.fullmatch(last) else DEFAULT_VERSION


def new_pin() -> str:
    """A two-step verification PIN for a number being registered: six random digits."""
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


async def complete_signup(
    ctx: ProviderContext, answer: Mapping[str, str], *, redirect_url: str
) -> dict[str, Any]:
    """Exchange the dialog's code, subscribe the app to the WABA and register the number; returns the
    channel's credentials. See the module's docstring for the steps and the PIN."""
    failure = answer.get("error")
    if failure:
        reason = answer.get("error_description") or answer.get("error_reason") or failure
        raise ValueError(f"error: the sign-up was not completed ({reason[:200]})")
    code = _answered(answer, "code")
    waba_id = _meta_id(answer, "waba_id")
    phone_number_id = _meta_id(answer, "phone_number_id")
    app = OperatorApp.of(ctx)
    if app.missing:
        missing = ", ".join(app.missing)
        raise ProviderError(
            "WHATSAPP_ONBOARDING_NOT_CONFIGURED", f"the operator's Meta app lacks: {missing}", retryable=False
        )
    client = SignupClient(ctx.http, ctx.base_url)
    token = await client.exchange_code(app, code, redirect_url=redirect_url)
    await client.subscribe_app(waba_id, token)
    await client.register(phone_number_id, token, pin=new_pin())
    return {
        "phoneNumberId": phone_number_id,
        "wabaId": waba_id,
        "accessToken": token,
        "appSecret": app.app_secret,
    }


def _answered(answer: Mapping[str, str], name: str) -> str:
    value = answer.get(name, "")
    if not value:
        raise ValueError(f"{name}: required: the sign-up dialog sends it back")
    if len(value) > ANSWER_MAX:
        raise ValueError(f"{name}: longer than {ANSWER_MAX} characters")
    return value


def _meta_id(answer: Mapping[str, str], name: str) -> str:
    value = _answered(answer, name)
    if not _META_ID.fullmatch(value):
        raise ValueError(f"{name}: not a Meta id (digits)")
    return value


class SignupClient:
    """The Graph API calls that finish a sign-up. Nothing here retries (a code can be exchanged once)."""

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")

    async def exchange_code(self, app: OperatorApp, code: str, *, redirect_url: str) -> str:
        """The business token the dialog's `code` stands for."""
        query = urlencode(
            {
                "client_id": app.app_id,
                "client_secret": app.app_secret,
                "code": code,
                "redirect_uri": redirect_url,
            }
        )
        body = await self._call("GET", f"{self._base}/oauth/access_token?{query}")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise bad_response("the code exchange answered without an access_token")
        return token

    async def subscribe_app(self, waba_id: str, token: str) -> None:
        """Subscribe the operator's app to the WhatsApp Business account's webhooks."""
        await self._succeeds(f"{self._base}/{quote(waba_id, safe='')}/subscribed_apps", token, {})

    async def register(self, phone_number_id: str, token: str, *, pin: str) -> None:
        """Register the number with the Cloud API, setting its two-step verification `pin`."""
        body = {"messaging_product": "whatsapp", "pin": pin}
        await self._succeeds(f"{self._base}/{quote(phone_number_id, safe='')}/register", token, body)

    async def _succeeds(self, url: str, token: str, body: Mapping[str, Any]) -> None:
        answer = await self._call("POST", url, token=token, json=body)
        if answer.get("success") is not True:
            raise bad_response("the Graph API answered without success: true")

    async def _call(
        self, method: str, url: str, *, token: str | None = None, json: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else None
        try:
            if method == "GET":
                response = await self._http.get(url, headers=headers)
            else:
                response = await self._http.post(url, json=dict(json or {}), headers=headers)
        except HttpUnreachable as exc:
            # Not chained: its text names the URL, which carries the app secret for the code exchange.
            raise transport_error(exc) from None
        return errors.graph_answer(response)
