"""Telegram webhook updates: the secret header, what an update means, and the answer to a button tap.

**Proof.** Telegram signs nothing. `setWebhook` takes a `secret_token` that Telegram then sends in the
`X-Telegram-Bot-Api-Secret-Token` header of every update; it proves the sender, the body's integrity being
left to TLS. The secret is derived from the bot's token (`webhook_secret`): the same on every start and
every replica, different for every bot, nothing to store, and only characters Telegram allows (hex).

**Meaning.** An update is `{"update_id", <one kind>: {...}}`; the webhook asks for three kinds only
(`ALLOWED_UPDATES`), and any other is answered and ignored, so Telegram does not hold the bot's later
updates back retrying it.

- `message`: the end user wrote. Text; `/start` (the Start button, or a deep link's `/start <payload>`)
  opens the conversation (`conversation_started`, the payload as its text); a photo, video, animation,
  video note, document, audio, voice note or sticker becomes picture, video or file with its caption and
  `fileId` (Telegram's `file_id`: a URL would carry the bot's token; the company fetches the file with
  `getFile`); a location or venue; a contact, whose number becomes the end user's phone when they shared
  their own. Service messages (members joining, a pinned message, ...) and contents MMP has no type for
  are ignored.
- `callback_query`: the end user tapped an inline button of ours; its `callback_data` is what they "said",
  an inbound text. Telegram's app shows a spinner on the button until the bot answers the query, so the
  webhook's answer carries `answerCallbackQuery` (`webhook_reply`): Telegram runs a method given in the
  answer to an update, which needs no call of ours.
- `my_chat_member`: the bot's membership of the chat changed: blocked by the user (`kicked`) or removed
  from a group (`left`) → `unsubscribed`; unblocked or added → `subscribed`; a change within one of the
  two (promoted to administrator) is ignored.

The conversation is the chat (`chat.id`, which for a private chat is the user's id): sends go to it. The
contact's profile is the user's (`from`: name, `language_code`) in a private chat, the group's title in a
group. Dedupe keys start with `update_id` and add the event's own identity (chat and `message_id`, the
query's id, the membership's time and status), since update ids restart at random after a quiet week.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson

from openmmp.providers.base import CallbackEvent, CallbackRejected, Contact, InboundEvent, InboundKind

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header's name, not a secret
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
_SECRET_LABEL = b"openmmp telegram webhook secret_token"

# Message contents with a file, in the order they are looked for (an animation has a `document` too).
_MEDIA: tuple[tuple[str, str], ...] = (
    ("photo", "picture"),
    ("animation", "video"),
    ("video", "video"),
    ("video_note", "video"),
    ("document", "file"),
    ("audio", "file"),
    ("voice", "file"),
    ("sticker", "picture"),
)
_MEMBER_STATUSES = frozenset({"creator", "administrator", "member"})


def webhook_secret(bot_token: str) -> str:
    """The `secret_token` set with the bot's webhook: hex HMAC-SHA256 keyed by the bot's token."""
    return hmac.new(bot_token.encode(), _SECRET_LABEL, hashlib.sha256).hexdigest()


def verify_secret(value: str | None, bot_token: str) -> bool:
    """True when `value` (the header) is the bot's webhook secret; compared in constant time."""
    if not value or not bot_token:
        return False
    return hmac.compare_digest(webhook_secret(bot_token).encode(), value.encode())


def webhook_reply(raw: bytes) -> bytes | None:
    """The answer to a `callback_query` update: an `answerCallbackQuery` Telegram runs for us (the
    button's spinner stops); None for any other update."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    query = body.get("callback_query") if isinstance(body, dict) else None
    query_id = query.get("id") if isinstance(query, dict) else None
    if not isinstance(query_id, str) or not query_id:
        return None
    return orjson.dumps({"method": "answerCallbackQuery", "callback_query_id": query_id})


def parse_update(raw: bytes) -> list[CallbackEvent]:
    """The events of a verified update: none for kinds and contents OpenMMP does not handle.

    Raises `CallbackRejected` for a body that is not a Telegram update.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("update is not JSON") from exc
    if not isinstance(body, dict):
        raise CallbackRejected("update is not a JSON object")
    update_id = body.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise CallbackRejected("update has no numeric update_id")
    if "message" in body:
        return _message_events(update_id, _object(body["message"], "message"), body)
    if "callback_query" in body:
        return _callback_query_events(update_id, _object(body["callback_query"], "callback_query"), body)
    if "my_chat_member" in body:
        return _membership_events(update_id, _object(body["my_chat_member"], "my_chat_member"), body)
    return []


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CallbackRejected(f"update's {field} is not an object")
    return value


def _integer(container: Mapping[str, Any], field: str) -> int:
    value = container.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CallbackRejected(f"update has no numeric {field}")
    return value


def _string(container: Any, field: str) -> str:
    value = container.get(field) if isinstance(container, Mapping) else None
    return value if isinstance(value, str) else ""


def _date_ms(container: Mapping[str, Any]) -> int:
    seconds = _integer(container, "date")
    if seconds < 0:
        raise CallbackRejected("update's date is out of range")
    return seconds * 1000


def _chat(container: Mapping[str, Any]) -> Mapping[str, Any]:
    chat = _object(container.get("chat"), "chat")
    _integer(chat, "id")
    return chat


def _full_name(person: Any) -> str:
    return " ".join(part for part in (_string(person, "first_name"), _string(person, "last_name")) if part)


