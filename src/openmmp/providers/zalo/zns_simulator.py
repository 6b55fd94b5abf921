"""A local Zalo for ZNS: template sends by phone, template review, call consent, OAuth tokens, webhooks.

It plays Zalo's three hosts under one base URL (OAuth, the OA Open API, the business API), speaking
Zalo's envelope: HTTP 200 with `{"error": 0, "message": "Success", "data": {...}}`, a non-zero `error`
for a refusal. Every API route wants the header `access_token` (`zalo.sim_tokens.TokenBook`: an expired
or rotated token is -216; `POST /v4/oa/access_token` renews a pair).

An access token acts for one Official Account: the one the sandbox set-up named it with (`POST
/_sandbox/webhooks`), or after a renewal the OA of the app that renewed it. A token the simulator cannot
tie to an OA is an OA of its own (its sends work; its webhooks wait until a set-up names that token).

**Sends** (`POST /message/template` `{phone, template_id, template_data, tracking_id}`), checked in turn:

1. a repeated `tracking_id` of the OA is the first send again: the same `msg_id`, nothing new happens
   (Zalo's idempotency; counted in `duplicates`);
2. the phone (8-15 digits, else -108), the template (a template the OA created here goes only when
   ENABLE, else -131, or -146 once DISABLE; an id it does not have goes, unless the `templates` knob is
   set and does not list it: -131) and its data (every parameter of a template created here, else
   -1122; values as texts; the content rendered at most 400 characters, else -1121);
3. a promotional template (tag 3) goes only from `promotion_from_hour` to `promotion_until_hour`
   (07:00-22:00) Vietnam time (UTC+7), else -234. The clock is real unless `vietnam_time` ("HH:MM", a
   knob or `POST /_sandbox/zns/clock {"vietnamTime": "23:30" | null}`) stops it at a time of day;
4. the OA's daily quota (`daily_quota`, per Vietnam day): -144 once used up. Every answer carries
   `quota {dailyQuota, remainingQuota}`;
5. the shared sandbox rule by the phone's last digit: 0-7 accepted, then a `user_received_message`
   webhook (ZNS reports no reading, so 7 is as 0-6); 8 refused with -114 (the user cannot receive);
   9 HTTP 500 twice for the same `tracking_id`, then as 0-6. In rates mode an undelivered message gets
   no webhook at all, as ZNS tells nothing of failures after acceptance.

**Templates**: `POST /template/create` `{template_name, template_type, tag, layout{body{components:
[{TITLE{value}}?, {PARAGRAPH{value}}]}}, params[{type, name, sample_value}], note?}` is checked as the
form is (`zns_templates.check_layout`; else -201 with what is wrong) and stored PENDING_REVIEW. After
`template_review_seconds` the review decides: REJECT when the name contains "reject", else ENABLE, and a
`change_template_status` webhook follows. `POST /template/edit` (the same with `template_id`) edits any
template but a DISABLE or DELETE one, which is then reviewed again. `GET /template/all?offset&limit&
status` (status 1 ENABLE, 2 PENDING_REVIEW, 3 REJECT, 4 DISABLE; limit at most 100) lists the OA's
templates, `data` a list and `metadata.total`; `GET /template/info/v2?template_id` reads one
(`listParams`, `templateTag` TRANSACTION, CUSTOMER_CARE or PROMOTION). `POST
/_sandbox/zns/templates/{template_id}` `{"status", "reason"?}` plays Zalo changing a template's status
(e.g. DISABLE), webhook and all.

**Consent** (`POST /v2.0/oa/call/requestconsent`, `GET /v2.0/oa/call/checkconsent?data={"phone"}`):
answers `{error, message, expired_time}` with the consent codes of `zns_consent`. Asking a user who
allows calls already is 1, one with a request pending 2 (that request), a blocked one 4, one asked
`consent_requests_per_day` times this Vietnam day 5; otherwise the request goes out (2) and the user
answers after `consent_answer_seconds`: by the `consent_answer` knob (grant, refuse, block, ignore), else
by the phone's last digit (0-6 grant, 7 never answers, 8 refuses, 9 HTTP 500 twice, then as 0-6). A
request unanswered, or a consent granted, lapses after `consent_expiry_s` (24 h). Checking answers 0
(approved), 2, 3 (rejected), 4, or 6 for a user never asked or whose answer lapsed.

Webhooks go to the OA's URL from `POST /_sandbox/webhooks` `{oaId, appId, accessToken, secretKey,
callbackUrl}` (an empty URL removes it), signed with its secret key (`zalo.webhooks.sign_event`) and
marked `X-ZEvent-Server: ZNS`; until a token's first set-up since the start they wait
(`HeldUntilRegistered`). The shared `/_sandbox/faults` answer every API route (`rate_limit`: -32;
`final_error`: the fault's `status` as a negative code, else -114). Also `GET /_sandbox/stats` and the
token controls of `zalo.sim_tokens`.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from openmmp.kit.http import HttpClient
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    HttpSimulator,
    LruMap,
    Outcome,
    SimulatorConfig,
    edge_fault,
    json_response,
    knobs,
    last_digit,
    now_ms,
    read_json,
    sandbox_error,
)
from openmmp.providers.zalo.auth import TOKEN_PATH
from openmmp.providers.zalo.credentials import DEFAULT_BUSINESS_URL, DEFAULT_OAUTH_URL, DEFAULT_OPENAPI_URL
from openmmp.providers.zalo.errors import TOKEN_HEADER
from openmmp.providers.zalo.sim_tokens import DEFAULT_TTL_S, TOKEN_INVALID, TokenBook, token_routes
from openmmp.providers.zalo.webhooks import SIGNATURE_HEADER, sign_event
from openmmp.providers.zalo.zns_callbacks import (
    DELIVERED_EVENT,
    SERVER,
    SERVER_HEADER,
    TEMPLATE_EVENT,
)
from openmmp.providers.zalo.zns_consent import CALL_TYPES, CHECK_PATH, REASON_CODES, REQUEST_PATH
from openmmp.providers.zalo.zns_payload import CONTENT_MAX, TRACKING_ID_MAX
from openmmp.providers.zalo.zns_templates import NAME_MAX, PROMOTION, TAG_NAMES, check_layout, render

VIETNAM = timezone(timedelta(hours=7))
RATE_LIMITED = -32
BAD_PHONE = -108
CANNOT_RECEIVE = -114
NOT_APPROVED = -131
QUOTA_USED_UP = -144
DISABLED = -146
INVALID = -201
"""Zalo's "invalid parameters", for a body the simulator cannot take (a template it refuses, ...)."""
NIGHT = -234
PARAM_TOO_LONG = -1121
PARAM_MISSING = -1122
REJECTED_WORD = "reject"
"""A template whose name contains it is rejected by the review."""
REJECTION_REASON = "The template's content does not follow Zalo's template policy"
TEMPLATE_FILTERS = {"1": "ENABLE", "2": "PENDING_REVIEW", "3": "REJECT", "4": "DISABLE"}
TEMPLATE_STATUSES = frozenset({"ENABLE", "PENDING_REVIEW", "REJECT", "DISABLE", "DELETE"})
LIST_MAX = 100
NOT_ASKED = 6
"""What checking answers for a user never asked, or whose answer lapsed (one of the codes Zalo's table
leaves out; the adapter takes any code it does not know as no consent)."""
CONSENT_ANSWERS = ("", "grant", "refuse", "block", "ignore")
_MESSAGES = {
    RATE_LIMITED: "Request exceeded rate limit",
    BAD_PHONE: "Phone number is invalid",
    CANNOT_RECEIVE: "User is not able to receive ZNS messages (sandbox)",
    NOT_APPROVED: "Template is not approved or does not exist",
    QUOTA_USED_UP: "The OA has used up its daily ZNS quota",
    DISABLED: "Template is disabled for its low quality",
    NIGHT: "Promotional messages cannot be sent at this time",
    PARAM_TOO_LONG: "The template's parameters are too long",
    PARAM_MISSING: "A template parameter is missing",
}


