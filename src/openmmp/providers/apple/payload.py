"""MMP message objects as Apple Messages for Business messages, and the checks that go with them.

The mapping is also the provider's accept-time check (`Provider.check_message`): pure, quick, raising
ValueError whose text starts with the MMP field at fault. What each type becomes (the body's `type` and
its own fields; `v`, `id`, `sourceId` and `destinationId` are the client's):

- `text` → `text` with `message` as its `body`.
- `text_with_attachment` → `text` whose `body` is `message` followed by one U+FFFC (Apple's mark for "an
  attachment here") per attachment, and `attachments` (Apple's attachment dictionaries). Apple takes no
  file by URL: each file is fetched, encrypted (AES-256-CTR) and uploaded to Apple before the send
  (`client`), so here they are only named (`AttachmentRef`) and checked as far as can be done without
  fetching them (the declared `size`).
- `richLink` → `richLink` with `richLinkData{url, title}`: `richLinkUrl`, titled by `message` (else the
  URL's host). No preview image: Apple wants it inline as base64, which a URL does not give.
- `location` → Apple has no location message for businesses: a rich link to Apple Maps
  (`https://maps.apple.com/?ll=<lat>,<lon>&q=<name>`), which opens Maps at the place on the user's
  device, titled by `message`, else the place's name, address or coordinates.
- `quickReply` → `interactive` with `data["quick-reply"]{summaryText, items}`: `message` is the summary
  text, and the `suggestions` (2 to 5, all `reply`) the items, each `{identifier, title}` with the
  suggestion's `postbackData` (else its `text`) as identifier: that is what comes back when the user picks
  it (`callbacks`).
- `listPicker` → `interactive` with `data.listPicker{sections}`: one section titled by `message` (its
  `multipleSelection` is `allowMultiple`), whose items are the `listPicker` entries, `value` as
  identifier; `receivedMessage` (the bubble the user taps) and `replyMessage` (shown once they answered)
  are titled by `message`. An item's `image` is refused: Apple wants images inline as base64 in the
  interactive data, which is limited to 10 KB (larger data goes through an encrypted pre-upload,
  `interactiveDataRef`, that OpenMMP does not do).

Limits: Apple's interactive UI strings (titles, subtitles, summary text) at most 200 characters, and so
the identifiers that name the items (a `value`, a `postbackData`), unique within their message since they
say what was picked; 2 to 5 quick replies; interactive data at most 10 KB inline. Apple publishes no
limit of its own for a text's length: the MMP API's 10,000 characters hold. Attachments: at most 10 (the
MMP API's), each at most `ATTACHMENT_MAX_BYTES` (Apple takes 100 MB; the platform fetches each file into
memory to encrypt it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from openmmp.providers.content import list_field, message_type, text_field, url_field

SUPPORTED_TYPES = frozenset(
    {"text", "text_with_attachment", "richLink", "listPicker", "quickReply", "location"}
)
ON = "Apple Messages for Business"
BID = (
    "com.apple.messages.MSMessageExtensionBalloonPlugin:0000000000:"
    "com.apple.icloud.apps.messages.business.extension"
)
"""The iMessage extension of Apple's own interactive messages (list picker, quick reply, ...)."""
INTERACTIVE_VERSION = "1.0"
TEXT_MAX = 10_000
UI_TEXT_MAX = 200
QUICK_REPLY_MIN = 2
QUICK_REPLY_MAX = 5
INTERACTIVE_MAX_BYTES = 10 * 1024
ATTACHMENTS_MAX = 10
ATTACHMENT_MAX_BYTES = 16 * 1024 * 1024
ATTACHMENT_MARK = "\ufffc"
"""U+FFFC OBJECT REPLACEMENT CHARACTER: where an attachment shows in a text's body."""
MAPS_URL = "https://maps.apple.com/"


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """A file the message names, to be fetched, encrypted and uploaded before the send."""

    field: str
    url: str
    name: str
    mime_type: str


@dataclass(frozen=True, slots=True)
class AppleMessage:
    """What a send puts in the body besides the envelope, and the files to upload first (their
    dictionaries go into `body["attachments"]`, in order)."""

    body: dict[str, Any]
    attachments: tuple[AttachmentRef, ...] = ()