def _contact(chat: Mapping[str, Any], user: Any, phone: str = "") -> Contact:
    if chat.get("type") == "private":
        return Contact(
            id=str(chat["id"]),
            name=_full_name(user) or _full_name(chat),
            language=_string(user, "language_code"),
            phone=phone,
        )
    return Contact(id=str(chat["id"]), name=_string(chat, "title"))


def _message_events(
    update_id: int, message: Mapping[str, Any], update: dict[str, Any]
) -> list[CallbackEvent]:
    chat = _chat(message)
    message_id = _integer(message, "message_id")
    timestamp = _date_ms(message)
    user = message.get("from")
    found = _content(message, user)
    if found is None:
        return []
    kind, content, phone = found
    return [
        InboundEvent(
            kind=kind,
            contact=_contact(chat, user, phone),
            message={**content, "extra": message},
            timestamp_ms=timestamp,
            dedupe_key=f"{update_id}:message:{chat['id']}:{message_id}",
            raw=update,
        )
    ]


def _content(message: Mapping[str, Any], user: Any) -> tuple[InboundKind, dict[str, Any], str] | None:
    """What the end user sent: the event's kind, the MMP message object (`extra` aside) and the phone
    they shared as their own (""); None for contents OpenMMP does not handle."""
    text = message.get("text")
    if isinstance(text, str):
        payload = _start_payload(text)
        if payload is not None:
            return "conversation_started", {"type": "CONVERSATION_STARTED", "message": payload}, ""
        return "message", {"type": "text", "message": text}, ""
    caption = _string(message, "caption")
    for field, mmp_type in _MEDIA:
        found = message.get(field)
        if field == "photo" and isinstance(found, list) and found:
            found = found[-1]  # the sizes come smallest first
        if isinstance(found, Mapping) and _string(found, "file_id"):
            media: Mapping[str, Any] = found
            content: dict[str, Any] = {"type": mmp_type, "message": caption, "fileId": media["file_id"]}
            size = media.get("file_size")
            if isinstance(size, int) and not isinstance(size, bool):
                content["fileSize"] = size
            if _string(media, "file_name"):
                content["fileName"] = _string(media, "file_name")
            return "message", content, ""
    place = message.get("venue") or message.get("location")
    if isinstance(place, Mapping):
        point = place.get("location", place)
        if isinstance(point, Mapping):
            location = {"latitude": point.get("latitude"), "longitude": point.get("longitude")}
            title, address = _string(place, "title"), _string(place, "address")
            location |= {key: value for key, value in (("name", title), ("address", address)) if value}
            return "message", {"type": "location", "message": title or address, "location": location}, ""
    shared = message.get("contact")
    number = _string(shared, "phone_number")
    if number:
        own = (
            isinstance(shared, Mapping)
            and isinstance(user, Mapping)
            and shared.get("user_id") == user.get("id")
        )
        phone = "".join(ch for ch in number if ch.isdigit()) if own else ""
        return "message", {"type": "text", "message": number}, phone
    return None


def _start_payload(text: str) -> str | None:
    """The deep link's payload of a `/start` command (`/start@bot` in a group), "" without one; None
    when `text` is no `/start`."""
    parts = text.split(maxsplit=1)
    if not parts or not (parts[0] == "/start" or parts[0].startswith("/start@")):
        return None
    return parts[1].strip() if len(parts) == 2 else ""


def _callback_query_events(
    update_id: int, query: Mapping[str, Any], update: dict[str, Any]
) -> list[CallbackEvent]:
    query_id = query.get("id")
    if not isinstance(query_id, str) or not query_id:
        raise CallbackRejected("callback_query has no id")
    user = _object(query.get("from"), "callback_query.from")
    _integer(user, "id")
    data = query.get("data")
    if not isinstance(data, str) or not data:
        return []  # a game's button: no data of ours
    message = query.get("message")
    # The tapped message's chat; a message sent in inline mode has none, and its user is the chat then.
    chat = _chat(message) if isinstance(message, Mapping) else {"id": user["id"], "type": "private"}
    return [
        InboundEvent(
            kind="message",
            contact=_contact(chat, user),
            message={"type": "text", "message": data, "extra": query},
            # A query carries no time of its own (its message's may be days old): it happens now.
            timestamp_ms=int(time.time() * 1000),
            dedupe_key=f"{update_id}:callback_query:{query_id}",
            raw=update,
        )
    ]


def _membership_events(
    update_id: int, change: Mapping[str, Any], update: dict[str, Any]
) -> list[CallbackEvent]:
    chat = _chat(change)
    timestamp = _date_ms(change)
    was, now = _member(change, "old_chat_member"), _member(change, "new_chat_member")
    if was == now:
        return []
    status = _string(change.get("new_chat_member"), "status")
    kind: InboundKind = "subscribed" if now else "unsubscribed"
    return [
        InboundEvent(
            kind=kind,
            contact=_contact(chat, change.get("from")),
            message={"type": kind.upper(), "message": "", "extra": change},
            timestamp_ms=timestamp,
            dedupe_key=f"{update_id}:my_chat_member:{chat['id']}:{timestamp}:{status}",
            raw=update,
        )
    ]


def _member(change: Mapping[str, Any], field: str) -> bool:
    """Whether the bot is in the chat by this ChatMember: a restricted member says so in `is_member`."""
    member = _object(change.get(field), f"my_chat_member.{field}")
    status = member.get("status")
    if not isinstance(status, str):
        raise CallbackRejected(f"my_chat_member.{field} has no status")
    if status == "restricted":
        return member.get("is_member") is True
    return status in _MEMBER_STATUSES
