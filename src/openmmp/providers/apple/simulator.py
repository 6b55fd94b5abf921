"""A local Apple Messages for Business gateway: the MSP's side of Apple's REST API, and Apple's callbacks.

Upstream routes (relative to the mount point), each with `Authorization: Bearer <JWT>` (HS256, `iss` the
MSP id, `iat` within the last hour; an MSP the simulator was told about has its signature checked with its
secret, one it forgot since it started is taken on its claims, as the simulator takes any credentials):

- `POST /v1/message` with the headers `id` (a UUID), `Source-Id` (the business) and `Destination-Id` (the
  user) and the body `{"v": 1, "id", "sourceId", "destinationId", "type", ...}` (which must repeat them),
  gzip-compressed or not. Checked as Apple checks it: `text` (a `body`; `attachments`, one U+FFFC each in
  the body, must be files uploaded here, which the simulator decrypts with their `key`), `richLink`
  (`richLinkData.url`), `interactive` (Apple's `bid`, `data.version` and `data.requestIdentifier`; a
  quick reply's 2 to 5 items, a list picker's sections and items, `receivedMessage`; at most 10 KB).
  Answers are HTTP statuses with an empty body:

  1. 401 for a missing or wrong JWT; 403 for a business registered with another MSP; 400 for a bad
     request; 413 beyond `max_request_bytes`;
  2. 429 (`Retry-After: 1`) beyond `requests_per_window` per business;
  3. a repeated `id` the business sent before and that was accepted is collapsed: 200 again, and the
     user gets it once (`/_sandbox/stats` counts `duplicates`);
  4. 410 for a user who closed the conversation (until they write again); with `require_known_users`,
     404 for a user the simulator never saw;
  5. the shared sandbox rule (`providers.simulation`) by the last digit of `Destination-Id`: 0–7
     accepted (200, and that is all: Apple reports neither delivery nor reading), 8 is 410 (the user
     cannot be reached), 9 is 503 twice for the same message, then accepted. In rates mode a message
     that would fail later is accepted all the same (nothing would tell).
- `GET /v1/preUpload` (`Source-Id`, `size`) authorises an upload: `{"upload-url", "mmcs-url",
  "mmcs-owner"}`; `POST /mmcs/upload/{token}` takes the encrypted file (exactly `size` bytes): `{"singleFile":
  {"fileChecksum"}}`.

**Callbacks** (what users do) go to the business's callback URL as Apple posts them: `Authorization:
Bearer <JWT>` (`aud` the MSP id, signed with its secret), `id`, `Source-Id` (the user), `Destination-Id`
(the business), `capability-list`, `device-agent`, `locale`, and the body gzip-compressed
(`Content-Encoding: gzip`) from `gzip_min_bytes` bytes on; each retried (bounded) until answered 200.

Sandbox control (OpenMMP's own): `POST /_sandbox/businesses` `{"businessId", "mspId", "secret",
"callbackUrl"}` plays Apple's register (an empty `callbackUrl` removes it); `POST /_sandbox/inbound`
makes a user act (`_sandbox_inbound`); `GET /_sandbox/messages/{id}` shows what the gateway got;
`GET /_sandbox/stats`, `POST /_sandbox/faults` (`rate_limit` answers 429, `final_error` the fault's
`status`, else 400).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient
from openmmp.kit.validators import http_url
from openmmp.providers.apple import auth
from openmmp.providers.apple.callbacks import inflate
from openmmp.providers.apple.client import MESSAGE_PATH, PRE_UPLOAD_PATH, PROTOCOL_VERSION, decrypt
from openmmp.providers.apple.payload import (
    ATTACHMENT_MARK,
    BID,
    INTERACTIVE_MAX_BYTES,
    QUICK_REPLY_MAX,
    QUICK_REPLY_MIN,
)
from openmmp.providers.apple.provider import BUSINESSES_PATH, INBOUND_REGISTERED
from openmmp.providers.base import CallbackRejected
from openmmp.providers.simulation import (
    HttpSimulator,
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    edge_fault,
    json_response,
    knobs,
    last_digit,
    phone_digits,
    read_json,
    sandbox_error,
)

UPLOAD_PATH = "/mmcs/upload/{token}"
APPLE_ISSUER = "AppleMessagesForBusiness"
CAPABILITIES = "QUICK,LIST,TIME,AUTH,AUTH2,FORM"
DEVICE_AGENT = "iPhone15,2 iOS/17.4"
USER_ID_PREFIX = "urn:mbid:AQAAY"
MESSAGE_TYPES = frozenset({"text", "richLink", "interactive", "typing_start", "typing_end"})
ATTACHMENT_FIELDS = ("name", "mimeType", "size", "signature-base64", "url", "owner", "key")
_EVENTS = ("message", "close", "typing_start", "typing_end")


@dataclass
class AppleKnobs:
    """The Apple simulator's own knobs (`SimulatorConfig.options["apple"]`)."""

    requests_per_window: int = 100
    window_s: float = 1.0
    """Sends per business per window; beyond, 429 (Apple publishes no limit)."""
    gzip_min_bytes: int | None = 256
    """Callback bodies of at least this many bytes go gzip-compressed (0: all; None: none)."""
    require_known_users: bool = False
    """Refuse sends to users the simulator never saw (404)."""
    max_request_bytes: int = 256 * 1024
    """The largest `/v1/message` body (Apple publishes none; a 10,000-character text with attachments'
    dictionaries stays well below)."""
    max_upload_bytes: int = 16 * 1024 * 1024
    """The largest attachment upload (Apple takes 100 MB; the simulator keeps files in memory)."""
    files_kept: int = 100
    """Uploaded files kept for messages to name (the oldest are forgotten)."""
    messages_kept: int = 10_000
    """Requests kept for `GET /_sandbox/messages/{id}` (the oldest are forgotten)."""
    users_kept: int = 100_000
    """Users remembered (whether they closed the conversation, what they can pick)."""
    pickers_kept: int = 20
    """Per user, how many list pickers and quick replies of the business they can still answer."""
    locale: str = "en_US"


