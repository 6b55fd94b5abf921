"""WhatsApp's Embedded Signup (providers.md §3): a company's admin hands its WhatsApp Business account to
the operator's Meta app, and the platform finishes server to server.

The admin is sent to Meta's sign-up dialog (`signup_url`; in sandbox mode the simulator's page
`{base_url}/_sandbox/signup`, which takes the same query) with the operator's app id, its Embedded Signup
configuration id, the core's `state` and our `redirect_uri`. The dialog sends the browser back there with
a short-lived, single-use `code`, and sometimes the `waba_id` and `phone_number_id` the admin chose: Meta
hands those to the page's JavaScript (the `WA_EMBEDDED_SIGNUP` session-info message), which a plain
redirect does not carry. Then (`complete_signup`):

1. `GET /oauth/access_token?client_id&client_secret&code&redirect_uri` exchanges the code for a business
   token, which acts for that WhatsApp Business account (WABA) through the operator's app;
2. only when the answer lacks them, the ids are looked up with that token: `GET /debug_token?input_token`
   (authorised with the app token `{app_id}|{app_secret}`) names the WABAs the admin granted the app
   (`granular_scopes[].target_ids` of `whatsapp_business_management` or `whatsapp_business_messaging`),
   and `GET /{waba_id}/phone_numbers` that account's numbers. Exactly one WABA with exactly one number is
   taken; otherwise which one the admin meant cannot be told, and the sign-up fails naming the field;
3. `POST /{waba_id}/subscribed_apps` subscribes the operator's app to the account's webhooks;
4. `POST /{phone_number_id}/register {"messaging_product": "whatsapp", "pin"}` registers the number with
   the Cloud API. `pin` becomes the number's two-step verification PIN: six random digits per sign-up,
   kept nowhere and never logged. Sending needs no PIN; only registering the number again (elsewhere)
   does, and its business can reset it in WhatsApp Manager.

The new channel's credentials are the two ids, the business token and the operator's app secret: Meta
signs the webhooks of every account subscribed to an app with that app's secret. They ask for the webhook
override (`webhookOverride`): the app has one callback URL for all its numbers, so the channel's set-up
gives this number the channel's own (`override`), which the business token, granted the management
permission by the sign-up, may do. The operator configures the app with
`OPENMMP_PROVIDERS__WHATSAPP_APP_ID`, `_APP_SECRET` and `_CONFIG_ID` (published sandbox values in sandbox
mode), and registers `{public_url}/onboard/whatsapp/callback` as a valid OAuth redirect URI of the app.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, Field

from openmmp.providers.base import ProviderContext, ProviderError
from openmmp.providers.upstream import bad_response
from openmmp.providers.whatsapp.client import GraphClient

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
WABA_SCOPES = frozenset({"whatsapp_business_management", "whatsapp_business_messaging"})
"""The permissions whose `target_ids` (in `debug_token`'s `granular_scopes`) are WABA ids."""
NAMED_NUMBERS = 5
"""How many of an account's numbers a refusal names."""
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
    """Exchange the dialog's code, find the account and number when the answer does not name them,
    subscribe the app to the WABA and register the number; returns the channel's credentials. See the
    module's docstring for the steps and the PIN.

    Ids the answer gives are checked before anything is asked upstream; those looked up cannot be until
    the code is exchanged, so a sign-up whose account or number cannot be told has spent its code.
    """
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
    if not waba_id:
        waba_id = _the_account(await client.granted_accounts(app, token))
    if not phone_number_id:
        phone_number_id = _the_number(waba_id, await client.phone_numbers(waba_id, token))
    await client.subscribe_app(waba_id, token)
    await client.register(phone_number_id, token, pin=new_pin())
    return {
        "phoneNumberId": phone_number_id,
        "wabaId": waba_id,
        "accessToken": token,
        "appSecret": app.app_secret,
        "webhookOverride": True,
    }


def _answered(answer: Mapping[str, str], name: str) -> str:
    value = answer.get(name, "")
    if not value:
        raise ValueError(f"{name}: required: the sign-up dialog sends it back")
    if len(value) > ANSWER_MAX:
        raise ValueError(f"{name}: longer than {ANSWER_MAX} characters")
    return value


def _meta_id(answer: Mapping[str, str], name: str) -> str:
    """The Meta id the answer gives as `name`, or "" when it gives none (it is then looked up)."""
    if not answer.get(name):
        return ""
    value = _answered(answer, name)
    if not _META_ID.fullmatch(value):
        raise ValueError(f"{name}: not a Meta id (digits)")
    return value


def _the_account(granted: list[str]) -> str:
    """The one WABA the admin granted the app; ValueError naming `waba_id` when there is none or several."""
    if len(granted) == 1:
        return granted[0]
    found = (
        "the business token names no WhatsApp Business account"
        if not granted
        else f"the business token names {len(granted)} WhatsApp Business accounts, and which one was "
        "meant cannot be told"
    )
    raise ValueError(f"waba_id: required: the sign-up dialog did not send it back and {found}")


def _the_number(waba_id: str, numbers: list[tuple[str, str]]) -> str:
    """The one number of the account; ValueError naming `phone_number_id` when it has none or several."""
    if len(numbers) == 1:
        return numbers[0][0]
    if not numbers:
        found = f"the WhatsApp Business account {waba_id} has no phone number"
    else:
        shown = ", ".join(display or number_id for number_id, display in numbers[:NAMED_NUMBERS])
        more = ", ..." if len(numbers) > NAMED_NUMBERS else ""
        found = (
            f"the WhatsApp Business account {waba_id} has {len(numbers)} phone numbers ({shown}{more}), "
            "and which one was meant cannot be told"
        )
    raise ValueError(f"phone_number_id: required: the sign-up dialog did not send it back and {found}")


class SignupClient(GraphClient):
    """The Graph API calls that finish a sign-up. Nothing here retries (a code can be exchanged once)."""

    async def exchange_code(self, app: OperatorApp, code: str, *, redirect_url: str) -> str:
        """The business token the dialog's `code` stands for."""
        query = {
            "client_id": app.app_id,
            "client_secret": app.app_secret,
            "code": code,
            "redirect_uri": redirect_url,
        }
        body = await self.get("oauth/access_token", token=None, query=query)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise bad_response("the code exchange answered without an access_token")
        return token

    async def granted_accounts(self, app: OperatorApp, token: str) -> list[str]:
        """The WABAs the business `token` acts for (their ids, each once), as `debug_token` reports."""
        body = await self.get(
            "debug_token", token=f"{app.app_id}|{app.app_secret}", query={"input_token": token}
        )
        data = body.get("data")
        if not isinstance(data, dict):
            raise bad_response("debug_token answered without data")
        if data.get("is_valid") is not True:
            raise ProviderError(
                "WHATSAPP_TOKEN_INVALID",
                "Meta says the business token the sign-up produced is not valid",
                retryable=False,
            )
        found: list[str] = []
        scopes = data.get("granular_scopes")
        for scope in scopes if isinstance(scopes, list) else []:
            if not isinstance(scope, dict) or scope.get("scope") not in WABA_SCOPES:
                continue
            targets = scope.get("target_ids")
            for target in targets if isinstance(targets, list) else []:
                waba_id = str(target)
                if _META_ID.fullmatch(waba_id) and waba_id not in found:
                    found.append(waba_id)
        return found

    async def phone_numbers(self, waba_id: str, token: str) -> list[tuple[str, str]]:
        """The account's phone numbers: (phone number id, display number) each."""
        body = await self.get(f"{quote(waba_id, safe='')}/phone_numbers", token=token)
        data = body.get("data")
        if not isinstance(data, list):
            raise bad_response("the account's phone_numbers answered without a data list")
        numbers = []
        for number in data:
            number_id = str(number.get("id")) if isinstance(number, dict) else ""
            if _META_ID.fullmatch(number_id):
                display = number.get("display_phone_number")
                numbers.append((number_id, display if isinstance(display, str) else ""))
        return numbers

    async def subscribe_app(self, waba_id: str, token: str) -> None:
        """Subscribe the operator's app to the WhatsApp Business account's webhooks."""
        await self._succeeds(f"{quote(waba_id, safe='')}/subscribed_apps", token, {})

    async def register(self, phone_number_id: str, token: str, *, pin: str) -> None:
        """Register the number with the Cloud API, setting its two-step verification `pin`."""
        body = {"messaging_product": "whatsapp", "pin": pin}
        await self._succeeds(f"{quote(phone_number_id, safe='')}/register", token, body)

    async def _succeeds(self, path: str, token: str, body: Mapping[str, Any]) -> None:
        answer = await self.post(path, token=token, body=body)
        if answer.get("success") is not True:
            raise bad_response("the Graph API answered without success: true")
