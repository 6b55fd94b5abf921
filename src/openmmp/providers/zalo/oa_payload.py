"""MMP message objects → the `message` of Zalo OA's consultation send (`POST /v3.0/oa/message/cs`).

`to_oa_message` is also the accept-time check of ZALO messages (`Provider.check_message`), so it is pure
and fast and raises ValueError whose text starts with the MMP field at fault
(``message.richCards[1].suggestions: ...``).

What maps to what (providers.md §5, and the OA v3 payloads partners document):

- `text`: `{"text"}` (at most 2,000 characters). With `suggestions`, the same text over a template of
  buttons (`attachment: {type: "template", payload: {buttons}}`, at most 5).
- `picture`: the media template by URL (`template_type: "media"`, one element `{media_type: "image",
  url}`), with `message` as its text. Zalo takes images up to 1 MB; `fileSize`, when given, is checked.
- `file`: Zalo sends a file only by the token its upload gives (`POST /v2.0/oa/upload/file`, PDF, DOC or
  DOCX, at most 5 MB), so the provider fetches `fileUrl` and uploads it at each attempt (`oa_client`); the
  message is then `{attachment: {type: "file", payload: {token}}}`. A file message carries no text and no
  buttons, so `message` and `suggestions` are refused rather than dropped.
- `rich_card`: the list template (`template_type: "list"`), one element per card (1 to 5): `title`
  (required, at most 100), `description` as `subtitle` (at most 500), `image` as `image_url` (the first
  element is shown large). A single card's `suggestions` and the message's become the template's buttons
  (at most 5 in all); with several cards, each card may have one suggestion, which becomes its element's
  `default_action` (tapping the element), and the message's suggestions are the buttons. The list has no
  text of its own, so `message` is refused.

Suggestions → Zalo buttons (title at most 100 characters): `reply` → `oa.query.show`, whose payload (the
`postbackData`, else the text, at most 1,000) is what the end user then sends the OA, shown in their chat
(it comes back as an inbound text); `open-url` → `oa.open.url` (`postbackData` is the URL); `dial` →
`oa.open.phone` (`postbackData` is the number, sent as digits). Zalo's buttons cannot share a location or
add a calendar event: those are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from openmmp.providers.content import list_field, message_type, text_field, url_field

ON = "Zalo"
TEXT_MAX = 2000
BUTTONS_MAX = 5
BUTTON_TITLE_MAX = 100
QUERY_PAYLOAD_MAX = 1000
ELEMENTS_MAX = 5
ELEMENT_TITLE_MAX = 100
ELEMENT_SUBTITLE_MAX = 500
IMAGE_MAX_BYTES = 1024 * 1024
FILE_MAX_BYTES = 5 * 1024 * 1024
FILE_EXTENSIONS = frozenset({"pdf", "doc", "docx"})
"""What Zalo's file upload takes."""
PHONE_DIGITS = (8, 15)

SUPPORTED_TYPES = frozenset({"text", "rich_card", "picture", "file"})
_text = partial(text_field, on=ON)
_url = partial(url_field, on=ON)


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file to fetch and upload before the send: its URL, and the name to upload it under."""

    url: str
    name: str


@dataclass(frozen=True, slots=True)
class OaMessage:
    """The consultation send's `message`, or for a file the file to upload first (`file_message` then
    makes the `message` from the upload's token)."""

    message: dict[str, Any]
    file: FileRef | None = None


def file_message(token: str) -> dict[str, Any]:
    """The `message` sending an uploaded file by its upload `token`."""
    return {"attachment": {"type": "file", "payload": {"token": token}}}


def to_oa_message(message: Mapping[str, Any]) -> OaMessage:
    """The Zalo OA `message` for an MMP message object (placeholders already rendered).

    Raises ValueError naming the MMP field when the message cannot go to Zalo as it is.
    """
    kind = message_type(message, SUPPORTED_TYPES, on=f"{ON} Official Account")
    suggestions = list_field(message.get("suggestions"), "message.suggestions")
    if kind == "text":
        text = _text(message.get("message"), "message.message", TEXT_MAX, required=True)
        buttons = _buttons(suggestions, "message.suggestions")
        if not buttons:
            return OaMessage({"text": text})
        return OaMessage({"text": text, "attachment": _template({"buttons": buttons})})
    if kind == "picture":
        return OaMessage(_picture(message, suggestions))
    if kind == "file":
        return _file(message, suggestions)
    return OaMessage(_list(message, suggestions))


def _template(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "template", "payload": payload}


def _no_suggestions(suggestions: list[Any], what: str) -> None:
    if suggestions:
        raise ValueError(f"message.suggestions: a Zalo {what} carries no buttons")


def _size(message: Mapping[str, Any], limit: int, what: str) -> None:
    size = message.get("fileSize")
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError("message.fileSize: must be a non-negative integer (bytes)")
    if size > limit:
        raise ValueError(f"message.fileSize: Zalo takes {what} up to {limit // (1024 * 1024)} MB")


def _picture(message: Mapping[str, Any], suggestions: list[Any]) -> dict[str, Any]:
    _no_suggestions(suggestions, "picture")
    url = _url(message.get("fileUrl"), "message.fileUrl")
    _size(message, IMAGE_MAX_BYTES, "an image")
    caption = _text(message.get("message"), "message.message", TEXT_MAX)
    content: dict[str, Any] = {}
    if caption:
        content["text"] = caption
    element = {"media_type": "image", "url": url}
    content["attachment"] = _template({"template_type": "media", "elements": [element]})
    return content


