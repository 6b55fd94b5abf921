"""A local Telegram Bot API: the same methods, envelopes, limits and webhook updates as upstream.

Upstream routes (relative to the mount point): `/bot<token>/<method>`, by GET or POST, with parameters in
the query string, a JSON body, a form or a multipart body, and method names in any case, as Telegram
takes them: `setWebhook`, `deleteWebhook`, `getWebhookInfo`, `sendMessage`, `sendPhoto`, `sendVideo`,
`sendDocument`. Any non-empty token is a bot, made on first use. Answers are Telegram's envelope,
`{"ok": true, "result"}` or `{"ok": false, "error_code", "description", "parameters"?}`, with the HTTP
status of `error_code`. Unlike Telegram it takes `http://` webhooks (a sandbox runs on plain HTTP) and
does not fetch the URLs of media it is sent.

**Updates** go to a bot's webhook one at a time in `update_id` order, with `X-Telegram-Bot-Api-Secret-Token`
when a secret was set, each retried (bounded) until answered 200. While the bot has no webhook they wait,
and `drop_pending_updates` drops them, as upstream; kinds left out of `allowed_updates` are never sent.

**Sends** have the sandbox outcome of their receiver's last digit: that of the phone the user shared, else
of the chat id. 0–7 are accepted, and that is all (Telegram reports neither delivery nor reading); 8 is
`403 Forbidden: bot was blocked by the user`; 9 is `500 Internal Server Error` twice for the same message,
then accepted. Limits: 30 requests a second per bot, and per chat bursts of 10 then one a second, beyond
which 429 with `parameters.retry_after`. A user who blocked the bot gets 403; with `require_known_chats`
a chat the simulator never saw is `400 Bad Request: chat not found`.

Sandbox control (OpenMMP's own), the bot named by the `X-Telegram-Bot-Token` header:
`POST /_sandbox/inbound` makes an end user act (`_sandbox_inbound`); `GET /_sandbox/stats`,
`POST /_sandbox/faults`. Outcomes, faults and rates: see `providers.simulation`.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import itertools
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.crypto import constant_time_equals
from openmmp.kit.http import HttpClient
from openmmp.providers.simulation import (
    HttpSimulator,
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    hang,
    json_response,
    knobs,
    last_digit,
    phone_digits,
    read_json,
    sandbox_error,
)
from openmmp.providers.telegram.callbacks import SECRET_HEADER
from openmmp.providers.telegram.client import CALLBACK_DATA_MAX_BYTES, CAPTION_MAX, TEXT_MAX, utf16_length
from openmmp.providers.telegram.provider import SANDBOX_TOKEN_HEADER

UPDATE_KINDS = frozenset({"message", "callback_query", "my_chat_member"})
"""The kinds the simulator makes; all are among Telegram's default `allowed_updates`."""
SECRET_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
SECRET_MAX = 256
BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
BUTTON_URL_SCHEMES = ("http://", "https://", "tg://")
OBJECT_PARAMETERS = frozenset({"reply_markup", "allowed_updates", "entities", "caption_entities"})
"""Parameters Telegram takes JSON-serialised in a query string or a form."""
KEYBOARDS_KEPT = 20
"""Per chat, how many of the bot's messages with an inline keyboard a sandbox user can tap a button of."""

SEND_METHODS = frozenset({"sendmessage", "sendphoto", "sendvideo", "senddocument"})
_MEDIA_FIELDS = {"sendphoto": "photo", "sendvideo": "video", "senddocument": "document"}


@dataclass
class TelegramKnobs:
    """The Telegram simulator's own knobs (`SimulatorConfig.options["telegram"]`)."""

    requests_per_window: int = 30
    window_s: float = 1.0
    """Requests per bot per window; beyond, 429 (upstream: about 30 messages a second)."""
    chat_burst: int = 10
    chat_window_s: float = 10.0
    """Messages to one chat: a burst of `chat_burst`, refilled over `chat_window_s` (about one a second)."""
    require_known_chats: bool = False
    """Refuse sends to chats the simulator never saw (`400 Bad Request: chat not found`)."""
    max_pending_updates: int = 10_000
    """Updates kept per bot while they wait for a webhook; the oldest go first beyond."""


