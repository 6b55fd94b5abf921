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
4. with `templates` set, a template of another name is 132001;
5. the shared sandbox rule (`providers.simulation`) by the last digit of `to`: 0–6 accepted, then
   `sent`, `delivered` and `read` statuses; 7 `sent` and `delivered` only; 8 refused with 131026
   (undeliverable); 9 two 131000 (HTTP 500) for the same message, then as 0–6. In rates mode an
   undelivered message gets a `failed` status with 131026.

Webhooks go to the callback URL registered for the phone number, signed with `X-Hub-Signature-256`
keyed by its app secret; until a number's first registration since the start they wait
(`HeldUntilRegistered`). Errors use Meta's envelope and HTTP 400 (190: 401; 131000: 500).

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
import hashlib
import itertools
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient
from openmmp.providers.simulation import (
    CallbackScheduler,
    FaultInjector,
    HeldUntilRegistered,
    LruMap,
    Outcome,
    OutcomePlanner,
    SimulatorConfig,
    SimulatorStats,
    TokenBucketLimiter,
    faults_response,
    hang,
    json_response,
    knobs,
    last_digit,
    read_json,
    sandbox_error,
    scheduler_lifespan,
    stats_response,
)
from openmmp.providers.whatsapp import payload as limits
from openmmp.providers.whatsapp.callbacks import SIGNATURE_HEADER, sign

INVALID_PARAMETER = 100
TOKEN_INVALID = 190
GENERIC_ERROR = 131000
MISSING_PARAMETER = 131008
INVALID_VALUE = 131009
UNDELIVERABLE = 131026
OUTSIDE_WINDOW = 131047
UNSUPPORTED_TYPE = 131051
PAIR_RATE = 131056
THROUGHPUT = 130429
NO_TEMPLATE = 132001

TITLES = {
    INVALID_PARAMETER: "Invalid parameter",
    TOKEN_INVALID: "Invalid OAuth access token",
    GENERIC_ERROR: "Something went wrong",
    MISSING_PARAMETER: "Required parameter is missing",
    INVALID_VALUE: "Parameter value is not valid",
    UNDELIVERABLE: "Message undeliverable",
    OUTSIDE_WINDOW: "Re-engagement message",
    UNSUPPORTED_TYPE: "Unsupported message type",
    PAIR_RATE: "(Business Account, Consumer Account) pair rate limit hit",
    THROUGHPUT: "Rate limit hit",
    NO_TEMPLATE: "Template name does not exist in the translation",
}
_HTTP_STATUS = {TOKEN_INVALID: 401, GENERIC_ERROR: 500}
_TYPES = frozenset(
    {"text", "image", "video", "audio", "document", "sticker", "location", "template", "interactive"}
)
_MEDIA = frozenset({"image", "video", "audio", "document", "sticker"})
_DIGITS = re.compile(r"\+?(\d{8,15})")


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
    """Comma-separated template names the number has; others get 132001. Empty: any name."""


class _Refused(Exception):
    """A send the Cloud API answers with an error envelope."""

    def __init__(self, code: int, details: str = "") -> None:
        super().__init__(details or TITLES.get(code, "error"))
        self.code = code
        self.details = details


@dataclass
class _Number:
    """A business phone number as its app's webhook configuration knows it."""

    id: str
    waba_id: str
    callback_url: str | None = None
    app_secret: str = ""