@dataclass
class ZnsKnobs:
    """The ZNS simulator's own knobs (`SimulatorConfig.options["zalo-zns"]`)."""

    oauth_url: str = DEFAULT_OAUTH_URL
    openapi_url: str = DEFAULT_OPENAPI_URL
    business_url: str = DEFAULT_BUSINESS_URL
    """The platform's options (`ZaloOptions`), handed over as knobs: the simulator serves every host."""
    daily_quota: int = 100_000
    """ZNS messages per OA per Vietnam day (upstream: a tier from 500 up, by the OA's quality)."""
    promotion_from_hour: int = 7
    promotion_until_hour: int = 22
    """Promotional templates (tag 3) go from this hour to that one, Vietnam time; else -234."""
    vietnam_time: str = ""
    """"HH:MM": the clock stands at that time of day in Vietnam (the date stays today's); "": real time."""
    template_review_seconds: float = 1.0
    """How long Zalo's review of a template takes (upstream: hours to days)."""
    templates: str = ""
    """Comma-separated template ids the OA has besides those created here; others get -131. Empty: any."""
    token_ttl_s: float = DEFAULT_TTL_S
    consent_answer: str = ""
    """How every user answers a consent request: grant, refuse, block, ignore; "": by the phone's digit."""
    consent_answer_seconds: float = 0.5
    consent_expiry_s: float = 86_400.0
    """How long a user has to answer, and how long a consent lasts."""
    consent_requests_per_day: int = 3
    """Requests to one user per OA per Vietnam day; beyond, 5 (over the request limit)."""


