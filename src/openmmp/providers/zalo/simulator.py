"""A local Zalo OA API: consultation sends, file uploads, quota, OAuth v4 tokens and signed webhooks.

Every host of Zalo is served under the one mount point (`credentials.zalo_hosts` in sandbox mode). Upstream
routes, each answered HTTP 200 with Zalo's envelope `{"data", "error": 0, "message": "Success"}` or
`{"error": <negative code>, "message"}`, and each taking the OA's token in the `access_token` header (a
token refused by the `TokenBook` is -216):

- `POST /v3.0/oa/message/cs` `{recipient: {user_id}, message}`: the message is checked as Zalo checks it
  (text at most 2,000 characters; a button template under a text, the `media` template with one image by
  URL, the `list` template of 1 to 5 elements, a `file` by an upload token of this simulator; buttons:
  at most 5, `oa.open.url`, `oa.query.show|hide`, `oa.open.sms`, `oa.open.phone`, titles at most 100,
  query payloads at most 1,000; anything else is -201), then:

  1. throughput: `requests_per_minute` per app (4,000); beyond, -32;
  2. the window: a user who last interacted with the OA more than `window_s` (7 days) ago is -230; a
     user this simulator never saw counts as inside it (it forgets its users when it restarts);
  3. the shared sandbox rule (`providers.simulation`) by the user id's last digit: 0–6 accepted, then a
     `user_received_message` and a `user_seen_message` webhook; 7 `user_received_message` only; 8 -213
     (the user cannot be reached); 9 twice HTTP 500 for the same message, then as 0–6. In rates mode an
     undelivered message gets no webhook at all (Zalo reports no failure).

  Accepted: `data: {message_id, user_id, quota: {quota_type, remain, total}}` (`reply` within 48 hours
  of the user's interaction, `sub_quota` after).
- `POST /v2.0/oa/upload/file` (multipart `file`, PDF, DOC or DOCX, at most 5 MB): `data: {token}`.
- `POST /v3.0/oa/quota/message` `{user_id}`: `data: {user_id, last_interaction, cs_reply: {remain, total}}`.
- `POST /v4/oa/access_token`, and the token controls of `sim_tokens.token_routes`.

Webhooks: one event per POST to the app's webhook URL, signed with `X-ZEvent-Signature` (`webhooks`),
every id and time a string. Until an app's webhook is registered since the start, its events wait
(`HeldUntilRegistered`). Faults: `rate_limit` answers -32, `final_error` the fault's `status` negated as the
error code (-213 without one), `stale_credentials` -216, `http_503` and `timeout` as Zalo's edge.

Sandbox control (OpenMMP's own): `POST /_sandbox/webhooks` `{appId, oaId, callbackUrl, secretKey,
accessToken?}` (the developer console's webhook settings of the app; an empty `callbackUrl` removes them;
the token names the OA its sends come from), `POST /_sandbox/inbound` with headers `X-Zalo-App-Id` and
`X-Zalo-Oa-Id` and `{name?, userId?, phone?, text?, event?: "follow"|"unfollow"}` (an end user writes,
shares their details — `phone` without `text`, a `user_submit_info` — or follows; answers `{userId,
msgId, webhook}`), `POST /_sandbox/zalo/interaction` `{userId, secondsAgo}` (when the user last
interacted, to test the window), `GET /_sandbox/messages/{message_id}`, `GET /_sandbox/stats`, `POST
/_sandbox/faults`.

Sandbox users: a user id is 19 digits made from the app and the user (`userId`, a handle of the caller's,
else `phone`; neither: a new user), ending in the digit that picks the user's outcome: the phone's last
digit, else the handle's, else 0. A `userId` that is a user id the simulator gave out is that user.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import secrets
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    HttpSimulator,
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    edge_fault,
    json_response,
    knobs,
    last_digit,
    now_ms,
    phone_digits,
    read_json,
    sandbox_error,
)
from openmmp.providers.zalo import oa_payload as limits
from openmmp.providers.zalo.errors import NO_INTERACTION, RATE_LIMITED, TOKEN_HEADER
from openmmp.providers.zalo.oa import SANDBOX_APP_HEADER, SANDBOX_OA_HEADER
from openmmp.providers.zalo.sim_tokens import DEFAULT_TTL_S, TokenBook, token_routes
from openmmp.providers.zalo.webhooks import SIGNATURE_HEADER, sign_event

INVALID = -201
UNREACHABLE_USER = -213
TOKEN_INVALID = -216
MESSAGES = {
    INVALID: "Parameters are invalid",
    UNREACHABLE_USER: "User has not followed or has blocked the OA",
    TOKEN_INVALID: "Access token is invalid",
    NO_INTERACTION: "User has not interacted with the OA in the last 7 days",
    RATE_LIMITED: "Exceed rate limit",
}
BUTTON_TYPES = frozenset({"oa.open.url", "oa.query.show", "oa.query.hide", "oa.open.sms", "oa.open.phone"})
SMS_CONTENT_MAX = 160
CS_REPLY_TOTAL = 8
UPLOAD_MAX_BYTES = limits.FILE_MAX_BYTES + 64 * 1024
"""A file upload's body: the file and its multipart framing."""


