"""Cloud API webhooks: the channel's verify token, and what the bodies mean.

**Proof.** As for every Meta webhook (`meta.webhooks`): signed with the app secret, and the callback URL
checked with a GET handshake against the channel's verify token (`callback_verify_token`), which the
business can compute (README).

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

import time
from collections.abc import Mapping
from typing import Any, Literal

from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    Contact,
    InboundEvent,
    StatusEvent,
    StatusName,
    TemplateEvent,
)
from openmmp.providers.meta.graph import describe
from openmmp.providers.meta.webhooks import entries, text_of, verify_token, webhook_id, webhook_objects
from openmmp.providers.whatsapp.errors import GRAPH
from openmmp.providers.whatsapp.payload import graph_media_url

VERIFY_TOKEN_PURPOSE = b"openmmp-whatsapp-verify-token"
"""What the app secret keys to make a channel's verify token."""
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


def callback_verify_token(app_secret: str) -> str:
    """The channel's `hub.verify_token`: the hex HMAC-SHA256 of "openmmp-whatsapp-verify-token" keyed by its
    app secret (`printf %s openmmp-whatsapp-verify-token | openssl dgst -sha256 -hmac "$APP_SECRET"`): what
    the webhook override hands Meta, and the business enters in its app."""
    return verify_token(app_secret, VERIFY_TOKEN_PURPOSE)


# ---- bodies ------------------------------------------------------------------------------------------------


def parse_callback(raw: bytes) -> list[CallbackEvent]:
    """The events of a verified webhook body, in the order they came (possibly none).

    Raises `CallbackRejected` for a body that is not a WhatsApp Business Account webhook, or names its
    events in a shape OpenMMP cannot read.
    """
    events: list[CallbackEvent] = []
    for entry in entries(raw, "whatsapp_business_account", "WhatsApp Business Account"):
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


def _messages_change(value: dict[str, Any]) -> list[CallbackEvent]:
    events: list[CallbackEvent] = []
    for status in webhook_objects(value.get("statuses"), "statuses"):
        event = _status(status)
        if event is not None:
            events.append(event)
    names = {
        str(contact.get("wa_id")): _profile_name(contact)
        for contact in webhook_objects(value.get("contacts"), "contacts")
    }
    events += [_inbound(message, names) for message in webhook_objects(value.get("messages"), "messages")]
    return events


def _status(status: dict[str, Any]) -> StatusEvent | None:
    name = status.get("status")
    if not isinstance(name, str) or name not in _STATUSES:
        return None
    wamid = webhook_id(status.get("id"), "status id")
    error_code = error_message = None
    if name == "failed":
        errors = webhook_objects(status.get("errors"), "status errors")
        first = errors[0] if errors else {}
        code = first.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            error = GRAPH.code_error(code, describe(first))
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
    wa_id = webhook_id(message.get("from"), "message from")
    wamid = webhook_id(message.get("id"), "message id")
    digits = wa_id if wa_id.isdigit() else ""
    return InboundEvent(
        kind="message",
        contact=Contact(id=wa_id, name=names.get(wa_id, ""), phone=digits),
        message={**_content(message), "extra": message},
        timestamp_ms=_seconds(message.get("timestamp"), "message"),
        dedupe_key=f"message:{wamid}",
        raw=message,
    )


def _content(message: Mapping[str, Any]) -> dict[str, Any]:
    """The MMP message object (api.md §5.2) of an end user's message, `extra` aside."""
    kind = message.get("type")
    if kind == "text":
        return {"type": "text", "message": text_of(message.get("text"), "body")}
    if isinstance(kind, str) and kind in _MEDIA_TYPES:
        media = message.get(kind)
        content: dict[str, Any] = {"type": _MEDIA_TYPES[kind], "message": text_of(media, "caption")}
        media_id = text_of(media, "id")
        if media_id:
            content["fileUrl"] = graph_media_url(media_id)
        if text_of(media, "filename"):
            content["fileName"] = text_of(media, "filename")
        return content
    if kind == "interactive":
        interactive = message.get("interactive")
        reply_kind = text_of(interactive, "type")
        reply = interactive.get(reply_kind) if isinstance(interactive, Mapping) else None
        return {"type": "text", "message": text_of(reply, "title")}
    if kind == "button":
        return {"type": "text", "message": text_of(message.get("button"), "text")}
    if kind == "location":
        place = message.get("location")
        if isinstance(place, Mapping):
            location = {"latitude": place.get("latitude"), "longitude": place.get("longitude")}
            location |= {key: place[key] for key in ("name", "address") if isinstance(place.get(key), str)}
            words = text_of(place, "name") or text_of(place, "address")
            return {"type": "location", "message": words, "location": location}
    if kind == "reaction":
        return {"type": "reaction", "message": text_of(message.get("reaction"), "emoji")}
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
    template_id = webhook_id(value.get("message_template_id"), "message_template_id")
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
    template_id = webhook_id(value.get("message_template_id"), "message_template_id")
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