def create_whatsapp_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The WhatsApp Cloud API simulator as a Starlette app; `http` sends its webhooks."""
    return _WhatsappSimulator(config, http).app


class _WhatsappSimulator:
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._config = config
        self._knobs = knobs(config, "whatsapp", WhatsappKnobs)
        self._stats = SimulatorStats(config)
        self._scheduler = CallbackScheduler(http, config, self._stats)
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)
        self._faults = FaultInjector()
        self._planner = OutcomePlanner(config)
        self._throughput = TokenBucketLimiter(capacity=self._knobs.messages_per_second, window_s=1.0)
        burst = max(1, int(self._knobs.pair_burst))
        self._pairs = TokenBucketLimiter(capacity=burst, window_s=burst * float(self._knobs.pair_interval_s))
        self._templates = {t.strip() for t in str(self._knobs.templates).split(",") if t.strip()}
        self._numbers: LruMap[str, _Number] = LruMap(config.max_tracked_keys)
        self._wrote: LruMap[str, float] = LruMap(config.max_tracked_keys)
        self._messages: LruMap[str, dict[str, Any]] = LruMap(config.max_tracked_keys)
        self._sequence = itertools.count(1)
        routes = [
            Route("/_sandbox/webhooks", self._sandbox_webhooks, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
            Route("/_sandbox/messages/{wamid}", self._sandbox_message, methods=["GET"]),
            Route("/_sandbox/stats", self._sandbox_stats, methods=["GET"]),
            Route("/_sandbox/faults", self._sandbox_faults, methods=["POST"]),
            Route("/{phone_number_id}/messages", self._send, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes, lifespan=scheduler_lifespan(self._scheduler))
        self.app.state.simulator = self

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
        self._stats.requests += 1
        raw = await request.body()
        fault = self._faults.take()
        if fault is not None:
            return await self._fault(request, fault.kind, fault.status)
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._error(_Refused(TOKEN_INVALID, "Cannot parse access token"))
        phone_number_id = request.path_params["phone_number_id"]
        try:
            if len(raw) > self._config.max_request_bytes:
                raise _Refused(INVALID_PARAMETER, "the request is too large")
            body = _json_object(raw)
            to = _check_send(body)
            if (
                body["type"] == "template"
                and self._templates
                and body["template"]["name"] not in self._templates
            ):
                raise _Refused(NO_TEMPLATE, f"template name ({body['template']['name']}) does not exist")
        except _Refused as refused:
            return self._error(refused)
        if not self._throughput.try_acquire(phone_number_id):
            self._stats.rate_limited += 1
            return self._error(_Refused(THROUGHPUT, "too many messages sent from this phone number"))
        if body["type"] != "template" and not self._inside_window(phone_number_id, to):
            return self._error(
                _Refused(
                    OUTSIDE_WINDOW,
                    "Message failed to send because more than 24 hours have passed since the customer "
                    "last replied to this number.",
                )
            )
        if not self._pairs.try_acquire(f"{phone_number_id}:{to}"):
            self._stats.rate_limited += 1
            return self._error(_Refused(PAIR_RATE, "too many messages to this user in a short time"))
        key = f"{phone_number_id}:{to}:{_payload_hash(body)}"
        outcome = self._planner.decide(digit=last_digit(to), attempt_key=key)
        if outcome is Outcome.FINAL_ERROR:
            return self._error(_Refused(UNDELIVERABLE, "the recipient is not a WhatsApp user (sandbox)"))
        if outcome is Outcome.RETRYABLE_ERROR:
            return self._error(_Refused(GENERIC_ERROR, "temporary failure (sandbox)"))
        wamid = self._wamid(phone_number_id)
        self._stats.accept(key)
        if self._config.track_keys:
            self._messages.set(wamid, {"phoneNumberId": phone_number_id, "request": body})
        number = self._number(phone_number_id)
        if number.callback_url is not None:
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

    async def _fault(self, request: Request, kind: str, status: int | None) -> Response:
        self._stats.faults_injected += 1
        if kind == "http_503":
            return Response("Service Unavailable", status_code=503, media_type="text/plain")
        if kind == "timeout":
            await hang(request, self._config.fault_hang_s)
            return Response("Gateway Timeout", status_code=504, media_type="text/plain")
        if kind == "rate_limit":
            self._stats.rate_limited += 1
            return self._error(_Refused(THROUGHPUT, "sandbox fault"))
        return self._error(_Refused(status or UNDELIVERABLE, "sandbox fault"))

    def _error(self, refused: _Refused) -> Response:
        self._stats.reject(refused.code)
        title = TITLES.get(refused.code, "Error")
        error: dict[str, Any] = {
            "message": f"(#{refused.code}) {title}",
            "type": "OAuthException",
            "code": refused.code,
            "fbtrace_id": f"Sim{next(self._sequence)}",
        }
        if refused.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": refused.details}
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
        url = number.callback_url
        if url is None:
            return
        metadata = {"display_phone_number": number.id, "phone_number_id": number.id}
        body = orjson.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": number.waba_id,
                        "changes": [
                            {
                                "field": "messages",
                                "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
                            }
                        ],
                    }
                ],
            }
        )
        headers = {SIGNATURE_HEADER: sign(body, number.app_secret), "content-type": "application/json"}
        await self._scheduler.post(url, body, headers)

    # ---- sandbox control --------------------------------------------------------------------------------

    async def _sandbox_webhooks(self, request: Request) -> Response:
        """Configure (or with an empty `callbackUrl`, remove) where a phone number's webhooks go."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            phone_number_id, url = body.get("phoneNumberId"), body.get("callbackUrl")
            waba_id, secret = body.get("wabaId"), body.get("appSecret")
            if not isinstance(phone_number_id, str) or not phone_number_id:
                raise ValueError("phoneNumberId is required")
            if url not in (None, "") and (
                not isinstance(url, str) or not url.startswith(("http://", "https://"))
            ):
                raise ValueError("callbackUrl must be an http(s) URL")
            if url and (not isinstance(secret, str) or not secret):
                raise ValueError("appSecret is required: webhooks are signed with it")
            if waba_id is not None and not isinstance(waba_id, str):
                raise ValueError("wabaId must be a string")
        except ValueError as exc:
            return sandbox_error(str(exc))
        number = self._number(phone_number_id)
        if not url:
            number.callback_url = None
            self._held.configured(number.id, registered=False)
            return json_response({"phoneNumberId": phone_number_id, "callbackUrl": None})
        number.callback_url, number.app_secret = url, str(secret)
        number.waba_id = waba_id or number.waba_id
        self._held.configured(number.id, registered=True)
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
        registered = number.callback_url is not None
        if registered:
            self._scheduler.spawn(self._after_latency(number, value))
        return json_response({"messageId": wamid, "waId": wa_id, "webhook": registered})

    async def _after_latency(self, number: _Number, value: Mapping[str, Any]) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        await self._webhook(number, value)

    async def _sandbox_message(self, request: Request) -> Response:
        found = self._messages.get(request.path_params["wamid"])
        if found is None:
            return sandbox_error("no such message (or key tracking is off)", 404)
        return json_response(found)

    async def _sandbox_stats(self, request: Request) -> Response:
        return stats_response(request, self._stats, self._scheduler)

    async def _sandbox_faults(self, request: Request) -> Response:
        return await faults_response(request, self._faults)