@dataclass
class ZaloKnobs:
    """The Zalo OA simulator's own knobs (`SimulatorConfig.options["zalo"]`)."""

    requests_per_minute: int = 4000
    """Requests per app per minute; beyond, -32 (upstream: 4,000)."""
    window_s: float = 7 * 86400.0
    """Consultation messages only to users who interacted within this long (-230 otherwise); 0: none."""
    free_window_s: float = 48 * 3600.0
    """Within this long of the interaction a message uses the free `reply` quota, after it `sub_quota`."""
    token_ttl_s: float = DEFAULT_TTL_S
    """How long an access token the simulator issues lives (Zalo: 25 hours)."""
    oauth_url: str = ""
    openapi_url: str = ""
    business_url: str = ""
    """The operator's Zalo hosts (`ZaloOptions`): taken as knobs and unused, since in sandbox mode every
    host is this simulator."""


class _Refused(Exception):
    """A call Zalo answers with a non-zero `error`."""

    def __init__(self, code: int, detail: str = "") -> None:
        message = MESSAGES.get(code, "Error")
        super().__init__(f"{message}: {detail}" if detail else message)
        self.code = code


@dataclass
class _App:
    """A Zalo app's webhook settings, as its developer console holds them."""

    id: str
    oa_id: str = ""
    callback_url: str | None = None
    secret: str = ""


@dataclass
class _User:
    """An end user of an app's OA: their ids and when they last interacted with the OA."""

    id: str
    app_id: str
    by_app: str
    interacted: float


