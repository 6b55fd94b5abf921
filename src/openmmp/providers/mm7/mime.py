"""MIME multipart bodies as MM7 carries them: SOAP 1.1 with attachments (`multipart/related`).

A SubmitReq is a `multipart/related` HTTP body whose `start` part is the SOAP envelope and whose next
part is the MMS itself, a `multipart/related` of its own (SMIL presentation, text, media), each part
named by a Content-ID that the envelope and the SMIL refer to as `cid:...`. Binary parts go base64, text
and XML as 8-bit UTF-8. Decoding leans on the standard library's `email` parser, which takes any
transfer encoding and nesting an MMSC may use.
"""

from __future__ import annotations

import base64
import email
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message

_CRLF = b"\r\n"
_TEXTUAL = ("text/", "application/smil", "application/xml", "application/soap+xml")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
NAME_MAX = 60


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME part: its full Content-Type, its decoded body, and for a multipart its parts in order.

    `content_id` is without the angle brackets; `location` is the Content-Location (a file name).
    """

    content_type: str
    body: bytes = b""
    content_id: str = ""
    location: str = ""
    parts: tuple[Part, ...] = ()

    @property
    def media_type(self) -> str:
        """`type/subtype` in lower case, without parameters."""
        return media_type(self.content_type)

    def find(self, content_id: str) -> Part | None:
        """The part (this one, or one nested at any depth) whose Content-ID is `content_id`."""
        if self.content_id == content_id:
            return self
        for part in self.parts:
            found = part.find(content_id)
            if found is not None:
                return found
        return None


def media_type(content_type: str | None) -> str:
    """`type/subtype` of a Content-Type value in lower case; "" when it is not one."""
    candidate = (content_type or "").split(";", 1)[0].strip().lower()
    return candidate if _MEDIA_TYPE.fullmatch(candidate) else ""


def safe_name(name: str, fallback: str) -> str:
    """A file name fit for a header (Content-Location): letters, digits, `._-`, at most 60 characters."""
    cleaned = _SAFE_NAME.sub("_", name).strip("._")[-NAME_MAX:]
    return cleaned or fallback


def related(parts: Sequence[Part], *, start: Part, root_type: str, content_id: str = "") -> Part:
    """A `multipart/related` part holding `parts`, whose root (`start`) is of type `root_type`.

    Its `body` is the encoded multipart, ready to be sent or nested in another one.
    """
    content_type, body = encode(
        parts, subtype="related", params={"type": root_type, "start": f"<{start.content_id}>"}
    )
    return Part(content_type, body, content_id=content_id, parts=tuple(parts))


def encode(parts: Sequence[Part], *, subtype: str, params: Mapping[str, str]) -> tuple[str, bytes]:
    """The Content-Type header value and the body of a `multipart/<subtype>` holding `parts`.

    The boundary is random: no part can contain it by accident or by design.
    """
    boundary = f"=_mm7_{secrets.token_hex(16)}"
    header = f'multipart/{subtype}; boundary="{boundary}"' + "".join(
        f'; {name}="{value}"' for name, value in params.items()
    )
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for part in parts:
        chunks += [delimiter, _CRLF, _headers(part), _CRLF, _transfer_encoded(part), _CRLF]
    chunks += [delimiter, b"--", _CRLF]
    return header, b"".join(chunks)


def _headers(part: Part) -> bytes:
    lines = [f"Content-Type: {part.content_type}"]
    if not part.parts:
        lines.append(f"Content-Transfer-Encoding: {'8bit' if _textual(part) else 'base64'}")
    if part.content_id:
        lines.append(f"Content-ID: <{part.content_id}>")
    if part.location:
        lines.append(f"Content-Location: {part.location}")
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def _textual(part: Part) -> bool:
    return part.media_type.startswith(_TEXTUAL)


def _transfer_encoded(part: Part) -> bytes:
    if part.parts or _textual(part):
        return part.body
    return base64.encodebytes(part.body).replace(b"\n", _CRLF).rstrip(_CRLF)


def decode(content_type: str, body: bytes) -> Part:
    """The part a body of type `content_type` is (with its parts when it is a multipart).

    Never raises for malformed input: what cannot be read as a multipart comes back as a single part.
    """
    header = " ".join(content_type.splitlines()).encode("latin-1", errors="replace")
    message = email.message_from_bytes(b"Content-Type: " + header + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    return _part(message)


def decode_unlabelled(body: bytes) -> Part | None:
    """A multipart body whose Content-Type was not handed over: its boundary is its first line.

    None when the body does not start like a multipart (`--boundary`).
    """
    first = body.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    boundary = first[2:]
    if not first.startswith(b"--") or not boundary or len(boundary) > 70 or b'"' in boundary:
        return None
    return decode(f'multipart/related; boundary="{boundary.decode("latin-1")}"', body)


def _part(message: Message) -> Part:
    content_type = str(message.get("Content-Type") or "text/plain")
    content_id = str(message.get("Content-ID") or "").strip().strip("<>")
    location = str(message.get("Content-Location") or "").strip()
    if message.is_multipart():
        children = tuple(_part(child) for child in message.get_payload() if isinstance(child, Message))
        return Part(content_type, b"", content_id, location, children)
    payload = message.get_payload(decode=True)
    return Part(content_type, payload if isinstance(payload, bytes) else b"", content_id, location)