def _extension(name: str) -> str:
    stem, dot, extension = name.rpartition(".")
    return extension.lower() if dot and stem else ""


def _file(message: Mapping[str, Any], suggestions: list[Any]) -> OaMessage:
    _no_suggestions(suggestions, "file")
    if message.get("message"):
        raise ValueError("message.message: a Zalo file carries no text; send it as a text message of its own")
    url = _url(message.get("fileUrl"), "message.fileUrl")
    _size(message, FILE_MAX_BYTES, "a file")
    given = _text(message.get("fileName"), "message.fileName", 255)
    name = given.strip() or urlsplit(url).path.rsplit("/", 1)[-1]
    if given.strip() and _extension(name) not in FILE_EXTENSIONS:
        raise ValueError("message.fileName: Zalo sends PDF, DOC and DOCX files only (.pdf, .doc, .docx)")
    return OaMessage(file_message(""), FileRef(url=url, name=name or "file"))


def _list(message: Mapping[str, Any], suggestions: list[Any]) -> dict[str, Any]:
    if message.get("message"):
        raise ValueError(
            "message.message: a Zalo list carries no text of its own; put it in richCards[0].description"
        )
    cards = message.get("richCards")
    if not isinstance(cards, list) or not cards:
        raise ValueError("message.richCards: at least one card is required")
    if len(cards) > ELEMENTS_MAX:
        raise ValueError(f"message.richCards: at most {ELEMENTS_MAX} cards on Zalo")
    elements: list[dict[str, Any]] = []
    buttons: list[dict[str, Any]] = []
    for n, card in enumerate(cards):
        where = f"message.richCards[{n}]"
        if not isinstance(card, Mapping):
            raise ValueError(f"{where}: must be an object")
        element: dict[str, Any] = {
            "title": _text(card.get("title"), f"{where}.title", ELEMENT_TITLE_MAX, required=True)
        }
        subtitle = _text(card.get("description"), f"{where}.description", ELEMENT_SUBTITLE_MAX)
        if subtitle:
            element["subtitle"] = subtitle
        if card.get("image") is not None:
            element["image_url"] = _url(card.get("image"), f"{where}.image")
        own = list_field(card.get("suggestions"), f"{where}.suggestions")
        if len(cards) == 1:
            buttons += _buttons(own, f"{where}.suggestions")
        elif len(own) > 1:
            raise ValueError(
                f"{where}.suggestions: with several cards, each takes one suggestion on Zalo (the action "
                "of tapping it); put the others in message.suggestions"
            )
        elif own:
            element["default_action"] = _default_action(_button(own[0], f"{where}.suggestions[0]"))
        elements.append(element)
    buttons += _buttons(suggestions, "message.suggestions")
    if len(buttons) > BUTTONS_MAX:
        raise ValueError(
            f"message.suggestions: at most {BUTTONS_MAX} buttons on Zalo, the card's and the message's "
            "together"
        )
    payload: dict[str, Any] = {"template_type": "list", "elements": elements}
    if buttons:
        payload["buttons"] = buttons
    return {"attachment": _template(payload)}


def _default_action(button: Mapping[str, Any]) -> dict[str, Any]:
    """A button's action as an element's `default_action` (a URL goes as `url`, the rest as `payload`)."""
    if button["type"] == "oa.open.url":
        return {"type": "oa.open.url", "url": button["payload"]["url"]}
    return {"type": button["type"], "payload": button["payload"]}


def _buttons(suggestions: list[Any], where: str) -> list[dict[str, Any]]:
    if len(suggestions) > BUTTONS_MAX:
        raise ValueError(f"{where}: at most {BUTTONS_MAX} buttons on Zalo")
    return [_button(item, f"{where}[{n}]") for n, item in enumerate(suggestions)]


def _button(suggestion: Any, where: str) -> dict[str, Any]:
    if not isinstance(suggestion, Mapping):
        raise ValueError(f"{where}: must be an object")
    title = _text(suggestion.get("text"), f"{where}.text", BUTTON_TITLE_MAX, required=True)
    postback = _text(suggestion.get("postbackData"), f"{where}.postbackData", QUERY_PAYLOAD_MAX)
    action = suggestion.get("action")
    if action == "reply":
        return {"title": title, "type": "oa.query.show", "payload": postback or title}
    if action == "open-url":
        url = _url(suggestion.get("postbackData"), f"{where}.postbackData")
        return {"title": title, "type": "oa.open.url", "payload": {"url": url}}
    if action == "dial":
        digits = "".join(ch for ch in postback if ch.isdigit())
        low, high = PHONE_DIGITS
        if not low <= len(digits) <= high or any(ch not in "+0123456789 -()" for ch in postback):
            raise ValueError(f"{where}.postbackData: the phone number to call is required (E.164)")
        return {"title": title, "type": "oa.open.phone", "payload": {"phone_code": digits}}
    raise ValueError(
        f"{where}.action: {action!r} is not supported on Zalo (its buttons reply, open a URL or call)"
    )
