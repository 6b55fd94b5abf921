"""Client for the Telegram Bot API and the pure MMP → Bot API request mapping.

The mapping (`to_telegram_request`) is also the core's accept-time check for TELEGRAM messages, so it is
pure, fast and raises `ValueError` whose text starts with the MMP field at fault (``message.message: ...``).

What each MMP type becomes (one Bot API call each):

- text → `sendMessage`; picture → `sendPhoto`; video → `sendVideo`; file → `sendDocument`, each by URL
  with `message` as the caption. Telegram fetches the file itself: up to 5 MB for a photo and 20 MB for
  the others; it takes thumbnails and file names only with an upload, so `thumbnailUrl` and `fileName`
  are not sent (the name is the URL's).
- rich_card (one card: Telegram has no carousel with buttons) → `sendPhoto` of the card's image with its
  title (bold, by `caption_entities`, so no markup needs escaping) and description as the caption, or
  `sendMessage` with that text when the card has no image.
- suggestions (the message's, after a card's own) → an inline keyboard, one button a row: `reply` taps
  come back as a `callback_query` whose `callback_data` is the postbackData (or the button's text);
  `open-url` opens its URL. Telegram's inline buttons cannot dial or share a location: those are refused.

Telegram counts text in UTF-16 code units (its entity offsets do); the limits are checked that way, which
is the stricter count for emoji.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.content import message_type
from openmmp.providers.telegram import errors
from openmmp.providers.upstream import bad_response, transport_error

TEXT_MAX = 4096
CAPTION_MAX = 1024
CALLBACK_DATA_MAX_BYTES = 64
PHOTO_BY_URL_MAX_BYTES = 5 * 1024 * 1024
FILE_BY_URL_MAX_BYTES = 20 * 1024 * 1024

SUPPORTED_TYPES = frozenset({"text", "picture", "video", "file", "rich_card"})
_MEDIA: Mapping[str, tuple[str, str, int]] = {
    "picture": ("sendPhoto", "photo", PHOTO_BY_URL_MAX_BYTES),
    "video": ("sendVideo", "video", FILE_BY_URL_MAX_BYTES),
    "file": ("sendDocument", "document", FILE_BY_URL_MAX_BYTES),
}


def utf16_length(text: str) -> int:
    """The length Telegram counts: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class BotRequest:
    """One Bot API call: its method and parameters (without `chat_id`, which belongs to the send)."""

    method: str
    params: dict[str, Any]


def to_telegram_request(message: Mapping[str, Any]) -> BotRequest:
    """Map an MMP message object (api.md §3, placeholders rendered) to the Bot API call that sends it.

    Raises ValueError naming the MMP field when the message cannot be sent to Telegram as it is.
    """
    kind = message_type(message, SUPPORTED_TYPES, on="Telegram")
    rows: list[list[dict[str, str]]] = []
    if kind == "text":
        request = BotRequest("sendMessage", {"text": _text(message, "message", TEXT_MAX, required=True)})
    elif kind == "rich_card":
        request, rows = _rich_card(message)
    else:
        method, field, max_bytes = _MEDIA[kind]
        params: dict[str, Any] = {field: _url(message, "fileUrl")}
        _check_size(message, kind, max_bytes)
        caption = _text(message, "message", CAPTION_MAX)
        if caption:
            params["caption"] = caption
        request = BotRequest(method, params)

    rows += _rows(message.get("suggestions"), "message.suggestions")
    if rows:
        request.params["reply_markup"] = {"inline_keyboard": rows}
    return request


class TelegramClient:
    """Calls the Bot API as `POST <base_url>/bot<token>/<method>`: the bot's token is in every URL, so no
    error raised here carries one (`_call`). Failures are `ProviderError`s, classified retryable or final
    (`errors`); retrying is the dispatcher's."""

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")

    async def set_webhook(
        self, *, token: str, url: str, secret_token: str, allowed_updates: tuple[str, ...]
    ) -> None:
        """Have Telegram post the bot's updates (of `allowed_updates` only) to `url` with `secret_token`.

        Pending updates are kept: they are end users' messages.
        """
        await self._call(
            token,
            "setWebhook",
            {"url": url, "secret_token": secret_token, "allowed_updates": list(allowed_updates)},
        )

    async def send(self, *, token: str, chat_id: str, message: Mapping[str, Any]) -> SendOk:
        """Send one MMP message to one chat; `provider_message_id` is `<chat id>:<message_id>`.

        Telegram's `message_id` is unique within its chat only. The Bot API has no idempotency key: a
        retry after a timeout may deliver twice.
        """
        try:
            request = to_telegram_request(message)
        except ValueError as exc:
            # Checked when accepted; failing now (a message sent before a limit was tightened) is final.
            raise ProviderError("TELEGRAM_INVALID_MESSAGE", str(exc), retryable=False) from exc
        result = await self._call(token, request.method, {"chat_id": _chat_id(chat_id), **request.params})
        return SendOk(provider_message_id=_sent_id(result))

    async def _call(self, token: str, method: str, params: dict[str, Any]) -> Any:
        url = f"{self._base_url}/bot{quote(token, safe=':')}/{method}"
        unreachable: ProviderError | None = None
        try:
            response = await self._http.post(url, json=params)
        except HttpUnreachable as exc:
            # Raised outside this block: the transport's exception names the URL, hence the token, and
            # must not ride along as the error's context.
            unreachable = transport_error(exc)
        if unreachable is not None:
            raise unreachable
        return errors.check_response(response)