class _Refused(Exception):
    """A request Apple answers with `status` (and an empty body); `reason` is the simulator's note."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Picker:
    """A list picker or quick reply the user was sent and can answer."""

    kind: str  # "listPicker" or "quick-reply"
    request_identifier: str
    items: list[dict[str, Any]]
    section: dict[str, Any] = field(default_factory=dict)

    @property
    def multiple(self) -> bool:
        return bool(self.section.get("multipleSelection"))


@dataclass
class _User:
    id: str
    closed: bool = False
    pickers: deque[_Picker] = field(default_factory=deque)


@dataclass
class _Business:
    id: str
    msp_id: str
    key: bytes
    callback_url: str = ""


def create_apple_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The Apple simulator as a Starlette app; `http` posts its callbacks (the caller closes it)."""
    return _AppleSimulator(config, http).app


class _AppleSimulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "apple", AppleKnobs)
        self._limiter = TokenBucketLimiter(
            capacity=self._knobs.requests_per_window, window_s=self._knobs.window_s
        )
        self._businesses: dict[str, _Business] = {}
        self._msp_keys: dict[str, bytes] = {}
        self._users: LruMap[str, _User] = LruMap(self._knobs.users_kept)
        self._accepted: LruMap[str, bool] = LruMap(config.max_tracked_keys)
        self._messages: LruMap[str, dict[str, Any]] = LruMap(self._knobs.messages_kept)
        self._uploads: LruMap[str, int] = LruMap(self._knobs.files_kept)
        self._files: LruMap[str, tuple[str, bytes]] = LruMap(self._knobs.files_kept)
        routes = [
            Route(MESSAGE_PATH, self._message, methods=["POST"]),
            Route(PRE_UPLOAD_PATH, self._pre_upload, methods=["GET"]),
            Route(UPLOAD_PATH, self._upload, methods=["POST"]),
            Route(BUSINESSES_PATH, self._sandbox_businesses, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
            Route("/_sandbox/messages/{id}", self._sandbox_message, methods=["GET"]),
        ]
        super().__init__(config, http, routes)

    # ---- the gateway ----------------------------------------------------------------------------------

    def _refused(self, refused: _Refused, headers: dict[str, str] | None = None) -> Response:
        if refused.status == 429:
            self._stats.rate_limited += 1
        else:
            self._stats.reject(refused.status)
        return Response(status_code=refused.status, headers=headers)

    def _msp(self, request: Request) -> str:
        """The MSP id of the request's JWT, once it proves the request (`_Refused` 401 otherwise)."""
        try:
            token = auth.bearer(request.headers.get("authorization"))
            claims = auth.unverified_claims(token)
            issuer = claims.get("iss")
            if not isinstance(issuer, str) or not issuer:
                raise auth.TokenRefused("the token has no iss")
            key = self._msp_keys.get(issuer)
            if key is None:
                auth.check_fresh(claims, time.time())
            else:
                auth.read_token(token, key)
        except auth.TokenRefused as exc:
            raise _Refused(401, str(exc)) from exc
        return issuer

    def _business_of(self, request: Request, msp: str) -> str:
        business = (request.headers.get("source-id") or "").strip()
        if not business:
            raise _Refused(400, "Source-Id is required")
        registered = self._businesses.get(business)
        if registered is not None and registered.msp_id != msp:
            raise _Refused(403, "the business is registered with another MSP")
        return business

    async def _message(self, request: Request) -> Response:
        self._stats.requests += 1
        fault = self._faults.take()
        if fault is not None:
            answered = await edge_fault(request, fault.kind, self._config, self._stats)
            if answered is not None:
                return answered
            if fault.kind == "rate_limit":
                return self._refused(_Refused(429, "sandbox fault"), {"retry-after": "1"})
            return self._refused(_Refused(fault.status or 400, "sandbox fault"))
        uid = request.headers.get("id", "")
        try:
            msp = self._msp(request)
            business = self._business_of(request, msp)
            body = await self._body(request)
            user_id = self._check_envelope(request, body, business)
            content = self._check_content(body)
            if not self._limiter.try_acquire(business):
                raise _Refused(429, "too many messages from the business")
        except _Refused as refused:
            self._record(uid, request, None, refused=refused.reason)
            if refused.status == 429:
                return self._refused(refused, {"retry-after": "1"})
            return self._refused(refused)
        key = f"{business}|{uid}"
        if self._accepted.get(key):
            self._stats.duplicates += 1
            return Response(status_code=200)
        user = self._users.get(f"{business}|{user_id}")
        try:
            if user is None and self._knobs.require_known_users:
                raise _Refused(404, "no such user for the business")
            if user is not None and user.closed:
                raise _Refused(410, "the user closed the conversation")
            outcome = self._planner.decide(digit=last_digit(user_id), attempt_key=key)
            if outcome is Outcome.FINAL_ERROR:
                raise _Refused(410, "the user cannot be reached")
            if outcome is Outcome.RETRYABLE_ERROR:
                raise _Refused(503, "service unavailable")
        except _Refused as refused:
            self._record(uid, request, body, refused=refused.reason)
            return self._refused(refused)
        self._stats.accept(key)
        self._accepted.set(key, True)
        self._record(uid, request, body, files=content)
        self._remember_picker(business, user_id, body)
        return Response(status_code=200)

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > self._knobs.max_request_bytes:
            raise _Refused(413, "the request is too large")
        if "gzip" in request.headers.get("content-encoding", "").lower():
            try:
                raw = inflate(raw, limit=self._knobs.max_request_bytes)
            except CallbackRejected as exc:
                raise _Refused(400, str(exc)) from exc
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Refused(400, "the body is not JSON") from exc
        if not isinstance(body, dict):
            raise _Refused(400, "the body is not a JSON object")
        return body

    def _check_envelope(self, request: Request, body: dict[str, Any], business: str) -> str:
        """The user the message goes to, once the envelope's headers and body agree."""
        uid = request.headers.get("id", "")
        try:
            uuid.UUID(uid)
        except ValueError as exc:
            raise _Refused(400, "the id header must be a UUID") from exc
        user = (request.headers.get("destination-id") or "").strip()
        if not user:
            raise _Refused(400, "Destination-Id is required")
        if body.get("v") != PROTOCOL_VERSION:
            raise _Refused(400, "v must be 1")
        expected = {"id": uid, "sourceId": business, "destinationId": user}
        for name, value in expected.items():
            if body.get(name) != value:
                raise _Refused(400, f"{name} must repeat the request's header")
        return user

    def _check_content(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Check the message as Apple does; the attachments it carries (decrypted, described)."""
        kind = body.get("type")
        if kind not in MESSAGE_TYPES:
            raise _Refused(400, f"unknown type {kind!r}")
        if kind == "text":
            text = body.get("body")
            if not isinstance(text, str) or not text:
                raise _Refused(400, "a text needs a body")
            return self._check_attachments(text, body.get("attachments"))
        if kind == "richLink":
            link = body.get("richLinkData")
            url = link.get("url") if isinstance(link, dict) else None
            try:
                http_url(url if isinstance(url, str) else "")
            except ValueError as exc:
                raise _Refused(400, "richLinkData.url must be an http(s) URL") from exc
        elif kind == "interactive":
            _check_interactive(body.get("interactiveData"))
        return []

    def _check_attachments(self, text: str, attachments: Any) -> list[dict[str, Any]]:
        if attachments is None:
            if ATTACHMENT_MARK in text:
                raise _Refused(400, "U+FFFC without attachments")
            return []
        if not isinstance(attachments, list) or text.count(ATTACHMENT_MARK) != len(attachments):
            raise _Refused(400, "one U+FFFC in the body per attachment")
        described = []
        for attachment in attachments:
            if not isinstance(attachment, dict) or any(name not in attachment for name in ATTACHMENT_FIELDS):
                raise _Refused(400, f"an attachment needs {', '.join(ATTACHMENT_FIELDS)}")
            stored = self._files.get(str(attachment["signature-base64"]))
            if stored is None or stored[0] != attachment["url"]:
                raise _Refused(400, "an attachment that was not uploaded")
            try:
                data = decrypt(stored[1], str(attachment["key"]))
            except ValueError as exc:
                raise _Refused(400, "an attachment's key is not 00 and 32 bytes in hex") from exc
            if attachment["size"] != len(data):
                raise _Refused(400, "an attachment's size is not its file's")
            described.append(
                {
                    "name": attachment["name"],
                    "mimeType": attachment["mimeType"],
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        return described

    def _record(
        self,
        uid: str,
        request: Request,
        body: dict[str, Any] | None,
        *,
        refused: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> None:
        if not uid or not self._config.track_keys:
            return
        headers = {name: request.headers.get(name, "") for name in ("id", "source-id", "destination-id")}
        self._messages.set(uid, {"headers": headers, "body": body, "refused": refused, "attachments": files})

    def _remember_picker(self, business: str, user_id: str, body: dict[str, Any]) -> None:
        interactive = body.get("interactiveData")
        data = interactive.get("data") if isinstance(interactive, dict) else None
        if not isinstance(data, dict):
            return
        user = self._user(business, user_id)
        rid = str(data.get("requestIdentifier", ""))
        quick = data.get("quick-reply")
        if isinstance(quick, dict):
            picker = _Picker("quick-reply", rid, list(quick["items"]))
        elif isinstance(data.get("listPicker"), dict):
            section = data["listPicker"]["sections"][0]
            items = [item for s in data["listPicker"]["sections"] for item in s["items"]]
            picker = _Picker("listPicker", rid, items, {k: v for k, v in section.items() if k != "items"})
        else:
            return
        user.pickers.append(picker)
        while len(user.pickers) > self._knobs.pickers_kept:
            user.pickers.popleft()

    # ---- attachments --------------------------------------------------------------------------------

    async def _pre_upload(self, request: Request) -> Response:
        self._stats.requests += 1
        try:
            self._business_of(request, self._msp(request))
            size = request.headers.get("size", "")
            if not size.isascii() or not size.isdigit() or int(size) <= 0:
                raise _Refused(400, "size must be a positive number of bytes")
            if int(size) > self._knobs.max_upload_bytes:
                raise _Refused(413, "the file is too large")
        except _Refused as refused:
            return self._refused(refused)
        token = secrets.token_urlsafe(16)
        self._uploads.set(token, int(size))
        base = str(request.url).split("?", 1)[0].removesuffix(PRE_UPLOAD_PATH)
        return json_response(
            {
                "upload-url": f"{base}/mmcs/upload/{token}",
                "mmcs-url": f"{base}/mmcs/files/{token}",
                "mmcs-owner": f"sandbox-owner-{hashlib.sha256(token.encode()).hexdigest()[:16]}",
            }
        )

    async def _upload(self, request: Request) -> Response:
        token = request.path_params["token"]
        size = self._uploads.get(token)
        if size is None:
            return Response(status_code=404)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > size:  # read no further than was authorised
                return Response(status_code=400)
        if len(data) != size:
            return Response(status_code=400)
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        base = str(request.url).split("?", 1)[0].removesuffix(f"/mmcs/upload/{token}")
        self._files.set(checksum, (f"{base}/mmcs/files/{token}", bytes(data)))
        return json_response({"singleFile": {"fileChecksum": checksum}})

    # ---- sandbox control ------------------------------------------------------------------------------

    async def _sandbox_businesses(self, request: Request) -> Response:
        """Register a business: its MSP (whose secret signs the JWTs both ways) and its callback URL."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            business, msp = body.get("businessId"), body.get("mspId")
            secret, url = body.get("secret"), body.get("callbackUrl", "")
            for name, value in (("businessId", business), ("mspId", msp), ("secret", secret)):
                if not isinstance(value, str) or not value.strip():
                    raise ValueError(f"{name} is required")
            if not isinstance(url, str):
                raise ValueError("callbackUrl must be a string")
            if url:
                http_url(url)
            key = auth.msp_key(str(secret))
        except ValueError as exc:
            return sandbox_error(str(exc))
        self._businesses[str(business)] = _Business(str(business), str(msp), key, url)
        self._msp_keys[str(msp)] = key
        return json_response({"businessId": business, "callbackUrl": url, "registered": bool(url)})

    async def _sandbox_message(self, request: Request) -> Response:
        found = self._messages.get(request.path_params["id"])
        return json_response(found) if found is not None else sandbox_error("no such message", 404)

    async def _sandbox_inbound(self, request: Request) -> Response:
        """Make a user act on a business: write (`message`, the default event: a `text`, and/or
        `attachments` `[{name, mimeType, size}]`), pick items of a list picker or quick reply they were
        sent (`select`: the items' titles or identifiers; a `text` naming them does the same), start or
        stop typing (`typing_start`, `typing_end`) or delete the conversation (`close`).

        Body `{"businessId", "name"?, "text"?, "userId"?, "phone"?, "event"?, "select"?,
        "attachments"?}`. `userId` is an opaque id (`urn:mbid:...`) or any handle of the caller's (mapped
        to a stable opaque id); else `phone` picks the user; with neither a new user is made. The opaque
        id ends in the digit that picks the outcome of sends to the user: the phone's last digit, else the
        handle's, else 0. Nothing is sent while the business has no callback URL (it is not registered since
        the simulator started, or its URL was removed): `registered` is false then. Returns `{"userId",
        "messageId", "registered", "type", "selected"?}`.
        """
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            business_id = body.get("businessId")
            if not isinstance(business_id, str) or not business_id.strip():
                raise ValueError("businessId is required")
            event = body.get("event", "message")
            if event not in _EVENTS:
                raise ValueError(f"event must be one of {', '.join(_EVENTS)}")
            text, handle, select = body.get("text"), body.get("userId"), body.get("select")
            if text is not None and not isinstance(text, str):
                raise ValueError("text must be a string")
            if handle is not None and (not isinstance(handle, str) or not handle):
                raise ValueError("userId must be a non-empty string")
            if select is not None and (
                not isinstance(select, list) or not select or not all(isinstance(s, str) for s in select)
            ):
                raise ValueError("select must be a non-empty list of item titles or identifiers")
            files = _sandbox_attachments(body.get("attachments"))
            digits = phone_digits(body.get("phone"))
            if event == "message" and not text and not files and select is None:
                raise ValueError("text, attachments or select is required")
        except ValueError as exc:
            return sandbox_error(str(exc))
        user = self._user(business_id, _opaque_id(business_id, handle, digits))
        answer: dict[str, Any] = {"userId": user.id, "messageId": "", INBOUND_REGISTERED: False}
        business = self._businesses.get(business_id)
        if business is None or not business.callback_url:
            return json_response(answer)
        message: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": str(uuid.uuid4())}
        message |= {"sourceId": user.id, "destinationId": business.id}
        if event != "message":
            message["type"] = event
            if event == "close":
                user.closed = True
        else:
            user.closed = False  # writing again opens the conversation again
            picked = _pick(user, select if select is not None else [text] if text and not files else [])
            if picked is None and select is not None:
                return sandbox_error("select: the user was sent no list picker or quick reply with these")
            if picked is not None:
                message |= picked[0]
                answer["selected"] = picked[1]
            else:
                marks = ATTACHMENT_MARK * len(files)
                message |= {"type": "text", "body": f"{text}\n{marks}" if text and marks else text or marks}
                if files:
                    message["attachments"] = [_apple_attachment(request, item) for item in files]
            message["locale"] = self._knobs.locale
        self._scheduler.spawn(self._deliver(business, message))
        answer |= {"messageId": message["id"], INBOUND_REGISTERED: True, "type": message["type"]}
        return json_response(answer)

    def _user(self, business: str, user_id: str) -> _User:
        user = self._users.get(f"{business}|{user_id}")
        if user is None:
            user = _User(user_id)
            self._users.set(f"{business}|{user_id}", user)
        return user

    async def _deliver(self, business: _Business, message: dict[str, Any]) -> None:
        """POST one message to the business's callback URL as Apple does (signed; maybe compressed)."""
        raw = orjson.dumps(message)
        token = auth.sign(
            {"iss": APPLE_ISSUER, "aud": business.msp_id, "iat": int(time.time())}, business.key
        )
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": "application/json",
            "id": str(message["id"]),
            "source-id": str(message["sourceId"]),
            "destination-id": business.id,
            "capability-list": CAPABILITIES,
            "device-agent": DEVICE_AGENT,
            "locale": self._knobs.locale,
        }
        threshold = self._knobs.gzip_min_bytes
        if threshold is not None and len(raw) >= threshold:
            raw = gzip.compress(raw)
            headers["content-encoding"] = "gzip"
        await self._scheduler.post(business.callback_url, raw, headers)


def _check_interactive(interactive: Any) -> None:
    if not isinstance(interactive, dict) or interactive.get("bid") != BID:
        raise _Refused(400, "interactiveData.bid must be Apple's business extension")
    if len(orjson.dumps(interactive)) > INTERACTIVE_MAX_BYTES:
        raise _Refused(400, "interactiveData over 10 KB must be pre-uploaded")
    data = interactive.get("data")
    if not isinstance(data, dict) or not data.get("version") or not data.get("requestIdentifier"):
        raise _Refused(400, "interactiveData.data needs version and requestIdentifier")
    quick, picker = data.get("quick-reply"), data.get("listPicker")
    if isinstance(quick, dict):
        items = quick.get("items")
        if not isinstance(quick.get("summaryText"), str) or not isinstance(items, list):
            raise _Refused(400, "quick-reply needs summaryText and items")
        if not QUICK_REPLY_MIN <= len(items) <= QUICK_REPLY_MAX:
            raise _Refused(400, "a quick reply has 2 to 5 items")
        _check_items(items)
    elif isinstance(picker, dict):
        sections = picker.get("sections")
        if not isinstance(sections, list) or not sections:
            raise _Refused(400, "listPicker needs sections")
        for section in sections:
            if not isinstance(section, dict) or not isinstance(section.get("items"), list):
                raise _Refused(400, "a listPicker section needs items")
            _check_items(section["items"])
        received = interactive.get("receivedMessage")
        if not isinstance(received, dict) or not received.get("title"):
            raise _Refused(400, "a listPicker needs receivedMessage.title")
    else:
        raise _Refused(400, "the simulator knows quick replies and list pickers only")


def _check_items(items: list[Any]) -> None:
    identifiers = set()
    for item in items:
        if not isinstance(item, dict) or not item.get("identifier") or not item.get("title"):
            raise _Refused(400, "an item needs identifier and title")
        identifiers.add(item["identifier"])
    if len(identifiers) != len(items):
        raise _Refused(400, "item identifiers repeat")


def _pick(user: _User, names: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """The interactive answer of the user picking `names` (titles or identifiers) in the latest picker
    of theirs that has them all (several only where it allows several); None when none has."""
    wanted = [name.strip().casefold() for name in names if name.strip()]
    if not wanted:
        return None
    if len(wanted) == 1 and "," in wanted[0]:
        split = [part.strip() for part in wanted[0].split(",") if part.strip()]
        return _pick(user, split) or _pick_exact(user, wanted)
    return _pick_exact(user, wanted)


def _pick_exact(user: _User, wanted: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    for picker in reversed(user.pickers):
        if len(wanted) > 1 and not picker.multiple:
            continue
        chosen = []
        for name in wanted:
            match = next(
                (
                    (index, item)
                    for index, item in enumerate(picker.items)
                    if name in (str(item["identifier"]).casefold(), str(item["title"]).casefold())
                ),
                None,
            )
            if match is None:
                break
            chosen.append(match)
        else:
            if picker.kind == "quick-reply":
                user.pickers.remove(picker)  # a quick reply is answered once
            return _answer(picker, chosen), [str(item["identifier"]) for _, item in chosen]
    return None


def _answer(picker: _Picker, chosen: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    data: dict[str, Any] = {"version": "1.0", "requestIdentifier": picker.request_identifier}
    if picker.kind == "quick-reply":
        index, item = chosen[0]
        data["quick-reply"] = {"selectedIdentifier": item["identifier"], "selectedIndex": index}
    else:
        section = {**picker.section, "items": [item for _, item in chosen]}
        data["listPicker"] = {"sections": [section]}
        data["replyMessage"] = {"title": ", ".join(str(item["title"]) for _, item in chosen), "style": "icon"}
    return {"type": "interactive", "interactiveData": {"bid": BID, "data": data}}


def _sandbox_attachments(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("attachments must be a list")
    files = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError("each attachment needs a name")
        mime_type, size = item.get("mimeType", "application/octet-stream"), item.get("size", 1024)
        if not isinstance(mime_type, str) or "/" not in mime_type:
            raise ValueError("an attachment's mimeType is a MIME type")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError("an attachment's size is a number of bytes")
        files.append({"name": item["name"], "mimeType": mime_type, "size": size})
    return files


def _apple_attachment(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    """An attachment of the user's, as Apple describes one (the file itself is made up)."""
    token = secrets.token_urlsafe(16)
    base = str(request.url).split("?", 1)[0].removesuffix("/_sandbox/inbound")
    return {
        **item,
        "signature-base64": base64.b64encode(secrets.token_bytes(20)).decode("ascii"),
        "url": f"{base}/mmcs/files/{token}",
        "owner": f"sandbox-owner-{token[:8]}",
        "key": "00" + secrets.token_hex(32),
    }


def _opaque_id(business: str, handle: str | None, phone: str) -> str:
    """A user's opaque id: the handle itself when it is one, else a stable one for the handle or phone
    (or a new one), ending in the digit that picks the sandbox outcome."""
    if handle is not None and handle.startswith("urn:mbid:"):
        return handle
    if handle is not None:
        key, digit = f"user:{handle}", last_digit(handle)
    elif phone:
        key, digit = f"phone:{phone}", last_digit(phone)
    else:
        key, digit = f"new:{uuid.uuid4()}", 0
    made = hashlib.sha256(f"{business}|{key}".encode()).digest()
    return f"{USER_ID_PREFIX}{base64.b64encode(made).decode('ascii').rstrip('=')}{digit}"
