"""Client for the Viber REST Bot API and the pure MMP → Viber Bot payload mapping.

The mapping (`to_viber_bot_payload`) is also the core's API-time validator for VIBER_BOT messages, so it is
pure, fast and raises `ValueError` whose text starts with the MMP field at fault (``message.message: ...``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.base import BroadcastResult, ProviderError, SendOk
from openmmp.providers.content import message_type
from openmmp.providers.upstream import bad_response, transport_error
from openmmp.providers.viber_bot import errors

TEXT_MAX_CHARS = 7000
SENDER_NAME_MAX_CHARS = 28
BUTTON_TEXT_MAX_CHARS = 25
TRACKING_DATA_MAX_CHARS = 4000
BROADCAST_MAX_RECEIVERS = 300
# rich_media allows at most 6 content blocks (Buttons ≤ 6 × columns × rows).
RICH_CARDS_MAX = 6
# A card is one 6×7 block: the image and text share what the buttons leave, and each needs a row.
CARD_COLUMNS = 6
CARD_ROWS = 7
CARD_SUGGESTIONS_MAX = 3
# Keyboards show up to 12 rows in portrait; one full-width button per row keeps labels readable.
KEYBOARD_BUTTONS_MAX = 12

SUPPORTED_TYPES = frozenset({"text", "picture", "video", "file", "rich_card"})


def check_sender_name(sender_name: str) -> None:
    """Raise ValueError unless `sender_name` is usable as Viber's `sender.name` (1–28 characters).

    The name comes from the channel's credentials, so the error names `credentials.senderName`.
    """
    if not sender_name:
        raise ValueError("credentials.senderName: required")
    if len(sender_name) > SENDER_NAME_MAX_CHARS:
        raise ValueError(f"credentials.senderName: at most {SENDER_NAME_MAX_CHARS} characters")


def to_viber_bot_payload(message: Mapping[str, Any]) -> dict[str, Any]:
    """Map an MMP message object (api.md §3, placeholders rendered) to a Viber Bot message body.

    Returns the type-specific fields (`type`, `text`, `media`, `rich_media`, `keyboard`, ...) without
    `receiver`, `sender` or `tracking_data`, which belong to the call. Raises ValueError naming the MMP
    field when the message cannot be sent to Viber Bot as it is.
    """
    kind = message_type(message, SUPPORTED_TYPES, on="Viber Bot")
    payload: dict[str, Any]
    if kind == "text":
        payload = {"type": "text", "text": _text(message, required=True)}
    elif kind == "picture":
        payload = {"type": "picture", "media": _url(message, "fileUrl"), "text": _text(message)}
        thumbnail = _optional_str(message, "thumbnailUrl")
        if thumbnail:
            payload["thumbnail"] = thumbnail
    elif kind == "video":
        payload = {"type": "video", "media": _url(message, "fileUrl"), "size": _file_size(message)}
        thumbnail = _optional_str(message, "thumbnailUrl")
        if thumbnail:
            payload["thumbnail"] = thumbnail
        caption = _text(message)
        if caption:
            payload["text"] = caption
    elif kind == "file":
        payload = {
            "type": "file",
            "media": _url(message, "fileUrl"),
            "size": _file_size(message),
            "file_name": _file_name(message),
        }
    else:
        payload = _rich_media(message)

    keyboard = _keyboard(message.get("suggestions"))
    if keyboard is not None:
        payload["keyboard"] = keyboard
    return payload


class ViberBotClient:
    """Speaks the Viber REST Bot API (`<base_url>/pa/<method>`) through the shared `HttpClient`.

    Every method raises `ProviderError` on failure, already classified retryable or final; nothing here
    retries by itself (retries are the dispatcher's data).
    """

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")

    async def set_webhook(
        self, *, auth_token: str, url: str, event_types: Sequence[str] | None = None
    ) -> None:
        """Register `url` as the bot's webhook (empty `url` removes it).

        Viber pings the URL before answering, so the callback endpoint must already answer 200.
        """
        # send_name/send_photo: without them newer bots get callbacks without the user's name and avatar.
        body: dict[str, Any] = {"url": url, "send_name": True, "send_photo": True}
        if event_types is not None:
            body["event_types"] = list(event_types)
        await self._call("set_webhook", auth_token=auth_token, body=body)

    async def get_account_info(self, *, auth_token: str) -> dict[str, Any]:
        """The bot's profile as the upstream returns it (id, name, webhook, subscribers_count, ...)."""
        return await self._call("get_account_info", auth_token=auth_token, body={})

    async def get_user_details(self, *, auth_token: str, user_id: str) -> dict[str, Any]:
        """One subscriber's profile (`user` object of the answer). Heavily rate-limited upstream."""
        body = await self._call("get_user_details", auth_token=auth_token, body={"id": user_id})
        user = body.get("user")
        return user if isinstance(user, dict) else {}

    async def send_message(
        self,
        *,
        auth_token: str,
        sender_name: str,
        sender_avatar: str | None,
        receiver: str,
        message: Mapping[str, Any],
        tracking_data: str | None = None,
    ) -> SendOk:
        """Send one MMP message to one subscriber; `provider_message_id` is Viber's `message_token`.

        Viber has no idempotency key: a retry after a timeout may deliver twice.
        """
        body = _message_body(sender_name, sender_avatar, message, tracking_data)
        body["receiver"] = receiver
        answer = await self._call("send_message", auth_token=auth_token, body=body)
        return SendOk(provider_message_id=_message_token(answer))

    async def broadcast_message(
        self,
        *,
        auth_token: str,
        sender_name: str,
        sender_avatar: str | None,
        receivers: Sequence[str],
        message: Mapping[str, Any],
    ) -> BroadcastResult:
        """Send one MMP message to up to 300 subscribers in one call.

        Raises ValueError for an empty list or more than 300 receivers (batching is the caller's job).
        Receivers the upstream refused come back in `failed`, each with its own `ProviderError`; the others
        share the returned `provider_message_id` and are told apart in callbacks by `user_id`.
        """
        if isinstance(receivers, str):
            raise ValueError("receivers: must be a list of subscriber ids")
        if not receivers:
            raise ValueError("receivers: at least one receiver is required")
        if len(receivers) > BROADCAST_MAX_RECEIVERS:
            raise ValueError(f"receivers: at most {BROADCAST_MAX_RECEIVERS} per broadcast")
        body = _message_body(sender_name, sender_avatar, message, None)
        body["broadcast_list"] = list(receivers)
        answer = await self._call("broadcast_message", auth_token=auth_token, body=body)
        failed: dict[str, ProviderError] = {}
        failed_list = answer.get("failed_list")
        if isinstance(failed_list, list):
            for entry in failed_list:
                if not isinstance(entry, dict):
                    continue
                receiver, status = entry.get("receiver"), entry.get("status")
                if not isinstance(receiver, str) or not isinstance(status, int):
                    continue
                text = entry.get("status_message")
                failed[receiver] = errors.status_error(status, text if isinstance(text, str) else None)
        return BroadcastResult(provider_message_id=_message_token(answer), failed=failed)

    async def _call(self, method: str, *, auth_token: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._base_url}/pa/{method}"
        try:
            response = await self._http.post(url, json=body, headers={"X-Viber-Auth-Token": auth_token})
        except HttpUnreachable as exc:
            raise transport_error(exc) from exc
        return errors.check_response(response)


def _message_body(
    sender_name: str, sender_avatar: str | None, message: Mapping[str, Any], tracking_data: str | None
) -> dict[str, Any]:
    # A message that fails mapping at send time (the API validated it, but e.g. the channel's sender name
    # was edited since) can never succeed: report it as a final ProviderError, like any upstream refusal.
    try:
        check_sender_name(sender_name)
        body = to_viber_bot_payload(message)
        if tracking_data is not None and len(tracking_data) > TRACKING_DATA_MAX_CHARS:
            raise ValueError(f"tracking_data: at most {TRACKING_DATA_MAX_CHARS} characters")
    except ValueError as exc:
        raise ProviderError("VIBER_BOT_INVALID_MESSAGE", str(exc), retryable=False) from exc
    sender: dict[str, str] = {"name": sender_name}
    if sender_avatar:
        sender["avatar"] = sender_avatar
    body["sender"] = sender
    if tracking_data is not None:
        body["tracking_data"] = tracking_data
    return body


def _message_token(answer: Mapping[str, Any]) -> str:
    token = answer.get("message_token")
    if isinstance(token, bool) or not isinstance(token, int | str) or token == "":
        raise bad_response("the upstream accepted the message but sent no message_token")
    return str(token)


def _optional_str(message: Mapping[str, Any], field: str) -> str:
    value = message.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"message.{field}: must be a string")
    return value


