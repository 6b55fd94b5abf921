"""A local Viber REST Bot API: the same endpoints, status codes, limits and signed callbacks as upstream.

Upstream routes (relative to the mount point): `POST /pa/set_webhook`, `/pa/send_message`,
`/pa/broadcast_message`, `/pa/get_account_info`, `/pa/get_user_details`. Every answer is HTTP 200 with
`status` / `status_message`, as upstream. Any non-empty `X-Viber-Auth-Token` is a bot, created on first use.

Sandbox control (OpenMMP's own): `POST /_sandbox/inbound` makes an end user write to a bot,
`GET /_sandbox/stats`, `POST /_sandbox/faults`. Outcomes, faults and rates: see `providers.simulation`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    HttpSimulator,
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
from openmmp.providers.viber_bot.callbacks import SIGNATURE_HEADER, sign
from openmmp.providers.viber_bot.errors import STATUS_NAMES

SENDER_NAME_MAX = 28
TEXT_MAX = 7000
TRACKING_DATA_MAX = 4000
BROADCAST_MAX = 300
EVENT_TYPES = ("delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started")
MESSAGE_TYPES = frozenset(
    {"text", "picture", "video", "file", "contact", "location", "url", "sticker", "rich_media"}
)
CHAT_HOSTNAME = "SN-CHAT-SIM_"
CALLBACK_HOSTNAME = "SN-CALLBACK-SIM_"

OK = 0
INVALID_URL = 1
INVALID_AUTH_TOKEN = 2
BAD_DATA = 3
MISSING_DATA = 4
RECEIVER_NOT_REGISTERED = 5
RECEIVER_NOT_SUBSCRIBED = 6
TOO_MANY_REQUESTS = 12


@dataclass
class ViberBotKnobs:
    """The Viber Bot simulator's own knobs (`SimulatorConfig.options["viber-bot"]`)."""

    requests_per_window: int = 500
    window_s: float = 10.0
    """Requests per bot per window; beyond, status 12 (upstream: 500 per 10 s)."""
    require_known_receivers: bool = False
    """Refuse sends to users the simulator never saw (receiverNotRegistered / receiverNotSubscribed)."""


class _Refused(Exception):
    """A request the upstream answers with a non-zero status."""

    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(detail or STATUS_NAMES[status])
        self.status = status
        self.detail = detail


@dataclass
class _User:
    id: str
    name: str
    phone: str = ""
    subscribed: bool = True


@dataclass
class _Bot:
    token: str
    id: str
    webhook: str | None = None
    event_types: tuple[str, ...] = EVENT_TYPES
    users: dict[str, _User] = field(default_factory=dict)


