"""A local WhatsApp Cloud API: the send endpoint, Meta's answers and error envelopes, limits, signed webhooks.

Upstream route (relative to the mount point): `POST /{phone-number-id}/messages` with
`Authorization: Bearer <token>` (any non-empty token; none is error 190, HTTP 401). A send is checked as
the Cloud API checks it (`messaging_product`, `to`, the type's object and its limits: 100, 131008,
131009, 131051), then:

1. throughput: `messages_per_second` per phone number (80), beyond it 130429;
2. the 24-hour customer-service window: a message that is not a template, to a user who has not written
   to the number (`POST /_sandbox/inbound`) in the last `session_window_s` seconds, is refused with
   131047 (0 turns the rule off). Templates always go, so the conformance suite's sends (templates)
   and a first message to anybody work as upstream;
3. the pair rate: one user gets at most `pair_burst` messages at once, then one every `pair_interval_s`
   seconds (upstream: about 45, then one per 6 s), beyond it 131056;
4. a template the number's WhatsApp Business account has (see "Message templates") goes only once
   APPROVED (132001 while it is PENDING or once REJECTED) and with a parameter for each of its variables
   (132000); one of a name the account has no template of goes, unless `templates` is set and does not
   list it (132001);
5. the shared sandbox rule (`providers.simulation`) by the last digit of `to`: 0–6 accepted, then
   `sent`, `delivered` and `read` statuses; 7 `sent` and `delivered` only; 8 refused with 131026
   (undeliverable); 9 two 131000 (HTTP 500) for the same message, then as 0–6. In rates mode an
   undelivered message gets a `failed` status with 131026.

Webhooks go to the phone number's webhook override when it has one, else to the callback URL registered
for it, signed with `X-Hub-Signature-256` keyed by its app secret; until a number's first registration
or override since the start they wait (`HeldUntilRegistered`). Errors use Meta's envelope and HTTP 400
(190: 401; 200: 403; 131000: 500).

Embedded Signup (providers.md §3), with the operator's Meta app of the knobs `app_id`, `app_secret` and
`config_id` (the platform's own options; the published sandbox values by default):

- `GET /_sandbox/signup?client_id&config_id&state&redirect_uri` plays Meta's sign-up dialog: an admin who
  signs up at once, with a new WhatsApp Business account and phone number. It answers 302 to
  `redirect_uri` with `state`, a `code`, `waba_id` and `phone_number_id`. A code is good for one exchange
  within `signup_code_ttl_s` seconds. Knobs of the page's own (not Meta's) play other sign-ups:
  `sandbox_accounts=N` has the admin grant N accounts and `sandbox_numbers=M` gives each M numbers (1 to
  10 each; the answer names the first account and its first number), and `sandbox_omit_ids=1` sends back
  the code alone, as Meta's redirect does when the ids went to the page's JavaScript instead;
- `GET /oauth/access_token?client_id&client_secret&code&redirect_uri` exchanges it for a business token
  (OAuthException, HTTP 400: 101 for another app id; 100 for a wrong secret, a redirect URI other than
  the sign-up's, and an unknown, expired or used code);
- `GET /debug_token?input_token=<business token>`, authorised with the app token `{app_id}|{app_secret}`
  (Bearer, or `access_token` in the query; 190 otherwise), names the sign-up's accounts in
  `granular_scopes` (`whatsapp_business_management` and `whatsapp_business_messaging`, `target_ids`);
  a token it did not issue is `is_valid: false`. `GET /{waba_id}/phone_numbers` lists the account's
  numbers (`data[]`: `id`, `display_phone_number`, ...);
- `POST /{waba_id}/subscribed_apps` and `POST /{phone_number_id}/register {"messaging_product",
  "pin"}` (6 digits), each with that token as Bearer (190 for another token, 200 for one of another
  sign-up's account). Registering the number makes it the operator app's: its webhooks are signed with
  the app's secret, and sends from it must carry the business token (190 otherwise).

Webhook overrides: `POST /{phone_number_id} {"webhook_configuration": {"override_callback_uri",
"verify_token"}}` first does Meta's GET handshake against the URL (`hub.mode=subscribe`, the verify
token, a `hub.challenge`) and sets the override only when the answer is HTTP 200 with the challenge as its
body; otherwise 2200, with Meta's words for what went wrong (no connection or a timeout, the HTTP status,
or "Response does not match challenge"). Success is `{"success": true}`; an empty URL removes the
override. The URL may be http (local receivers; Meta wants https), at most 200 characters (100
otherwise). Who may set it: a sign-up's business token for that sign-up's numbers (the webhooks are then
signed with the operator app's secret; 200 for another number, or for any other token on a number
registered through a sign-up), and any token for a number whose app the simulator knows from
`/_sandbox/webhooks` (signed with that app's secret); another number is 100 with subcode 33 (no such
object), as Meta answers for ids a token cannot see.

Message templates (Meta's review, providers.md §3): `POST /{waba_id}/message_templates` `{name, language,
category, parameter_format?, components}` is checked as Meta checks a new template (100 with the field and
what is wrong; a name the account has in that language already: 100 with subcode 2388024) and stored
PENDING; the answer is `{id, status, category}`. After `template_review_seconds` (1.0) the simulator
decides: REJECTED with reason INVALID_FORMAT when the name contains "reject", else APPROVED, and sends a
`message_template_status_update` webhook (`entry[].id` the account, `time`, `value` {event,
message_template_id, message_template_name, message_template_language, reason,
message_template_category}). Then, as Meta recategorises templates it finds misfiled, an approved
UTILITY template whose name contains "promo" becomes MARKETING, and a `template_category_update`
webhook follows the approval (`value` {message_template_id, message_template_name,
message_template_language, previous_category, new_category}). Meta posts those to the app's callback
URL; the simulator knows callback URLs per number, so it posts to that of a number of the account: the
first with a URL from `/_sandbox/webhooks` (the app's), else the first with an override, signed with that
number's app secret (held until one registers when none has yet).
`GET /{waba_id}/message_templates?name&status&limit&after` lists the account's templates (exact `name`;
Meta's `data` and `paging` with cursors; `limit` 25 by default, at most 100; deleted ones only with
`status=DELETED`), each with its id, name, language, status (and `rejected_reason`), category,
parameter format and components; `GET /{template_id}` reads one alike. `POST /{template_id}`
`{category?, components?}` edits one in place (100 for anything else, its name and language included,
or what a new template's checks refuse): `{"success": true}`, and it is PENDING and reviewed again as
a new one is, webhooks and all (an edit during a review starts the review over). `DELETE
/{waba_id}/message_templates?name&hsm_id` deletes the template `hsm_id` of that name (without `hsm_id`,
every language of the name): `{"success": true}`; none such is 100 with subcode 2593002 ("Message
template not found"). A deleted template is DELETED: sending it is 132001, and its name and language
may be used anew. An id that is no template's, read or edited, is 100 with subcode 33 (a POST to it is
a number's webhook override, below). Who may: as for the override, a sign-up's business token for its
accounts, and any token for an account the simulator knows a number of from `/_sandbox/webhooks` (200
for a token of another sign-up, or any other token on an account whose numbers were registered through
a sign-up; 100 with subcode 33 for an account it knows nothing of). The templates live as long as the
simulator.

The fault injector (`/_sandbox/faults`) also answers the code exchange, the look-ups, the registrations,
the override and the template calls.

Sandbox control (OpenMMP's own): `POST /_sandbox/webhooks` `{"phoneNumberId", "wabaId", "callbackUrl",
"appSecret"}` (the analogue of configuring the app's webhook; an empty `callbackUrl` removes it),
`POST /_sandbox/inbound` `{"phoneNumberId", "from", "name", "text"}` (an end user writes; opens their
window), `GET /_sandbox/messages/{wamid}` (the request the Cloud API got), `GET /_sandbox/stats`,
`POST /_sandbox/faults` (`rate_limit` answers 130429, `final_error` the fault's `status` as the error
code, else 131026).
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openmmp.kit.crypto import constant_time_equals
from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.meta.simulator import (
    GraphSimulator,
    Refused,
    bearer,
    json_object,
    payload_hash,
    webhook_settings,
)
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    json_response,
    knobs,
    last_digit,
    read_json,
    sandbox_error,
)
from openmmp.providers.whatsapp import payload as limits
from openmmp.providers.whatsapp.onboarding import (
    PIN_DIGITS,
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_CONFIG_ID,
    WABA_SCOPES,
)
from openmmp.providers.whatsapp.templates import check_components, placeholders

INVALID_PARAMETER = 100
INVALID_APP = 101
TOKEN_INVALID = 190
PERMISSION = 200
GENERIC_ERROR = 131000
MISSING_PARAMETER = 131008
INVALID_VALUE = 131009
UNDELIVERABLE = 131026
OUTSIDE_WINDOW = 131047
UNSUPPORTED_TYPE = 131051
PAIR_RATE = 131056
THROUGHPUT = 130429
PARAMETER_MISMATCH = 132000
NO_TEMPLATE = 132001
DUPLICATE_TEMPLATE = 2388024
"""The subcode of 100 for a template whose name and language the account has already."""
TEMPLATE_NOT_FOUND = 2593002
"""The subcode of 100 for a deletion that names no template of the account."""
CALLBACK_UNVERIFIED = 2200
NO_SUCH_OBJECT = 33
"""The subcode of 100 for an id the token cannot see."""
OVERRIDE_URL_MAX = 200
SIGNUP_MAX = 10
"""Most accounts a sign-up grants, and most numbers each has (`sandbox_accounts`, `sandbox_numbers`)."""
TEMPLATE_CATEGORIES = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
TEMPLATE_PAGE = 25
TEMPLATE_PAGE_MAX = 100
REJECTED_WORD = "reject"
"""A template whose name contains it is rejected by the review."""
REJECTION_REASON = "INVALID_FORMAT"
RECATEGORISED_WORD = "promo"
"""An approved UTILITY template whose name contains it is recategorised as MARKETING."""
DELETED = "DELETED"
"""The status of a deleted template: kept as Meta keeps it, so that sending it is 132001."""

TITLES = {
    INVALID_PARAMETER: "Invalid parameter",
    INVALID_APP: "Error validating application. Invalid application ID.",
    TOKEN_INVALID: "Invalid OAuth access token",
    PERMISSION: "Permissions error",
    GENERIC_ERROR: "Something went wrong",
    MISSING_PARAMETER: "Required parameter is missing",
    INVALID_VALUE: "Parameter value is not valid",
    UNDELIVERABLE: "Message undeliverable",
    OUTSIDE_WINDOW: "Re-engagement message",
    UNSUPPORTED_TYPE: "Unsupported message type",
    PAIR_RATE: "(Business Account, Consumer Account) pair rate limit hit",
    THROUGHPUT: "Rate limit hit",
    PARAMETER_MISMATCH: "Number of parameters does not match the expected number of params",
    NO_TEMPLATE: "Template name does not exist in the translation",
    CALLBACK_UNVERIFIED: "callback verification failed",
}
_HTTP_STATUS = {TOKEN_INVALID: 401, PERMISSION: 403, GENERIC_ERROR: 500}
_TYPES = frozenset(
    {"text", "image", "video", "audio", "document", "sticker", "location", "template", "interactive"}
)
_MEDIA = frozenset({"image", "video", "audio", "document", "sticker"})
_DIGITS = re.compile(r"\+?(\d{8,15})")
_TEMPLATE_NAME = re.compile(rf"[a-z0-9_]{{1,{limits.TEMPLATE_NAME_MAX}}}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:_[A-Za-z0-9]{2,4})?")


@dataclass
class WhatsappKnobs:
    """The WhatsApp simulator's own knobs (`SimulatorConfig.options["whatsapp"]`)."""

    messages_per_second: int = 80
    """Messages per second per phone number; beyond, 130429 (upstream: 80)."""
    pair_burst: int = 45
    pair_interval_s: float = 6.0
    """One user gets `pair_burst` messages at once, then one per `pair_interval_s`; beyond, 131056."""
    session_window_s: float = 86400.0
    """Free-form messages only to users who wrote within this long (131047 otherwise); 0: no window."""
    templates: str = ""
    """Comma-separated template names the number has besides its account's own (`message_templates`);
    others get 132001. Empty: any name."""
    template_review_seconds: float = 1.0
    """How long Meta's review of a new template takes (upstream: minutes to a day)."""
    app_id: str = SANDBOX_APP_ID
    app_secret: str = SANDBOX_APP_SECRET
    config_id: str = SANDBOX_CONFIG_ID
    """The operator's Meta app that companies sign up through (Embedded Signup); must be the platform's
    `OPENMMP_PROVIDERS__WHATSAPP_APP_ID`, `_APP_SECRET` and `_CONFIG_ID` (empty: the sandbox's)."""
    signup_code_ttl_s: float = 60.0
    """How long a sign-up's code can be exchanged (upstream: seconds to minutes)."""


