"""Zalo OA webhooks: what the bodies mean (the signature is `webhooks.verify_zalo`'s).

A body is one event: `{app_id, event_name, sender: {id}, recipient: {id}, user_id_by_app, message, timestamp}`
(a follow: `{oa_id, follower: {id}, source, ...}`); every id and time is a string (they exceed 2^53), the
time in epoch milliseconds. The end user is the follower's id by the OA (`sender.id` for what they do,
`recipient.id` for what the OA sent them): the conversation sends go to.

- `user_send_text`: an inbound text. `user_send_image` and `user_send_gif` → picture, `user_send_video` →
  video, `user_send_audio` and `user_send_file` → file (`fileUrl`, and a file's `fileName`, `fileSize`),
  `user_send_sticker` → picture (the sticker's image), `user_send_location` → location, `user_send_link` →
  text with the link, `user_send_business_card` → text; with the message's `text` as caption. The message
  is the attachment's when the event carries one, else the text. Tapping an `oa.query.show` button sends
  its payload as a `user_send_text`.
- `user_submit_info`: the end user shared their details (asked with a `request_user_info` message): an
  inbound text of them, and the contact's name and phone.
- `follow` / `unfollow`: subscribed / unsubscribed.
- `user_received_message`: DELIVERED; `user_seen_message`: READ, one report per id of `message.msg_ids`
  (a received event may name one `message.msg_id` instead).
- anything else (the OA's own sends echoed as `oa_send_*`, group events, ZNS's template and quota events)
  changes nothing here: answered, so Zalo stops retrying, and ignored.

Dedupe keys, equal for Zalo's retries of one event: the event's name and message id; for a report, the
status and message id; for a follow or shared details, the name, user and time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    Contact,
    InboundEvent,
    InboundKind,
    StatusEvent,
    StatusName,
)

MAX_ID_LENGTH = 200
MAX_TIMESTAMP_MS = 2**63 - 1

_MEDIA: Mapping[str, str] = {
    "image": "picture",
    "gif": "picture",
    "sticker": "picture",
    "video": "video",
    "audio": "file",
    "file": "file",
}
_REPORTS: Mapping[str, StatusName] = {"user_received_message": "DELIVERED", "user_seen_message": "READ"}
_MEMBERSHIP: Mapping[str, tuple[InboundKind, str]] = {
    "follow": ("subscribed", "SUBSCRIBED"),
    "unfollow": ("unsubscribed", "UNSUBSCRIBED"),
}
_INFO_FIELDS = ("name", "phone", "address", "ward", "district", "city")


def parse_event(raw: bytes) -> list[CallbackEvent]:
    """The events of a verified webhook body (possibly none).

    Raises `CallbackRejected` for a body that is not a Zalo event, or names its event in a shape OpenMMP
    cannot read.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("webhook body is not JSON") from exc
    if not isinstance(body, dict):
        raise CallbackRejected("webhook body is not a JSON object")
    name = body.get("event_name")
    if not isinstance(name, str) or not name:
        raise CallbackRejected("webhook has no event_name")
    if name in _REPORTS:
        return list(_reports(body, _REPORTS[name]))
    if name in _MEMBERSHIP:
        return [_membership(body, *_MEMBERSHIP[name])]
    if name == "user_submit_info":
        return [_submitted(body)]
    if name.startswith("user_send_"):
        return [_message(body, name)]
    return []