class _Refused(Exception):
    """A call Telegram answers with `ok: false`."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Upload:
    """A file sent in a multipart body."""

    filename: str
    size: int


@dataclass
class _User:
    id: int
    first_name: str
    last_name: str = ""
    phone: str = ""
    blocked: bool = False
    keyboards: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEYBOARDS_KEPT))
    """The bot's latest messages to this chat with an inline keyboard, whose buttons the user can tap."""

    def as_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        user["language_code"] = "en"
        return user

    def as_chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "first_name": self.first_name}
        if self.last_name:
            chat["last_name"] = self.last_name
        chat["type"] = "private"
        return chat


@dataclass
class _Bot:
    id: int
    next_update_id: int
    webhook: str | None = None
    secret: str | None = None
    allowed_updates: tuple[str, ...] | None = None
    """None: Telegram's default (every kind the simulator makes)."""
    users: dict[int, _User] = field(default_factory=dict)
    message_ids: dict[int, int] = field(default_factory=dict)
    pending: deque[bytes] = field(default_factory=deque)
    delivering: bool = False

    def as_user(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": "OpenMMP sandbox bot",
            "username": f"openmmp_sandbox_{self.id}_bot",
        }

    def message_id(self, chat_id: int) -> int:
        """The chat's next message id: a private chat numbers both directions in one sequence."""
        next_id = self.message_ids.get(chat_id, 0) + 1
        self.message_ids[chat_id] = next_id
        return next_id