def _text(message: Mapping[str, Any], *, required: bool = False) -> str:
    text = _optional_str(message, "message")
    if required and not text:
        raise ValueError("message.message: required")
    if len(text) > TEXT_MAX_CHARS:
        raise ValueError(f"message.message: at most {TEXT_MAX_CHARS} characters")
    return text


def _url(message: Mapping[str, Any], field: str) -> str:
    value = _optional_str(message, field)
    if not value:
        raise ValueError(f"message.{field}: required")
    return value


def _file_size(message: Mapping[str, Any]) -> int:
    size = message.get("fileSize")
    if size is None:
        raise ValueError("message.fileSize: required for Viber Bot video and file messages")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError("message.fileSize: must be a positive integer (bytes)")
    return size


def _file_name(message: Mapping[str, Any]) -> str:
    name = _optional_str(message, "fileName")
    if not name:
        raise ValueError("message.fileName: required for Viber Bot file messages")
    return name


def _suggestion_list(value: Any, field: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field}: must be a list")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValueError(f"{field}[{index}]: must be an object")
    return value


def _button(suggestion: Mapping[str, Any], field: str) -> dict[str, Any]:
    text = suggestion.get("text")
    if not isinstance(text, str) or not text:
        raise ValueError(f"{field}.text: required")
    if len(text) > BUTTON_TEXT_MAX_CHARS:
        raise ValueError(f"{field}.text: at most {BUTTON_TEXT_MAX_CHARS} characters")
    action = suggestion.get("action")
    postback = suggestion.get("postbackData")
    if postback is not None and not isinstance(postback, str):
        raise ValueError(f"{field}.postbackData: must be a string")
    if action == "reply":
        action_type, action_body = "reply", postback or text
    elif action == "open-url":
        if not postback:
            raise ValueError(f"{field}.postbackData: the URL to open is required")
        action_type, action_body = "open-url", postback
    elif action == "dial":
        if not postback:
            raise ValueError(f"{field}.postbackData: the number to dial is required")
        # Viber Bot has no dial action; a tel: link opens the dialler on the phone.
        action_type, action_body = "open-url", _tel_link(postback, field)
    else:
        raise ValueError(f"{field}.action: {action!r} is not supported on Viber Bot")
    # Button Text accepts Viber's HTML-like markup; user text must not be taken as markup.
    return {
        "ActionType": action_type,
        "ActionBody": action_body,
        "Text": html.escape(text, quote=False),
    }


