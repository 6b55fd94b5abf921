"""A local Messenger Platform: the Send API, Meta's answers and error envelopes, limits, signed webhooks.

Upstream routes (relative to the mount point):

- `POST /{page-id}/messages` with the Page token (`Authorization: Bearer`, or `access_token` in the query;
  none is 190, HTTP 401). A send is checked as the Send API checks it (`recipient.id`, `messaging_type` and
  `tag`, a `message` with either `text` or an `attachment`, templates, buttons and quick replies with
  their limits: 100; a `recipient.id` that is no PSID: 100/2018001), then:

  1. throughput: `messages_per_second` per Page (300), and `media_per_second` (10) of them audio or
     video; beyond, 613;
  2. the 24-hour window: a message to a user who has not written to the Page (`POST /_sandbox/inbound`)
     in the last `session_window_s` seconds is refused with 10/2018278 (0 turns the rule off); a
     `MESSAGE_TAG` send goes whenever, but with the `HUMAN_AGENT` tag only within `human_agent_window_s`;
  3. the shared sandbox rule (`providers.simulation`) by the PSID's last digit: 0–6 accepted, then a
     `delivery` and a `read` webhook; 7 `delivery` only; 8 refused with 551/1545041 (the person is not
     available); 9 two 1200 (temporary send failure, HTTP 500) for the same message, then as 0–6. In rates
     mode an undelivered message gets no webhook at all (Messenger reports no failure).

  Accepted: `{"recipient_id", "message_id"}`.
- `POST /{page-id}/subscribed_apps?subscribed_fields=a,b` (or the same in a JSON body) subscribes the app
  to the Page's webhook fields, replacing the earlier ones (none, or an unknown one, is 100): `{"success":
  true}`. `GET` lists the subscription (`{"data": [{"name", "id", "subscribed_fields"}]}`).

Webhooks: `{"object": "page", "entry": [{"id", "time", "messaging": [event]}]}`, signed with
`X-Hub-Signature-256` keyed by the app secret, to the callback URL registered for the Page, each only when
the Page subscribed its field: `message_deliveries` (`delivery` with `mids` and a `watermark`, the time the
message was accepted; with `delivery_mids` off the watermark alone, as older Messenger clients send it),
`message_reads` (`read` with that watermark), `messages` and `messaging_postbacks` (what end users do), and
`message_echoes` (the Page's own sends, with `is_echo`). Until a Page has both a callback URL and a
subscription since the start, its webhooks wait (`HeldUntilRegistered`). Errors use Meta's envelope, HTTP
400 (190: 401; 10: 403; 1200: 500).

Sandbox control (OpenMMP's own): `POST /_sandbox/webhooks` `{"pageId", "callbackUrl", "appSecret"}` (the
app's webhook settings, kept per Page; an empty `callbackUrl` removes it), `POST /_sandbox/inbound`
`{"pageId", "name"?, "text"?, "userId"?, "phone"?, "attachments"?: [{"type", "url"}], "postback"?:
{"title", "payload"}}` (an end user writes, or taps a postback button; either opens their window; answers
`{"psid", "mid", "webhook"}`), `GET /_sandbox/messages/{mid}` (the request the Send API got), `GET
/_sandbox/stats`, `POST /_sandbox/faults` (`rate_limit` answers 613, `final_error` the fault's `status` as
the error code, else 551).

Sandbox users: a PSID is 16 digits made from the Page and the user (`userId`, a handle of the caller's, or
else `phone`; neither: a new user), ending in the digit that picks the user's outcome: the phone's last
digit, else the handle's, else 0. A `userId` that is a PSID the simulator gave out on the Page is that user.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient
from openmmp.providers.messenger import payload as limits
from openmmp.providers.meta.simulator import (
    GraphSimulator,
    Refused,
    bearer,
    json_object,
    payload_hash,
    webhook_settings,
)
from openmmp.providers.simulation import (
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    json_response,
    knobs,
    last_digit,
    now_ms,
    phone_digits,
    read_json,
    sandbox_error,
)

INVALID_PARAMETER = 100
PERMISSION = 10
TOKEN_INVALID = 190
USER_UNAVAILABLE = 551
RATE_LIMIT = 613
TEMPORARY = 1200
OUTSIDE_WINDOW = 2018278
"""The subcode of 10 for a message outside the window."""
NO_MATCHING_USER = 2018001
"""The subcode of 100 for a recipient that is no user of the Page."""
UNAVAILABLE = 1545041
"""The subcode of 551."""
APP_ID = 1517776481860111
"""The app the simulator's Pages are subscribed to (echoes name it)."""
APP_NAME = "OpenMMP sandbox"