def to_apple(content: Mapping[str, Any], *, request_identifier: str) -> AppleMessage:
    """Map an MMP message object (api.md §3, placeholders rendered) to the Apple message that sends it.

    `request_identifier` names an interactive message's request (Apple recommends a UUID); the user's
    answer carries it back. Raises ValueError naming the MMP field when the message cannot go as it is.
    """
    kind = message_type(content, SUPPORTED_TYPES, on=ON)
    if content.get("suggestions") and kind != "quickReply":
        raise ValueError(f"message.suggestions: {ON} takes suggestions only as a quickReply's items")
    if content.get("attachments") and kind != "text_with_attachment":
        raise ValueError(f"message.attachments: {ON} takes attachments only with text_with_attachment")
    if kind == "text":
        return AppleMessage({"type": "text", "body": _text(content, required=True)})
    if kind == "text_with_attachment":
        return _with_attachments(content)
    if kind == "richLink":
        url = url_field(content.get("richLinkUrl"), "message.richLinkUrl", on=ON)
        title = _ui_text(content.get("message"), "message.message") or _clip(urlsplit(url).hostname or url)
        return AppleMessage({"type": "richLink", "richLinkData": {"url": url, "title": title}})
    if kind == "location":
        return _location(content)
    if kind == "quickReply":
        data = {"quick-reply": _quick_reply(content)}
        return AppleMessage(_interactive(data, request_identifier, field="message.suggestions"))
    return _list_picker(content, request_identifier)


def _text(content: Mapping[str, Any], *, required: bool) -> str:
    text = text_field(content.get("message"), "message.message", TEXT_MAX, on=ON, required=required)
    if ATTACHMENT_MARK in text:
        raise ValueError(f"message.message: U+FFFC marks an attachment's place on {ON}; not in the text")
    return text


def _ui_text(value: Any, field: str, *, required: bool = False) -> str:
    return text_field(value, field, UI_TEXT_MAX, on=ON, required=required).strip()


def _clip(text: str) -> str:
    return text if len(text) <= UI_TEXT_MAX else text[: UI_TEXT_MAX - 1] + "…"


def _with_attachments(content: Mapping[str, Any]) -> AppleMessage:
    text = _text(content, required=False)
    attachments = list_field(content.get("attachments"), "message.attachments")
    if not attachments:
        raise ValueError(f"message.attachments: required (1 to {ATTACHMENTS_MAX} files)")
    if len(attachments) > ATTACHMENTS_MAX:
        raise ValueError(f"message.attachments: at most {ATTACHMENTS_MAX} on {ON}")
    refs = tuple(_attachment(item, f"message.attachments[{index}]") for index, item in enumerate(attachments))
    marks = ATTACHMENT_MARK * len(refs)
    body = f"{text}\n{marks}" if text else marks
    if len(body) > TEXT_MAX:
        raise ValueError(f"message.message: at most {TEXT_MAX - len(refs) - 1} characters with attachments")
    return AppleMessage({"type": "text", "body": body}, refs)


def _attachment(item: Any, field: str) -> AttachmentRef:
    if not isinstance(item, Mapping):
        raise ValueError(f"{field}: must be an object")
    url = url_field(item.get("url"), f"{field}.url", on=ON)
    mime_type = text_field(item.get("type"), f"{field}.type", 100, on=ON, required=True).strip().lower()
    major, _, minor = mime_type.partition("/")
    if not major or not minor or any(ch.isspace() or ch == ";" for ch in mime_type):
        raise ValueError(f"{field}.type: a MIME type such as image/png")
    name = text_field(item.get("name"), f"{field}.name", 200, on=ON, required=True).strip()
    if any(ch in name for ch in "/\\") or any(ord(ch) < 32 for ch in name):
        raise ValueError(f"{field}.name: a file name, without a path or control characters")
    size = item.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"{field}.size: must be a number of bytes")
    if isinstance(size, int) and size > ATTACHMENT_MAX_BYTES:
        raise ValueError(f"{field}.size: at most {ATTACHMENT_MAX_BYTES // (1024 * 1024)} MB per file on {ON}")
    return AttachmentRef(field=field, url=url, name=name, mime_type=mime_type)


def _location(content: Mapping[str, Any]) -> AppleMessage:
    place = content.get("location")
    if not isinstance(place, Mapping):
        raise ValueError("message.location: required")
    latitude = _coordinate(place.get("latitude"), "message.location.latitude", 90)
    longitude = _coordinate(place.get("longitude"), "message.location.longitude", 180)
    name = _place_text(place.get("name"), "message.location.name")
    address = _place_text(place.get("address"), "message.location.address")
    coordinates = f"{latitude:.6f},{longitude:.6f}"
    query = name or address
    url = f"{MAPS_URL}?ll={coordinates}" + (f"&q={quote(query, safe='')}" if query else "")
    title = _ui_text(content.get("message"), "message.message") or _clip(name or address or coordinates)
    return AppleMessage({"type": "richLink", "richLinkData": {"url": url, "title": title}})