@dataclass
class _Hook:
    """Where an OA's webhooks go (its app's webhook URL in Zalo's console)."""

    oa_id: str
    app_id: str
    url: str
    secret: str


@dataclass
class _Template:
    """A ZNS template of an OA, as Zalo keeps it."""

    id: str
    account: str
    name: str
    kind: int
    tag: int
    title: str
    content: str
    params: list[tuple[str, str, str]]
    """(name, type, sample value), in order."""
    created_ms: int
    status: str = "PENDING_REVIEW"
    reason: str = ""
    revision: int = 0
    """How many times it was edited: a review decides only the revision it began with."""

    def listed(self) -> dict[str, Any]:
        return {
            "templateId": self.id,
            "templateName": self.name,
            "createdTime": self.created_ms,
            "status": self.status,
            "templateQuality": "UNDEFINED",
        }

    def info(self) -> dict[str, Any]:
        return {
            "templateId": self.id,
            "templateName": self.name,
            "status": self.status,
            "reason": self.reason,
            "listParams": [
                {"name": name, "require": True, "type": kind, "maxLength": CONTENT_MAX, "acceptNull": False}
                for name, kind, _sample in self.params
            ],
            "listButtons": [],
            "templateTag": TAG_NAMES[self.tag],
            "templateQuality": "UNDEFINED",
        }


@dataclass
class _Consent:
    """One user's call consent for one OA: `state` pending, granted, refused or blocked, until `expires_ms`
    (pending and granted lapse)."""

    state: str
    expires_ms: int
    asked: dict[str, int] = field(default_factory=dict)
    """Requests by Vietnam day."""


