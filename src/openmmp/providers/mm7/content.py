"""MMP message objects as MMS content: what can be checked at accept time, the media fetch, the MIME.

An MMS is a SMIL presentation with its parts: the text (`message`) and the media, one slide each. What
each type takes:

| type | text (`message`) | media |
|---|---|---|
| `text` | required | none |
| `picture` | optional caption | `fileUrl`, an image |
| `video` | optional caption | `fileUrl`, a video |
| `file` | optional caption | `fileUrl`, an image, video or audio clip (handsets show nothing else) |
| `text_with_attachment` | required | `attachments[]`, 1 to 5, each an image, video or audio (`type`) |

Limits, chosen for what MMSCs and handsets take: text at most 5,000 characters, `subject` at most 40
(what handsets show in a notification), content (text and media together) at most 600 KB — the common
ceiling of MMSCs for a message to any handset. `fileSize` and attachment `size`, when given, are
checked at accept time; the media themselves only when the provider fetches them to send, since the
accept-time check must be quick and must not reach out.

The media are fetched at each attempt, through the HTTP client the provider hands over (checked
against private addresses outside sandbox mode). A fetch that may pass (no answer, HTTP 5xx, 408, 429)
is retryable; a media server that refuses (4xx), redirects (never followed), or serves something too
large or not image, video or audio is final, with the field at fault in the message.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from openmmp.kit.http import ADDRESS_REFUSED, HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderError
from openmmp.providers.mm7 import mime

TEXT_MAX_CHARS = 5000
SUBJECT_MAX_CHARS = 40
MAX_CONTENT_BYTES = 600 * 1024
MAX_ATTACHMENTS = 5
CONTENT_ID = "mms-content"

_MEDIA_KINDS: Mapping[str, tuple[str, ...]] = {
    "picture": ("image",),
    "video": ("video",),
    "file": ("image", "video", "audio"),
    "text_with_attachment": ("image", "video", "audio"),
}
_KIND_WORDS = {"image": "an image", "video": "a video", "audio": "an audio clip"}
_RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media file the message names: where (`field`, for error messages), its URL, a name for it, and
    what kinds it may be (`image`, `video`, `audio`)."""

    field: str
    url: str
    name: str
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Media:
    """A fetched media file: its `type/subtype`, bytes and a header-safe file name."""

    media_type: str
    data: bytes
    name: str


# ---- accept time ---------------------------------------------------------------------------------------


def check(content: Mapping[str, Any]) -> None:
    """Raise ValueError("<field>: <what is wrong>") when `content` cannot go as an MMS."""
    text_of(content)
    subject_of(content)
    media_refs(content)


def text_of(content: Mapping[str, Any]) -> str:
    """The text part (`message`); required for `text` and `text_with_attachment`."""
    text = content.get("message")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ValueError("message.message: must be a string")
    if not text and content.get("type") in ("text", "text_with_attachment"):
        raise ValueError("message.message: required")
    if len(text) > TEXT_MAX_CHARS:
        raise ValueError(f"message.message: at most {TEXT_MAX_CHARS} characters on MMS")
    return text


def subject_of(content: Mapping[str, Any]) -> str | None:
    """The MMS subject: the send request's `subject`, which the core puts into the content."""
    subject = content.get("subject")
    if subject is None or subject == "":
        return None
    if not isinstance(subject, str):
        raise ValueError("subject: must be a string")
    if len(subject) > SUBJECT_MAX_CHARS:
        raise ValueError(f"subject: at most {SUBJECT_MAX_CHARS} characters on MMS")
    if any(ord(char) < 32 for char in subject):
        raise ValueError("subject: must be one line")
    return subject


