"""Cloud API webhooks: the signature, the verification handshake, and what the bodies mean.

**Proof.** Meta signs every webhook with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`,
keyed by the app secret (the channel's `appSecret`), and checks a callback URL once with a GET:
`hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<n>`, answered with the challenge. The verify
token is the channel's own, derived from its app secret (`callback_verify_token`): nothing to configure
or store, different for every app, and the business can compute it (README).

**Meaning.** A body is
`{"object": "whatsapp_business_account", "entry": [{"id", "time"?, "changes": [{"field", "value"}]}]}`;
every entry and change in it counts, so one body may hold several events.

- `messages` changes: `statuses[]` `delivered` → DELIVERED, `read` → READ, `failed` → FAIL with
  `WHATSAPP_<errors[0].code>` and Meta's words; `sent` (OpenMMP records SENT when the send is answered)
  and the others (`deleted`, `warning`, `played`) change nothing. `messages[]` are the end users' messages:
  text, media (`fileUrl` is the media object's Graph API URL, readable with the channel's token), a
  location, a reply to reply buttons or a list (as text: the title, with the id in `extra`), a template's
  quick-reply button (the text, with the payload in `extra`), a reaction; the contact is the `wa_id`
  (conversation id and phone) with the profile name.
- `message_template_status_update` changes: APPROVED (and REINSTATED) → APPROVED; REJECTED, PAUSED and
  DISABLED → REJECTED, with the reason; PENDING and IN_APPEAL → REQUEST; the others change nothing.
- `template_category_update` changes: Meta changed an approved template's category (`previous_category`
  → `new_category`), which the template's form takes on (`changes`), its status unchanged. Meta's
  notices of a change still to come (`correct_category`, with `new_category` the category as it is)
  change nothing, and neither does a category the form does not have.
- Every other field (account and quality updates, ...) changes nothing: answered, so Meta stops
  retrying, and ignored.

Dedupe keys: the wamid and the status for a report, the message's wamid for an inbound message, the
template's id, event and time for a template decision, the template's id, new category and time for a
category change.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    Contact,
    InboundEvent,
    StatusEvent,
    StatusName,
    TemplateEvent,
)
from openmmp.providers.whatsapp.errors import code_error, describe
from openmmp.providers.whatsapp.payload import graph_media_url

SIGNATURE_HEADER = "X-Hub-Signature-256"
VERIFY_TOKEN_PURPOSE = b"openmmp-whatsapp-verify-token"
"""What the app secret keys to make a channel's verify token."""
MAX_ID_LENGTH = 200
MAX_CHALLENGE_LENGTH = 1000
MAX_TIMESTAMP_S = (2**63 - 1) // 1000

_STATUSES: Mapping[str, StatusName] = {"delivered": "DELIVERED", "read": "READ", "failed": "FAIL"}
TEMPLATE_STATUSES: Mapping[str, Literal["APPROVED", "REJECTED", "REQUEST"]] = {
    "APPROVED": "APPROVED",
    "REINSTATED": "APPROVED",
    "REJECTED": "REJECTED",
    "PAUSED": "REJECTED",
    "DISABLED": "REJECTED",
    "PENDING": "REQUEST",
    "IN_APPEAL": "REQUEST",
}
"""Meta's template statuses (and webhook events) as the MMP TemplateStatus they amount to; the others
(PENDING_DELETION, DELETED, FLAGGED, ...) are none."""
TEMPLATE_CATEGORIES = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
_MEDIA_TYPES: Mapping[str, str] = {
    "image": "picture",
    "sticker": "picture",
    "video": "video",
    "document": "file",
    "audio": "file",
}