def create_telegram_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The Telegram simulator as a Starlette app; `http` posts its updates (the caller closes it)."""
    return _TelegramSimulator(config, http).app


class _TelegramSimulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "telegram", TelegramKnobs)
        self._limiter = TokenBucketLimiter(
            capacity=self._knobs.requests_per_window, window_s=self._knobs.window_s
        )
        self._chat_limiter = TokenBucketLimiter(
            capacity=self._knobs.chat_burst, window_s=self._knobs.chat_window_s
        )
        self._bots: dict[str, _Bot] = {}
        self._files: LruMap[str, bool] = LruMap(config.max_tracked_keys)
        self._sequence = itertools.count(1)
        routes = [
            Route("/bot{token}/{method}", self._bot_api, methods=["GET", "POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
        ]
        super().__init__(config, http, routes)

    # ---- plumbing -------------------------------------------------------------------------------------

    def _bot(self, token: str) -> _Bot:
        bot = self._bots.get(token)
        if bot is None:
            digest = hashlib.sha256(token.encode()).hexdigest()
            prefix = token.split(":", 1)[0]
            # A real token starts with the bot's id; never expose the rest of it (stats, user ids).
            bot_id = int(prefix) if prefix.isascii() and prefix.isdigit() else 10**9 + int(digest[:8], 16)
            # Telegram's update ids only grow, for the bot's whole life; this simulator forgets its bots
            # with the process, so a bot's ids start from the clock (in ms), past any it gave before.
            bot = _Bot(id=bot_id, next_update_id=int(time.time() * 1000))
            self._bots[token] = bot
        return bot

    @staticmethod
    def _ok(result: Any, description: str | None = None) -> Response:
        body: dict[str, Any] = {"ok": True, "result": result}
        if description:
            body["description"] = description
        return json_response(body)

    def _refused(self, refused: _Refused) -> Response:
        if refused.code == 429:
            self._stats.rate_limited += 1
        else:
            self._stats.reject(refused.code)
        body: dict[str, Any] = {"ok": False, "error_code": refused.code, "description": refused.description}
        if refused.retry_after is not None:
            body["parameters"] = {"retry_after": refused.retry_after}
        return json_response(body, refused.code)

    async def _bot_api(self, request: Request) -> Response:
        """Every Bot API call: faults, size, parameters, then the method."""
        self._stats.requests += 1
        raw = await request.body()
        fault = self._faults.take()
        if fault is not None:
            self._stats.faults_injected += 1
            if fault.kind == "http_503":
                return Response(
                    "<html>503 Service Temporarily Unavailable</html>", 503, media_type="text/html"
                )
            if fault.kind == "timeout":
                await hang(request, self._config.fault_hang_s)
                return Response("<html>504 Gateway Time-out</html>", 504, media_type="text/html")
            if fault.kind == "rate_limit":
                return self._refused(_Refused(429, "Too Many Requests: retry after 1", retry_after=1))
            return self._refused(_Refused(fault.status or 400, "Bad Request: sandbox fault"))
        token = request.path_params["token"]
        method = request.path_params["method"].lower()
        try:
            if len(raw) > self._config.max_request_bytes:
                raise _Refused(413, "Request Entity Too Large")
            params = _parameters(request, raw)
            bot = self._bot(token)
            if method == "setwebhook":
                return self._set_webhook(bot, params)
            if method == "deletewebhook":
                return self._delete_webhook(bot, params)
            if method == "getwebhookinfo":
                return self._ok(self._webhook_info(bot))
            if method in SEND_METHODS:
                return self._ok(self._send(bot, method, params))
            raise _Refused(404, "Not Found")
        except _Refused as refused:
            return self._refused(refused)

    # ---- webhook --------------------------------------------------------------------------------------

    def _set_webhook(self, bot: _Bot, params: dict[str, Any]) -> Response:
        url = params.get("url")
        if not isinstance(url, str):
            raise _Refused(400, "Bad Request: bad webhook: url is required")
        if url == "":
            return self._delete_webhook(bot, params)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Refused(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and (
            not isinstance(secret, str)
            or not 1 <= len(secret) <= SECRET_MAX
            or not set(secret) <= SECRET_CHARACTERS
        ):
            raise _Refused(400, "Bad Request: secret token contains unallowed characters")
        allowed = bot.allowed_updates
        if "allowed_updates" in params:
            kinds = _object_parameter(params["allowed_updates"], "allowed_updates")
            if not isinstance(kinds, list) or not all(isinstance(kind, str) for kind in kinds):
                raise _Refused(400, "Bad Request: can't parse allowed updates")
            allowed = tuple(kinds) or None
        if _flag(params.get("drop_pending_updates")):
            bot.pending.clear()
        unchanged = (bot.webhook, bot.allowed_updates) == (url, allowed) and constant_time_equals(
            bot.secret or "", secret or ""
        )
        bot.webhook, bot.secret, bot.allowed_updates = url, secret, allowed
        self._deliver_pending(bot)
        return self._ok(True, "Webhook is already set" if unchanged else "Webhook was set")

    def _delete_webhook(self, bot: _Bot, params: dict[str, Any]) -> Response:
        if _flag(params.get("drop_pending_updates")):
            bot.pending.clear()
        had = bot.webhook is not None
        bot.webhook, bot.secret = None, None
        return self._ok(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _webhook_info(self, bot: _Bot) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": bot.webhook or "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending),
        }
        if bot.webhook is not None:
            info["max_connections"] = 40
        if bot.allowed_updates is not None:
            info["allowed_updates"] = list(bot.allowed_updates)
        return info

    def _update(self, bot: _Bot, kind: str, content: dict[str, Any]) -> None:
        """Queue an update of `kind` for the bot's webhook (numbered even when its kind is not sent)."""
        update_id = bot.next_update_id
        bot.next_update_id += 1
        if bot.allowed_updates is not None and kind not in bot.allowed_updates:
            return
        if len(bot.pending) >= self._knobs.max_pending_updates:
            bot.pending.popleft()
        bot.pending.append(orjson.dumps({"update_id": update_id, kind: content}))
        self._deliver_pending(bot)

    def _deliver_pending(self, bot: _Bot) -> None:
        if not bot.delivering and bot.webhook is not None and bot.pending:
            bot.delivering = True
            self._scheduler.spawn(self._deliver(bot))

    async def _deliver(self, bot: _Bot) -> None:
        """Post the bot's pending updates in order, one at a time, while it has a webhook."""
        try:
            await asyncio.sleep(self._config.callback_latency_s)
            while bot.pending and bot.webhook is not None:
                update = bot.pending[0]
                headers = {SECRET_HEADER: bot.secret} if bot.secret else {}
                # Given up after the scheduler's retries, as Telegram gives up after a while.
                await self._scheduler.post(bot.webhook, update, headers)
                if bot.pending and bot.pending[0] is update:  # not dropped meanwhile
                    bot.pending.popleft()
        finally:
            bot.delivering = False

    # ---- sending --------------------------------------------------------------------------------------

    def _send(self, bot: _Bot, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if not self._limiter.try_acquire(str(bot.id)):
            raise _Refused(429, "Too Many Requests: retry after 1", retry_after=1)
        chat_id = _chat_id(params.get("chat_id"))
        content = self._content(method, params)
        user = bot.users.get(chat_id)
        if user is None and self._knobs.require_known_chats:
            raise _Refused(400, "Bad Request: chat not found")
        if user is not None and user.blocked:
            raise _Refused(403, "Forbidden: bot was blocked by the user")
        if not self._chat_limiter.try_acquire(f"{bot.id}:{chat_id}"):
            wait = max(1, round(self._knobs.chat_window_s / self._knobs.chat_burst))
            raise _Refused(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        payload = {key: value for key, value in params.items() if key != "chat_id"}
        attempt_key = f"{bot.id}:{chat_id}:{method}:{_hash(payload)}"
        digit = last_digit(user.phone if user is not None and user.phone else str(chat_id))
        outcome = self._planner.decide(digit=digit, attempt_key=attempt_key)
        if outcome is Outcome.FINAL_ERROR:
            raise _Refused(403, "Forbidden: bot was blocked by the user")
        if outcome is Outcome.RETRYABLE_ERROR:
            raise _Refused(500, "Internal Server Error")
        self._stats.accept(attempt_key)
        chat = user.as_chat() if user is not None else _unknown_chat(chat_id)
        message = {
            "message_id": bot.message_id(chat_id),
            "from": bot.as_user(),
            "chat": chat,
            "date": int(time.time()),
            **content,
        }
        markup = content.get("reply_markup")
        if user is not None and isinstance(markup, dict) and "inline_keyboard" in markup:
            user.keyboards.append(message)
        return message

    def _content(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """What the sent Message shows of the call's parameters, checked as Telegram checks them."""
        content: dict[str, Any] = {}
        if method == "sendmessage":
            text = params.get("text")
            if not isinstance(text, str) or not text:
                raise _Refused(400, "Bad Request: message text is empty")
            if utf16_length(text) > TEXT_MAX:
                raise _Refused(400, "Bad Request: message is too long")
            content["text"] = text
            entities = _entities(params.get("entities"), text)
            if entities:
                content["entities"] = entities
        else:
            media_field = _MEDIA_FIELDS[method]
            content[media_field] = self._file(media_field, params.get(media_field))
            caption = params.get("caption")
            if caption is not None:
                if not isinstance(caption, str) or utf16_length(caption) > CAPTION_MAX:
                    raise _Refused(400, "Bad Request: message caption is too long")
                if caption:
                    content["caption"] = caption
                    entities = _entities(params.get("caption_entities"), caption)
                    if entities:
                        content["caption_entities"] = entities
        markup = _reply_markup(params.get("reply_markup"))
        if markup is not None:
            content["reply_markup"] = markup
        return content

    def _file(self, media_field: str, value: Any) -> Any:
        """The sent file as Telegram describes it: a new file for a URL or an upload, or one of ours."""
        if value is None or value == "":
            raise _Refused(400, f"Bad Request: there is no {media_field} in the request")
        if isinstance(value, _Upload):
            name, size = value.filename, value.size
        elif isinstance(value, str) and value.startswith(("http://", "https://")):
            name, size = urlsplit(value).path.rsplit("/", 1)[-1] or "file", 0
        elif isinstance(value, str) and self._files.get(value):
            name, size = "file", 0
        else:
            raise _Refused(400, "Bad Request: wrong file identifier/HTTP URL specified")
        file_id = f"BQACAgUAAx{uuid.uuid4().hex}"
        self._files.set(file_id, True)
        described: dict[str, Any] = {"file_id": file_id, "file_unique_id": file_id[-16:]}
        if size:
            described["file_size"] = size
        if media_field == "photo":
            return [{**described, "width": 320, "height": 240}]
        if media_field == "video":
            return {**described, "width": 1280, "height": 720, "duration": 10}
        return {**described, "file_name": name}

    # ---- sandbox control ------------------------------------------------------------------------------

    async def _sandbox_inbound(self, request: Request) -> Response:
        """Make an end user act on a bot: write (the default event, `message`), start the bot (`start`,
        `/start` with `text` as the deep link's payload), tap an inline button the bot sent them
        (`callback`, with the button's `data`), block it (`blocked`) or unblock it (`unblocked`).

        Body `{"name", "text"?, "userId"?, "phone"?, "event"?, "data"?}`. `userId` is a chat id (the user
        is made if new) or any handle of the caller's (mapped to a stable chat id); with neither `userId`
        nor `phone` a new user is made. A user made for a phone has a chat id ending in its last digit,
        the others in 0. A `message` without `text` but with `phone` is the user sharing their own contact.
        Nothing is sent while the bot has no webhook. Returns `{"userId", "messageId", "webhook"}`.
        """
        token = request.headers.get(SANDBOX_TOKEN_HEADER.lower(), "")
        if not token:
            return sandbox_error(f"{SANDBOX_TOKEN_HEADER} is required", 401)
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            event = body.get("event", "message")
            if event not in ("message", "start", "callback", "blocked", "unblocked"):
                raise ValueError("event must be message, start, callback, blocked or unblocked")
            name, text = body.get("name", "Sandbox user"), body.get("text")
            handle, data = body.get("userId"), body.get("data")
            if not isinstance(name, str) or not name.strip():
                raise ValueError("name must be a non-empty string")
            if text is not None and not isinstance(text, str):
                raise ValueError("text must be a string")
            if handle is not None and (not isinstance(handle, str) or not handle):
                raise ValueError("userId must be a non-empty string")
            digits = phone_digits(body.get("phone"))
            if event == "message" and not text and not digits:
                raise ValueError("text is required (or phone, to share a contact)")
            if event == "callback" and (not isinstance(data, str) or not data):
                raise ValueError("data is required: the callback_data of the button tapped")
        except ValueError as exc:
            return sandbox_error(str(exc))

        bot = self._bot(token)
        user = self._end_user(bot, name.strip(), handle, digits)
        if bot.webhook is None:
            return json_response({"userId": str(user.id), "messageId": "", "webhook": False})
        message_id = ""
        if event == "callback":
            tapped = _message_with_button(user, str(data))
            if tapped is None:
                return sandbox_error("the bot sent this chat no inline button with this callback_data")
            self._update(
                bot,
                "callback_query",
                {
                    "id": str(next(self._sequence) + 10**15),
                    "from": user.as_user(),
                    "message": tapped,
                    "chat_instance": str(user.id * 7 + bot.id),
                    "data": data,
                },
            )
        elif event in ("blocked", "unblocked"):
            self._membership(bot, user, blocked=event == "blocked")
        else:
            if user.blocked:
                self._membership(bot, user, blocked=False)  # writing again means unblocking first
            message = {
                "message_id": bot.message_id(user.id),
                "from": user.as_user(),
                "chat": user.as_chat(),
                "date": int(time.time()),
            }
            if event == "start":
                command = f"/start {text}" if text else "/start"
                message |= {"text": command, "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}
            elif text:
                message["text"] = text
            else:
                contact = {"phone_number": digits, "first_name": user.first_name, "user_id": user.id}
                if user.last_name:
                    contact["last_name"] = user.last_name
                message["contact"] = contact
            self._update(bot, "message", message)
            message_id = str(message["message_id"])
        return json_response({"userId": str(user.id), "messageId": message_id, "webhook": True})

    def _membership(self, bot: _Bot, user: _User, *, blocked: bool) -> None:
        """The user blocks or unblocks the bot: a `my_chat_member` update when that changes anything."""
        if user.blocked == blocked:
            return
        user.blocked = blocked
        was, now = ("member", "kicked") if blocked else ("kicked", "member")
        new_member: dict[str, Any] = {"user": bot.as_user(), "status": now}
        if blocked:
            new_member["until_date"] = 0  # a banned member's term: 0 is for good
        self._update(
            bot,
            "my_chat_member",
            {
                "chat": user.as_chat(),
                "from": user.as_user(),
                "date": int(time.time()),
                "old_chat_member": {"user": bot.as_user(), "status": was},
                "new_chat_member": new_member,
            },
        )

    def _end_user(self, bot: _Bot, name: str, handle: str | None, phone: str) -> _User:
        if handle is not None and handle.isascii() and handle.isdigit():
            chat_id = int(handle)
        elif handle is not None:
            chat_id = _made_up_id(bot, f"user:{handle}", 0)
        elif phone:
            chat_id = _made_up_id(bot, f"phone:{phone}", last_digit(phone))
        else:
            chat_id = _made_up_id(bot, f"new:{uuid.uuid4()}", 0)
        first, _, last = name.partition(" ")
        user = bot.users.get(chat_id) or _User(id=chat_id, first_name=first)
        user.first_name, user.last_name = first, last.strip()
        if phone:
            user.phone = phone
        bot.users[chat_id] = user
        return user


# ---- parameters ---------------------------------------------------------------------------------------


def _parameters(request: Request, raw: bytes) -> dict[str, Any]:
    """The call's parameters: the query string's, then the body's (JSON, form or multipart)."""
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if not raw:
        return params
    if kind == "application/json":
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Refused(400, "Bad Request: can't parse JSON") from exc
        if not isinstance(body, dict):
            raise _Refused(400, "Bad Request: JSON body must be an object")
        params.update(body)
    elif kind == "application/x-www-form-urlencoded":
        params.update(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    elif kind == "multipart/form-data":
        params.update(_multipart(raw, content_type))
    return params


def _multipart(raw: bytes, content_type: str) -> dict[str, Any]:
    envelope = b"Content-Type: " + content_type.encode("latin-1", errors="replace") + b"\r\n\r\n"
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(envelope + raw)
    if not parsed.is_multipart():
        raise _Refused(400, "Bad Request: can't parse multipart body")
    fields: dict[str, Any] = {}
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        content = part.get_payload(decode=True)
        data = content if isinstance(content, bytes) else b""
        filename = part.get_filename()
        fields[name] = _Upload(filename, len(data)) if filename else data.decode("utf-8", errors="replace")
    return fields


def _object_parameter(value: Any, name: str) -> Any:
    """A JSON-serialised parameter (in a query or a form) as its object; JSON bodies may give either."""
    if name in OBJECT_PARAMETERS and isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise _Refused(400, f"Bad Request: can't parse {name} JSON object") from exc
    return value


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _chat_id(value: Any) -> int:
    if value is None or value == "":
        raise _Refused(400, "Bad Request: chat_id is empty")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        digits = value[1:] if value.startswith("-") else value
        if digits.isascii() and digits.isdigit():
            return int(value)
    # `@username` of a channel: the simulator has none.
    raise _Refused(400, "Bad Request: chat not found")


def _unknown_chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "first_name": "Telegram user", "type": "private"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "title": "Sandbox group", "type": kind}


def _entities(value: Any, text: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    entities = _object_parameter(value, "entities")
    length = utf16_length(text)
    if not isinstance(entities, list):
        raise _Refused(400, "Bad Request: can't parse entities")
    for entity in entities:
        if not isinstance(entity, dict) or not isinstance(entity.get("type"), str):
            raise _Refused(400, "Bad Request: can't parse entities")
        offset, size = entity.get("offset"), entity.get("length")
        if not isinstance(offset, int) or not isinstance(size, int):
            raise _Refused(400, "Bad Request: can't parse entities")
        if offset < 0 or size <= 0 or offset + size > length:
            raise _Refused(400, "Bad Request: can't parse entities: entity is out of the text")
    return entities


def _reply_markup(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    markup = _object_parameter(value, "reply_markup")
    if not isinstance(markup, dict):
        raise _Refused(400, "Bad Request: can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _Refused(400, 'Bad Request: field "inline_keyboard" must be an Array of Arrays')
        for row in rows:
            for button in row:
                _check_button(button)
    return markup


def _check_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
        raise _Refused(400, "Bad Request: can't parse inline keyboard button: text is required")
    actions = [action for action in BUTTON_ACTIONS if action in button]
    if not actions:
        raise _Refused(
            400,
            "Bad Request: can't parse inline keyboard button: "
            "Text buttons are unallowed in the inline keyboard",
        )
    if len(actions) > 1:
        raise _Refused(400, "Bad Request: can't parse inline keyboard button: exactly one action is allowed")
    data, url = button.get("callback_data"), button.get("url")
    if "callback_data" in button and (
        not isinstance(data, str) or not 1 <= len(data.encode()) <= CALLBACK_DATA_MAX_BYTES
    ):
        raise _Refused(400, "Bad Request: BUTTON_DATA_INVALID")
    if "url" in button and (not isinstance(url, str) or not url.startswith(BUTTON_URL_SCHEMES)):
        raise _Refused(400, "Bad Request: BUTTON_URL_INVALID")


def _message_with_button(user: _User, data: str) -> dict[str, Any] | None:
    """The bot's latest message to the user with an inline button whose `callback_data` is `data`."""
    found = None
    for message in user.keyboards:  # oldest first: the latest match wins
        rows = message["reply_markup"]["inline_keyboard"]
        if any(button.get("callback_data") == data for row in rows for button in row):
            found = message
    return found


def _made_up_id(bot: _Bot, key: str, digit: int) -> int:
    """A stable 10-digit chat id for `key`, ending in `digit` (the sandbox outcome it picks)."""
    number = int(hashlib.sha256(f"{bot.id}|{key}".encode()).hexdigest()[:12], 16)
    return (10**8 + number % (9 * 10**8)) * 10 + digit


def _hash(payload: dict[str, Any]) -> str:
    # "The same message" for digit-9 retries and duplicate stats: the call minus where it goes.
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