def _tel_link(number: str, field: str) -> str:
    if number.startswith("tel:"):
        return number
    digits = "".join(ch for ch in number if ch.isdigit())
    if not digits:
        raise ValueError(f"{field}.postbackData: the number to dial is required")
    # MMP numbers are E.164 digits without "+"; tel: links want the "+".
    return f"tel:+{digits}"


def _keyboard(value: Any) -> dict[str, Any] | None:
    suggestions = _suggestion_list(value, "message.suggestions")
    if not suggestions:
        return None
    if len(suggestions) > KEYBOARD_BUTTONS_MAX:
        raise ValueError(f"message.suggestions: at most {KEYBOARD_BUTTONS_MAX} on Viber Bot")
    buttons = []
    for index, suggestion in enumerate(suggestions):
        button = _button(suggestion, f"message.suggestions[{index}]")
        buttons.append({"Columns": 6, "Rows": 1, **button})
    return {"Type": "keyboard", "DefaultHeight": False, "Buttons": buttons}


def _rich_media(message: Mapping[str, Any]) -> dict[str, Any]:
    cards = message.get("richCards")
    if not isinstance(cards, list) or not cards:
        raise ValueError("message.richCards: at least one card is required")
    if len(cards) > RICH_CARDS_MAX:
        raise ValueError(f"message.richCards: at most {RICH_CARDS_MAX} cards on Viber Bot")
    buttons: list[dict[str, Any]] = []
    for index, card in enumerate(cards):
        buttons.extend(_card_buttons(card, f"message.richCards[{index}]"))
    alt_text = _text(message)
    if not alt_text:
        first = cards[0]
        title = first.get("title") if isinstance(first, Mapping) else None
        alt_text = title if isinstance(title, str) else ""
    payload: dict[str, Any] = {
        "type": "rich_media",
        # rich_media needs API version 2; older clients show alt_text instead.
        "min_api_version": 2,
        "rich_media": {
            "Type": "rich_media",
            "ButtonsGroupColumns": CARD_COLUMNS,
            "ButtonsGroupRows": CARD_ROWS,
            "BgColor": "#FFFFFF",
            "Buttons": buttons,
        },
    }
    if alt_text:
        payload["alt_text"] = alt_text
    return payload