def _payload_hash(body: Mapping[str, Any]) -> str:
    # "The same message" for digit-9 retries and duplicate stats: the body as sent, whoever it goes to.
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Refused(INVALID_PARAMETER, "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise _Refused(INVALID_PARAMETER, "the body is not a JSON object")
    return body


def _check_send(body: dict[str, Any]) -> str:
    """The Cloud API's checks of a send; returns the recipient's wa_id (its digits)."""
    if body.get("messaging_product") != "whatsapp":
        raise _Refused(INVALID_PARAMETER, "messaging_product must be whatsapp")
    to = body.get("to")
    if to is None:
        raise _Refused(MISSING_PARAMETER, "to")
    found = _DIGITS.fullmatch(to) if isinstance(to, str) else None
    if found is None:
        raise _Refused(INVALID_VALUE, "to must be a phone number or a wa_id")
    kind = body.get("type", "text")
    body["type"] = kind
    if kind not in _TYPES:
        raise _Refused(UNSUPPORTED_TYPE, f"message type {kind!r}")
    content = body.get(kind)
    if not isinstance(content, dict):
        raise _Refused(MISSING_PARAMETER, kind)
    if kind == "text":
        text = content.get("body")
        if not isinstance(text, str) or not text:
            raise _Refused(MISSING_PARAMETER, "text.body")
        if len(text) > limits.TEXT_MAX:
            raise _Refused(INVALID_PARAMETER, f"text.body is longer than {limits.TEXT_MAX} characters")
    elif kind in _MEDIA:
        if not content.get("id") and not content.get("link"):
            raise _Refused(MISSING_PARAMETER, f"{kind}.id or {kind}.link")
        caption = content.get("caption")
        if isinstance(caption, str) and len(caption) > limits.CAPTION_MAX:
            raise _Refused(INVALID_VALUE, f"{kind}.caption is longer than {limits.CAPTION_MAX} characters")
    elif kind == "location":
        if not all(isinstance(content.get(k), int | float) for k in ("latitude", "longitude")):
            raise _Refused(MISSING_PARAMETER, "location.latitude and location.longitude")
    elif kind == "template":
        language = content.get("language")
        if not isinstance(content.get("name"), str) or not content["name"]:
            raise _Refused(MISSING_PARAMETER, "template.name")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            raise _Refused(MISSING_PARAMETER, "template.language.code")
    else:
        _check_interactive(content)
    return found.group(1)


def _check_interactive(interactive: dict[str, Any]) -> None:
    """The limits of reply buttons and lists (131009 beyond them), as the Cloud API enforces them."""
    body = interactive.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        raise _Refused(MISSING_PARAMETER, "interactive.body.text")
    if len(body["text"]) > limits.INTERACTIVE_BODY_MAX:
        raise _Refused(INVALID_VALUE, "interactive.body.text is too long")
    action = interactive.get("action")
    if not isinstance(action, dict):
        raise _Refused(MISSING_PARAMETER, "interactive.action")
    if interactive.get("type") == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= limits.REPLY_BUTTONS_MAX:
            raise _Refused(INVALID_VALUE, "interactive.action.buttons must have 1 to 3 buttons")
        titles = [b.get("reply", {}).get("title") if isinstance(b, dict) else None for b in buttons]
        if not all(isinstance(t, str) and 0 < len(t) <= limits.REPLY_TITLE_MAX for t in titles):
            raise _Refused(INVALID_VALUE, "button titles must be 1 to 20 characters")
    elif interactive.get("type") == "list":
        sections = action.get("sections")
        if not isinstance(sections, list) or not sections:
            raise _Refused(MISSING_PARAMETER, "interactive.action.sections")
        rows = [row for section in sections if isinstance(section, dict) for row in section.get("rows") or []]
        if not 1 <= len(rows) <= limits.LIST_ROWS_MAX:
            raise _Refused(INVALID_VALUE, "a list has 1 to 10 rows")
        button = action.get("button")
        if not isinstance(button, str) or not 0 < len(button) <= limits.LIST_BUTTON_MAX:
            raise _Refused(INVALID_VALUE, "interactive.action.button must be 1 to 20 characters")
    else:
        raise _Refused(INVALID_VALUE, "interactive.type")