TITLES = {
    INVALID_PARAMETER: "Invalid parameter",
    PERMISSION: "This message is sent outside of allowed window.",
    TOKEN_INVALID: "Invalid OAuth access token.",
    USER_UNAVAILABLE: "This person isn't available right now.",
    RATE_LIMIT: "Calls to this API have exceeded the rate limit.",
    TEMPORARY: "Temporary send message failure. Please try again later.",
}
_HTTP_STATUS = {TOKEN_INVALID: 401, PERMISSION: 403, TEMPORARY: 500}
MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
TAGS = frozenset({"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT"})
FIELDS = frozenset(
    {
        "messages",
        "messaging_postbacks",
        "message_deliveries",
        "message_reads",
        "message_echoes",
        "messaging_optins",
        "messaging_referrals",
    }
)
"""The Page webhook fields a subscription may name."""
MEDIA = frozenset({"image", "audio", "video", "file"})
HEAVY_MEDIA = frozenset({"audio", "video"})
"""Attachments Meta limits to `media_per_second`."""
_PSID = re.compile(r"[1-9]\d{0,19}")
_PHONE_NUMBER = re.compile(r"\+\d{6,15}")


@dataclass
class MessengerKnobs:
    """The Messenger simulator's own knobs (`SimulatorConfig.options["messenger"]`)."""

    messages_per_second: int = 300
    media_per_second: int = 10
    """Messages per second per Page, and of them audio and video; beyond, 613 (upstream: 300 and 10)."""
    session_window_s: float = 86400.0
    """Messages only to users who wrote within this long (10/2018278 otherwise); 0: no window."""
    human_agent_window_s: float = 7 * 86400.0
    """How long after the user's last message a `HUMAN_AGENT` tagged message may go."""
    delivery_mids: bool = True
    """`delivery` webhooks name the delivered mids; off, they carry the watermark alone."""


@dataclass
class _Page:
    """A Facebook Page as its app's webhook settings and its subscription know it."""

    id: str
    callback_url: str | None = None
    app_secret: str = ""
    fields: frozenset[str] | None = None
    """The webhook fields the app is subscribed to; None: never subscribed since the start."""

    @property
    def ready(self) -> bool:
        """Its webhooks have somewhere to go."""
        return self.callback_url is not None and self.fields is not None

    def wants(self, field: str) -> bool:
        return self.ready and field in (self.fields or ())