class _Refused(Exception):
    """Zalo's refusal: `code`, and the words for it."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or _MESSAGES.get(code, "Invalid parameters"))
        self.code = code


def create_zns_simulator(config: SimulatorConfig, http: HttpClient, *, name: str) -> Starlette:
    """The ZNS simulator as a Starlette app (its knobs under `config.options[name]`); `http` sends its
    webhooks."""
    return _ZnsSimulator(config, http, name).app


class _ZnsSimulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient, name: str) -> None:
        self._knobs = knobs(config, name, ZnsKnobs)
        if self._knobs.consent_answer not in CONSENT_ANSWERS:
            raise ValueError(f"{name} simulator: consent_answer must be one of {', '.join(CONSENT_ANSWERS)}")
        self._clock = _time_of_day(self._knobs.vietnam_time) if self._knobs.vietnam_time else None
        self._book = TokenBook(ttl_s=float(self._knobs.token_ttl_s), capacity=config.max_tracked_keys)
        self._listed = {t.strip() for t in str(self._knobs.templates).split(",") if t.strip()}
        self._hooks: dict[str, _Hook] = {}
        self._token_oa: LruMap[str, str] = LruMap(config.max_tracked_keys)
        """The OA each access token acts for, as a set-up named it or a renewal issued it."""
        self._app_oa: dict[str, str] = {}
        self._sent: LruMap[tuple[str, str], dict[str, str]] = LruMap(config.max_tracked_keys)
        """Each OA's accepted sends by tracking_id: what a repeat is answered with."""
        self._used: LruMap[tuple[str, str], int] = LruMap(config.max_tracked_keys)
        """Messages per OA per Vietnam day."""
        self._templates: LruMap[str, _Template] = LruMap(config.max_tracked_keys)
        self._consents: LruMap[tuple[str, str], _Consent] = LruMap(config.max_tracked_keys)
        self._ids = itertools.count(int(time.time() * 1000) % 10**9 * 100)
        tokens = [self._renewing(r) if r.path == TOKEN_PATH else r for r in token_routes(self._book)]
        routes: list[BaseRoute] = [
            Route("/message/template", self._send, methods=["POST"]),
            Route("/template/create", self._create, methods=["POST"]),
            Route("/template/edit", self._edit, methods=["POST"]),
            Route("/template/all", self._list, methods=["GET"]),
            Route("/template/info/v2", self._info, methods=["GET"]),
            Route(REQUEST_PATH, self._request_consent, methods=["POST"]),
            Route(CHECK_PATH, self._check_consent, methods=["GET"]),
            *tokens,
            Route("/_sandbox/webhooks", self._sandbox_webhooks, methods=["POST"]),
            Route("/_sandbox/zns/clock", self._sandbox_clock, methods=["POST"]),
            Route("/_sandbox/zns/templates/{template_id}", self._sandbox_template, methods=["POST"]),
        ]
        super().__init__(config, http, routes)
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)
        """Webhooks caused with tokens no set-up has named since the start, by token."""

    # ---- the envelope, tokens, faults, clock --------------------------------------------------------

    def _error(self, refused: _Refused) -> Response:
        self._stats.reject(refused.code)
        return json_response({"error": refused.code, "message": str(refused)})

    @staticmethod
    def _ok(data: Any, **extra: Any) -> Response:
        return json_response({"error": 0, "message": "Success", "data": data, **extra})

    async def _admitted(self, request: Request) -> str | Response:
        """The OA the request acts for, once the faults and the token had their say; or the answer."""
        self._stats.requests += 1
        await request.body()
        fault = self._faults.take()
        if fault is not None:
            if (edge := await edge_fault(request, fault.kind, self._config, self._stats)) is not None:
                return edge
            if fault.kind == "rate_limit":
                self._stats.rate_limited += 1
                return self._error(_Refused(RATE_LIMITED))
            if fault.kind == "stale_credentials":
                return self._error(_Refused(TOKEN_INVALID, "Access token is invalid or expired"))
            return self._error(_Refused(-abs(fault.status) if fault.status else CANNOT_RECEIVE))
        token = request.headers.get(TOKEN_HEADER, "")
        code = self._book.check(token)
        if code is not None:
            return self._error(_Refused(code, "Access token is invalid or expired"))
        return self._account(token)

    def _account(self, token: str) -> str:
        """The OA `token` acts for (see the module); a token tied to none is an OA of its own."""
        return self._token_oa.get(token) or f"token:{token}"

    def _vietnam_now(self) -> datetime:
        now = datetime.now(UTC).astimezone(VIETNAM)
        if self._clock is not None:
            now = now.replace(hour=self._clock[0], minute=self._clock[1])
        return now

    def _today(self) -> str:
        return self._vietnam_now().date().isoformat()

    def _quota(self, account: str) -> dict[str, str]:
        quota = int(self._knobs.daily_quota)
        used = self._used.get((account, self._today())) or 0
        return {"dailyQuota": str(quota), "remainingQuota": str(max(0, quota - used))}

    # ---- sends --------------------------------------------------------------------------------------

    async def _send(self, request: Request) -> Response:
        admitted = await self._admitted(request)
        if isinstance(admitted, Response):
            return admitted
        account = admitted
        try:
            body = await _object(request, self._config.max_request_bytes)
            tracking = body.get("tracking_id")
            if not isinstance(tracking, str) or not tracking or len(tracking) > TRACKING_ID_MAX:
                raise _Refused(INVALID, f"tracking_id must be a text of 1 to {TRACKING_ID_MAX} characters")
            earlier = self._sent.get((account, tracking))
            if earlier is not None:
                self._stats.duplicates += 1
                return self._ok({**earlier, "quota": self._quota(account)})
            phone = body.get("phone")
            if not isinstance(phone, str) or not phone.isdigit() or not 8 <= len(phone) <= 15:
                raise _Refused(BAD_PHONE)
            template = self._sendable(account, body.get("template_id"), body.get("template_data"))
            if template is not None and template.tag == PROMOTION and not self._daytime():
                raise _Refused(
                    NIGHT,
                    "Promotional messages are sent only from "
                    f"{self._knobs.promotion_from_hour:02d}:00 to {self._knobs.promotion_until_hour:02d}:00 "
                    "Vietnam time",
                )
            day = (account, self._today())
            if (self._used.get(day) or 0) >= int(self._knobs.daily_quota):
                raise _Refused(QUOTA_USED_UP)
        except _Refused as refused:
            return self._error(refused)
        outcome = self._planner.decide(digit=last_digit(phone), attempt_key=f"{account}:{tracking}")
        if outcome is Outcome.FINAL_ERROR:
            return self._error(_Refused(CANNOT_RECEIVE))
        if outcome is Outcome.RETRYABLE_ERROR:
            self._stats.reject(500)
            return json_response({"error": -1, "message": "Internal server error (sandbox)"}, 500)
        self._used.set(day, (self._used.get(day) or 0) + 1)
        sent = {"msg_id": secrets.token_hex(16), "sent_time": str(now_ms()), "sending_mode": "1"}
        self._sent.set((account, tracking), sent)
        self._stats.accept(f"{account}:{tracking}")
        if outcome is not Outcome.FAILED_LATER:
            token = request.headers.get(TOKEN_HEADER, "")
            self._notify(token, lambda: self._delivered(token, phone, sent["msg_id"], tracking))
        return self._ok({**sent, "quota": self._quota(account)})

    def _sendable(self, account: str, template_id: Any, data: Any) -> _Template | None:
        """The OA's template a send names, if created here (None for one known otherwise); raises for a
        template that cannot go, or data that does not fit it."""
        if not isinstance(template_id, str | int) or isinstance(template_id, bool) or not str(template_id):
            raise _Refused(INVALID, "template_id is required")
        if data is None:
            data = {}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise _Refused(INVALID, "template_data must be an object of texts")
        template = self._templates.get(str(template_id))
        if template is None or template.account != account:
            if self._listed and str(template_id) not in self._listed:
                raise _Refused(NOT_APPROVED)
            if sum(len(value) for value in data.values()) > CONTENT_MAX:
                raise _Refused(PARAM_TOO_LONG)
            return None
        if template.status == "DISABLE":
            raise _Refused(DISABLED)
        if template.status != "ENABLE":
            raise _Refused(NOT_APPROVED)
        missing = [name for name, _kind, _sample in template.params if not str(data.get(name, "")).strip()]
        if missing:
            raise _Refused(PARAM_MISSING, f"A template parameter is missing: {missing[0]}")
        if len(render(template.content, data)) > CONTENT_MAX:
            raise _Refused(PARAM_TOO_LONG)
        return template

    def _daytime(self) -> bool:
        hour = self._vietnam_now().hour
        return int(self._knobs.promotion_from_hour) <= hour < int(self._knobs.promotion_until_hour)

    # ---- webhooks -----------------------------------------------------------------------------------

    def _notify(self, token: str, callbacks: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `callbacks` (webhooks caused with `token`) now, or hold them until a set-up names it."""
        if self._hook(token) is not None:
            self._scheduler.spawn(callbacks())
        else:
            self._held.hold(token, callbacks)

    def _hook(self, token: str) -> _Hook | None:
        oa_id = self._token_oa.get(token)
        return self._hooks.get(oa_id) if oa_id is not None else None

    async def _delivered(self, token: str, phone: str, msg_id: str, tracking: str) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        delivered_at = str(now_ms())
        await self._webhook(
            token,
            DELIVERED_EVENT,
            recipient={"id": phone},
            message={"delivery_time": delivered_at, "msg_id": msg_id, "tracking_id": tracking},
        )

    async def _webhook(self, token: str, event_name: str, **fields: Any) -> None:
        # Read the hook when sending: the OA may have been set up again meanwhile.
        hook = self._hook(token)
        if hook is None:
            return
        event = {
            "app_id": hook.app_id,
            "oa_id": hook.oa_id,
            "sender": {"id": hook.oa_id},
            "event_name": event_name,
            **fields,
            "timestamp": str(now_ms()),
        }
        body = orjson.dumps(event)
        headers = {SIGNATURE_HEADER: sign_event(hook.app_id, body, hook.secret), SERVER_HEADER: SERVER}
        await self._scheduler.post(hook.url, body, headers)

    # ---- templates ----------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        admitted = await self._admitted(request)
        if isinstance(admitted, Response):
            return admitted
        try:
            body = await _object(request, self._config.max_request_bytes)
            template = _Template(
                id=str(next(self._ids)), account=admitted, created_ms=now_ms(), **_form(body)
            )
        except _Refused as refused:
            return self._error(refused)
        self._templates.set(template.id, template)
        token = request.headers.get(TOKEN_HEADER, "")
        self._scheduler.spawn(self._review(token, template, template.revision))
        return self._ok(_created(template))

    async def _edit(self, request: Request) -> Response:
        admitted = await self._admitted(request)
        if isinstance(admitted, Response):
            return admitted
        try:
            body = await _object(request, self._config.max_request_bytes)
            template = self._templates.get(str(body.get("template_id", "")))
            if template is None or template.account != admitted:
                raise _Refused(INVALID, "Template does not exist")
            if template.status in ("DISABLE", "DELETE"):
                raise _Refused(INVALID, f"A {template.status} template cannot be edited")
            fields = _form(body)
        except _Refused as refused:
            return self._error(refused)
        for name, value in fields.items():
            setattr(template, name, value)
        template.status, template.reason = "PENDING_REVIEW", ""
        template.revision += 1
        token = request.headers.get(TOKEN_HEADER, "")
        self._scheduler.spawn(self._review(token, template, template.revision))
        return self._ok(_created(template))

    async def _list(self, request: Request) -> Response:
        admitted = await self._admitted(request)
        if isinstance(admitted, Response):
            return admitted
        query = request.query_params
        try:
            offset, limit = int(query.get("offset", "0")), int(query.get("limit", str(LIST_MAX)))
        except ValueError:
            return self._error(_Refused(INVALID, "offset and limit must be numbers"))
        if offset < 0 or not 1 <= limit <= LIST_MAX:
            return self._error(_Refused(INVALID, f"limit must be 1 to {LIST_MAX}"))
        wanted = TEMPLATE_FILTERS.get(query.get("status", ""))
        if query.get("status") and wanted is None:
            return self._error(_Refused(INVALID, "status must be 1, 2, 3 or 4"))
        mine = [
            t
            for _id, t in self._templates.items()
            if t.account == admitted and (wanted is None or t.status == wanted)
        ]
        page = [t.listed() for t in mine[offset : offset + limit]]
        return self._ok(page, metadata={"total": len(mine)})

    async def _info(self, request: Request) -> Response:
        admitted = await self._admitted(request)
        if isinstance(admitted, Response):
            return admitted
        template = self._templates.get(request.query_params.get("template_id", ""))
        if template is None or template.account != admitted:
            return self._error(_Refused(INVALID, "Template does not exist"))
        return self._ok(template.info())

    async def _review(self, token: str, template: _Template, revision: int) -> None:
        """Zalo's review: after `template_review_seconds`, REJECT when the name says so, else ENABLE;
        unless the template was edited or changed meanwhile (the later review decides)."""
        await asyncio.sleep(float(self._knobs.template_review_seconds))
        if template.revision != revision or template.status != "PENDING_REVIEW":
            return
        if REJECTED_WORD in template.name.lower():
            self._decide(token, template, "REJECT", REJECTION_REASON)
        else:
            self._decide(token, template, "ENABLE", "")

    def _decide(self, token: str, template: _Template, status: str, reason: str) -> None:
        previous = template.status
        template.status, template.reason = status, reason
        change = {"prev_status": previous, "new_status": status}
        self._notify(
            token,
            lambda: self._webhook(
                token, TEMPLATE_EVENT, template_id=template.id, status=change, reason=reason
            ),
        )

    # ---- consent ------------------------------------------------------------------------------------

    async def _request_consent(self, request: Request) -> Response:
        admitted = await self._admitted(request)
        if isinstance(admitted, Response):
            return admitted
        try:
            body = await _object(request, self._config.max_request_bytes)
            phone = _phone(body.get("phone"))
            if body.get("call_type") not in CALL_TYPES:
                raise _Refused(INVALID, f"call_type must be one of {', '.join(CALL_TYPES)}")
            if body.get("reason_code") not in REASON_CODES:
                raise _Refused(INVALID, "reason_code must be one of 101, 103, 105, 106, 107")
        except _Refused as refused:
            return self._error(refused)
        key = (admitted, phone)
        consent = self._consent(key)
        if consent is not None and consent.state == "granted":
            return _consent_answer(1, "The user already allows the OA's calls", consent.expires_ms)
        if consent is not None and consent.state == "blocked":
            return _consent_answer(4, "The user blocked the OA's calls", None)
        if consent is not None and consent.state == "pending":
            return _consent_answer(2, "A request was sent already", consent.expires_ms)
        day = self._today()
        asked = consent.asked if consent is not None else {}
        if asked.get(day, 0) >= int(self._knobs.consent_requests_per_day):
            return _consent_answer(5, "Over the limit of consent requests to this user", None)
        answer = self._consent_answer(phone, f"consent:{admitted}:{phone}")
        if answer is None:
            self._stats.reject(500)
            return json_response({"error": -1, "message": "Internal server error (sandbox)"}, 500)
        expires = now_ms() + int(float(self._knobs.consent_expiry_s) * 1000)
        pending = _Consent("pending", expires, {day: asked.get(day, 0) + 1})
        self._consents.set(key, pending)
        if answer != "ignore":
            self._scheduler.spawn(self._user_answers(pending, answer))
        return _consent_answer(2, "Request sent", expires)

    def _consent_answer(self, phone: str, attempt_key: str) -> str | None:
        """How the user will answer: grant, refuse, block or ignore; None for a passing failure now."""
        if self._knobs.consent_answer:
            return str(self._knobs.consent_answer)
        outcome = self._planner.decide(digit=last_digit(phone), attempt_key=attempt_key)
        if outcome is Outcome.RETRYABLE_ERROR:
            return None
        if outcome is Outcome.FINAL_ERROR:
            return "refuse"
        if outcome in (Outcome.DELIVERED_ONLY, Outcome.FAILED_LATER):
            return "ignore"
        return "grant"

    async def _user_answers(self, consent: _Consent, answer: str) -> None:
        await asyncio.sleep(float(self._knobs.consent_answer_seconds))
        if consent.state != "pending" or consent.expires_ms <= now_ms():
            return
        consent.state = {"grant": "granted", "refuse": "refused", "block": "blocked"}[answer]
        if consent.state == "granted":
            consent.expires_ms = now_ms() + int(float(self._knobs.consent_expiry_s) * 1000)

    async def _check_consent(self, request: Request) -> Response:
        admitted = await self._admitted(request)
        if isinstance(admitted, Response):
            return admitted
        try:
            data = orjson.loads(request.query_params.get("data", ""))
            phone = _phone(data.get("phone") if isinstance(data, dict) else None)
        except orjson.JSONDecodeError:
            return self._error(_Refused(INVALID, 'data must be JSON: {"phone": "..."}'))
        except _Refused as refused:
            return self._error(refused)
        consent = self._consent((admitted, phone))
        if consent is None or consent.state not in ("granted", "pending", "refused", "blocked"):
            return _consent_answer(NOT_ASKED, "The user has not been asked, or the answer lapsed", None)
        if consent.state == "granted":
            return _consent_answer(0, "Approved", consent.expires_ms)
        if consent.state == "pending":
            return _consent_answer(2, "Request sent, waiting for the user", consent.expires_ms)
        if consent.state == "refused":
            return _consent_answer(3, "The user rejected the OA's calls", None)
        return _consent_answer(4, "The user blocked the OA's calls", None)

    def _consent(self, key: tuple[str, str]) -> _Consent | None:
        """The user's consent now: a pending request or a consent past its time has lapsed (the count
        of requests stays)."""
        consent = self._consents.get(key)
        if consent is not None and consent.state in ("pending", "granted") and consent.expires_ms <= now_ms():
            consent.state = "lapsed"
        return consent

    # ---- sandbox control ----------------------------------------------------------------------------

    def _renewing(self, route: Route) -> Route:
        """The OAuth token route, also noting which OA a renewed access token acts for (its app's)."""
        renew = route.endpoint

        async def endpoint(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
            answer: Response = await renew(request)
            try:
                pair = orjson.loads(answer.body)
            except orjson.JSONDecodeError:
                return answer
            oa_id = self._app_oa.get(form.get("app_id", ""))
            if isinstance(pair, dict) and isinstance(pair.get("access_token"), str) and oa_id is not None:
                self._token_oa.set(pair["access_token"], oa_id)
            return answer

        return Route(route.path, endpoint, methods=["POST"])

    async def _sandbox_webhooks(self, request: Request) -> Response:
        """Set (or with an empty `callbackUrl`, remove) where an OA's webhooks go: the analogue of the
        webhook URL in Zalo's developer console. Also ties the access token to the OA."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            given = {k: body.get(k) for k in ("oaId", "appId", "accessToken", "secretKey")}
            if not all(isinstance(value, str) and value for value in given.values()):
                raise ValueError("oaId, appId, accessToken and secretKey are required")
            url = body.get("callbackUrl")
            if url not in (None, "") and (
                not isinstance(url, str) or not url.startswith(("http://", "https://"))
            ):
                raise ValueError("callbackUrl must be an http(s) URL")
        except ValueError as exc:
            return sandbox_error(str(exc))
        oa_id, app_id, token = str(given["oaId"]), str(given["appId"]), str(given["accessToken"])
        self._token_oa.set(token, oa_id)
        self._app_oa[app_id] = oa_id
        if not url:
            self._hooks.pop(oa_id, None)
            self._held.configured(token, registered=False)
            return json_response({"oaId": oa_id, "callbackUrl": None})
        self._hooks[oa_id] = _Hook(oa_id, app_id, str(url), str(given["secretKey"]))
        self._held.configured(token, registered=True)
        return json_response({"oaId": oa_id, "callbackUrl": url})

    async def _sandbox_clock(self, request: Request) -> Response:
        """Stop the clock at a time of day in Vietnam (`{"vietnamTime": "23:30"}`), or let it run (null)."""
        try:
            body = await read_json(request)
            given = body.get("vietnamTime") if isinstance(body, dict) else None
            self._clock = _time_of_day(given) if given else None
        except ValueError as exc:
            return sandbox_error(str(exc))
        return json_response({"vietnamTime": self._vietnam_now().strftime("%H:%M")})

    async def _sandbox_template(self, request: Request) -> Response:
        """Zalo changes a template's status (`{"status", "reason"?}`): a `change_template_status` follows."""
        template = self._templates.get(request.path_params["template_id"])
        try:
            body = await read_json(request)
            status = body.get("status") if isinstance(body, dict) else None
            reason = body.get("reason", "") if isinstance(body, dict) else ""
            if template is None:
                raise ValueError("no such template")
            if status not in TEMPLATE_STATUSES or not isinstance(reason, str):
                raise ValueError(f"status must be one of {', '.join(sorted(TEMPLATE_STATUSES))}")
        except ValueError as exc:
            return sandbox_error(str(exc))
        token = next((t for t, oa in self._token_oa.items() if oa == template.account), template.account)
        self._decide(token.removeprefix("token:"), template, str(status), reason)
        return json_response({"templateId": template.id, "status": status})


def _time_of_day(value: Any) -> tuple[int, int]:
    """("HH:MM") as (hour, minute); ValueError otherwise."""
    try:
        hour, minute = (int(part) for part in str(value).split(":"))
    except ValueError:
        raise ValueError("vietnamTime must be HH:MM") from None
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError("vietnamTime must be HH:MM")
    return hour, minute


async def _object(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object; -201 for anything else."""
    raw = await request.body()
    if len(raw) > limit:
        raise _Refused(INVALID, "the request is too large")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Refused(INVALID, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _Refused(INVALID, "the body is not a JSON object")
    return body


def _phone(value: Any) -> str:
    if not isinstance(value, str) or not value.isdigit() or not 8 <= len(value) <= 15:
        raise _Refused(BAD_PHONE)
    return value


def _form(body: Mapping[str, Any]) -> dict[str, Any]:
    """A template's fields from Zalo's create (or edit) body; -201 with what is wrong."""
    name, kind, tag = body.get("template_name"), body.get("template_type"), body.get("tag")
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
        raise _Refused(INVALID, f"template_name must be 1 to {NAME_MAX} characters")
    if isinstance(kind, bool) or kind not in (1, 2, 3, 4, 5):
        raise _Refused(INVALID, "template_type must be 1, 2, 3, 4 or 5")
    if str(tag) not in ("1", "2", "3") or isinstance(tag, bool):
        raise _Refused(INVALID, "tag must be 1, 2 or 3")
    layout = body.get("layout")
    inner = layout.get("body") if isinstance(layout, dict) else None
    components = inner.get("components") if isinstance(inner, dict) else None
    if not isinstance(components, list) or not components:
        raise _Refused(INVALID, "layout.body.components is required")
    texts: dict[str, str] = {}
    for component in components:
        for part in ("TITLE", "PARAGRAPH"):
            value = component.get(part) if isinstance(component, dict) else None
            if isinstance(value, dict) and isinstance(value.get("value"), str):
                texts[part] = texts.get(part, "") + value["value"]
    given = body.get("params", [])
    if not isinstance(given, list) or not all(isinstance(p, dict) for p in given):
        raise _Refused(INVALID, "params must be a list of {type, name, sample_value}")
    params = [(str(p.get("name", "")), str(p.get("type", "")), str(p.get("sample_value", ""))) for p in given]
    if not all(name and sample for name, _kind, sample in params):
        raise _Refused(INVALID, "every param needs a name and a sample_value")
    try:
        check_layout(texts.get("TITLE", ""), texts.get("PARAGRAPH", ""), [(n, s) for n, _k, s in params])
    except ValueError as exc:
        raise _Refused(INVALID, str(exc)) from None
    return {
        "name": name,
        "kind": int(kind),
        "tag": int(str(tag)),
        "title": texts.get("TITLE", ""),
        "content": texts.get("PARAGRAPH", ""),
        "params": params,
    }


def _created(template: _Template) -> dict[str, Any]:
    """The `data` answering a create or an edit."""
    return {
        "template_id": template.id,
        "template_name": template.name,
        "template_type": template.kind,
        "tag": str(template.tag),
        "status": template.status,
    }


def _consent_answer(code: int, message: str, expires_ms: int | None) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if expires_ms is not None:
        body["expired_time"] = str(expires_ms)
    return json_response(body)