def create_viber_bot_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The Viber Bot simulator as a Starlette app; `http` sends its callbacks (the caller closes it)."""
    return _ViberBotSimulator(config, http).app


class _ViberBotSimulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "viber-bot", ViberBotKnobs)
        self._http = http
        self._limiter = TokenBucketLimiter(
            capacity=self._knobs.requests_per_window, window_s=self._knobs.window_s
        )
        self._bots: dict[str, _Bot] = {}
        self._sequence = itertools.count(1)
        routes = [
            Route("/pa/set_webhook", self._set_webhook, methods=["POST"]),
            Route("/pa/send_message", self._send_message, methods=["POST"]),
            Route("/pa/broadcast_message", self._broadcast_message, methods=["POST"]),
            Route("/pa/get_account_info", self._get_account_info, methods=["POST"]),
            Route("/pa/get_user_details", self._get_user_details, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
        ]
        super().__init__(config, http, routes)
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)

    # ---- plumbing -------------------------------------------------------------------------------------

    def _token(self) -> int:
        # Viber's tokens are 64-bit integers; time-prefixed so restarts do not reuse them.
        return (int(time.time() * 1000) << 20) | (next(self._sequence) & 0xFFFFF)

    def _bot(self, token: str) -> _Bot:
        bot = self._bots.get(token)
        if bot is None:
            digest = hashlib.sha256(token.encode()).hexdigest()
            # Never expose the token itself: the bot id and stats keys derive from a hash of it.
            bot = _Bot(token=token, id=f"pa:{int(digest[:15], 16)}")
            self._bots[token] = bot
        return bot

    @staticmethod
    def _user_id(bot: _Bot, handle: str) -> str:
        digest = hashlib.sha256(f"{bot.id}|{handle}".encode()).digest()
        return base64.b64encode(digest[:16]).decode()

    @staticmethod
    def _answer(status: int, detail: str | None = None, **extra: Any) -> Response:
        message = STATUS_NAMES.get(status, "generalError") if status else "ok"
        if detail:
            message = f"{message}: {detail}"
        return json_response({"status": status, "status_message": message, **extra})

    async def _api(self, request: Request) -> tuple[_Bot, dict[str, Any]] | Response:
        """Common handling of every `/pa/*` call: faults, size, auth, JSON. A Response means "answer this"."""
        self._stats.requests += 1
        raw = await request.body()
        fault = self._faults.take()
        if fault is not None:
            if (edge := await edge_fault(request, fault.kind, self._config, self._stats)) is not None:
                return edge
            if fault.kind == "rate_limit":
                self._stats.rate_limited += 1
                return self._answer(TOO_MANY_REQUESTS)
            status = fault.status or BAD_DATA
            self._stats.reject(status)
            return self._answer(status, "sandbox fault")
        token = request.headers.get("x-viber-auth-token", "")
        if not token:
            self._stats.reject(INVALID_AUTH_TOKEN)
            return self._answer(INVALID_AUTH_TOKEN)
        if len(raw) > self._config.max_request_bytes:
            self._stats.reject(BAD_DATA)
            return self._answer(BAD_DATA, "request larger than 30 KB")
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            self._stats.reject(BAD_DATA)
            return self._answer(BAD_DATA, "body is not JSON")
        if not isinstance(body, dict):
            self._stats.reject(BAD_DATA)
            return self._answer(BAD_DATA, "body is not a JSON object")
        return self._bot(token), body

    def _refused(self, refused: _Refused) -> Response:
        self._stats.reject(refused.status)
        return self._answer(refused.status, refused.detail)

    # ---- upstream endpoints ---------------------------------------------------------------------------

    async def _set_webhook(self, request: Request) -> Response:
        prelude = await self._api(request)
        if isinstance(prelude, Response):
            return prelude
        bot, body = prelude
        url = body.get("url")
        if url is None or not isinstance(url, str):
            return self._refused(_Refused(MISSING_DATA, "url"))
        if url == "":
            bot.webhook = None
            self._held.configured(bot.id, registered=False)
            return self._answer(OK, chat_hostname=CHAT_HOSTNAME)
        event_types = body.get("event_types")
        if event_types is None:
            chosen = EVENT_TYPES
        elif isinstance(event_types, list) and all(item in EVENT_TYPES for item in event_types):
            chosen = tuple(event_types)
        else:
            return self._refused(_Refused(BAD_DATA, "event_types"))
        if not url.startswith(("http://", "https://")):
            return self._refused(_Refused(INVALID_URL))
        ping = orjson.dumps(
            {
                "event": "webhook",
                "timestamp": now_ms(),
                "chat_hostname": CALLBACK_HOSTNAME,
                "message_token": self._token(),
            }
        )
        try:
            # Upstream checks the URL once, synchronously, before it answers; no retries here.
            answer = await self._http.post(
                url,
                content=ping,
                headers={SIGNATURE_HEADER: sign(ping, bot.token)},
                timeout=self._config.callback_timeout_s,
            )
            reachable = answer.status_code == 200
        except HttpUnreachable:
            reachable = False
        if not reachable:
            return self._refused(_Refused(INVALID_URL, "the webhook did not answer the check with HTTP 200"))
        bot.webhook, bot.event_types = url, chosen
        self._held.configured(bot.id, registered=True)
        return self._answer(OK, chat_hostname=CHAT_HOSTNAME, event_types=list(chosen))

    async def _get_account_info(self, request: Request) -> Response:
        prelude = await self._api(request)
        if isinstance(prelude, Response):
            return prelude
        bot, _ = prelude
        return self._answer(
            OK,
            id=bot.id,
            name=f"Sandbox bot {bot.id[-6:]}",
            uri=f"sandbox-bot-{bot.id[-6:]}",
            icon="",
            background="",
            category="Sandbox",
            subcategory="Sandbox",
            location={"lat": 0.0, "lon": 0.0},
            country="KH",
            webhook=bot.webhook or "",
            event_types=list(bot.event_types),
            subscribers_count=sum(1 for user in bot.users.values() if user.subscribed),
            members=[],
        )

    async def _get_user_details(self, request: Request) -> Response:
        prelude = await self._api(request)
        if isinstance(prelude, Response):
            return prelude
        bot, body = prelude
        user_id = body.get("id")
        if not isinstance(user_id, str) or not user_id:
            return self._refused(_Refused(MISSING_DATA, "id"))
        user = bot.users.get(user_id)
        if user is None and self._knobs.require_known_receivers:
            return self._refused(_Refused(RECEIVER_NOT_REGISTERED))
        details = {
            "id": user_id,
            "name": user.name if user else "Viber user",
            "avatar": "",
            "country": "KH",
            "language": "en",
            "primary_device_os": "Android 14",
            "api_version": 10,
            "viber_version": "23.0.0.0",
            "mcc": 456,
            "mnc": 6,
            "device_type": "Sandbox",
        }
        return self._answer(OK, chat_hostname=CHAT_HOSTNAME, user=details)

    async def _send_message(self, request: Request) -> Response:
        prelude = await self._api(request)
        if isinstance(prelude, Response):
            return prelude
        bot, body = prelude
        if not self._limiter.try_acquire(bot.id):
            self._stats.rate_limited += 1
            return self._answer(TOO_MANY_REQUESTS)
        try:
            receiver = body.get("receiver")
            if not isinstance(receiver, str) or not receiver:
                raise _Refused(MISSING_DATA, "receiver")
            _validate_message(body)
            self._check_receiver(bot, receiver)
        except _Refused as refused:
            return self._refused(refused)
        payload_key = _payload_hash(body, "receiver")
        outcome = self._decide(bot, receiver, payload_key)
        if outcome is Outcome.FINAL_ERROR:
            return self._refused(_Refused(RECEIVER_NOT_SUBSCRIBED))
        if outcome is Outcome.RETRYABLE_ERROR:
            return self._refused(_Refused(TOO_MANY_REQUESTS))
        token = self._token()
        self._accept(bot, receiver, payload_key, token, outcome)
        return self._answer(OK, message_token=token, chat_hostname=CHAT_HOSTNAME, billing_status=1)

    async def _broadcast_message(self, request: Request) -> Response:
        prelude = await self._api(request)
        if isinstance(prelude, Response):
            return prelude
        bot, body = prelude
        if not self._limiter.try_acquire(bot.id):
            self._stats.rate_limited += 1
            return self._answer(TOO_MANY_REQUESTS)
        receivers = body.get("broadcast_list")
        try:
            if receivers is None or receivers == []:
                raise _Refused(MISSING_DATA, "broadcast_list")
            if not isinstance(receivers, list) or not all(isinstance(r, str) and r for r in receivers):
                raise _Refused(BAD_DATA, "broadcast_list must be a list of ids")
            if len(receivers) > BROADCAST_MAX:
                raise _Refused(BAD_DATA, f"broadcast_list longer than {BROADCAST_MAX}")
            _validate_message(body)
        except _Refused as refused:
            return self._refused(refused)
        payload_key = _payload_hash(body, "broadcast_list")
        token = self._token()
        failed: list[dict[str, Any]] = []
        for receiver in receivers:
            try:
                self._check_receiver(bot, receiver)
            except _Refused as refused:
                self._stats.reject(refused.status)
                failed.append(_failed_entry(receiver, refused.status))
                continue
            outcome = self._decide(bot, receiver, payload_key)
            if outcome is Outcome.FINAL_ERROR:
                self._stats.reject(RECEIVER_NOT_SUBSCRIBED)
                failed.append(_failed_entry(receiver, RECEIVER_NOT_SUBSCRIBED))
            elif outcome is Outcome.RETRYABLE_ERROR:
                self._stats.reject(TOO_MANY_REQUESTS)
                failed.append(_failed_entry(receiver, TOO_MANY_REQUESTS))
            else:
                self._accept(bot, receiver, payload_key, token, outcome)
        return self._answer(OK, message_token=token, chat_hostname=CHAT_HOSTNAME, failed_list=failed)

    # ---- outcomes and callbacks -----------------------------------------------------------------------

    def _check_receiver(self, bot: _Bot, receiver: str) -> None:
        if not self._knobs.require_known_receivers:
            return
        user = bot.users.get(receiver)
        if user is None:
            raise _Refused(RECEIVER_NOT_REGISTERED)
        if not user.subscribed:
            raise _Refused(RECEIVER_NOT_SUBSCRIBED)

    def _decide(self, bot: _Bot, receiver: str, payload_key: str) -> Outcome:
        user = bot.users.get(receiver)
        digit = last_digit(user.phone if user is not None and user.phone else receiver)
        return self._planner.decide(digit=digit, attempt_key=f"{bot.id}:{receiver}:{payload_key}")

    def _accept(self, bot: _Bot, receiver: str, payload_key: str, token: int, outcome: Outcome) -> None:
        # Viber has no idempotency key, so a repeat is accepted like upstream; stats make it visible.
        self._stats.accept(f"{bot.id}:{receiver}:{payload_key}")
        if bot.webhook is not None:
            self._scheduler.spawn(self._lifecycle(bot, receiver, token, outcome))
        else:
            self._held.hold(bot.id, lambda: self._lifecycle(bot, receiver, token, outcome))

    async def _lifecycle(self, bot: _Bot, receiver: str, token: int, outcome: Outcome) -> None:
        latency = self._config.callback_latency_s
        await asyncio.sleep(latency)
        if outcome is Outcome.FAILED_LATER:
            await self._callback(
                bot, "failed", {"message_token": token, "user_id": receiver, "desc": "sandbox: not delivered"}
            )
            return
        await self._callback(bot, "delivered", {"message_token": token, "user_id": receiver})
        if outcome is Outcome.DELIVERED_AND_SEEN:
            await asyncio.sleep(latency)
            await self._callback(bot, "seen", {"message_token": token, "user_id": receiver})

    async def _callback(self, bot: _Bot, event: str, fields: dict[str, Any]) -> None:
        # Read the webhook at send time: the bot may have removed or changed it meanwhile.
        url = bot.webhook
        if url is None or (event in EVENT_TYPES and event not in bot.event_types):
            return
        body = orjson.dumps(
            {"event": event, "timestamp": now_ms(), "chat_hostname": CALLBACK_HOSTNAME, **fields}
        )
        await self._scheduler.post(url, body, {SIGNATURE_HEADER: sign(body, bot.token)})

    # ---- sandbox control ------------------------------------------------------------------------------

    async def _sandbox_inbound(self, request: Request) -> Response:
        """Make an end user act on a bot: write (default), subscribe, unsubscribe or open the chat.

        Body `{"name", "text"?, "userId"?, "phone"?, "event"?}`. `userId` is either an id the simulator gave
        out or any handle of the caller's (mapped to a stable Viber-like id); with neither `userId` nor
        `phone` a new user is made. A `message` without `text` but with `phone` is a shared contact (what
        Viber's share-phone button sends). Returns `{"userId", "messageToken", "webhook"}`.
        """
        token = request.headers.get("x-viber-auth-token", "")
        if not token:
            return sandbox_error("X-Viber-Auth-Token is required", 401)
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            event = body.get("event", "message")
            if event not in ("message", "subscribed", "unsubscribed", "conversation_started"):
                raise ValueError("event must be message, subscribed, unsubscribed or conversation_started")
            name = body.get("name", "Sandbox user")
            text, user_handle, phone = body.get("text"), body.get("userId"), body.get("phone")
            if not isinstance(name, str) or not name:
                raise ValueError("name must be a non-empty string")
            if text is not None and not isinstance(text, str):
                raise ValueError("text must be a string")
            if user_handle is not None and (not isinstance(user_handle, str) or not user_handle):
                raise ValueError("userId must be a non-empty string")
            digits = phone_digits(phone)
            if event == "message" and not text and not digits:
                raise ValueError("text is required (or phone, to share a contact)")
        except ValueError as exc:
            return sandbox_error(str(exc))

        bot = self._bot(token)
        user = self._end_user(bot, name, user_handle, digits)
        message_token = self._token()
        if event == "unsubscribed":
            user.subscribed = False
            fields: dict[str, Any] = {"user_id": user.id, "message_token": message_token}
        else:
            profile: dict[str, Any] = {
                "id": user.id,
                "name": user.name,
                "avatar": "",
                "language": "en",
                "country": "KH",
                "api_version": 10,
            }
            if event == "message":
                user.subscribed = True
                if text:
                    viber_message: dict[str, Any] = {"type": "text", "text": text}
                else:
                    viber_message = {"type": "contact", "contact": {"name": name, "phone_number": digits}}
                fields = {
                    "message_token": message_token,
                    "sender": profile,
                    "message": viber_message,
                    "silent": False,
                }
            elif event == "subscribed":
                user.subscribed = True
                fields = {"message_token": message_token, "user": profile}
            else:
                fields = {
                    "message_token": message_token,
                    "type": "open",
                    "context": "",
                    "user": profile,
                    "subscribed": user.subscribed,
                }
        if bot.webhook is not None:
            self._scheduler.spawn(self._inbound_after_latency(bot, event, fields))
        return json_response(
            {"userId": user.id, "messageToken": str(message_token), "webhook": bot.webhook is not None}
        )

    async def _inbound_after_latency(self, bot: _Bot, event: str, fields: dict[str, Any]) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        await self._callback(bot, event, fields)

    def _end_user(self, bot: _Bot, name: str, handle: str | None, phone: str) -> _User:
        if handle is not None and handle in bot.users:
            user = bot.users[handle]
        else:
            if handle is not None:
                key = f"user:{handle}"
            elif phone:
                key = f"phone:{phone}"
            else:
                key = f"new:{uuid.uuid4()}"
            user_id = self._user_id(bot, key)
            user = bot.users.get(user_id) or _User(id=user_id, name=name)
            bot.users[user_id] = user
        user.name = name
        if phone:
            user.phone = phone
        return user


def _failed_entry(receiver: str, status: int) -> dict[str, Any]:
    return {"receiver": receiver, "status": status, "status_message": STATUS_NAMES[status]}


def _payload_hash(body: dict[str, Any], without: str) -> str:
    # "The same message" for digit-9 retries and duplicate stats: the body minus who it goes to.
    content = {key: value for key, value in body.items() if key != without}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _validate_message(body: dict[str, Any]) -> None:
    """Upstream's checks on the common send fields and the type-specific ones."""
    sender = body.get("sender")
    if not isinstance(sender, dict) or not isinstance(sender.get("name"), str) or not sender["name"]:
        raise _Refused(MISSING_DATA, "sender.name")
    if len(sender["name"]) > SENDER_NAME_MAX:
        raise _Refused(BAD_DATA, f"sender.name longer than {SENDER_NAME_MAX} characters")
    tracking = body.get("tracking_data")
    if tracking is not None and (not isinstance(tracking, str) or len(tracking) > TRACKING_DATA_MAX):
        raise _Refused(BAD_DATA, f"tracking_data must be a string of at most {TRACKING_DATA_MAX} characters")
    kind = body.get("type")
    if kind is None:
        raise _Refused(MISSING_DATA, "type")
    if kind not in MESSAGE_TYPES:
        raise _Refused(BAD_DATA, f"unknown message type {kind!r}")
    text = body.get("text")
    if text is not None and (not isinstance(text, str) or len(text) > TEXT_MAX):
        raise _Refused(BAD_DATA, f"text must be a string of at most {TEXT_MAX} characters")
    required: tuple[str, ...] = {
        "text": ("text",),
        "picture": ("media",),
        "video": ("media", "size"),
        "file": ("media", "size", "file_name"),
        "contact": ("contact",),
        "location": ("location",),
        "url": ("media",),
        "sticker": ("sticker_id",),
        "rich_media": ("rich_media",),
    }[kind]
    for name in required:
        if body.get(name) in (None, ""):
            raise _Refused(MISSING_DATA, name)
    if kind in ("video", "file"):
        size = body["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise _Refused(BAD_DATA, "size must be a positive integer")
    if kind == "rich_media":
        _validate_rich_media(body["rich_media"])
    keyboard = body.get("keyboard")
    if keyboard is not None and (
        not isinstance(keyboard, dict) or not isinstance(keyboard.get("Buttons"), list)
    ):
        raise _Refused(BAD_DATA, "keyboard needs Buttons")


def _validate_rich_media(rich: Any) -> None:
    if not isinstance(rich, dict) or not isinstance(rich.get("Buttons"), list) or not rich["Buttons"]:
        raise _Refused(BAD_DATA, "rich_media needs Buttons")
    columns, rows = rich.get("ButtonsGroupColumns", 6), rich.get("ButtonsGroupRows", 7)
    if not isinstance(columns, int) or not 1 <= columns <= 6:
        raise _Refused(BAD_DATA, "ButtonsGroupColumns must be 1-6")
    if not isinstance(rows, int) or not 1 <= rows <= 7:
        raise _Refused(BAD_DATA, "ButtonsGroupRows must be 1-7")
    if len(rich["Buttons"]) > 6 * columns * rows:
        raise _Refused(BAD_DATA, "too many rich_media Buttons")