@dataclass
class _Number:
    """A business phone number as its app's webhook configuration knows it."""

    id: str
    waba_id: str
    callback_url: str | None = None
    """The app's callback URL (`/_sandbox/webhooks`)."""
    override_url: str | None = None
    """The number's webhook override, which wins over the app's URL."""
    app_secret: str = ""
    access_token: str | None = None
    """Set when the number was registered through a sign-up: sends must carry this business token."""

    @property
    def destination(self) -> str | None:
        """Where the number's webhooks go, if anywhere."""
        return self.override_url or self.callback_url


@dataclass
class _Template:
    """A message template of a WhatsApp Business account, as Meta keeps it."""

    id: str
    waba_id: str
    name: str
    language: str
    category: str
    parameter_format: str
    components: list[dict[str, Any]]
    status: str = "PENDING"
    reason: str = "NONE"
    revision: int = 0
    """How many times it was edited: a review decides only the revision it began with."""

    def listed(self) -> dict[str, Any]:
        """The template as `GET /{waba_id}/message_templates` lists it."""
        item = {
            "name": self.name,
            "parameter_format": self.parameter_format,
            "components": self.components,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "id": self.id,
        }
        if self.status == "REJECTED":
            item["rejected_reason"] = self.reason
        return item

    def decision(self) -> dict[str, Any]:
        """The value of its `message_template_status_update` webhook: its status now."""
        return {
            "event": self.status,
            "message_template_id": int(self.id),
            "message_template_name": self.name,
            "message_template_language": self.language,
            "reason": self.reason,
            "message_template_category": self.category,
        }

    def edit(self, body: Mapping[str, Any]) -> None:
        """Meta's checks of an edit (`POST /{template_id}`), then the edit: only the category and the
        components change, and it is PENDING again, its review to come."""
        other = sorted(set(body) - {"category", "components"})
        if other:
            raise Refused(
                INVALID_PARAMETER, f"{other[0]}: only a template's category and components can be edited"
            )
        if not body:
            raise Refused(INVALID_PARAMETER, "category or components: there is nothing to edit")
        category, components = body.get("category", self.category), body.get("components", self.components)
        if category not in TEMPLATE_CATEGORIES:
            raise Refused(INVALID_PARAMETER, "category: MARKETING, UTILITY or AUTHENTICATION")
        try:
            check_components(components, self.parameter_format)
        except ValueError as exc:
            raise Refused(INVALID_PARAMETER, str(exc)) from None
        self.category, self.components = str(category), list(components)
        self.status, self.reason = "PENDING", "NONE"
        self.revision += 1

    def mismatch(self, sent: Mapping[str, Any]) -> str | None:
        """What Meta's 132000 says of a send (its `template` object) whose parameters do not fit the
        template's variables, component by component; None when they fit."""
        expected, given = self._variables(), _parameters(sent, named=self.parameter_format == "NAMED")
        for where in sorted(set(expected) | set(given)):
            wanted, got = expected.get(where, []), given.get(where, [])
            if wanted != got:
                return (
                    f"{where}: the parameters given ({', '.join(got) or 'none'}) do not match the "
                    f"template's variables ({', '.join(wanted) or 'none'})"
                )
        return None

    def _variables(self) -> dict[str, list[str]]:
        """Per component of a send (`header`, `body`, `button.<index>`): the parameters it must have."""
        named = self.parameter_format == "NAMED"
        found: dict[str, list[str]] = {}
        for component in self.components:
            kind = str(component.get("type", "")).upper()
            if kind == "HEADER" and str(component.get("format", "")).upper() != "TEXT":
                found["header"] = [str(component.get("format", "")).lower()]
            elif kind in ("HEADER", "BODY"):
                tokens = placeholders(str(component.get("text", "")), kind, self.parameter_format)
                found[kind.lower()] = [f"text:{token}" if named else "text" for token in tokens]
            elif kind == "BUTTONS":
                for index, button in enumerate(component.get("buttons") or []):
                    button_type = str(button.get("type", "")).upper()
                    if button_type == "URL" and "{{" in str(button.get("url", "")):
                        found[f"button.{index}"] = ["text"]
                    elif button_type == "COPY_CODE":
                        found[f"button.{index}"] = ["coupon_code"]
        return {where: sorted(kinds) for where, kinds in found.items() if kinds}


