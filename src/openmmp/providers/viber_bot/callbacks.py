"""Viber Bot webhook callbacks: signature check over the raw bytes and parsing into core events.

Viber signs each callback with `X-Viber-Content-Signature`: the lowercase hex HMAC-SHA256 of the raw body
keyed by the bot's auth token (providers.md §1). Callbacks are at-least-once and unordered, so every event
carries a `dedupe_key` that is equal for repeats of the same upstream event.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    Contact,
    InboundEvent,
    InboundKind,
    PingEvent,
    StatusEvent,
    StatusName,
)

SIGNATURE_HEADER = "X-Viber-Content-Signature"
# What the core can keep of an event (Viber's tokens are 64-bit integers, its user ids 24 characters);
# a signed body beyond these is refused rather than failing when it is stored.
MAX_TOKEN_LENGTH = 100
MAX_USER_ID_LENGTH = 200
MAX_TIMESTAMP_MS = 2**63 - 1

_STATUS_EVENTS: Mapping[str, StatusName] = {"delivered": "DELIVERED", "seen": "READ", "failed": "FAIL"}
_USER_EVENTS: Mapping[str, tuple[InboundKind, str]] = {
    "subscribed": ("subscribed", "SUBSCRIBED"),
    "unsubscribed": ("unsubscribed", "UNSUBSCRIBED"),
    "conversation_started": ("conversation_started", "CONVERSATION_STARTED"),
}
# Viber message types → MMP MessageType; url, contact and sticker have no MMP type of their own.
_MESSAGE_TYPES: Mapping[str, str] = {
    "text": "text",
    "picture": "picture",
    "video": "video",
    "file": "file",
    "location": "location",
    "url": "text",
    "contact": "text",
    "sticker": "picture",
}


def sign(raw: bytes, auth_token: str) -> str:
    """The `X-Viber-Content-Signature` value for `raw` (used by the simulator and tests)."""
    return hmac.new(auth_token.encode(), raw, hashlib.sha256).hexdigest()


def verify_signature(raw: bytes, signature: str | None, auth_token: str) -> bool:
    """True when `signature` is the bot's HMAC of exactly these bytes; never re-serialise before calling."""
    if not signature or not auth_token:
        return False
    expected = sign(raw, auth_token).encode()
    return hmac.compare_digest(expected, signature.strip().lower().encode())


