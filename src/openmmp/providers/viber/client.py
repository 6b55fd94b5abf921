"""Client for Viber Business Messages (`/vibersrvc/1/send_message`) and the pure MMP → Viber BM mapping.

Viber BM addresses a phone number from a numeric `service_id`; `seq` is the client's correlation id, which
OpenMMP uses as the idempotency key (the core passes the message's internal id and repeats it on retries).
The mapping doubles as the core's API-time validator: its `ValueError`s start with the MMP field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.viber import errors

TEXT_MAX_CHARS = 1000
CAPTION_MAX_CHARS = 30
FILE_NAME_MAX_CHARS = 25
VIDEO_MAX_BYTES = 200 * 1024 * 1024
VIDEO_MAX_DURATION_S = 600
TTL_MIN_S = 30
TTL_MAX_S = 1_209_600
CAROUSEL_MIN_CARDS = 2
CAROUSEL_MAX_CARDS = 5
CAROUSEL_TITLE_CHARS = (2, 38)
CAROUSEL_PRIMARY_LABEL_MAX = 10
CAROUSEL_SECONDARY_LABEL_MAX = 12

LABELS = ("transaction", "promotion")
# Type codes by label (providers.md §2): the 2xx family for transactional, 1xx/225 for promotional.
TYPE_CODES: Mapping[str, Mapping[str, int]] = {
    "transaction": {"text": 206, "text_button": 209, "image": 207, "image_text_button": 208},
    "promotion": {"text": 225, "text_button": 109, "image": 107, "image_text_button": 108},
}
FILE_TYPE = 220
VIDEO_TYPE = 230
CAROUSEL_TYPE = 901


def to_viber_bm_message(message: Mapping[str, Any], *, label: str | None = None) -> dict[str, Any]:
    """Map an MMP message object to Viber BM's `type`, `message` and type-specific top-level fields.

    `label` is the channel's (`transaction` by default). Raises ValueError naming the MMP field when the
    message cannot be sent as a Viber Business Message.
    """
    chosen_label = _label(label)
    codes = TYPE_CODES[chosen_label]
    if not isinstance(message, Mapping):
        raise ValueError("message: must be an object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError("message.type: required")
    suggestions = _suggestions(message.get("suggestions"))

    if kind == "text":
        text = _text(message, required=True)
        if not suggestions:
            return {"type": codes["text"], "message": {"#txt": text}}
        caption, action = _single_button(suggestions)
        return {
            "type": codes["text_button"],
            "message": {"#txt": text, "#caption": caption, "#action": action},
        }
    if kind == "picture":
        image = _required_str(message, "fileUrl")
        text = _text(message)
        if not suggestions:
            if text:
                raise ValueError(
                    "message.message: a Viber picture with text also needs one open-url suggestion"
                )
            return {"type": codes["image"], "message": {"#img": image}}
        if not text:
            raise ValueError("message.message: a Viber picture with a button also needs text")
        caption, action = _single_button(suggestions)
        return {
            "type": codes["image_text_button"],
            "message": {"#txt": text, "#img": image, "#caption": caption, "#action": action},
        }
    if kind == "file":
        _no_extras(message, suggestions, "file")
        name = _required_str(message, "fileName")
        if len(name) > FILE_NAME_MAX_CHARS:
            raise ValueError(f"message.fileName: at most {FILE_NAME_MAX_CHARS} characters")
        stem, dot, extension = name.rpartition(".")
        if not dot or not stem or not extension:
            raise ValueError("message.fileName: needs an extension (Viber sends it as file_type)")
        return {
            "type": FILE_TYPE,
            "message": {"#media": _required_str(message, "fileUrl"), "#fileName": name},
            "file_type": extension.lower(),
        }
    if kind == "video":
        _no_extras(message, suggestions, "video")
        size = message.get("fileSize")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError("message.fileSize: required for Viber video (a positive number of bytes)")
        if size > VIDEO_MAX_BYTES:
            raise ValueError("message.fileSize: at most 200 MB for Viber video")
        payload: dict[str, Any] = {
            "type": VIDEO_TYPE,
            "message": {
                "#media": _required_str(message, "fileUrl"),
                "#thumbnail": _required_str(message, "thumbnailUrl"),
            },
            "file_size": size,
        }
        duration = message.get("duration")
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 600:
                raise ValueError(f"message.duration: 1 to {VIDEO_MAX_DURATION_S} seconds")
            payload["duration"] = duration
        return payload
    if kind == "rich_card":
        if suggestions:
            raise ValueError("message.suggestions: put buttons on the cards for a Viber carousel")
        payload = {"type": CAROUSEL_TYPE, "message": {}, "carousel": {"items": _carousel_items(message)}}
        text = _text(message)
        if text:
            payload["message"]["#txt"] = text
        return payload
    raise ValueError(f"message.type: {kind!r} is not supported on Viber")


def to_viber_bm_payload(
    *,
    service_id: int,
    dest: str,
    seq: int,
    label: str | None,
    message: Mapping[str, Any],
    ttl: int | None,
) -> dict[str, Any]:
    """The full `send_message` body for one message to one phone number.

    `dest` is E.164 digits (a leading "+" is dropped); `ttl` in seconds (30 … 1,209,600) or None for the
    upstream default. Raises ValueError naming the field at fault.
    """
    if isinstance(service_id, bool) or not isinstance(service_id, int) or service_id <= 0:
        raise ValueError("credentials.serviceId: must be a positive integer")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise ValueError("seq: must be an integer")
    digits = dest[1:] if isinstance(dest, str) and dest.startswith("+") else dest
    if not isinstance(digits, str) or not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise ValueError("phone: must be an E.164 number of 8 to 15 digits")
    body: dict[str, Any] = {
        "service_id": service_id,
        "dest": digits,
        "seq": seq,
        "label": _label(label),
        **to_viber_bm_message(message, label=label),
    }
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not TTL_MIN_S <= ttl <= TTL_MAX_S:
            raise ValueError(f"expire.ttl: between {TTL_MIN_S} and {TTL_MAX_S} seconds for Viber")
        body["ttl"] = ttl
    return body


class ViberClient:
    """Speaks Viber Business Messages (`<base_url>/vibersrvc/1/send_message`) through `HttpClient`.

    Raises `ProviderError` on every failure, classified retryable or final; never retries by itself.
    """

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/vibersrvc/1/send_message"

    async def send_message(
        self,
        *,
        service_id: int,
        dest: str,
        seq: int,
        label: str | None,
        message: Mapping[str, Any],
        ttl: int | None,
    ) -> SendOk:
        """Send one MMP message to `dest`; `provider_message_id` is `str(message_token)`.

        Idempotent per (`service_id`, `seq`): repeating a send after a timeout with the same `seq` returns
        the same token instead of sending twice.
        """
        try:
            body = to_viber_bm_payload(
                service_id=service_id, dest=dest, seq=seq, label=label, message=message, ttl=ttl
            )
        except ValueError as exc:
            # The API validated the message already; failing here means it can never be sent.
            raise ProviderError("VIBER_INVALID_MESSAGE", str(exc), retryable=False) from exc
        try:
            response = await self._http.post(self._url, json=body)
        except HttpUnreachable as exc:
            raise errors.transport_error(exc) from exc
        answer = errors.check_response(response)
        echoed = answer.get("seq")
        if echoed is not None and echoed != seq:
            raise errors.bad_response(f"the upstream answered for seq {echoed!r}, not {seq}")
        token = answer.get("message_token")
        if isinstance(token, bool) or not isinstance(token, int | str) or token == "":
            raise errors.bad_response("the upstream accepted the message but sent no message_token")
        return SendOk(provider_message_id=str(token))


def _label(label: str | None) -> str:
    if label is None:
        return "transaction"
    if label not in LABELS:
        raise ValueError("credentials.label: must be transaction or promotion")
    return label


def _text(message: Mapping[str, Any], *, required: bool = False) -> str:
    text = message.get("message")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ValueError("message.message: must be a string")
    if required and not text:
        raise ValueError("message.message: required")
    if len(text) > TEXT_MAX_CHARS:
        raise ValueError(f"message.message: at most {TEXT_MAX_CHARS} characters on Viber")
    return text


def _required_str(message: Mapping[str, Any], field: str) -> str:
    value = message.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"message.{field}: required")
    return value


def _suggestions(value: Any) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ValueError("message.suggestions: must be a list of objects")
    return value


def _single_button(suggestions: list[Mapping[str, Any]]) -> tuple[str, str]:
    # Viber BM has exactly one button (#caption + #action), and it can only open a URL.
    if len(suggestions) != 1:
        raise ValueError("message.suggestions: Viber allows exactly one (open-url) suggestion")
    suggestion = suggestions[0]
    if suggestion.get("action") != "open-url":
        raise ValueError("message.suggestions[0].action: Viber supports only open-url")
    caption = suggestion.get("text")
    if not isinstance(caption, str) or not caption:
        raise ValueError("message.suggestions[0].text: required")
    if len(caption) > CAPTION_MAX_CHARS:
        raise ValueError(f"message.suggestions[0].text: at most {CAPTION_MAX_CHARS} characters on Viber")
    action = suggestion.get("postbackData")
    if not isinstance(action, str) or not action:
        raise ValueError("message.suggestions[0].postbackData: the URL to open is required")
    return caption, action


def _no_extras(message: Mapping[str, Any], suggestions: list[Mapping[str, Any]], kind: str) -> None:
    # Viber's plain file and video types carry no text or button; dropping them silently would lose content.
    if suggestions:
        raise ValueError(f"message.suggestions: not supported with a Viber {kind}")
    if message.get("message"):
        raise ValueError(f"message.message: not supported with a Viber {kind}")


def _carousel_items(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    cards = message.get("richCards")
    if not isinstance(cards, list) or not CAROUSEL_MIN_CARDS <= len(cards) <= CAROUSEL_MAX_CARDS:
        raise ValueError(
            f"message.richCards: a Viber carousel needs {CAROUSEL_MIN_CARDS} to {CAROUSEL_MAX_CARDS} cards"
        )
    items = []
    for index, card in enumerate(cards):
        field = f"message.richCards[{index}]"
        if not isinstance(card, Mapping):
            raise ValueError(f"{field}: must be an object")
        title = card.get("title")
        low, high = CAROUSEL_TITLE_CHARS
        if not isinstance(title, str) or not low <= len(title) <= high:
            raise ValueError(f"{field}.title: {low} to {high} characters")
        if card.get("description"):
            raise ValueError(f"{field}.description: not supported by Viber carousels")
        image = card.get("image")
        if not isinstance(image, str) or not image:
            raise ValueError(f"{field}.image: required")
        buttons = _suggestions(card.get("suggestions"))
        if not 1 <= len(buttons) <= 2:
            raise ValueError(f"{field}.suggestions: one or two open-url suggestions")
        item: dict[str, Any] = {"title": title, "imageUrl": image}
        limits = (
            ("primaryButton", CAROUSEL_PRIMARY_LABEL_MAX),
            ("secondaryButton", CAROUSEL_SECONDARY_LABEL_MAX),
        )
        for position, (button, (key, limit)) in enumerate(zip(buttons, limits, strict=False)):
            where = f"{field}.suggestions[{position}]"
            if button.get("action") != "open-url":
                raise ValueError(f"{where}.action: Viber carousels support only open-url")
            label = button.get("text")
            if not isinstance(label, str) or not label:
                raise ValueError(f"{where}.text: required")
            if len(label) > limit:
                raise ValueError(f"{where}.text: at most {limit} characters on a Viber carousel")
            url = button.get("postbackData")
            if not isinstance(url, str) or not url:
                raise ValueError(f"{where}.postbackData: the URL to open is required")
            item[key] = {"label": label, "actionUrl": url}
        items.append(item)
    return items