def media_refs(content: Mapping[str, Any]) -> list[MediaRef]:
    """The media the message names, checked as far as that is possible without fetching them."""
    kind = content.get("type")
    if content.get("suggestions"):
        raise ValueError("message.suggestions: MMS has no buttons")
    if kind == "text_with_attachment":
        _unused(content, "fileUrl", kind)
        return _attachments(content.get("attachments"))
    _unused(content, "attachments", kind)
    if kind == "text":
        _unused(content, "fileUrl", kind)
        return []
    kinds = _MEDIA_KINDS.get(str(kind))
    if kinds is None:
        raise ValueError(f"message.type: {kind!r} is not sent as MMS")
    url = content.get("fileUrl")
    if not isinstance(url, str) or not url:
        raise ValueError("message.fileUrl: required")
    size = content.get("fileSize")
    if isinstance(size, int) and not isinstance(size, bool) and size > MAX_CONTENT_BYTES:
        raise ValueError(f"message.fileSize: at most {MAX_CONTENT_BYTES // 1024} KB on MMS")
    name = content.get("fileName")
    return [MediaRef("message.fileUrl", url, name if isinstance(name, str) else "", kinds)]


def _unused(content: Mapping[str, Any], field: str, kind: Any) -> None:
    # Dropping what the sender gave would lose content silently.
    if content.get(field):
        raise ValueError(f"message.{field}: not used by a {kind} MMS")


def _attachments(value: Any) -> list[MediaRef]:
    if not isinstance(value, list) or not value:
        raise ValueError("message.attachments: required (1 to 5 images, videos or audio clips)")
    if len(value) > MAX_ATTACHMENTS:
        raise ValueError(f"message.attachments: at most {MAX_ATTACHMENTS} on MMS")
    refs, declared = [], 0
    for index, attachment in enumerate(value):
        field = f"message.attachments[{index}]"
        if not isinstance(attachment, Mapping):
            raise ValueError(f"{field}: must be an object")
        kind = mime.media_type(str(attachment.get("type") or "")).partition("/")[0]
        if kind not in _KIND_WORDS:
            raise ValueError(f"{field}.type: MMS carries images, video and audio only")
        url = attachment.get("url")
        if not isinstance(url, str) or not url:
            raise ValueError(f"{field}.url: required")
        size = attachment.get("size")
        if isinstance(size, int) and not isinstance(size, bool):
            declared += size
        name = attachment.get("name")
        refs.append(MediaRef(f"{field}.url", url, name if isinstance(name, str) else "", (kind,)))
    if declared > MAX_CONTENT_BYTES:
        raise ValueError(f"message.attachments: together at most {MAX_CONTENT_BYTES // 1024} KB on MMS")
    return refs


# ---- send time -------------------------------------------------------------------------------------------


async def fetch_all(
    http_for: Callable[[str], HttpClient], refs: Sequence[MediaRef], *, timeout: float, text_bytes: int
) -> list[Media]:
    """Fetch every media file at once (one `timeout` for all); ProviderError when one cannot be used or
    when they and the text (`text_bytes`) are together larger than an MMS takes.

    `http_for(url)` is the client to fetch `url` with.
    """
    if not refs:
        return []
    found = await asyncio.gather(
        *(fetch(http_for(ref.url), ref, timeout=timeout) for ref in refs), return_exceptions=True
    )
    media: list[Media] = []
    for outcome in found:
        if isinstance(outcome, BaseException):
            raise outcome
        media.append(outcome)
    total = text_bytes + sum(len(item.data) for item in media)
    if total > MAX_CONTENT_BYTES:
        raise _too_large(total)
    return media