def _coordinate(value: Any, field: str, bound: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field}: required, a number")
    if not -bound <= value <= bound:
        raise ValueError(f"{field}: between -{bound} and {bound}")
    return float(value)


def _place_text(value: Any, field: str) -> str:
    return text_field(value, field, 500, on=ON).strip()


def _quick_reply(content: Mapping[str, Any]) -> dict[str, Any]:
    summary = _ui_text(content.get("message"), "message.message", required=True)
    suggestions = list_field(content.get("suggestions"), "message.suggestions")
    if not QUICK_REPLY_MIN <= len(suggestions) <= QUICK_REPLY_MAX:
        raise ValueError(f"message.suggestions: {QUICK_REPLY_MIN} to {QUICK_REPLY_MAX} replies on {ON}")
    items: list[dict[str, str]] = []
    for index, suggestion in enumerate(suggestions):
        field = f"message.suggestions[{index}]"
        if not isinstance(suggestion, Mapping):
            raise ValueError(f"{field}: must be an object")
        if suggestion.get("action") != "reply":
            raise ValueError(f"{field}.action: {ON} quick replies are replies only")
        title = _ui_text(suggestion.get("text"), f"{field}.text", required=True)
        postback = text_field(suggestion.get("postbackData"), f"{field}.postbackData", UI_TEXT_MAX, on=ON)
        items.append({"identifier": postback.strip() or title, "title": title})
    _unique([item["identifier"] for item in items], "message.suggestions", "postbackData (or text)")
    return {"summaryText": summary, "items": items}


def _list_picker(content: Mapping[str, Any], request_identifier: str) -> AppleMessage:
    title = _ui_text(content.get("message"), "message.message", required=True)
    entries = list_field(content.get("listPicker"), "message.listPicker")
    if not entries:
        raise ValueError("message.listPicker: required (the items to pick from)")
    allow_multiple = content.get("allowMultiple")
    if allow_multiple is not None and not isinstance(allow_multiple, bool):
        raise ValueError("message.allowMultiple: must be true or false")
    items: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        field = f"message.listPicker[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{field}: must be an object")
        if entry.get("image"):
            raise ValueError(
                f"{field}.image: not supported on {ON} (its images go inline as base64 in at most 10 KB)"
            )
        item: dict[str, Any] = {
            "identifier": _ui_text(entry.get("value"), f"{field}.value", required=True),
            "title": _ui_text(entry.get("title"), f"{field}.title", required=True),
        }
        subtitle = _ui_text(entry.get("subtitle"), f"{field}.subtitle")
        if subtitle:
            item["subtitle"] = subtitle
        item |= {"order": index, "style": "default"}
        items.append(item)
    _unique([item["identifier"] for item in items], "message.listPicker", "value")
    section = {"title": title, "order": 0, "multipleSelection": bool(allow_multiple), "items": items}
    bubble = {"title": title, "style": "icon"}
    bubbles = {"receivedMessage": bubble, "replyMessage": dict(bubble)}
    payload = {"listPicker": {"sections": [section]}}
    return AppleMessage(_interactive(payload, request_identifier, field="message.listPicker", **bubbles))


def _unique(identifiers: list[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for index, identifier in enumerate(identifiers):
        if identifier in seen:
            raise ValueError(f"{field}[{index}]: its {what} repeats another's; a pick must say which it was")
        seen.add(identifier)


def _interactive(
    payload: dict[str, Any], request_identifier: str, *, field: str, **bubbles: dict[str, Any]
) -> dict[str, Any]:
    """An `interactive` body of Apple's own extension: `payload` in its data, `bubbles` beside."""
    data = {"version": INTERACTIVE_VERSION, "requestIdentifier": request_identifier, **payload}
    interactive = {"bid": BID, "data": data, **bubbles}
    size = len(orjson.dumps(interactive))
    if size > INTERACTIVE_MAX_BYTES:
        limit = INTERACTIVE_MAX_BYTES // 1024
        raise ValueError(f"{field}: {size} bytes of interactive data; {ON} takes at most {limit} KB")
    return {"type": "interactive", "interactiveData": interactive}
