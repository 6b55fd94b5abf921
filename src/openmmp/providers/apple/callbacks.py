"""What Apple Messages for Business posts to the MSP: its proof, its (maybe compressed) body, its meaning.

**Proof.** Apple's requests carry `Authorization: Bearer <JWT>`, HS256-signed with the MSP secret (as the
MSP's own requests are) and meant for the MSP (`aud` = the MSP id): signature (constant time), audience and
freshness are checked (`auth`). The token proves the sender, not the body (left to TLS). The request's
`Destination-Id` must be the channel's business: every business of an MSP shares its key, and a message
for one must not be taken in by another's channel.

**Body.** JSON, gzip-compressed when Apple chose to (`Content-Encoding: gzip`). The body arrives here as
raw bytes without its headers, so compression is recognised by gzip's magic bytes (JSON never starts
with them), and inflated to at most `INFLATED_MAX_BYTES`: a small compressed body that inflates without
end (a "zip bomb") is refused once it passes that, never held in memory whole.

**Meaning.** `{"v": 1, "id", "sourceId" (the user's opaque id), "destinationId" (the business), "type",
...}`; the conversation is the user's opaque id, which is how sends name them. Apple says nothing about
the user but that id and their `locale` (no name, no phone), and gives no time: events happen when they
arrive.

- `text`: the user wrote → an inbound `text`; with `attachments` (each marked by U+FFFC in the body) an
  inbound `text_with_attachment` whose `attachments` are `{type (MIME), name, size}`. The files are not
  fetched: they are encrypted, and only the MSP can ask Apple for them (`preDownload` with its JWT);
  Apple's dictionaries (url, owner, signature, key) are in `extra`.
- `interactive`: the user answered a list picker or a quick reply of ours → an inbound `text` whose
  `message` is what they picked, as the business named it: the picked items' `value`s (list picker,
  joined by ", " when several) or the reply's identifier (its `postbackData`, else its text), as a
  Telegram button's callback data comes back; `extra` holds Apple's `interactiveData` with the titles.
  Other interactive answers (time picker, Apple Pay, forms: never sent by OpenMMP) are ignored.
- `richLink`: the user sent a link → an inbound `richLink` (`richLinkUrl`, the title as `message`).
- `close`: the user deleted the conversation → `unsubscribed`; sends to them fail (410) until they write
  again.
- `typing_start` / `typing_end`: ignored (MMP has no typing event), as is any type OpenMMP does not know.

Dedupe keys are Apple's message `id` (with its type): Apple retries a request with the same id.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from openmmp.providers.apple import auth
from openmmp.providers.apple.payload import ATTACHMENT_MARK
from openmmp.providers.base import CallbackEvent, CallbackRejected, Contact, InboundEvent

INFLATED_MAX_BYTES = 1024 * 1024
"""The most a compressed body may inflate to; Apple's messages are a few kilobytes."""
GZIP_MAGIC = b"\x1f\x8b"
DESTINATION_HEADER = "destination-id"
IGNORED_TYPES = frozenset({"typing_start", "typing_end"})
_CHUNK = 64 * 1024


def verify_request(
    authorization: str | None, destination: str | None, credentials: Mapping[str, Any]
) -> bool:
    """True when the request's JWT is Apple's for the channel's MSP and it names the channel's business."""
    business = str(credentials.get("businessId") or "")
    msp = str(credentials.get("mspId") or "")
    if not business or not msp or destination is None:
        return False
    try:
        key = auth.msp_key(str(credentials.get("secret") or ""))
        claims = auth.read_token(auth.bearer(authorization), key)
    except (ValueError, auth.TokenRefused):
        return False
    return auth.audience_is(claims, msp) and destination.strip().lower() in (business.strip().lower(),)