async def fetch(http: HttpClient, ref: MediaRef, *, timeout: float) -> Media:
    """One media file, checked: an answer of 2xx, at most the content limit, of a kind `ref` allows."""
    try:
        response = await http.get(ref.url, timeout=timeout)
    except HttpUnreachable as exc:
        if exc.kind == ADDRESS_REFUSED:
            raise ProviderError(
                "MM7_MEDIA_REFUSED", f"{ref.field}: not fetched, {exc.detail}", retryable=False
            ) from exc
        what = "did not answer in time" if exc.timed_out else "could not be reached"
        raise ProviderError("MM7_MEDIA_UNREACHABLE", f"{ref.field}: {what}", retryable=True) from exc
    code = response.status_code
    if not 200 <= code < 300:
        passing = code >= 500 or code in _RETRY_STATUSES
        hint = " (redirects are not followed: give the media's own URL)" if 300 <= code < 400 else ""
        raise ProviderError(
            f"MM7_MEDIA_HTTP_{code}",
            f"{ref.field}: the media server answered HTTP {code}{hint}",
            retryable=passing,
        )
    if len(response.content) > MAX_CONTENT_BYTES:
        raise _too_large(len(response.content), ref.field)
    name = _name(ref)
    found = _media_type(response.headers.get("content-type"), name)
    kind = found.partition("/")[0]
    if kind not in ref.kinds:
        wanted = " or ".join(_KIND_WORDS[k] for k in ref.kinds)
        raise ProviderError(
            "MM7_MEDIA_TYPE",
            f"{ref.field}: {wanted} expected, the media server sent {found or 'no media type'}",
            retryable=False,
        )
    return Media(found, response.content, name)


def _too_large(size: int, field: str = "message") -> ProviderError:
    return ProviderError(
        "MM7_CONTENT_TOO_LARGE",
        f"{field}: the MMS content would be {size // 1024} KB; at most {MAX_CONTENT_BYTES // 1024} KB",
        retryable=False,
    )


def _name(ref: MediaRef) -> str:
    given = ref.name or urlsplit(ref.url).path.rsplit("/", 1)[-1]
    return mime.safe_name(given, "media")


def _media_type(content_type: str | None, name: str) -> str:
    """The media's type: as the server says, else (none, or the generic octet-stream) by its name."""
    said = mime.media_type(content_type)
    if said and said != "application/octet-stream":
        return said
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return mime.media_type(guessed) or said


# ---- the MIME -------------------------------------------------------------------------------------------


def mms(text: str, media: Sequence[Media]) -> mime.Part:
    """The MMS as a `multipart/related` part (Content-ID `mms-content`): SMIL first, then the text and
    the media, each with a Content-ID the SMIL names."""
    parts: list[mime.Part] = []
    if text:
        parts.append(mime.Part("text/plain; charset=utf-8", text.encode("utf-8"), "text", "text.txt"))
    for number, item in enumerate(media, start=1):
        location = item.name if "." in item.name else f"{item.name}{_extension(item.media_type)}"
        parts.append(mime.Part(item.media_type, item.data, f"media{number}", location))
    smil = mime.Part("application/smil; charset=utf-8", _smil(text, media), "smil", "mms.smil")
    return mime.related([smil, *parts], start=smil, root_type="application/smil", content_id=CONTENT_ID)


def _extension(media_type: str) -> str:
    return mimetypes.guess_extension(media_type, strict=False) or ""


def _smil(text: str, media: Sequence[Media]) -> bytes:
    """One slide per media file (the text on the first), or one slide of text."""
    text_ref = '<text src="cid:text" region="Text"/>' if text else ""
    slides = []
    for number, item in enumerate(media, start=1):
        element = {"image": "img", "video": "video", "audio": "audio"}[item.media_type.partition("/")[0]]
        region = "" if element == "audio" else ' region="Image"'
        # Stills stay on screen 8 s; video and audio play for their own length.
        duration = ' dur="8000ms"' if element == "img" else ""
        caption = text_ref if number == 1 else ""
        slides.append(f'<par{duration}><{element} src="cid:media{number}"{region}/>{caption}</par>')
    if not slides:
        slides.append(f'<par dur="8000ms">{text_ref}</par>')
    layout = (
        '<layout><root-layout width="100%" height="100%"/>'
        '<region id="Image" left="0" top="0" width="100%" height="70%" fit="meet"/>'
        '<region id="Text" left="0" top="70%" width="100%" height="30%" fit="scroll"/></layout>'
    )
    return f"<smil><head>{layout}</head><body>{''.join(slides)}</body></smil>".encode()