def parse_callback(raw: bytes) -> CallbackEvent:
    """Turn a verified callback body into a `StatusEvent`, `InboundEvent` or `PingEvent`.

    Raises `CallbackRejected` for bodies that are not a Viber Bot callback or name an event OpenMMP does
    not handle. Timestamps are epoch milliseconds as Viber sends them.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("callback body is not JSON") from exc
    if not isinstance(body, dict):
        raise CallbackRejected("callback body is not a JSON object")
    event = body.get("event")
    if not isinstance(event, str):
        raise CallbackRejected("callback has no event")
    if event == "webhook":
        timestamp = _timestamp(body)
        return PingEvent(
            raw=body,
            timestamp_ms=timestamp,
            dedupe_key=f"webhook:{_token(body, required=False) or timestamp}",
        )
    if event in _STATUS_EVENTS:
        return _status_event(event, body)
    if event == "message":
        return _message_event(body)
    if event in _USER_EVENTS:
        return _user_event(event, body)
    raise CallbackRejected(f"unsupported Viber Bot event {event!r}")


def _timestamp(body: Mapping[str, Any]) -> int:
    value = body.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int):
        raise CallbackRejected("callback has no numeric timestamp")
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        raise CallbackRejected("callback timestamp is out of range")
    return value


def _token(body: Mapping[str, Any], *, required: bool) -> str:
    value = body.get("message_token")
    if isinstance(value, int | str) and not isinstance(value, bool) and value != "":
        if len(str(value)) > MAX_TOKEN_LENGTH:
            raise CallbackRejected("callback message_token is too long")
        return str(value)
    if required:
        raise CallbackRejected("callback has no message_token")
    return ""


def _user_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise CallbackRejected(f"callback has no {field}")
    if len(value) > MAX_USER_ID_LENGTH:
        raise CallbackRejected(f"callback {field} is too long")
    return value


def _status_event(event: str, body: dict[str, Any]) -> StatusEvent:
    token = _token(body, required=True)
    user_id = _user_id(body.get("user_id"), "user_id")
    failed = event == "failed"
    desc = body.get("desc")
    return StatusEvent(
        provider_message_id=token,
        status=_STATUS_EVENTS[event],
        timestamp_ms=_timestamp(body),
        # One broadcast token covers many users: the user is part of the event's identity.
        dedupe_key=f"{event}:{token}:{user_id}",
        raw=body,
        user_id=user_id,
        error_code="VIBER_BOT_FAILED" if failed else None,
        error_message=(desc if isinstance(desc, str) and desc else "failed") if failed else None,
        # Viber sends `seen` once for everything the user has read up to this message.
        cumulative=event == "seen",
    )


def _contact(user: Any, field: str) -> Contact:
    if not isinstance(user, Mapping):
        raise CallbackRejected(f"callback has no {field}")
    user_id = _user_id(user.get("id"), f"{field}.id")

    def text(name: str) -> str:
        value = user.get(name)
        return value if isinstance(value, str) else ""

    return Contact(
        id=user_id,
        name=text("name"),
        avatar_url=text("avatar"),
        language=text("language"),
        country=text("country"),
    )


def _message_event(body: dict[str, Any]) -> InboundEvent:
    contact = _contact(body.get("sender"), "sender")
    viber_message = body.get("message")
    if not isinstance(viber_message, dict):
        raise CallbackRejected("message callback has no message object")
    viber_type = viber_message.get("type")
    if not isinstance(viber_type, str):
        raise CallbackRejected("message callback has no message.type")
    token = _token(body, required=True)

    mmp: dict[str, Any] = {"type": _MESSAGE_TYPES.get(viber_type, "text"), "message": ""}
    text = viber_message.get("text")
    if isinstance(text, str):
        mmp["message"] = text
    media = viber_message.get("media")
    if viber_type == "url" and isinstance(media, str):
        mmp["message"] = media
    elif viber_type in ("picture", "video", "file", "sticker") and isinstance(media, str):
        mmp["fileUrl"] = media
    if viber_type in ("video", "file") and isinstance(viber_message.get("size"), int):
        mmp["fileSize"] = viber_message["size"]
    if viber_type == "file" and isinstance(viber_message.get("file_name"), str):
        mmp["fileName"] = viber_message["file_name"]
    location = viber_message.get("location")
    if viber_type == "location" and isinstance(location, Mapping):
        mmp["location"] = {"latitude": location.get("lat"), "longitude": location.get("lon")}
        if isinstance(location.get("address"), str):
            mmp["location"]["address"] = location["address"]
    shared = viber_message.get("contact")
    if viber_type == "contact" and isinstance(shared, Mapping):
        # A shared contact is how a Viber user hands over a phone number (share-phone keyboard button).
        phone = shared.get("phone_number")
        if isinstance(phone, str) and phone:
            mmp["message"] = phone
            contact = Contact(
                id=contact.id,
                name=contact.name,
                avatar_url=contact.avatar_url,
                language=contact.language,
                country=contact.country,
                phone=phone.lstrip("+"),
            )
    mmp["extra"] = viber_message
    return InboundEvent(
        kind="message",
        contact=contact,
        message=mmp,
        timestamp_ms=_timestamp(body),
        dedupe_key=f"message:{token}:{contact.id}",
        raw=body,
    )


def _user_event(event: str, body: dict[str, Any]) -> InboundEvent:
    kind, mmp_type = _USER_EVENTS[event]
    contact = (
        Contact(id=_user_id(body.get("user_id"), "user_id"))
        if event == "unsubscribed"
        else _contact(body.get("user"), "user")
    )
    timestamp = _timestamp(body)
    # Viber names these events with a message_token too; fall back to the time if it ever does not.
    token = _token(body, required=False) or str(timestamp)
    return InboundEvent(
        kind=kind,
        contact=contact,
        message={"type": mmp_type, "message": "", "extra": body},
        timestamp_ms=timestamp,
        dedupe_key=f"{event}:{token}:{contact.id}",
        raw=body,
    )