def _card_buttons(card: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(card, Mapping):
        raise ValueError(f"{field}: must be an object")
    title = card.get("title") or ""
    description = card.get("description") or ""
    image = card.get("image") or ""
    for name, value in (("title", title), ("description", description), ("image", image)):
        if not isinstance(value, str):
            raise ValueError(f"{field}.{name}: must be a string")
    suggestions = _suggestion_list(card.get("suggestions"), f"{field}.suggestions")
    if len(suggestions) > CARD_SUGGESTIONS_MAX:
        raise ValueError(f"{field}.suggestions: at most {CARD_SUGGESTIONS_MAX} per card on Viber Bot")
    text_parts = []
    if title:
        text_parts.append(f"<b>{html.escape(title, quote=False)}</b>")
    if description:
        text_parts.append(html.escape(description, quote=False))
    if not text_parts and not image:
        raise ValueError(f"{field}: needs a title, a description or an image")
    if len("<br>".join(text_parts)) > TEXT_MAX_CHARS:
        raise ValueError(f"{field}.description: at most {TEXT_MAX_CHARS} characters")

    # Every card fills exactly CARD_ROWS rows, otherwise the carousel's blocks drift out of line.
    free_rows = CARD_ROWS - len(suggestions)
    buttons: list[dict[str, Any]] = []
    if image:
        image_rows = free_rows - 2 if text_parts else free_rows
        buttons.append({"Columns": CARD_COLUMNS, "Rows": image_rows, "ActionType": "none", "Image": image})
        free_rows -= image_rows
    if text_parts:
        buttons.append(
            {
                "Columns": CARD_COLUMNS,
                "Rows": free_rows,
                "ActionType": "none",
                "Text": "<br>".join(text_parts),
                "TextSize": "regular",
                "TextVAlign": "middle",
                "TextHAlign": "left",
            }
        )
    for index, suggestion in enumerate(suggestions):
        button = _button(suggestion, f"{field}.suggestions[{index}]")
        buttons.append(
            {"Columns": CARD_COLUMNS, "Rows": 1, **button, "TextSize": "regular", "TextHAlign": "center"}
        )
    return buttons