def sign(raw: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value for `raw` (the simulator's and the tests')."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def verify_signature(raw: bytes, header: str | None, app_secret: str) -> bool:
    """True when `header` is `sha256=` and the app secret's HMAC of exactly these bytes."""
    if not header or not app_secret:
        return False
    return constant_time_equals(sign(raw, app_secret), header.strip().lower())


def callback_verify_token(app_secret: str) -> str:
    """The channel's `hub.verify_token`: the hex HMAC-SHA256 of "openmmp-whatsapp-verify-token" keyed by its
    app secret (`printf %s openmmp-whatsapp-verify-token | openssl dgst -sha256 -hmac "$APP_SECRET"`)."""
    return hmac.new(app_secret.encode(), VERIFY_TOKEN_PURPOSE, hashlib.sha256).hexdigest()


def challenge_answer(query: Mapping[str, str], app_secret: str) -> bytes | None:
    """The body that answers Meta's GET handshake (the challenge), or None when the mode, the token or
    the challenge is wrong."""
    given = query.get("hub.verify_token") or ""
    challenge = query.get("hub.challenge") or ""
    if not app_secret or query.get("hub.mode") != "subscribe":
        return None
    if not challenge or len(challenge) > MAX_CHALLENGE_LENGTH:
        return None
    if not constant_time_equals(callback_verify_token(app_secret), given):
        return None
    return challenge.encode()


# ---- bodies ------------------------------------------------------------------------------------------------


def parse_callback(raw: bytes) -> list[CallbackEvent]:
    """The events of a verified webhook body, in the order they came (possibly none).

    Raises `CallbackRejected` for a body that is not a WhatsApp Business Account webhook, or names its
    events in a shape OpenMMP cannot read.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("callback body is not JSON") from exc
    if not isinstance(body, dict) or body.get("object") != "whatsapp_business_account":
        raise CallbackRejected("not a WhatsApp Business Account webhook (object)")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise CallbackRejected("webhook has no entry list")
    events: list[CallbackEvent] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            raise CallbackRejected("webhook entry has no changes")
        for change in entry["changes"]:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise CallbackRejected("webhook change has no value")
            field, value = change.get("field"), change["value"]
            if field == "messages":
                events += _messages_change(value)
            elif field == "message_template_status_update":
                events += _template_change(value, entry.get("time"))
            elif field == "template_category_update":
                events += _category_change(value, entry.get("time"))
    return events


def _seconds(value: Any, what: str) -> int:
    """Epoch milliseconds from Meta's epoch seconds (a string in `messages`, a number elsewhere)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMESTAMP_S:
        raise CallbackRejected(f"{what} has no timestamp in epoch seconds")
    return value * 1000


def _id(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise CallbackRejected(f"{what} is missing")
    if len(value) > MAX_ID_LENGTH:
        raise CallbackRejected(f"{what} is too long")
    return value


def _list(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise CallbackRejected(f"{what} is not a list of objects")
    return value


def _messages_change(value: dict[str, Any]) -> list[CallbackEvent]:
    events: list[CallbackEvent] = []
    for status in _list(value.get("statuses"), "statuses"):
        event = _status(status)
        if event is not None:
            events.append(event)
    names = {
        str(contact.get("wa_id")): _profile_name(contact)
        for contact in _list(value.get("contacts"), "contacts")
    }
    events += [_inbound(message, names) for message in _list(value.get("messages"), "messages")]
    return events


def _status(status: dict[str, Any]) -> StatusEvent | None:
    name = status.get("status")
    if not isinstance(name, str) or name not in _STATUSES:
        return None
    wamid = _id(status.get("id"), "status id")
    error_code = error_message = None
    if name == "failed":
        errors = _list(status.get("errors"), "status errors")
        first = errors[0] if errors else {}
        code = first.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            error = code_error(code, describe(first))
            error_code, error_message = error.code, error.message
        else:
            error_code, error_message = "WHATSAPP_FAILED", describe(first) or "failed"
    return StatusEvent(
        provider_message_id=wamid,
        status=_STATUSES[name],
        timestamp_ms=_seconds(status.get("timestamp"), "status"),
        dedupe_key=f"{name}:{wamid}",
        raw=status,
        error_code=error_code,
        error_message=error_message,
    )


def _profile_name(contact: Mapping[str, Any]) -> str:
    profile = contact.get("profile")
    name = profile.get("name") if isinstance(profile, Mapping) else None
    return name if isinstance(name, str) else ""


def _inbound(message: dict[str, Any], names: Mapping[str, str]) -> InboundEvent:
    wa_id = _id(message.get("from"), "message from")
    wamid = _id(message.get("id"), "message id")
    digits = wa_id if wa_id.isdigit() else ""
    return InboundEvent(
        kind="message",
        contact=Contact(id=wa_id, name=names.get(wa_id, ""), phone=digits),
        message={**_content(message), "extra": message},
        timestamp_ms=_seconds(message.get("timestamp"), "message"),
        dedupe_key=f"message:{wamid}",
        raw=message,
    )


def _text_of(value: Any, key: str) -> str:
    found = value.get(key) if isinstance(value, Mapping) else None
    return found if isinstance(found, str) else ""


def _content(message: Mapping[str, Any]) -> dict[str, Any]:
    """The MMP message object (api.md §5.2) of an end user's message, `extra` aside."""
    kind = message.get("type")
    if kind == "text":
        return {"type": "text", "message": _text_of(message.get("text"), "body")}
    if isinstance(kind, str) and kind in _MEDIA_TYPES:
        media = message.get(kind)
        content: dict[str, Any] = {"type": _MEDIA_TYPES[kind], "message": _text_of(media, "caption")}
        media_id = _text_of(media, "id")
        if media_id:
            content["fileUrl"] = graph_media_url(media_id)
        if _text_of(media, "filename"):
            content["fileName"] = _text_of(media, "filename")
        return content
    if kind == "interactive":
        interactive = message.get("interactive")
        reply_kind = _text_of(interactive, "type")
        reply = interactive.get(reply_kind) if isinstance(interactive, Mapping) else None
        return {"type": "text", "message": _text_of(reply, "title")}
    if kind == "button":
        return {"type": "text", "message": _text_of(message.get("button"), "text")}
    if kind == "location":
        place = message.get("location")
        if isinstance(place, Mapping):
            location = {"latitude": place.get("latitude"), "longitude": place.get("longitude")}
            location |= {key: place[key] for key in ("name", "address") if isinstance(place.get(key), str)}
            words = _text_of(place, "name") or _text_of(place, "address")
            return {"type": "location", "message": words, "location": location}
    if kind == "reaction":
        return {"type": "reaction", "message": _text_of(message.get("reaction"), "emoji")}
    return {"type": "text", "message": ""}


def template_cause(event: str, reason: Any) -> str:
    """What a company reads of a template's status: Meta's word for it, with Meta's reason when there is
    one (never for an approval, whose reason is "NONE")."""
    return event if not isinstance(reason, str) or reason in ("", "NONE") else f"{event}: {reason}"


def _template_change(value: dict[str, Any], entry_time: Any) -> list[CallbackEvent]:
    event = value.get("event")
    if not isinstance(event, str) or event not in TEMPLATE_STATUSES:
        return []
    status = TEMPLATE_STATUSES[event]
    template_id = _id(value.get("message_template_id"), "message_template_id")
    timestamp, when = _entry_time(entry_time)
    return [
        TemplateEvent(
            template_id=template_id,
            status=status,
            cause=template_cause(event, value.get("reason")),
            timestamp_ms=timestamp,
            dedupe_key=f"template:{template_id}:{event}:{when}",
            raw=value,
        )
    ]


def _category_change(value: dict[str, Any], entry_time: Any) -> list[CallbackEvent]:
    previous, new = value.get("previous_category"), value.get("new_category")
    if not isinstance(previous, str) or not isinstance(new, str) or new not in TEMPLATE_CATEGORIES:
        return []
    template_id = _id(value.get("message_template_id"), "message_template_id")
    timestamp, when = _entry_time(entry_time)
    return [
        TemplateEvent(
            template_id=template_id,
            status=None,
            cause=f"Meta changed the category from {previous} to {new}",
            timestamp_ms=timestamp,
            dedupe_key=f"template:{template_id}:category:{new}:{when}",
            raw=value,
            changes={"category": new},
        )
    ]


def _entry_time(entry_time: Any) -> tuple[int, str]:
    """An account webhook's time in epoch milliseconds, and as its dedupe keys name it ("" when Meta gave
    none: then it is now, and repeats cannot be told apart by it)."""
    if entry_time is None:
        return int(time.time() * 1000), ""
    timestamp = _seconds(entry_time, "template update")
    return timestamp, str(timestamp)