def _parameters(sent: Mapping[str, Any], *, named: bool) -> dict[str, list[str]]:
    """Per component of a send, the parameters it has (as `_Template._variables` names them); a
    quick-reply button's payload is optional, so it is left out."""
    found: dict[str, list[str]] = {}
    components = sent.get("components")
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        where = str(component.get("type", "")).lower()
        if where == "button":
            if component.get("sub_type") == "quick_reply":
                continue
            where = f"button.{component.get('index')}"
        parameters = component.get("parameters")
        kinds = []
        for parameter in parameters if isinstance(parameters, list) else []:
            kind = parameter.get("type") if isinstance(parameter, dict) else None
            if kind in ("currency", "date_time"):  # formatted text, in a text variable's place
                kind = "text"
            if kind == "text" and named and where in ("header", "body"):
                kind = f"text:{parameter.get('parameter_name')}"
            kinds.append(str(kind))
        if kinds:
            found[where] = sorted(kinds)
    return found


@dataclass
class _Signup:
    """One admin's sign-up: the accounts it granted and their numbers (the first of each is the one the
    admin chose), its code, and whether the code became a business token."""

    numbers: dict[str, tuple[str, ...]]
    """Each account's phone number ids, by WABA id, in order."""
    redirect_uri: str
    issued_at: float
    exchanged: bool = False

    @property
    def waba_id(self) -> str:
        """The account the admin chose."""
        return next(iter(self.numbers))

    def waba_of(self, phone_number_id: str) -> str | None:
        """The account of one of the sign-up's numbers; None for a number it did not make."""
        return next((waba for waba, ids in self.numbers.items() if phone_number_id in ids), None)