def create_zalo_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The Zalo OA simulator as a Starlette app; `http` sends its webhooks."""
    return _ZaloSimulator(config, http).app


class _ZaloSimulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "zalo", ZaloKnobs)
        self._book = TokenBook(self._knobs.token_ttl_s, config.max_tracked_keys)
        self._throughput = TokenBucketLimiter(capacity=self._knobs.requests_per_minute, window_s=60.0)
        self._apps: LruMap[str, _App] = LruMap(config.max_tracked_keys)
        self._token_apps: LruMap[str, str] = LruMap(config.max_tracked_keys)
        """The app each access token registered with a webhook acts for."""
        self._users: LruMap[str, _User] = LruMap(config.max_tracked_keys)
        self._uploads: LruMap[str, bool] = LruMap(config.max_tracked_keys)
        self._messages: LruMap[str, dict[str, Any]] = LruMap(config.max_tracked_keys)
        routes = [
            Route("/v3.0/oa/message/cs", self._send, methods=["POST"]),
            Route("/v2.0/oa/upload/file", self._upload_file, methods=["POST"]),
            Route("/v3.0/oa/quota/message", self._quota, methods=["POST"]),
            *token_routes(self._book),
            Route("/_sandbox/webhooks", self._sandbox_webhooks, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
            Route("/_sandbox/zalo/interaction", self._sandbox_interaction, methods=["POST"]),
            Route("/_sandbox/messages/{message_id}", self._sandbox_message, methods=["GET"]),
        ]
        super().__init__(config, http, routes)
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)

    # ---- plumbing -------------------------------------------------------------------------------------

    def _error(self, refused: _Refused, status: int = 200) -> Response:
        if refused.code == RATE_LIMITED:
            self._stats.rate_limited += 1
        else:
            self._stats.reject(refused.code)
        return json_response({"error": refused.code, "message": str(refused)}, status)

    @staticmethod
    def _ok(data: Mapping[str, Any]) -> Response:
        return json_response({"data": data, "error": 0, "message": "Success"})

    async def _call(self, request: Request, max_bytes: int) -> tuple[bytes, str] | Response:
        """The body and access token of an API call, once faults and the token had their turn; or the
        answer refusing it."""
        self._stats.requests += 1
        raw = await request.body()
        fault = self._faults.take()
        if fault is not None:
            answered = await edge_fault(request, fault.kind, self._config, self._stats)
            if answered is not None:
                return answered
            if fault.kind == "rate_limit":
                return self._error(_Refused(RATE_LIMITED))
            if fault.kind == "stale_credentials":
                return self._error(_Refused(TOKEN_INVALID))
            return self._error(_Refused(-(fault.status or -UNREACHABLE_USER), "sandbox fault"))
        token = request.headers.get(TOKEN_HEADER, "")
        refused = self._book.check(token)
        if refused is not None:
            return self._error(_Refused(refused))
        if len(raw) > max_bytes:
            return self._error(_Refused(INVALID, "the request is too large"))
        return raw, token

    def _app_of(self, token: str, user: _User | None) -> str | None:
        """The app a send comes from: its user's, else its token's (issued or registered)."""
        if user is not None:
            return user.app_id
        return self._book.app_of(token) or self._token_apps.get(token)

    def _app(self, app_id: str) -> _App:
        app = self._apps.get(app_id)
        if app is None:
            app = _App(id=app_id)
            self._apps.set(app_id, app)
        return app

    # ---- the consultation send ----------------------------------------------------------------------------

    async def _send(self, request: Request) -> Response:
        call = await self._call(request, self._config.max_request_bytes)
        if isinstance(call, Response):
            return call
        raw, token = call
        try:
            body = _json_object(raw)
            user_id = _check_send(body, self._uploads)
        except _Refused as refused:
            return self._error(refused)
        user = self._users.get(user_id)
        app_id = self._app_of(token, user)
        if not self._throughput.try_acquire(app_id or token):
            return self._error(_Refused(RATE_LIMITED))
        since = time.time() - user.interacted if user is not None else 0.0
        if self._knobs.window_s > 0 and since > self._knobs.window_s:
            return self._error(_Refused(NO_INTERACTION))
        digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        key = f"{app_id}:{user_id}:{digest}"
        outcome = self._planner.decide(digit=last_digit(user_id), attempt_key=key)
        if outcome is Outcome.FINAL_ERROR:
            return self._error(_Refused(UNREACHABLE_USER))
        if outcome is Outcome.RETRYABLE_ERROR:
            self._stats.reject(500)
            return json_response({"error": -1, "message": "Internal error, please try again"}, 500)
        message_id = secrets.token_hex(16)
        self._stats.accept(key)
        if self._config.track_keys:
            self._messages.set(message_id, {"appId": app_id, "request": body})
        if app_id is not None:
            self._after_send(app_id, user_id, message_id, outcome)
        quota_type = "reply" if since <= self._knobs.free_window_s else "sub_quota"
        quota = {"quota_type": quota_type, "remain": str(CS_REPLY_TOTAL - 1), "total": str(CS_REPLY_TOTAL)}
        return self._ok({"message_id": message_id, "user_id": user_id, "quota": quota})

    def _after_send(self, app_id: str, user_id: str, message_id: str, outcome: Outcome) -> None:
        def lifecycle() -> Coroutine[Any, Any, None]:
            return self._lifecycle(app_id, user_id, message_id, outcome)

        app = self._apps.get(app_id)
        if app is not None and app.callback_url is not None:
            self._scheduler.spawn(lifecycle())
        else:
            self._held.hold(app_id, lifecycle)

    async def _lifecycle(self, app_id: str, user_id: str, message_id: str, outcome: Outcome) -> None:
        latency = self._config.callback_latency_s
        await asyncio.sleep(latency)
        if outcome is Outcome.FAILED_LATER:
            return
        await self._report(app_id, user_id, message_id, "user_received_message")
        if outcome is Outcome.DELIVERED_AND_SEEN:
            await asyncio.sleep(latency)
            await self._report(app_id, user_id, message_id, "user_seen_message")

    async def _report(self, app_id: str, user_id: str, message_id: str, event: str) -> None:
        app = self._app(app_id)
        user = self._users.get(user_id)
        body: dict[str, Any] = {
            "app_id": app_id,
            "sender": {"id": app.oa_id},
            "recipient": {"id": user_id},
            "user_id_by_app": user.by_app if user is not None else _by_app(app_id, user_id),
            "event_name": event,
            "message": {"msg_ids": [message_id]},
            "timestamp": str(now_ms()),
        }
        await self._webhook(app_id, body)

    async def _webhook(self, app_id: str, body: Mapping[str, Any]) -> None:
        """POST one event to the app's webhook URL, signed as Zalo signs; the settings are read when
        sending, since the app may have been configured again meanwhile."""
        app = self._apps.get(app_id)
        if app is None or app.callback_url is None:
            return
        raw = orjson.dumps(body)
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign_event(app.id, raw, app.secret)}
        await self._scheduler.post(app.callback_url, raw, headers)

    # ---- uploads and quota ----------------------------------------------------------------------------

    async def _upload_file(self, request: Request) -> Response:
        call = await self._call(request, UPLOAD_MAX_BYTES)
        if isinstance(call, Response):
            return call
        raw, _token = call
        try:
            name, size = _uploaded(raw, request.headers.get("content-type", ""))
            _, dot, extension = name.rpartition(".")
            if not dot or extension.lower() not in limits.FILE_EXTENSIONS:
                raise _Refused(INVALID, "file type is not supported (pdf, doc, docx)")
            if size > limits.FILE_MAX_BYTES:
                raise _Refused(INVALID, "file is larger than 5 MB")
        except _Refused as refused:
            return self._error(refused)
        token = secrets.token_urlsafe(24)
        self._uploads.set(token, True)
        return self._ok({"token": token})

    async def _quota(self, request: Request) -> Response:
        call = await self._call(request, self._config.max_request_bytes)
        if isinstance(call, Response):
            return call
        try:
            user_id = _user_id(_json_object(call[0]).get("user_id"))
        except _Refused as refused:
            return self._error(refused)
        user = self._users.get(user_id)
        last = str(int(user.interacted * 1000)) if user is not None else ""
        cs_reply = {"remain": CS_REPLY_TOTAL, "total": CS_REPLY_TOTAL}
        return self._ok({"user_id": user_id, "last_interaction": last, "cs_reply": cs_reply})

    # ---- sandbox control --------------------------------------------------------------------------------

    async def _sandbox_webhooks(self, request: Request) -> Response:
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            fields = {name: body.get(name) for name in ("appId", "oaId", "callbackUrl", "secretKey")}
            for name in ("appId", "oaId"):
                if not isinstance(fields[name], str) or not fields[name]:
                    raise ValueError(f"{name} is required")
            url, secret, token = fields["callbackUrl"], fields["secretKey"], body.get("accessToken")
            if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
                raise ValueError("callbackUrl must be an http(s) URL, or empty to remove it")
            if url and (not isinstance(secret, str) or not secret):
                raise ValueError("secretKey is required with a callbackUrl")
            if token is not None and not isinstance(token, str):
                raise ValueError("accessToken must be a string")
        except ValueError as exc:
            return sandbox_error(str(exc))
        app = self._app(str(fields["appId"]))
        app.oa_id = str(fields["oaId"])
        app.callback_url = url or None
        if url:
            app.secret = str(secret)
        if token:
            self._token_apps.set(token, app.id)
        self._held.configured(app.id, registered=bool(url))
        return json_response({"appId": app.id, "callbackUrl": app.callback_url})

    async def _sandbox_inbound(self, request: Request) -> Response:
        """An end user writes to an OA, shares their details or follows it: their window opens and, when
        the app has a webhook URL, a signed webhook follows."""
        try:
            app_id = request.headers.get(SANDBOX_APP_HEADER, "")
            oa_id = request.headers.get(SANDBOX_OA_HEADER, "")
            if not app_id or not oa_id:
                raise ValueError(f"the {SANDBOX_APP_HEADER} and {SANDBOX_OA_HEADER} headers are required")
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            handle, name, text = body.get("userId"), body.get("name", "Zalo user"), body.get("text")
            event = body.get("event")
            if handle is not None and (not isinstance(handle, str) or not handle):
                raise ValueError("userId must be a non-empty string")
            if not isinstance(name, str) or not name:
                raise ValueError("name must be a non-empty string")
            if text is not None and (not isinstance(text, str) or not text):
                raise ValueError("text must be a non-empty string")
            if event not in (None, "follow", "unfollow"):
                raise ValueError("event must be follow or unfollow")
            digits = phone_digits(body.get("phone"))
            if text is None and event is None and not digits:
                raise ValueError("text, phone or event is required")
        except ValueError as exc:
            return sandbox_error(str(exc))
        app = self._app(app_id)
        app.oa_id = app.oa_id or oa_id
        user = self._end_user(app_id, handle, digits)
        user.interacted = time.time()
        message_id = secrets.token_hex(16)
        common = {"app_id": app_id, "user_id_by_app": user.by_app, "timestamp": str(now_ms())}
        if event is not None:
            webhook = {**common, "oa_id": oa_id, "event_name": event, "source": "oa_profile"}
            webhook["follower"] = {"id": user.id}
        elif text is None:
            info = {"name": name, "phone": digits, "address": "", "city": "", "district": "", "ward": ""}
            webhook = {**common, "event_name": "user_submit_info", "info": info}
            webhook |= {"sender": {"id": user.id}, "recipient": {"id": oa_id}}
        else:
            webhook = {
                **common,
                "event_name": "user_send_text",
                "message": {"text": text, "msg_id": message_id},
            }
            webhook |= {"sender": {"id": user.id}, "recipient": {"id": oa_id}}
        registered = app.callback_url is not None
        if registered:
            self._scheduler.spawn(self._after_latency(app_id, webhook))
        return json_response({"userId": user.id, "msgId": message_id, "webhook": registered})

    async def _after_latency(self, app_id: str, body: Mapping[str, Any]) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        await self._webhook(app_id, body)

    async def _sandbox_interaction(self, request: Request) -> Response:
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            user = self._users.get(str(body.get("userId")))
            if user is None:
                raise ValueError("userId must name a user the simulator made")
            ago = body.get("secondsAgo")
            if isinstance(ago, bool) or not isinstance(ago, int | float) or ago < 0:
                raise ValueError("secondsAgo must be a non-negative number")
        except ValueError as exc:
            return sandbox_error(str(exc))
        user.interacted = time.time() - float(ago)
        return json_response({"userId": user.id, "interacted": int(user.interacted * 1000)})

    async def _sandbox_message(self, request: Request) -> Response:
        found = self._messages.get(request.path_params["message_id"])
        if found is None:
            return sandbox_error("no such message", 404)
        return json_response(found)

    def _end_user(self, app_id: str, handle: str | None, digits: str) -> _User:
        """The user `handle` or `digits` names on the app's OA (a new user when neither does)."""
        if handle is not None:
            known = self._users.get(handle)
            if known is not None and known.app_id == app_id:
                return known
            key, digit = f"user:{handle}", last_digit(digits or handle)
        elif digits:
            key, digit = f"phone:{digits}", last_digit(digits)
        else:
            key, digit = f"new:{uuid.uuid4()}", 0
        number = int(hashlib.sha256(f"{app_id}|{key}".encode()).hexdigest()[:16], 16)
        user_id = f"{10**17 + number % (9 * 10**17)}{digit}"
        user = self._users.get(user_id)
        if user is None:
            user = _User(id=user_id, app_id=app_id, by_app=_by_app(app_id, user_id), interacted=time.time())
            self._users.set(user_id, user)
        return user