def _chat_id(recipient: str) -> int | str:
    """Numeric chat ids as numbers, as Telegram documents them; `@username` of a channel as it is."""
    digits = recipient[1:] if recipient.startswith("-") else recipient
    return int(recipient) if digits.isascii() and digits.isdigit() else recipient


def _sent_id(result: Any) -> str:
    if isinstance(result, Mapping):
        message_id, chat = result.get("message_id"), result.get("chat")
        chat_id = chat.get("id") if isinstance(chat, Mapping) else None
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (message_id, chat_id)):
            return f"{chat_id}:{message_id}"
    raise bad_response("the upstream accepted the message but sent no message_id")


def _optional_str(container: Mapping[str, Any], field: str, path: str) -> str:
    value = container.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{path}: must be a string")
    return value


def _text(message: Mapping[str, Any], field: str, limit: int, *, required: bool = False) -> str:
    text = _optional_str(message, field, f"message.{field}")
    if required and not text:
        raise ValueError(f"message.{field}: required")
    if utf16_length(text) > limit:
        raise ValueError(f"message.{field}: at most {limit} characters on Telegram")
    return text


def _url(message: Mapping[str, Any], field: str) -> str:
    value = _optional_str(message, field, f"message.{field}")
    if not value:
        raise ValueError(f"message.{field}: required")
    return value


def _check_size(message: Mapping[str, Any], kind: str, max_bytes: int) -> None:
    size = message.get("fileSize")
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError("message.fileSize: must be a non-negative integer (bytes)")
    if size > max_bytes:
        raise ValueError(
            f"message.fileSize: Telegram fetches a {kind} by URL up to {max_bytes // (1024 * 1024)} MB"
        )


def _rich_card(message: Mapping[str, Any]) -> tuple[BotRequest, list[list[dict[str, str]]]]:
    cards = message.get("richCards")
    if not isinstance(cards, list) or not cards:
        raise ValueError("message.richCards: one card is required")
    if len(cards) > 1:
        raise ValueError("message.richCards: Telegram shows one card per message (no carousel)")
    card = cards[0]
    if not isinstance(card, Mapping):
        raise ValueError("message.richCards[0]: must be an object")
    title = _optional_str(card, "title", "message.richCards[0].title")
    description = _optional_str(card, "description", "message.richCards[0].description")
    image = _optional_str(card, "image", "message.richCards[0].image")
    text = "\n".join(part for part in (title, description) if part)
    if not text:
        text = _optional_str(message, "message", "message.message")
    limit = CAPTION_MAX if image else TEXT_MAX
    if utf16_length(text) > limit:
        raise ValueError(
            f"message.richCards[0].description: the title and description make at most {limit} "
            "characters on Telegram"
        )
    entities = [{"type": "bold", "offset": 0, "length": utf16_length(title)}] if title else []
    rows = _rows(card.get("suggestions"), "message.richCards[0].suggestions")
    if image:
        params: dict[str, Any] = {"photo": image}
        if text:
            params["caption"] = text
        if entities:
            params["caption_entities"] = entities
        return BotRequest("sendPhoto", params), rows
    if not text:
        raise ValueError("message.richCards[0]: needs a title, a description or an image")
    params = {"text": text}
    if entities:
        params["entities"] = entities
    return BotRequest("sendMessage", params), rows


def _rows(value: Any, field: str) -> list[list[dict[str, str]]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field}: must be a list")
    return [[_button(item, f"{field}[{index}]")] for index, item in enumerate(value)]


def _button(suggestion: Any, field: str) -> dict[str, str]:
    if not isinstance(suggestion, Mapping):
        raise ValueError(f"{field}: must be an object")
    text = suggestion.get("text")
    if not isinstance(text, str) or not text:
        raise ValueError(f"{field}.text: required")
    postback = _optional_str(suggestion, "postbackData", f"{field}.postbackData")
    action = suggestion.get("action")
    if action == "reply":
        data = postback or text
        if len(data.encode()) > CALLBACK_DATA_MAX_BYTES:
            named = "postbackData" if postback else "text"
            raise ValueError(
                f"{field}.{named}: at most {CALLBACK_DATA_MAX_BYTES} bytes (UTF-8) as Telegram's "
                "callback_data"
            )
        return {"text": text, "callback_data": data}
    if action == "open-url":
        if not postback:
            raise ValueError(f"{field}.postbackData: the URL to open is required")
        return {"text": text, "url": postback}
    raise ValueError(
        f"{field}.action: {action!r} is not supported on Telegram (its inline buttons reply or open a URL)"
    )