def create_whatsapp_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The WhatsApp Cloud API simulator as a Starlette app; `http` sends its webhooks."""
    return _WhatsappSimulator(config, http).app


class _WhatsappSimulator(GraphSimulator):
    webhook_object = "whatsapp_business_account"
    fault_rate_limit = THROUGHPUT
    fault_final_error = UNDELIVERABLE

    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._http = http
        self._knobs = knobs(config, "whatsapp", WhatsappKnobs)
        self._throughput = TokenBucketLimiter(capacity=self._knobs.messages_per_second, window_s=1.0)
        burst = max(1, int(self._knobs.pair_burst))
        self._pairs = TokenBucketLimiter(capacity=burst, window_s=burst * float(self._knobs.pair_interval_s))
        self._templates = {t.strip() for t in str(self._knobs.templates).split(",") if t.strip()}
        self._numbers: LruMap[str, _Number] = LruMap(config.max_tracked_keys)
        self._message_templates: LruMap[str, _Template] = LruMap(config.max_tracked_keys)
        """Every account's templates, by account, name and language (`_template_key`)."""
        self._app_id = self._knobs.app_id or SANDBOX_APP_ID
        self._app_secret = self._knobs.app_secret or SANDBOX_APP_SECRET
        self._config_id = self._knobs.config_id or SANDBOX_CONFIG_ID
        self._codes: LruMap[str, _Signup] = LruMap(config.max_tracked_keys)
        self._business_tokens: LruMap[str, _Signup] = LruMap(config.max_tracked_keys)
        routes = [
            Route("/_sandbox/signup", self._signup_page, methods=["GET"]),
            Route("/oauth/access_token", self._access_token, methods=["GET"]),
            Route("/debug_token", self._debug_token, methods=["GET"]),
            Route("/{phone_number_id}/messages", self._send, methods=["POST"]),
            Route("/{waba_id}/subscribed_apps", self._subscribed_apps, methods=["POST"]),
            Route("/{waba_id}/phone_numbers", self._phone_numbers, methods=["GET"]),
            Route("/{phone_number_id}/register", self._register, methods=["POST"]),
            Route("/{waba_id}/message_templates", self._templates_route, methods=["GET", "POST", "DELETE"]),
            # Last: every one-segment route above (debug_token) wins over an object's id.
            Route("/{object_id}", self._object, methods=["GET", "POST"]),
        ]
        super().__init__(config, http, routes)
        self._held_templates: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)
        """Template decisions of accounts none of whose numbers has a callback URL yet, by account."""

    def _wamid(self, phone_number_id: str) -> str:
        # Meta's ids are opaque base64 after "wamid."; time-prefixed so that restarts do not reuse them.
        raw = f"{phone_number_id}:{time.time_ns()}:{next(self._sequence)}".encode()
        return "wamid." + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _number(self, phone_number_id: str) -> _Number:
        number = self._numbers.get(phone_number_id)
        if number is None:
            number = _Number(id=phone_number_id, waba_id=phone_number_id)
            self._numbers.set(phone_number_id, number)
        return number

    # ---- the send endpoint ------------------------------------------------------------------------------

    async def _send(self, request: Request) -> Response:
        raw = await request.body()
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        token = bearer(request)
        if token is None:
            return self._error(Refused(TOKEN_INVALID, "Cannot parse access token"))
        phone_number_id = request.path_params["phone_number_id"]
        registered = self._numbers.get(phone_number_id)
        if registered is not None and registered.access_token not in (None, token):
            return self._error(Refused(TOKEN_INVALID, "the token does not act for this phone number"))
        try:
            if len(raw) > self._config.max_request_bytes:
                raise Refused(INVALID_PARAMETER, "the request is too large")
            body = json_object(raw)
            to = _check_send(body)
            if body["type"] == "template":
                waba_id = registered.waba_id if registered is not None else phone_number_id
                self._check_template(waba_id, body["template"])
        except Refused as refused:
            return self._error(refused)
        if not self._throughput.try_acquire(phone_number_id):
            self._stats.rate_limited += 1
            return self._error(Refused(THROUGHPUT, "too many messages sent from this phone number"))
        if body["type"] != "template" and not self._inside_window(phone_number_id, to):
            return self._error(
                Refused(
                    OUTSIDE_WINDOW,
                    "Message failed to send because more than 24 hours have passed since the customer "
                    "last replied to this number.",
                )
            )
        if not self._pairs.try_acquire(f"{phone_number_id}:{to}"):
            self._stats.rate_limited += 1
            return self._error(Refused(PAIR_RATE, "too many messages to this user in a short time"))
        key = f"{phone_number_id}:{to}:{payload_hash(body)}"
        outcome = self._planner.decide(digit=last_digit(to), attempt_key=key)
        if outcome is Outcome.FINAL_ERROR:
            return self._error(Refused(UNDELIVERABLE, "the recipient is not a WhatsApp user (sandbox)"))
        if outcome is Outcome.RETRYABLE_ERROR:
            return self._error(Refused(GENERIC_ERROR, "temporary failure (sandbox)"))
        wamid = self._wamid(phone_number_id)
        self._stats.accept(key)
        if self._config.track_keys:
            self._messages.set(wamid, {"phoneNumberId": phone_number_id, "request": body})
        number = self._number(phone_number_id)
        if number.destination is not None:
            self._scheduler.spawn(self._lifecycle(number, wamid, to, outcome))
        else:
            self._held.hold(number.id, lambda: self._lifecycle(number, wamid, to, outcome))
        return json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": to}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    def _inside_window(self, phone_number_id: str, wa_id: str) -> bool:
        window = float(self._knobs.session_window_s)
        if window <= 0:
            return True
        wrote = self._wrote.get(f"{phone_number_id}:{wa_id}")
        return wrote is not None and time.time() - wrote <= window

    def _error(self, refused: Refused) -> Response:
        error = self._envelope(refused, TITLES.get(refused.code, "Error"))
        if refused.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": refused.details}
        if refused.user_message:
            error |= {
                "is_transient": False,
                "error_user_title": refused.user_title,
                "error_user_msg": refused.user_message,
            }
        return json_response({"error": error}, _HTTP_STATUS.get(refused.code, 400))

    # ---- webhooks ---------------------------------------------------------------------------------------

    async def _lifecycle(self, number: _Number, wamid: str, to: str, outcome: Outcome) -> None:
        latency = self._config.callback_latency_s
        await asyncio.sleep(latency)
        if outcome is Outcome.FAILED_LATER:
            failure = {
                "code": UNDELIVERABLE,
                "title": TITLES[UNDELIVERABLE],
                "message": TITLES[UNDELIVERABLE],
            }
            await self._status(number, wamid, to, "failed", errors=[failure])
            return
        await self._status(number, wamid, to, "sent")
        await asyncio.sleep(latency)
        await self._status(number, wamid, to, "delivered")
        if outcome is Outcome.DELIVERED_AND_SEEN:
            await asyncio.sleep(latency)
            await self._status(number, wamid, to, "read")

    async def _status(self, number: _Number, wamid: str, to: str, status: str, **extra: Any) -> None:
        entry: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": to,
            **extra,
        }
        if status != "failed":
            entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
        await self._webhook(number, {"statuses": [entry]})

    async def _webhook(self, number: _Number, value: Mapping[str, Any]) -> None:
        # Read the URL and secret when sending: the number may have been configured again meanwhile.
        url = number.destination
        if url is None:
            return
        metadata = {"display_phone_number": number.id, "phone_number_id": number.id}
        change = {
            "field": "messages",
            "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
        }
        await self._deliver(url, number.app_secret, {"id": number.waba_id, "changes": [change]})

    # ---- message templates ------------------------------------------------------------------------------

    async def _templates_route(self, request: Request) -> Response:
        """List (GET), create (POST) or delete (DELETE) a WhatsApp Business account's message templates."""
        raw = await request.body()
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        waba_id = request.path_params["waba_id"]
        try:
            self._check_manager(request, waba_id)
            if request.method == "GET":
                return self._list_templates(request, waba_id)
            if request.method == "DELETE":
                return self._delete_templates(request, waba_id)
            if len(raw) > self._config.max_request_bytes:
                raise Refused(INVALID_PARAMETER, "the request is too large")
            template = self._new_template(waba_id, json_object(raw))
        except Refused as refused:
            return self._error(refused)
        self._scheduler.spawn(self._review(template, template.revision))
        return json_response({"id": template.id, "status": template.status, "category": template.category})

    async def _object(self, request: Request) -> Response:
        """`/{id}`: a template, read (GET) or edited (POST); a POST to any other id is a phone number's
        webhook override."""
        template = self._template_by_id(request.path_params["object_id"])
        if template is None and request.method == "POST":
            return await self._override(request)
        raw = await request.body()
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        try:
            if template is None:
                raise Refused(
                    INVALID_PARAMETER,
                    f"Unsupported get request. Object with ID '{request.path_params['object_id']}' does "
                    "not exist, cannot be loaded due to missing permissions, or does not support this "
                    "operation",
                    subcode=NO_SUCH_OBJECT,
                )
            self._check_manager(request, template.waba_id)
            if request.method == "GET":
                return json_response(template.listed())
            if len(raw) > self._config.max_request_bytes:
                raise Refused(INVALID_PARAMETER, "the request is too large")
            template.edit(json_object(raw))
        except Refused as refused:
            return self._error(refused)
        self._scheduler.spawn(self._review(template, template.revision))
        return json_response({"success": True})

    def _template_by_id(self, template_id: str) -> _Template | None:
        """The template of that id, unless it was deleted."""
        return next(
            (t for _, t in self._message_templates.items() if t.id == template_id and t.status != DELETED),
            None,
        )

    def _delete_templates(self, request: Request, waba_id: str) -> Response:
        """Delete the account's templates named `name`: every language of it, or with `hsm_id` that one."""
        name, hsm_id = request.query_params.get("name"), request.query_params.get("hsm_id")
        if not name:
            raise Refused(INVALID_PARAMETER, "name: the template's name is required")
        found = [
            template
            for _, template in self._message_templates.items()
            if template.waba_id == waba_id
            and template.name == name
            and template.status != DELETED
            and (hsm_id is None or template.id == hsm_id)
        ]
        if not found:
            raise Refused(
                INVALID_PARAMETER,
                f"no template {name}" + (f" with id {hsm_id}" if hsm_id is not None else ""),
                subcode=TEMPLATE_NOT_FOUND,
                user_title="Message template not found",
                user_message=f"The message template {name} wasn't found for this account.",
            )
        for template in found:
            template.status = DELETED
        return json_response({"success": True})

    def _check_manager(self, request: Request, waba_id: str) -> None:
        """Raise `Refused` unless the request's token may manage the account's templates (who may: as
        for a number's override)."""
        token = bearer(request)
        if token is None:
            raise Refused(TOKEN_INVALID, "Cannot parse access token")
        signup = self._business_tokens.get(token)
        if signup is not None:
            if waba_id not in signup.numbers:
                raise Refused(PERMISSION, "the token does not act for this business account")
            return
        numbers = self._numbers_of(waba_id)
        if any(number.access_token is not None for number in numbers):
            raise Refused(
                PERMISSION, "the token may not manage this business account (whatsapp_business_management)"
            )
        if not any(number.app_secret for number in numbers):
            raise Refused(
                INVALID_PARAMETER,
                f"Unsupported request. Object with ID '{waba_id}' does not exist, cannot be loaded due to "
                "missing permissions, or does not support this operation",
                subcode=NO_SUCH_OBJECT,
            )

    def _numbers_of(self, waba_id: str) -> list[_Number]:
        return [number for _, number in self._numbers.items() if number.waba_id == waba_id]

    def _new_template(self, waba_id: str, body: Mapping[str, Any]) -> _Template:
        """Meta's checks of a new template, then the template, PENDING."""
        name, language, category = body.get("name"), body.get("language"), body.get("category")
        parameter_format = body.get("parameter_format", "POSITIONAL")
        if not isinstance(name, str) or not _TEMPLATE_NAME.fullmatch(name):
            raise Refused(
                INVALID_PARAMETER,
                f"name: lower-case letters, digits and _ (at most {limits.TEMPLATE_NAME_MAX})",
            )
        if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
            raise Refused(INVALID_PARAMETER, "language: a language code such as en_US")
        if category not in TEMPLATE_CATEGORIES:
            raise Refused(INVALID_PARAMETER, "category: MARKETING, UTILITY or AUTHENTICATION")
        if parameter_format not in ("POSITIONAL", "NAMED"):
            raise Refused(INVALID_PARAMETER, "parameter_format: POSITIONAL or NAMED")
        try:
            check_components(body.get("components"), parameter_format)
        except ValueError as exc:
            raise Refused(INVALID_PARAMETER, str(exc)) from None
        key = _template_key(waba_id, name, language)
        existing = self._message_templates.get(key)
        if existing is not None and existing.status != DELETED:
            raise Refused(
                INVALID_PARAMETER,
                f"the account has a template named {name} in {language} already",
                subcode=DUPLICATE_TEMPLATE,
                user_title="Content in This Language Already Exists",
                user_message=f"There is {language} content for {name} already. Create the template under "
                "another name and try again.",
            )
        template = _Template(
            id=self._new_id(),
            waba_id=waba_id,
            name=name,
            language=language,
            category=str(category),
            parameter_format=parameter_format,
            components=list(body["components"]),
        )
        self._message_templates.set(key, template)
        return template

    async def _review(self, template: _Template, revision: int) -> None:
        """Meta's review of a new or edited template: after `template_review_seconds`, REJECTED when its
        name says so, else APPROVED; then the account's webhook, and for an approved UTILITY template
        whose name says so, its recategorisation as MARKETING. Nothing when the template was edited
        again meanwhile (the edit's own review decides) or deleted."""
        await asyncio.sleep(float(self._knobs.template_review_seconds))
        if template.revision != revision or template.status == DELETED:
            return
        if REJECTED_WORD in template.name:
            template.status, template.reason = "REJECTED", REJECTION_REASON
        else:
            template.status = "APPROVED"
        await self._account_webhook(template.waba_id, "message_template_status_update", template.decision)
        if (
            template.status == "APPROVED"
            and template.category == "UTILITY"
            and RECATEGORISED_WORD in template.name
        ):
            template.category = "MARKETING"
            change = {
                "message_template_id": int(template.id),
                "message_template_name": template.name,
                "message_template_language": template.language,
                "previous_category": "UTILITY",
                "new_category": template.category,
            }
            await self._account_webhook(template.waba_id, "template_category_update", lambda: change)

    async def _account_webhook(self, waba_id: str, field: str, value: Callable[[], dict[str, Any]]) -> None:
        """A webhook of the account's `field`, its value made by `value` when it goes, to the callback
        URL of a number of the account (module docstring); held while none has one."""
        numbers = self._numbers_of(waba_id)
        chosen = [n for n in numbers if n.callback_url] or [n for n in numbers if n.override_url]
        url = (chosen[0].callback_url or chosen[0].override_url) if chosen else None
        if url is None:
            self._held_templates.hold(waba_id, lambda: self._account_webhook(waba_id, field, value))
            return
        change = {"field": field, "value": value()}
        entry = {"id": waba_id, "time": int(time.time()), "changes": [change]}
        await self._deliver(url, chosen[0].app_secret, entry)

    def _list_templates(self, request: Request, waba_id: str) -> Response:
        """The account's templates, oldest first, a page of `limit` after the cursor `after`; only those
        named `name` (exactly) or of `status` when given (the deleted ones only then)."""
        query = request.query_params
        limit = query.get("limit", str(TEMPLATE_PAGE))
        if not limit.isdigit() or not 1 <= int(limit) <= TEMPLATE_PAGE_MAX:
            raise Refused(INVALID_PARAMETER, f"limit: 1 to {TEMPLATE_PAGE_MAX}")
        name, status = query.get("name"), query.get("status")
        found = [
            template
            for _, template in self._message_templates.items()
            if template.waba_id == waba_id
            and (name is None or template.name == name)
            and (template.status != DELETED if status is None else template.status == status.upper())
        ]
        if "after" in query:
            ids = [template.id for template in found]
            try:
                found = found[ids.index(base64.b64decode(query["after"], validate=True).decode()) + 1 :]
            except ValueError:
                raise Refused(INVALID_PARAMETER, "after: not a cursor of this list") from None
        page, more = found[: int(limit)], len(found) > int(limit)
        answer: dict[str, Any] = {"data": [template.listed() for template in page]}
        if page:
            edges = [base64.b64encode(page[n].id.encode()).decode() for n in (0, -1)]
            paging: dict[str, Any] = {"cursors": {"before": edges[0], "after": edges[1]}}
            if more:
                paging["next"] = str(request.url.include_query_params(after=edges[1]))
            answer["paging"] = paging
        return json_response(answer)

    def _check_template(self, waba_id: str, sent: Mapping[str, Any]) -> None:
        """Meta sends an account's template only once APPROVED (132001 before), with the parameters its
        variables want (132000). A name the account has no template of goes unless the `templates` knob
        lists others."""
        name, language = sent["name"], sent["language"]["code"]
        template = self._message_templates.get(_template_key(waba_id, name, language))
        if template is None:
            if self._templates and name not in self._templates:
                raise Refused(NO_TEMPLATE, f"template name ({name}) does not exist in {language}")
            return
        if template.status != "APPROVED":
            raise Refused(
                NO_TEMPLATE,
                f"template name ({name}) does not exist in {language}: it is {template.status}, and only "
                "an APPROVED template can be sent",
            )
        mismatch = template.mismatch(sent)
        if mismatch is not None:
            raise Refused(PARAMETER_MISMATCH, mismatch)

    # ---- sandbox control --------------------------------------------------------------------------------

    async def _sandbox_webhooks(self, request: Request) -> Response:
        try:
            body = await read_json(request)
            phone_number_id, url, secret = webhook_settings(body, "phoneNumberId")
            waba_id = body.get("wabaId")
            if waba_id is not None and not isinstance(waba_id, str):
                raise ValueError("wabaId must be a string")
        except ValueError as exc:
            return sandbox_error(str(exc))
        number = self._number(phone_number_id)
        if not url:
            number.callback_url = None
            self._held.configured(number.id, registered=False)
            return json_response({"phoneNumberId": phone_number_id, "callbackUrl": None})
        number.callback_url, number.app_secret = url, secret
        number.waba_id = waba_id or number.waba_id
        self._held.configured(number.id, registered=True)
        self._held_templates.configured(number.waba_id, registered=True)
        return json_response({"phoneNumberId": phone_number_id, "callbackUrl": url})

    async def _sandbox_inbound(self, request: Request) -> Response:
        """An end user writes to a phone number: their 24-hour window opens and, when the number has a
        callback URL, a signed `messages` webhook follows. Returns `{"messageId", "waId", "webhook"}`."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            phone_number_id, sender = body.get("phoneNumberId"), body.get("from")
            name, text = body.get("name", "WhatsApp user"), body.get("text")
            if not isinstance(phone_number_id, str) or not phone_number_id:
                raise ValueError("phoneNumberId is required")
            found = _DIGITS.fullmatch(sender) if isinstance(sender, str) else None
            if found is None:
                raise ValueError("from must be a phone number (8-15 digits)")
            if not isinstance(name, str) or not name:
                raise ValueError("name must be a non-empty string")
            if not isinstance(text, str) or not text:
                raise ValueError("text is required")
        except ValueError as exc:
            return sandbox_error(str(exc))
        wa_id = found.group(1)
        number = self._number(phone_number_id)
        self._wrote.set(f"{number.id}:{wa_id}", time.time())
        wamid = self._wamid(number.id)
        value = {
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
        registered = number.destination is not None
        if registered:
            self._scheduler.spawn(self._after_latency(number, value))
        return json_response({"messageId": wamid, "waId": wa_id, "webhook": registered})

    async def _after_latency(self, number: _Number, value: Mapping[str, Any]) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        await self._webhook(number, value)

    # ---- Embedded Signup -----------------------------------------------------------------------------

    async def _signup_page(self, request: Request) -> Response:
        """Meta's sign-up dialog, with an admin who signs up at once: new accounts and numbers (one of
        each unless `sandbox_accounts` and `sandbox_numbers` say more), the chosen ones named in the
        answer unless `sandbox_omit_ids` is set."""
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        accounts, numbers = query.get("sandbox_accounts", "1"), query.get("sandbox_numbers", "1")
        if query.get("client_id") != self._app_id:
            return sandbox_error("client_id is not the Meta app's id (knob app_id)")
        if query.get("config_id") != self._config_id:
            return sandbox_error("config_id is not the app's Embedded Signup configuration (knob config_id)")
        if not redirect_uri.startswith(("http://", "https://")):
            return sandbox_error("redirect_uri must be an http(s) URL")
        if not all(n.isdigit() and 1 <= int(n) <= SIGNUP_MAX for n in (accounts, numbers)):
            return sandbox_error(f"sandbox_accounts and sandbox_numbers must be 1 to {SIGNUP_MAX}")
        signup = _Signup(
            numbers={
                self._new_id(): tuple(self._new_id() for _ in range(int(numbers)))
                for _ in range(int(accounts))
            },
            redirect_uri=redirect_uri,
            issued_at=time.monotonic(),
        )
        code = "AQ" + secrets.token_urlsafe(48)
        self._codes.set(code, signup)
        answer = {"code": code}
        if query.get("sandbox_omit_ids", "") in ("", "0", "false"):
            answer |= {"waba_id": signup.waba_id, "phone_number_id": signup.numbers[signup.waba_id][0]}
        if "state" in query:
            answer["state"] = query["state"]
        return RedirectResponse(_with_query(redirect_uri, answer), status_code=302)

    def _new_id(self) -> str:
        # Meta's ids are 15 to 17 digits; a new one is nobody's number or template yet (`/{id}` tells
        # them apart by their ids).
        while True:
            candidate = str(random.randrange(10**14, 10**15))
            if self._numbers.get(candidate) is None and self._template_by_id(candidate) is None:
                return candidate

    async def _access_token(self, request: Request) -> Response:
        """The code exchange: the business token a sign-up's code stands for, once."""
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        query = request.query_params
        if not constant_time_equals(query.get("client_id", ""), self._app_id):
            return self._oauth_error(INVALID_APP, TITLES[INVALID_APP])
        if not constant_time_equals(query.get("client_secret", ""), self._app_secret):
            return self._oauth_error(INVALID_PARAMETER, "Error validating client secret.")
        signup = self._codes.get(query.get("code", ""))
        if signup is None:
            return self._oauth_error(INVALID_PARAMETER, "Invalid verification code format.")
        if signup.exchanged:
            return self._oauth_error(INVALID_PARAMETER, "This authorization code has been used.")
        if time.monotonic() - signup.issued_at > float(self._knobs.signup_code_ttl_s):
            return self._oauth_error(INVALID_PARAMETER, "This authorization code has expired.")
        if not constant_time_equals(query.get("redirect_uri", ""), signup.redirect_uri):
            return self._oauth_error(
                INVALID_PARAMETER,
                "Error validating verification code. Please make sure your redirect_uri is identical to "
                "the one you used in the OAuth dialog request",
            )
        signup.exchanged = True
        token = "EAAG" + secrets.token_urlsafe(48)
        self._business_tokens.set(token, signup)
        return json_response({"access_token": token, "token_type": "bearer"})

    async def _subscribed_apps(self, request: Request) -> Response:
        """Subscribe the app to a WhatsApp Business account's webhooks."""
        signup = await self._as_business(request)
        if not isinstance(signup, _Signup):
            return signup
        if request.path_params["waba_id"] not in signup.numbers:
            return self._error(Refused(PERMISSION, "the token does not act for this business account"))
        return json_response({"success": True})

    async def _register(self, request: Request) -> Response:
        """Register a phone number with the Cloud API: from now on it is the operator app's."""
        signup = await self._as_business(request)
        if not isinstance(signup, _Signup):
            return signup
        phone_number_id = request.path_params["phone_number_id"]
        waba_id = signup.waba_of(phone_number_id)
        if waba_id is None:
            return self._error(Refused(PERMISSION, "the token does not act for this phone number"))
        try:
            body = json_object(await request.body())
            if body.get("messaging_product") != "whatsapp":
                raise Refused(INVALID_PARAMETER, "messaging_product must be whatsapp")
            pin = body.get("pin")
            if not isinstance(pin, str) or not re.fullmatch(rf"\d{{{PIN_DIGITS}}}", pin):
                raise Refused(INVALID_PARAMETER, f"pin must be {PIN_DIGITS} digits")
        except Refused as refused_body:
            return self._error(refused_body)
        number = self._number(phone_number_id)
        number.waba_id = waba_id
        number.app_secret = self._app_secret
        number.access_token = bearer(request)
        return json_response({"success": True})

    async def _debug_token(self, request: Request) -> Response:
        """What a token is and may do; here, the business tokens of sign-ups and the accounts they reach."""
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        query = request.query_params
        app_token = bearer(request) or query.get("access_token", "")
        if not constant_time_equals(app_token, f"{self._app_id}|{self._app_secret}"):
            return self._error(Refused(TOKEN_INVALID, "debug_token is authorised with the app's token"))
        if not query.get("input_token"):
            return self._error(Refused(INVALID_PARAMETER, "The parameter input_token is required"))
        signup = self._business_tokens.get(query["input_token"])
        if signup is None:
            invalid = {"code": TOKEN_INVALID, "message": "Invalid OAuth access token."}
            return json_response({"data": {"error": invalid, "is_valid": False, "scopes": []}})
        granted = [{"scope": scope, "target_ids": list(signup.numbers)} for scope in sorted(WABA_SCOPES)]
        data = {
            "app_id": self._app_id,
            "type": "USER",
            "application": "OpenMMP sandbox",
            "data_access_expires_at": 0,
            "expires_at": 0,
            "is_valid": True,
            "scopes": [*sorted(WABA_SCOPES), "public_profile"],
            "granular_scopes": granted,
            "user_id": signup.waba_id[::-1],
        }
        return json_response({"data": data})

    async def _phone_numbers(self, request: Request) -> Response:
        """The business phone numbers of an account the token acts for."""
        signup = await self._as_business(request)
        if not isinstance(signup, _Signup):
            return signup
        numbers = signup.numbers.get(request.path_params["waba_id"])
        if numbers is None:
            return self._error(Refused(PERMISSION, "the token does not act for this business account"))
        listed = [
            {
                "verified_name": "Sandbox business",
                "code_verification_status": "VERIFIED",
                "display_phone_number": _display_number(number_id),
                "quality_rating": "GREEN",
                "platform_type": "CLOUD_API",
                "throughput": {"level": "STANDARD"},
                "id": number_id,
            }
            for number_id in numbers
        ]
        edges = [base64.b64encode(n.encode()).decode() for n in numbers]
        return json_response(
            {"data": listed, "paging": {"cursors": {"before": edges[0], "after": edges[-1]}}}
        )

    async def _override(self, request: Request) -> Response:
        """Set (or with an empty URL, remove) a phone number's webhook override, once Meta's GET handshake
        against the URL brought the challenge back."""
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        phone_number_id = request.path_params["object_id"]
        try:
            app_secret = self._manager_secret(request, phone_number_id)
            body = json_object(await request.body())
            configuration = body.get("webhook_configuration")
            if not isinstance(configuration, dict):
                raise Refused(INVALID_PARAMETER, "webhook_configuration is required")
            url, verify_token = configuration.get("override_callback_uri"), configuration.get("verify_token")
            if not isinstance(url, str):
                raise Refused(INVALID_PARAMETER, "webhook_configuration.override_callback_uri is required")
            if url and not url.startswith(("http://", "https://")):
                raise Refused(INVALID_PARAMETER, "override_callback_uri must be an http(s) URL")
            if len(url) > OVERRIDE_URL_MAX:
                raise Refused(INVALID_PARAMETER, f"override_callback_uri is longer than {OVERRIDE_URL_MAX}")
            if url and (not isinstance(verify_token, str) or not verify_token):
                raise Refused(INVALID_PARAMETER, "webhook_configuration.verify_token is required")
        except Refused as refused:
            return self._error(refused)
        number = self._number(phone_number_id)
        if not url:
            number.override_url = None
            return json_response({"success": True})
        failure = await self._handshake(url, str(verify_token))
        if failure is not None:
            return self._error(Refused(CALLBACK_UNVERIFIED, failure))
        number.override_url, number.app_secret = url, app_secret
        self._held.configured(number.id, registered=True)
        self._held_templates.configured(number.waba_id, registered=True)
        return json_response({"success": True})

    def _manager_secret(self, request: Request, phone_number_id: str) -> str:
        """The secret of the app whose token may manage the number (its webhooks are signed with it);
        raises `Refused` for a token that may not, or a number the simulator knows no app of."""
        token = bearer(request)
        if token is None:
            raise Refused(TOKEN_INVALID, "Cannot parse access token")
        signup = self._business_tokens.get(token)
        number = self._numbers.get(phone_number_id)
        if signup is not None and signup.waba_of(phone_number_id) is not None:
            return self._app_secret
        if signup is not None or (number is not None and number.access_token is not None):
            raise Refused(
                PERMISSION, "the token may not manage this phone number (whatsapp_business_management)"
            )
        if number is None or not number.app_secret:
            raise Refused(
                INVALID_PARAMETER,
                f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation",
                subcode=NO_SUCH_OBJECT,
            )
        return number.app_secret

    async def _handshake(self, url: str, verify_token: str) -> str | None:
        """Meta's check of a callback URL: None when it answered HTTP 200 with the challenge, else Meta's
        words for what went wrong."""
        challenge = str(secrets.randbelow(9 * 10**9) + 10**9)
        query = {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
        failed = "Callback verification failed with the following errors:"
        try:
            answer = await self._http.get(_with_query(url, query), timeout=self._config.callback_timeout_s)
        except HttpUnreachable as exc:
            if exc.timed_out:
                return f"{failed} curl_errno = 28; curl_error = Operation timed out; HTTP Status Code = 0"
            return f"{failed} curl_errno = 7; curl_error = Couldn't connect to server; HTTP Status Code = 0"
        if answer.status_code != 200:
            try:
                phrase = HTTPStatus(answer.status_code).phrase
            except ValueError:
                phrase = "Unknown"
            return f"{failed} HTTP Status Code = {answer.status_code}; HTTP Message = {phrase}"
        received = answer.content.decode(errors="replace")
        if received != challenge:
            return (
                "The URL couldn't be validated. Response does not match challenge, "
                f'expected value="{challenge}", received="{received[:60]}"'
            )
        return None

    async def _as_business(self, request: Request) -> _Signup | Response:
        """The sign-up whose business token authorises `request`, once the shared faults had their turn;
        or the answer refusing it."""
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        signup = self._business(request)
        if signup is None:
            return self._error(Refused(TOKEN_INVALID, "not a business token of this app"))
        return signup

    def _business(self, request: Request) -> _Signup | None:
        """The sign-up whose business token the request carries as Bearer, if any."""
        token = bearer(request)
        return self._business_tokens.get(token) if token is not None else None

    def _oauth_error(self, code: int, message: str) -> Response:
        self._stats.reject(code)
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": self._trace()}
        return json_response({"error": error}, 400)


def _template_key(waba_id: str, name: str, language: str) -> str:
    return f"{waba_id}\x1f{name}\x1f{language}"


def _display_number(phone_number_id: str) -> str:
    """The number people dial, as Meta shows it, for a sandbox number: made up from its id."""
    digits = phone_number_id[-10:].rjust(10, "0")
    return f"+1 {digits[:3]}-{digits[3:6]}-{digits[6:]}"


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` added to its query (where the sign-up dialog sends the browser back)."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _check_send(body: dict[str, Any]) -> str:
    """The Cloud API's checks of a send; returns the recipient's wa_id (its digits)."""
    if body.get("messaging_product") != "whatsapp":
        raise Refused(INVALID_PARAMETER, "messaging_product must be whatsapp")
    to = body.get("to")
    if to is None:
        raise Refused(MISSING_PARAMETER, "to")
    found = _DIGITS.fullmatch(to) if isinstance(to, str) else None
    if found is None:
        raise Refused(INVALID_VALUE, "to must be a phone number or a wa_id")
    kind = body.get("type", "text")
    body["type"] = kind
    if kind not in _TYPES:
        raise Refused(UNSUPPORTED_TYPE, f"message type {kind!r}")
    content = body.get(kind)
    if not isinstance(content, dict):
        raise Refused(MISSING_PARAMETER, kind)
    if kind == "text":
        text = content.get("body")
        if not isinstance(text, str) or not text:
            raise Refused(MISSING_PARAMETER, "text.body")
        if len(text) > limits.TEXT_MAX:
            raise Refused(INVALID_PARAMETER, f"text.body is longer than {limits.TEXT_MAX} characters")
    elif kind in _MEDIA:
        if not content.get("id") and not content.get("link"):
            raise Refused(MISSING_PARAMETER, f"{kind}.id or {kind}.link")
        caption = content.get("caption")
        if isinstance(caption, str) and len(caption) > limits.CAPTION_MAX:
            raise Refused(INVALID_VALUE, f"{kind}.caption is longer than {limits.CAPTION_MAX} characters")
    elif kind == "location":
        if not all(isinstance(content.get(k), int | float) for k in ("latitude", "longitude")):
            raise Refused(MISSING_PARAMETER, "location.latitude and location.longitude")
    elif kind == "template":
        language = content.get("language")
        if not isinstance(content.get("name"), str) or not content["name"]:
            raise Refused(MISSING_PARAMETER, "template.name")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            raise Refused(MISSING_PARAMETER, "template.language.code")
    else:
        _check_interactive(content)
    return found.group(1)


def _check_interactive(interactive: dict[str, Any]) -> None:
    """The limits of reply buttons and lists (131009 beyond them), as the Cloud API enforces them."""
    body = interactive.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        raise Refused(MISSING_PARAMETER, "interactive.body.text")
    if len(body["text"]) > limits.INTERACTIVE_BODY_MAX:
        raise Refused(INVALID_VALUE, "interactive.body.text is too long")
    action = interactive.get("action")
    if not isinstance(action, dict):
        raise Refused(MISSING_PARAMETER, "interactive.action")
    if interactive.get("type") == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= limits.REPLY_BUTTONS_MAX:
            raise Refused(INVALID_VALUE, "interactive.action.buttons must have 1 to 3 buttons")
        titles = [b.get("reply", {}).get("title") if isinstance(b, dict) else None for b in buttons]
        if not all(isinstance(t, str) and 0 < len(t) <= limits.REPLY_TITLE_MAX for t in titles):
            raise Refused(INVALID_VALUE, "button titles must be 1 to 20 characters")
    elif interactive.get("type") == "list":
        sections = action.get("sections")
        if not isinstance(sections, list) or not sections:
            raise Refused(MISSING_PARAMETER, "interactive.action.sections")
        rows = [row for section in sections if isinstance(section, dict) for row in section.get("rows") or []]
        if not 1 <= len(rows) <= limits.LIST_ROWS_MAX:
            raise Refused(INVALID_VALUE, "a list has 1 to 10 rows")
        button = action.get("button")
        if not isinstance(button, str) or not 0 < len(button) <= limits.LIST_BUTTON_MAX:
            raise Refused(INVALID_VALUE, "interactive.action.button must be 1 to 20 characters")
    else:
        raise Refused(INVALID_VALUE, "interactive.type")