def _by_app(app_id: str, user_id: str) -> str:
    """The user's id by the app (Zalo's `user_id_by_app`): another number for the same person."""
    return str(10**17 + int(hashlib.sha256(f"by-app|{app_id}|{user_id}".encode()).hexdigest()[:15], 16))


# ---- requests as Zalo reads them -------------------------------------------------------------------------


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Refused(INVALID, "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise _Refused(INVALID, "the body must be a JSON object")
    return body


def _user_id(value: Any) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 30:
        raise _Refused(INVALID, "user_id is invalid")
    return value


def _text(value: Any, where: str, limit: int, *, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value):
        raise _Refused(INVALID, f"{where} must be a non-empty string")
    if len(value) > limit:
        raise _Refused(INVALID, f"{where} exceeds {limit} characters")


def _url(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _Refused(INVALID, f"{where} must be an http(s) URL")


def _check_send(body: Mapping[str, Any], uploads: LruMap[str, bool]) -> str:
    """Zalo's checks of a consultation send; returns the recipient's user id."""
    recipient = body.get("recipient")
    user_id = _user_id(recipient.get("user_id") if isinstance(recipient, dict) else None)
    message = body.get("message")
    if not isinstance(message, dict) or not ({"text", "attachment"} & set(message)):
        raise _Refused(INVALID, "message needs a text or an attachment")
    _text(message.get("text"), "message.text", limits.TEXT_MAX, required="text" in message)
    attachment = message.get("attachment")
    if attachment is None:
        return user_id
    if not isinstance(attachment, dict) or not isinstance(attachment.get("payload"), dict):
        raise _Refused(INVALID, "message.attachment needs a payload object")
    payload = attachment["payload"]
    if attachment.get("type") == "file":
        if not isinstance(payload.get("token"), str) or uploads.get(payload["token"]) is None:
            raise _Refused(INVALID, "message.attachment.payload.token is invalid or expired")
        return user_id
    if attachment.get("type") != "template":
        raise _Refused(INVALID, "message.attachment.type must be template or file")
    kind = payload.get("template_type")
    if kind is None:
        if "text" not in message:
            raise _Refused(INVALID, "a button template needs message.text")
        _check_buttons(payload.get("buttons"), required=True)
    elif kind == "media":
        _check_media(payload.get("elements"))
    elif kind == "list":
        _check_list(payload)
    elif kind == "request_user_info":
        elements = payload.get("elements")
        if not isinstance(elements, list) or len(elements) != 1 or not isinstance(elements[0], dict):
            raise _Refused(INVALID, "request_user_info takes one element")
        _text(elements[0].get("title"), "elements[0].title", limits.ELEMENT_TITLE_MAX)
    else:
        raise _Refused(INVALID, "template_type must be media, list or request_user_info")
    return user_id


def _check_media(elements: Any) -> None:
    if not isinstance(elements, list) or len(elements) != 1 or not isinstance(elements[0], dict):
        raise _Refused(INVALID, "a media template takes one element")
    element = elements[0]
    if element.get("media_type") == "image":
        _url(element.get("url"), "elements[0].url")
    elif element.get("media_type") == "gif":
        if not isinstance(element.get("attachment_id"), str):
            raise _Refused(INVALID, "a gif goes by attachment_id")
    else:
        raise _Refused(INVALID, "elements[0].media_type must be image or gif")


def _check_list(payload: Mapping[str, Any]) -> None:
    elements = payload.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= limits.ELEMENTS_MAX:
        raise _Refused(INVALID, f"a list template takes 1 to {limits.ELEMENTS_MAX} elements")
    for n, element in enumerate(elements):
        where = f"elements[{n}]"
        if not isinstance(element, dict):
            raise _Refused(INVALID, f"{where} must be an object")
        _text(element.get("title"), f"{where}.title", limits.ELEMENT_TITLE_MAX)
        _text(element.get("subtitle"), f"{where}.subtitle", limits.ELEMENT_SUBTITLE_MAX, required=False)
        if "image_url" in element:
            _url(element["image_url"], f"{where}.image_url")
        action = element.get("default_action")
        if action is not None:
            if not isinstance(action, dict):
                raise _Refused(INVALID, f"{where}.default_action must be an object")
            if action.get("type") == "oa.open.url":
                _url(action.get("url"), f"{where}.default_action.url")
            else:
                _check_button({"title": "action", **action}, f"{where}.default_action")
    _check_buttons(payload.get("buttons"), required=False)


def _check_buttons(buttons: Any, *, required: bool) -> None:
    if buttons is None and not required:
        return
    if not isinstance(buttons, list) or not (1 if required else 0) <= len(buttons) <= limits.BUTTONS_MAX:
        raise _Refused(INVALID, f"buttons must have 1 to {limits.BUTTONS_MAX} items")
    for n, button in enumerate(buttons):
        _check_button(button, f"buttons[{n}]")


def _check_button(button: Any, where: str) -> None:
    if not isinstance(button, dict):
        raise _Refused(INVALID, f"{where} must be an object")
    _text(button.get("title"), f"{where}.title", limits.BUTTON_TITLE_MAX)
    kind, payload = button.get("type"), button.get("payload")
    if kind not in BUTTON_TYPES:
        raise _Refused(INVALID, f"{where}.type is not a button type")
    if kind == "oa.open.url":
        _url(payload.get("url") if isinstance(payload, dict) else None, f"{where}.payload.url")
    elif kind in ("oa.query.show", "oa.query.hide"):
        _text(payload, f"{where}.payload", limits.QUERY_PAYLOAD_MAX)
    else:
        if not isinstance(payload, dict):
            raise _Refused(INVALID, f"{where}.payload must be an object")
        phone = payload.get("phone_code")
        if not isinstance(phone, str) or not phone.isascii() or not phone.isdigit():
            raise _Refused(INVALID, f"{where}.payload.phone_code must be digits")
        if kind == "oa.open.sms":
            _text(payload.get("content"), f"{where}.payload.content", SMS_CONTENT_MAX)


def _uploaded(raw: bytes, content_type: str) -> tuple[str, int]:
    """The name and size of the multipart body's `file`."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise _Refused(INVALID, "the upload must be multipart/form-data")
    envelope = b"Content-Type: " + content_type.encode("latin-1", errors="replace") + b"\r\n\r\n"
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(envelope + raw)
    if not parsed.is_multipart():
        raise _Refused(INVALID, "the multipart body cannot be read")
    for part in parsed.iter_parts():
        if part.get_param("name", header="content-disposition") != "file":
            continue
        content: Any = part.get_payload(decode=True)
        name = part.get_filename() or ""
        return name, len(content) if isinstance(content, bytes) else 0
    raise _Refused(INVALID, "the upload has no file")
