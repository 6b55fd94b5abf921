"""What each application can send and how a send is checked against its upstream before it is queued."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from openmmp.errors import ErrorCode, ErrorItem, Invalid
from openmmp.models.channel import Application
from openmmp.providers.viber.client import to_viber_bm_message
from openmmp.providers.viber_bot.client import check_sender_name, to_viber_bot_payload

_MEDIA = frozenset({"text", "rich_card", "picture", "video", "file"})

# api.md §2: allowed outbound types per application; anything else is a 400 on message.type.
ALLOWED_TYPES: Mapping[Application, frozenset[str]] = {
    Application.VIBER: _MEDIA,
    Application.VIBER_BOT: _MEDIA,
    Application.TELEGRAM: _MEDIA,
    Application.FACEBOOK: _MEDIA,
    Application.RCS: _MEDIA,
    Application.APPLE: frozenset(
        {"text", "text_with_attachment", "richLink", "listPicker", "quickReply", "location"}
    ),
    Application.WHATSAPP: frozenset(
        {"text", "picture", "video", "file", "location", "fb_whatsapp_template", "FB_WHATSAPP_INTERACTIVE"}
    ),
    Application.ZALO: frozenset({"text", "rich_card", "picture", "file"}),
    Application.ZALO_ZNS: frozenset({"zalo_zns_template"}),
    Application.SMS: frozenset({"text"}),
    Application.MMS: frozenset({"text", "picture", "video"}),
    Application.EMAIL: frozenset({"text"}),
}

Checker = Callable[[Mapping[str, Any], Mapping[str, Any], int | None], None]


def _check_viber(content: Mapping[str, Any], credentials: Mapping[str, Any], ttl_s: int | None) -> None:
    # Any expiry is fine: OpenMMP enforces it itself and passes Viber a TTL clamped to its 30 s … 14 d.
    to_viber_bm_message(content, label=credentials.get("label"))


def _check_viber_bot(content: Mapping[str, Any], credentials: Mapping[str, Any], ttl_s: int | None) -> None:
    check_sender_name(str(credentials.get("senderName", "")))
    to_viber_bot_payload(content)


@dataclass(frozen=True)
class Capability:
    by_phone: bool
    """OA channels address a phone number; BOT channels a conversation (or a phone it has learned)."""
    check: Checker


# Applications OpenMMP can send on today; the others accept channels but refuse sends with a clear 400.
SENDABLE: Mapping[Application, Capability] = {
    Application.VIBER: Capability(by_phone=True, check=_check_viber),
    Application.VIBER_BOT: Capability(by_phone=False, check=_check_viber_bot),
}


def check_content(
    application: Application, content: Mapping[str, Any], credentials: Mapping[str, Any], ttl_s: int | None
) -> None:
    """Raise a 400 naming the field when `content` cannot go out on `application` as it is."""
    if content.get("type") not in ALLOWED_TYPES[application]:
        allowed = ", ".join(sorted(ALLOWED_TYPES[application]))
        raise Invalid(f"not allowed on {application.name} channels; allowed: {allowed}", name="message.type")
    try:
        SENDABLE[application].check(content, credentials, ttl_s)
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        if not message:
            name, message = "message", str(exc)
        raise Invalid(message, items=[ErrorItem(name=name, code=ErrorCode.INVALID, message=message)]) from exc