def create_messenger_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The Messenger Platform simulator as a Starlette app; `http` sends its webhooks."""
    return _MessengerSimulator(config, http).app


class _MessengerSimulator(GraphSimulator):
    webhook_object = "page"
    fault_rate_limit = RATE_LIMIT
    fault_final_error = USER_UNAVAILABLE

    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "messenger", MessengerKnobs)
        self._throughput = TokenBucketLimiter(capacity=self._knobs.messages_per_second, window_s=1.0)
        self._media = TokenBucketLimiter(capacity=self._knobs.media_per_second, window_s=1.0)
        self._pages: LruMap[str, _Page] = LruMap(config.max_tracked_keys)
        self._users: LruMap[str, str] = LruMap(config.max_tracked_keys)
        """The PSIDs given out, by `{page id}:{psid}`."""
        routes = [
            Route("/{page_id}/messages", self._send, methods=["POST"]),
            Route("/{page_id}/subscribed_apps", self._subscribed_apps, methods=["GET", "POST"]),
        ]
        super().__init__(config, http, routes)

    def _mid(self) -> str:
        # Meta's mids are opaque; time-prefixed so that restarts do not reuse them.
        raw = f"{time.time_ns()}:{next(self._sequence)}".encode() + secrets.token_bytes(6)
        return "m_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _page(self, page_id: str) -> _Page:
        page = self._pages.get(page_id)
        if page is None:
            page = _Page(id=page_id)
            self._pages.set(page_id, page)
        return page

    def _configured(self, page: _Page) -> None:
        """The Page's webhook settings changed: its held webhooks go once it has both a URL and fields."""
        if page.ready:
            self._held.configured(page.id, registered=True)
        elif page.callback_url is None:
            self._held.configured(page.id, registered=False)

    async def _page_call(self, request: Request) -> bytes | Response:
        """The body of a call to one of a Page's edges, once faults and the Page token had their turn; or
        the answer refusing it."""
        raw = await request.body()
        if (faulted := await self._faulted(request)) is not None:
            return faulted
        if _token(request) is None:
            return self._error(Refused(TOKEN_INVALID, "Cannot parse access token"))
        return raw

    # ---- the Send API -----------------------------------------------------------------------------------

    async def _send(self, request: Request) -> Response:
        raw = await self._page_call(request)
        if isinstance(raw, Response):
            return raw
        page_id = request.path_params["page_id"]
        try:
            if len(raw) > self._config.max_request_bytes:
                raise Refused(INVALID_PARAMETER, "the request is too large")
            body = json_object(raw)
            psid, heavy = _check_send(body)
        except Refused as refused:
            return self._error(refused)
        if not self._throughput.try_acquire(page_id) or (heavy and not self._media.try_acquire(page_id)):
            self._stats.rate_limited += 1
            return self._error(Refused(RATE_LIMIT))
        if not self._inside_window(page_id, psid, body):
            return self._error(Refused(PERMISSION, subcode=OUTSIDE_WINDOW))
        key = f"{page_id}:{psid}:{payload_hash(body)}"
        outcome = self._planner.decide(digit=last_digit(psid), attempt_key=key)
        if outcome is Outcome.FINAL_ERROR:
            return self._error(Refused(USER_UNAVAILABLE, subcode=UNAVAILABLE))
        if outcome is Outcome.RETRYABLE_ERROR:
            return self._error(Refused(TEMPORARY))
        mid, sent_ms = self._mid(), now_ms()
        self._stats.accept(key)
        if self._config.track_keys:
            self._messages.set(mid, {"pageId": page_id, "request": body})
        page = self._page(page_id)
        message = body["message"]

        def lifecycle() -> Coroutine[Any, Any, None]:
            return self._lifecycle(page, psid, mid, sent_ms, message, outcome)

        if page.ready:
            self._scheduler.spawn(lifecycle())
        else:
            self._held.hold(page.id, lifecycle)
        return json_response({"recipient_id": psid, "message_id": mid})

    def _inside_window(self, page_id: str, psid: str, body: Mapping[str, Any]) -> bool:
        window = float(self._knobs.session_window_s)
        if window <= 0:
            return True
        if body.get("messaging_type") == "MESSAGE_TAG":
            if body.get("tag") != "HUMAN_AGENT":
                return True
            window = float(self._knobs.human_agent_window_s)
        wrote = self._wrote.get(f"{page_id}:{psid}")
        return wrote is not None and time.time() - wrote <= window

    def _error(self, refused: Refused) -> Response:
        error = self._envelope(refused, refused.details or TITLES.get(refused.code, "Error"))
        return json_response({"error": error}, _HTTP_STATUS.get(refused.code, 400))

    # ---- the Page's subscription ------------------------------------------------------------------------

    async def _subscribed_apps(self, request: Request) -> Response:
        raw = await self._page_call(request)
        if isinstance(raw, Response):
            return raw
        page = self._page(request.path_params["page_id"])
        if request.method == "GET":
            if page.fields is None:
                return json_response({"data": []})
            app = {"name": APP_NAME, "id": str(APP_ID), "subscribed_fields": sorted(page.fields)}
            return json_response({"data": [app]})
        try:
            fields = _subscribed_fields(request.query_params.get("subscribed_fields"), raw)
        except Refused as refused:
            return self._error(refused)
        page.fields = fields
        self._configured(page)
        return json_response({"success": True})

    # ---- webhooks ---------------------------------------------------------------------------------------

    async def _lifecycle(
        self, page: _Page, psid: str, mid: str, sent_ms: int, message: Mapping[str, Any], outcome: Outcome
    ) -> None:
        latency = self._config.callback_latency_s
        await asyncio.sleep(latency)
        echo = {"is_echo": True, "app_id": APP_ID, "mid": mid, **_echoed(message)}
        await self._webhook(
            page,
            "message_echoes",
            {"sender": {"id": page.id}, "recipient": {"id": psid}, "timestamp": sent_ms, "message": echo},
        )
        if outcome is Outcome.FAILED_LATER:
            return
        delivery: dict[str, Any] = {"watermark": sent_ms}
        if self._knobs.delivery_mids:
            delivery = {"mids": [mid], **delivery}
        user, us = {"id": psid}, {"id": page.id}
        await self._webhook(
            page, "message_deliveries", {"sender": user, "recipient": us, "delivery": delivery}
        )
        if outcome is Outcome.DELIVERED_AND_SEEN:
            await asyncio.sleep(latency)
            read = {"sender": user, "recipient": us, "timestamp": now_ms(), "read": {"watermark": sent_ms}}
            await self._webhook(page, "message_reads", read)

    async def _webhook(self, page: _Page, field: str, event: Mapping[str, Any]) -> None:
        """POST one event to the Page's callback URL when it subscribed `field`, signed as Meta signs.

        The URL, secret and fields are read when sending: the Page may have been configured again meanwhile.
        """
        url = page.callback_url
        if url is None or not page.wants(field):
            return
        await self._deliver(url, page.app_secret, {"id": page.id, "time": now_ms(), "messaging": [event]})

    # ---- sandbox control --------------------------------------------------------------------------------

    async def _sandbox_webhooks(self, request: Request) -> Response:
        try:
            page_id, url, secret = webhook_settings(await read_json(request), "pageId")
        except ValueError as exc:
            return sandbox_error(str(exc))
        page = self._page(page_id)
        page.callback_url = url
        if url:
            page.app_secret = secret
        self._configured(page)
        return json_response({"pageId": page_id, "callbackUrl": page.callback_url})

    async def _sandbox_inbound(self, request: Request) -> Response:
        """An end user writes to a Page, or taps a postback button: their window opens and, when the Page
        has a callback URL and subscribed the field, a signed webhook follows."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            page_id, handle, name = body.get("pageId"), body.get("userId"), body.get("name", "Messenger user")
            if not isinstance(page_id, str) or not page_id:
                raise ValueError("pageId is required")
            if handle is not None and (not isinstance(handle, str) or not handle):
                raise ValueError("userId must be a non-empty string")
            if not isinstance(name, str) or not name:
                raise ValueError("name must be a non-empty string")
            digits = phone_digits(body.get("phone"))
            field, content = _user_action(body)
        except ValueError as exc:
            return sandbox_error(str(exc))
        page = self._page(page_id)
        psid = self._end_user(page_id, handle, digits)
        self._wrote.set(f"{page_id}:{psid}", time.time())
        mid = self._mid()
        event: dict[str, Any] = {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": now_ms()}
        event |= (
            {"postback": {"mid": mid, **content}}
            if field == "messaging_postbacks"
            else {"message": {"mid": mid, **content}}
        )
        sent = page.wants(field)
        if sent:
            self._scheduler.spawn(self._after_latency(page, field, event))
        return json_response({"psid": psid, "mid": mid, "webhook": sent})

    async def _after_latency(self, page: _Page, field: str, event: Mapping[str, Any]) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        await self._webhook(page, field, event)

    def _end_user(self, page_id: str, handle: str | None, digits: str) -> str:
        """The PSID of the user `handle` or `digits` name on the Page (a new user when neither does)."""
        if handle is not None and self._users.get(f"{page_id}:{handle}") is not None:
            return handle
        if handle is not None:
            key, digit = f"user:{handle}", last_digit(digits or handle)
        elif digits:
            key, digit = f"phone:{digits}", last_digit(digits)
        else:
            key, digit = f"new:{uuid.uuid4()}", 0
        number = int(hashlib.sha256(f"{page_id}|{key}".encode()).hexdigest()[:15], 16)
        psid = f"{10**14 + number % (9 * 10**14)}{digit}"
        self._users.set(f"{page_id}:{psid}", key)
        return psid


# ---- requests as the Graph API reads them --------------------------------------------------------------


def _token(request: Request) -> str | None:
    """The Page token of a request: `Authorization: Bearer`, or `access_token` in the query."""
    return bearer(request) or request.query_params.get("access_token") or None


def _subscribed_fields(query: str | None, raw: bytes) -> frozenset[str]:
    """The fields of a subscription, from the query or a JSON body (a list, or comma-separated)."""
    given: Any = query
    if given is None and raw.strip():
        given = json_object(raw).get("subscribed_fields")
    if isinstance(given, str):
        given = [name.strip() for name in given.split(",") if name.strip()]
    if not isinstance(given, list) or not given or not all(isinstance(name, str) for name in given):
        raise Refused(INVALID_PARAMETER, "The parameter subscribed_fields is required")
    unknown = sorted(set(given) - FIELDS)
    if unknown:
        raise Refused(INVALID_PARAMETER, f"Param subscribed_fields[{unknown[0]}] is not a valid field")
    return frozenset(given)


def _text(value: Any, where: str, limit: int, *, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value):
        raise Refused(INVALID_PARAMETER, f"param {where} must be a non-empty UTF-8 encoded string")
    if len(value) > limit:
        raise Refused(INVALID_PARAMETER, f"Length of param {where} must be less than or equal to {limit}")


def _url(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise Refused(INVALID_PARAMETER, f"param {where} must be a valid URL")


def _check_send(body: Mapping[str, Any]) -> tuple[str, bool]:
    """The Send API's checks of a send; returns the recipient's PSID and whether it is audio or video."""
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or "id" not in recipient:
        raise Refused(INVALID_PARAMETER, "The parameter recipient is required")
    psid = recipient["id"]
    if not isinstance(psid, str) or not _PSID.fullmatch(psid):
        raise Refused(INVALID_PARAMETER, "No matching user found", subcode=NO_MATCHING_USER)
    messaging_type = body.get("messaging_type")
    if messaging_type not in MESSAGING_TYPES:
        raise Refused(INVALID_PARAMETER, "param messaging_type must be RESPONSE, UPDATE or MESSAGE_TAG")
    if (messaging_type == "MESSAGE_TAG") != ("tag" in body) or body.get("tag", "HUMAN_AGENT") not in TAGS:
        raise Refused(INVALID_PARAMETER, "a MESSAGE_TAG message needs a valid tag, and only it takes one")
    message = body.get("message")
    if not isinstance(message, dict):
        raise Refused(INVALID_PARAMETER, "The parameter message is required")
    if ("text" in message) == ("attachment" in message):
        raise Refused(INVALID_PARAMETER, "Must send either text or attachment in message")
    heavy = False
    if "text" in message:
        _text(message["text"], "message[text]", limits.TEXT_MAX)
    else:
        heavy = _check_attachment(message["attachment"])
    _check_quick_replies(message.get("quick_replies"))
    return psid, heavy


def _check_attachment(attachment: Any) -> bool:
    """Whether the (valid) attachment is audio or video."""
    if not isinstance(attachment, dict):
        raise Refused(INVALID_PARAMETER, "param message[attachment] must be an object")
    kind, payload = attachment.get("type"), attachment.get("payload")
    if not isinstance(payload, dict):
        raise Refused(INVALID_PARAMETER, "param message[attachment][payload] must be an object")
    if kind in MEDIA:
        if "attachment_id" not in payload:
            _url(payload.get("url"), "message[attachment][payload][url]")
        return kind in HEAVY_MEDIA
    if kind != "template":
        raise Refused(
            INVALID_PARAMETER,
            "param message[attachment][type] must be one of image, audio, video, file, template",
        )
    template_type = payload.get("template_type")
    if template_type == "button":
        _text(payload.get("text"), "payload[text]", limits.BUTTON_TEXT_MAX)
        _check_buttons(payload.get("buttons"), "payload[buttons]", required=True)
    elif template_type == "generic":
        elements = payload.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= limits.ELEMENTS_MAX:
            raise Refused(
                INVALID_PARAMETER, f"param payload[elements] must have 1 to {limits.ELEMENTS_MAX} elements"
            )
        for n, element in enumerate(elements):
            _check_element(element, f"payload[elements][{n}]")
    else:
        raise Refused(INVALID_PARAMETER, "param payload[template_type] must be generic or button")
    return False


def _check_element(element: Any, where: str) -> None:
    if not isinstance(element, dict):
        raise Refused(INVALID_PARAMETER, f"param {where} must be an object")
    _text(element.get("title"), f"{where}[title]", limits.TITLE_MAX)
    _text(element.get("subtitle"), f"{where}[subtitle]", limits.SUBTITLE_MAX, required=False)
    if "image_url" in element:
        _url(element["image_url"], f"{where}[image_url]")
    _check_buttons(element.get("buttons"), f"{where}[buttons]", required=False)
    if not {"subtitle", "image_url", "buttons", "default_action"} & set(element):
        raise Refused(INVALID_PARAMETER, f"{where}: at least one property must be set in addition to title")


def _check_buttons(buttons: Any, where: str, *, required: bool) -> None:
    if buttons is None and not required:
        return
    if not isinstance(buttons, list) or not (1 if required else 0) <= len(buttons) <= limits.BUTTONS_MAX:
        raise Refused(INVALID_PARAMETER, f"param {where} must have 1 to {limits.BUTTONS_MAX} buttons")
    for n, button in enumerate(buttons):
        at = f"{where}[{n}]"
        if not isinstance(button, dict):
            raise Refused(INVALID_PARAMETER, f"param {at} must be an object")
        _text(button.get("title"), f"{at}[title]", limits.BUTTON_TITLE_MAX)
        kind = button.get("type")
        if kind == "web_url":
            _url(button.get("url"), f"{at}[url]")
        elif kind == "postback":
            _text(button.get("payload"), f"{at}[payload]", limits.PAYLOAD_MAX)
        elif kind == "phone_number":
            number = button.get("payload")
            if not isinstance(number, str) or not _PHONE_NUMBER.fullmatch(number):
                raise Refused(
                    INVALID_PARAMETER, f"param {at}[payload] must be a phone number starting with +"
                )
        else:
            raise Refused(INVALID_PARAMETER, f"param {at}[type] must be web_url, postback or phone_number")


def _check_quick_replies(replies: Any) -> None:
    if replies is None:
        return
    if not isinstance(replies, list) or not 1 <= len(replies) <= limits.QUICK_REPLIES_MAX:
        raise Refused(
            INVALID_PARAMETER, f"param message[quick_replies] must have 1 to {limits.QUICK_REPLIES_MAX} items"
        )
    for n, reply in enumerate(replies):
        at = f"message[quick_replies][{n}]"
        kind = reply.get("content_type") if isinstance(reply, dict) else None
        if kind == "text":
            _text(reply.get("title"), f"{at}[title]", limits.QUICK_REPLY_TITLE_MAX)
            _text(reply.get("payload"), f"{at}[payload]", limits.PAYLOAD_MAX)
        elif kind not in ("user_phone_number", "user_email"):
            raise Refused(
                INVALID_PARAMETER, f"param {at}[content_type] must be text, user_phone_number or user_email"
            )


def _echoed(message: Mapping[str, Any]) -> dict[str, Any]:
    """What an echo repeats of a sent `message`: its text, or its attachment."""
    if "text" in message:
        return {"text": message["text"]}
    return {"attachments": [message["attachment"]]}


# ---- what sandbox users do ---------------------------------------------------------------------------------


def _user_action(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The webhook field and the `message` or `postback` content of what a sandbox user does."""
    text, attachments, postback = body.get("text"), body.get("attachments"), body.get("postback")
    if postback is not None:
        if text is not None or attachments is not None:
            raise ValueError("postback goes alone: no text or attachments with it")
        if not isinstance(postback, dict) or not all(
            isinstance(postback.get(key), str) for key in ("title", "payload")
        ):
            raise ValueError("postback must be {title, payload}, both strings")
        return "messaging_postbacks", {"title": postback["title"], "payload": postback["payload"]}
    content: dict[str, Any] = {}
    if text is not None:
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        content["text"] = text
    if attachments is not None:
        if not isinstance(attachments, list) or not attachments:
            raise ValueError("attachments must be a non-empty list")
        content["attachments"] = [_user_attachment(item) for item in attachments]
    if not content:
        raise ValueError("text, attachments or postback is required")
    return "messages", content


def _user_attachment(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("type") not in MEDIA:
        raise ValueError("each attachment is {type: image|audio|video|file, url}")
    url = item.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("an attachment's url must be an http(s) URL")
    return {"type": item["type"], "payload": {"url": url}}