def inflate(raw: bytes, *, limit: int = INFLATED_MAX_BYTES) -> bytes:
    """`raw` itself, or inflated when it is gzip (every member, as a gzip stream may hold several), never
    past `limit` bytes. Raises CallbackRejected for a corrupt stream or one that inflates beyond.

    Told by gzip's magic bytes rather than `Content-Encoding` alone: a body that says it is plain and is
    not would otherwise be refused as unreadable, one that is plain is never inflated."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    out = bytearray()
    rest = raw
    try:
        while rest:
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = rest
            while not stream.eof:
                chunk = stream.decompress(pending, _CHUNK)
                out += chunk
                if len(out) > limit:
                    raise CallbackRejected(f"the body inflates to more than {limit} bytes")
                if not chunk and len(stream.unconsumed_tail) >= len(pending):
                    raise CallbackRejected("the gzip body is cut short")
                pending = stream.unconsumed_tail
            rest = stream.unused_data
    except zlib.error as exc:
        raise CallbackRejected("the gzip body is corrupt") from exc
    return bytes(out)


def parse_body(raw: bytes) -> list[CallbackEvent]:
    """The events of a verified request's body (inflated already: `inflate`). Raises CallbackRejected for a
    body that is not Apple's protocol."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise CallbackRejected("the body is not a JSON object")
    message_id, user, kind = (_required(body, name) for name in ("id", "sourceId", "type"))
    if kind in IGNORED_TYPES:
        return []
    found = _content(kind, body)
    if found is None:
        return []
    inbound, content = found
    return [
        InboundEvent(
            kind="unsubscribed" if inbound == "close" else "message",
            contact=_contact(user, body),
            message={**content, "extra": body},
            timestamp_ms=int(time.time() * 1000),
            dedupe_key=f"{message_id}:{kind}",
            raw=body,
        )
    ]


def _required(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise CallbackRejected(f"the body has no {name}")
    return value


def _contact(user: str, body: Mapping[str, Any]) -> Contact:
    """The user as Apple describes them: their opaque id, and the language and country of their locale
    (`en_US`), when the message says it."""
    locale = body.get("locale")
    parts = locale.replace("-", "_").split("_") if isinstance(locale, str) else []
    language = parts[0].lower() if parts and parts[0].isalpha() and len(parts[0]) <= 8 else ""
    region = parts[-1] if len(parts) > 1 else ""
    country = region.upper() if region.isalpha() and len(region) == 2 else ""
    return Contact(id=user, language=language, country=country)


def _content(kind: str, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(what happened, the MMP message object without `extra`), or None for what OpenMMP ignores."""
    if kind == "close":
        return "close", {"type": "UNSUBSCRIBED", "message": ""}
    if kind == "text":
        return "message", _text(body)
    if kind == "interactive":
        picked = _picked(body.get("interactiveData"))
        return None if picked is None else ("message", {"type": "text", "message": picked})
    if kind == "richLink":
        link = body.get("richLinkData")
        url = link.get("url") if isinstance(link, Mapping) else None
        if not isinstance(url, str) or not url:
            return None
        title = link.get("title") if isinstance(link, Mapping) else None
        return "message", {
            "type": "richLink",
            "richLinkUrl": url,
            "message": title if isinstance(title, str) else "",
        }
    return None


def _text(body: Mapping[str, Any]) -> dict[str, Any]:
    text = body.get("body")
    text = text if isinstance(text, str) else ""
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return {"type": "text", "message": text}
    described = []
    for attachment in attachments:
        if not isinstance(attachment, Mapping):
            raise CallbackRejected("an attachment is not an object")
        item: dict[str, Any] = {
            "type": str(attachment.get("mimeType") or ""),
            "name": str(attachment.get("name") or ""),
        }
        size = attachment.get("size")
        if isinstance(size, int) and not isinstance(size, bool):
            item["size"] = size
        described.append(item)
    return {
        "type": "text_with_attachment",
        "message": text.replace(ATTACHMENT_MARK, "").strip(),
        "attachments": described,
    }


def _picked(interactive: Any) -> str | None:
    """What the user picked in a list picker or a quick reply of ours; None for other answers."""
    data = interactive.get("data") if isinstance(interactive, Mapping) else None
    if not isinstance(data, Mapping):
        raise CallbackRejected("an interactive message without interactiveData.data")
    quick = data.get("quick-reply")
    if isinstance(quick, Mapping):
        identifier = quick.get("selectedIdentifier")
        return identifier if isinstance(identifier, str) else None
    picker = data.get("listPicker")
    if isinstance(picker, Mapping):
        sections = picker.get("sections")
        identifiers = [
            str(item["identifier"])
            for section in (sections if isinstance(sections, list) else [])
            if isinstance(section, Mapping) and isinstance(section.get("items"), list)
            for item in section["items"]
            if isinstance(item, Mapping) and isinstance(item.get("identifier"), str)
        ]
        return ", ".join(identifiers) if identifiers else None
    return None
