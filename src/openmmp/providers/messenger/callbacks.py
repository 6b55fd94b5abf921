"""Messenger webhooks: what the bodies mean.

**Proof.** As for every Meta webhook (`meta.webhooks`): signed with the app secret, and the callback URL
checked with a GET handshake against the channel's verify token, made with `VERIFY_TOKEN_PURPOSE`, which
the business can compute to enter it in its app's webhook settings.

**Meaning.** A body is `{"object": "page", "entry": [{"id": <page id>, "time", "messaging": [...]}]}`;
every entry and event in it counts, so one body may hold several events. Each event names the end user
(`sender.id`, their PSID, for what they did; `recipient.id` for what the Page sent them) and is one of:

- `message`: the end user wrote. Its text is one inbound message, each attachment another (`image` →
  picture, `video` → video, `audio` and `file` → file, with `fileUrl` Meta's URL of it; a `location` →
  location; a shared link, `fallback`, → text with the link). A quick reply's payload is in `extra`. A
  message with `is_echo` is one the Page sent (to its own webhook): nothing to apply.
- `postback`: the end user tapped a postback button (a card's `reply` suggestion): an inbound text whose
  words are the button's `title` (what they saw and tapped), or the payload when Meta gives no title; the
  payload (the suggestion's `postbackData`) is in `extra`.
- `delivery`: delivered. With `mids`, a DELIVERED report per mid; without (older Messenger clients), a
  watermark: every message to the user up to `watermark` (ms) is delivered (`StatusEvent.up_to_ms`).
- `read`: read, always a watermark: every message to the user up to `watermark` is read.
- anything else (`optin`, `referral`, `reaction`, ...) changes nothing: answered, so Meta stops retrying,
  and ignored. So are entries without `messaging` (`standby`, `changes`).

Messenger's webhooks do not name the end user: the contact has their PSID only.

Dedupe keys, equal for Meta's retries of one event: the mid of an inbound message (with the
attachment's position after the first part), the mid of a postback (or, without one, the user, time and
payload), the mid of a delivery report, the user and watermark of a watermark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    Contact,
    InboundEvent,
    StatusEvent,
    StatusName,
)
from openmmp.providers.meta.webhooks import entries, text_of, webhook_id, webhook_objects

VERIFY_TOKEN_PURPOSE = b"openmmp-messenger-verify-token"
"""What the app secret keys to make a channel's verify token
(`printf %s openmmp-messenger-verify-token | openssl dgst -sha256 -hmac "$APP_SECRET"`)."""
MAX_TIMESTAMP_MS = 2**63 - 1
SECONDS_BEFORE = 10**11
"""A time below this is in seconds (as Meta's newer samples give them), not milliseconds (before 1973)."""

_MEDIA_TYPES: Mapping[str, str] = {"image": "picture", "video": "video", "audio": "file", "file": "file"}


def parse_callback(raw: bytes) -> list[CallbackEvent]:
    """The events of a verified webhook body, in the order they came (possibly none).

    Raises `CallbackRejected` for a body that is not a Page webhook, or names its events in a shape
    OpenMMP cannot read.
    """
    events: list[CallbackEvent] = []
    for entry in entries(raw, "page", "Messenger Page"):
        if not isinstance(entry, dict):
            raise CallbackRejected("webhook entry is not an object")
        for event in webhook_objects(entry.get("messaging"), "messaging"):
            events += _event(event)
    return events


def _event(event: dict[str, Any]) -> list[CallbackEvent]:
    if isinstance(event.get("message"), dict):
        if event["message"].get("is_echo") is True:
            return []
        return _message(event, event["message"])
    if isinstance(event.get("postback"), dict):
        return [_postback(event, event["postback"])]
    if isinstance(event.get("delivery"), dict):
        return _delivery(event, event["delivery"])
    if isinstance(event.get("read"), dict):
        return [_read(event, event["read"])]
    return []


def _party(event: Mapping[str, Any], side: str) -> str:
    """The id of the event's `sender` or `recipient`."""
    party = event.get(side)
    return webhook_id(party.get("id") if isinstance(party, Mapping) else None, f"{side}.id")


def _ms(value: Any, what: str) -> int:
    """Epoch milliseconds from Meta's time: milliseconds, or seconds in newer samples; digits or a number."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMESTAMP_MS:
        raise CallbackRejected(f"{what} is not a time in epoch milliseconds")
    return value * 1000 if value < SECONDS_BEFORE else value


def _inbound(event: dict[str, Any], content: dict[str, Any], dedupe_key: str) -> InboundEvent:
    return InboundEvent(
        kind="message",
        contact=Contact(id=_party(event, "sender")),
        message={**content, "extra": event},
        timestamp_ms=_ms(event.get("timestamp"), "timestamp"),
        dedupe_key=dedupe_key,
        raw=event,
    )


def _message(event: dict[str, Any], message: dict[str, Any]) -> list[CallbackEvent]:
    mid = webhook_id(message.get("mid"), "message.mid")
    parts: list[dict[str, Any]] = []
    text = text_of(message, "text")
    if text:
        parts.append({"type": "text", "message": text})
    parts += [
        _attachment(item) for item in webhook_objects(message.get("attachments"), "message.attachments")
    ]
    if not parts:
        parts.append({"type": "text", "message": ""})
    return [
        _inbound(event, content, f"message:{mid}" if n == 0 else f"message:{mid}:{n}")
        for n, content in enumerate(parts)
    ]


def _attachment(attachment: Mapping[str, Any]) -> dict[str, Any]:
    """The MMP message object (api.md §5.2) of one attachment, `extra` aside."""
    kind = attachment.get("type")
    payload = attachment.get("payload")
    url = text_of(payload, "url")
    if isinstance(kind, str) and kind in _MEDIA_TYPES:
        content: dict[str, Any] = {"type": _MEDIA_TYPES[kind], "message": ""}
        if url:
            content["fileUrl"] = url
        return content
    if kind == "location" and isinstance(payload, Mapping):
        point = payload.get("coordinates")
        if isinstance(point, Mapping):
            location = {"latitude": point.get("lat"), "longitude": point.get("long")}
            return {"type": "location", "message": text_of(attachment, "title"), "location": location}
    return {"type": "text", "message": url or text_of(attachment, "title")}


def _postback(event: dict[str, Any], postback: dict[str, Any]) -> InboundEvent:
    title, payload = text_of(postback, "title"), text_of(postback, "payload")
    mid = postback.get("mid")
    if isinstance(mid, str) and mid:
        key = f"postback:{webhook_id(mid, 'postback.mid')}"
    else:
        when = _ms(event.get("timestamp"), "timestamp")
        key = f"postback:{_party(event, 'sender')}:{when}:{hashlib.sha256(payload.encode()).hexdigest()[:16]}"
    return _inbound(event, {"type": "text", "message": title or payload}, key)


def _watermark(event: dict[str, Any], report: Mapping[str, Any], status: StatusName) -> StatusEvent:
    """A report covering every message to the end user up to its watermark."""
    psid = _party(event, "sender")
    watermark = _ms(report.get("watermark"), f"{status.lower()}.watermark")
    return StatusEvent(
        provider_message_id="",
        status=status,
        timestamp_ms=_ms(event["timestamp"], "timestamp") if "timestamp" in event else watermark,
        dedupe_key=f"{status.lower()}:{psid}:{watermark}",
        raw=event,
        user_id=psid,
        up_to_ms=watermark,
    )


def _delivery(event: dict[str, Any], delivery: dict[str, Any]) -> list[CallbackEvent]:
    mids = delivery.get("mids")
    if not mids:
        return [_watermark(event, delivery, "DELIVERED")]
    if not isinstance(mids, list):
        raise CallbackRejected("delivery.mids is not a list")
    watermark = _ms(delivery.get("watermark"), "delivery.watermark")
    timestamp = _ms(event["timestamp"], "timestamp") if "timestamp" in event else watermark
    return [
        StatusEvent(
            provider_message_id=(mid := webhook_id(item, "delivery.mids[]")),
            status="DELIVERED",
            timestamp_ms=timestamp,
            dedupe_key=f"delivered:{mid}",
            raw=event,
        )
        for item in mids
    ]


def _read(event: dict[str, Any], read: dict[str, Any]) -> StatusEvent:
    return _watermark(event, read, "READ")