def _id(value: Any, what: str) -> str:
    """An id of the body: a string (or a number, tolerated) of at most `MAX_ID_LENGTH` characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise CallbackRejected(f"{what} is missing")
    if len(value) > MAX_ID_LENGTH:
        raise CallbackRejected(f"{what} is too long")
    return value


def _party(body: Mapping[str, Any], side: str) -> str:
    found = body.get(side)
    return _id(found.get("id") if isinstance(found, Mapping) else None, f"{side}.id")


def _timestamp(body: Mapping[str, Any]) -> int:
    value = body.get("timestamp")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMESTAMP_MS:
        raise CallbackRejected("timestamp is not a time in epoch milliseconds")
    return value


def _string(container: Any, key: str) -> str:
    found = container.get(key) if isinstance(container, Mapping) else None
    if isinstance(found, int | float) and not isinstance(found, bool):
        return str(found)
    return found if isinstance(found, str) else ""


def _message_object(body: Mapping[str, Any]) -> Mapping[str, Any]:
    found = body.get("message")
    if not isinstance(found, Mapping):
        raise CallbackRejected("message is not an object")
    return found


def _reports(body: Mapping[str, Any], status: StatusName) -> list[StatusEvent]:
    message = _message_object(body)
    ids = message.get("msg_ids")
    if ids is None and "msg_id" in message:
        ids = [message["msg_id"]]
    if not isinstance(ids, list) or not ids:
        raise CallbackRejected("message.msg_ids is not a list of ids")
    when = _timestamp(body)
    word = status.lower()
    return [
        StatusEvent(
            provider_message_id=(mid := _id(item, "message.msg_ids[]")),
            status=status,
            timestamp_ms=when,
            dedupe_key=f"{word}:{mid}",
            raw=body,
        )
        for item in ids
    ]


def _membership(body: Mapping[str, Any], kind: InboundKind, mmp_type: str) -> InboundEvent:
    follower = body.get("follower")
    user = _id(follower.get("id") if isinstance(follower, Mapping) else None, "follower.id")
    when = _timestamp(body)
    return InboundEvent(
        kind=kind,
        contact=Contact(id=user),
        message={"type": mmp_type, "message": "", "extra": body},
        timestamp_ms=when,
        dedupe_key=f"{body['event_name']}:{user}:{when}",
        raw=body,
    )


def _submitted(body: Mapping[str, Any]) -> InboundEvent:
    user = _party(body, "sender")
    info = body.get("info")
    if not isinstance(info, Mapping):
        raise CallbackRejected("info is not an object")
    when = _timestamp(body)
    said = ", ".join(value for value in (_string(info, key) for key in _INFO_FIELDS) if value)
    phone = "".join(ch for ch in _string(info, "phone") if ch.isdigit())
    return InboundEvent(
        kind="message",
        contact=Contact(id=user, name=_string(info, "name"), phone=phone),
        message={"type": "text", "message": said, "extra": body},
        timestamp_ms=when,
        dedupe_key=f"user_submit_info:{user}:{when}",
        raw=body,
    )


def _message(body: Mapping[str, Any], name: str) -> InboundEvent:
    user = _party(body, "sender")
    message = _message_object(body)
    mid = _id(message.get("msg_id"), "message.msg_id")
    text = _string(message, "text")
    attachments = message.get("attachments")
    first = attachments[0] if isinstance(attachments, list) and attachments else None
    content = _attachment(first, text) if isinstance(first, Mapping) else {"type": "text", "message": text}
    return InboundEvent(
        kind="message",
        contact=Contact(id=user),
        message={**content, "extra": body},
        timestamp_ms=_timestamp(body),
        dedupe_key=f"{name}:{mid}",
        raw=body,
    )


def _attachment(attachment: Mapping[str, Any], text: str) -> dict[str, Any]:
    """The MMP message object (api.md §5.2, `extra` aside) of what the end user sent."""
    kind = _string(attachment, "type")
    payload = attachment.get("payload")
    url = _string(payload, "url")
    if kind in _MEDIA:
        content: dict[str, Any] = {"type": _MEDIA[kind], "message": text}
        if url:
            content["fileUrl"] = url
        if kind == "file":
            name, size = _string(payload, "name"), _string(payload, "size")
            if name:
                content["fileName"] = name
            if size.isascii() and size.isdigit():
                content["fileSize"] = int(size)
        return content
    if kind == "location" and isinstance(payload, Mapping):
        point = payload.get("coordinates")
        location = {
            "latitude": _number(_string(point, "latitude")),
            "longitude": _number(_string(point, "longitude")),
        }
        if location["latitude"] is not None and location["longitude"] is not None:
            return {"type": "location", "message": text, "location": location}
    said = text or url or _string(payload, "description")
    return {"type": "text", "message": said}


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
