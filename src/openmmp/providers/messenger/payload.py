"""MMP message objects → the Send API's `message` object, with Messenger's limits.

`to_messenger_message` is also the accept-time check of FACEBOOK messages (`Provider.check_message`), so it
is pure and fast and raises ValueError whose text starts with the MMP field at fault
(``message.richCards[0].suggestions[3]: ...``): a message Meta would refuse with a 100 is refused with a
400 before anything is queued.

What maps to what (providers.md §7):

- `text`: `text` from `message` (at most 2,000 characters). Its `suggestions`, when every one is a
  `reply`, become quick replies (at most 13; the suggestion's `text` is the title, at most 20 characters,
  its `postbackData`, or else the text, the payload, at most 1,000). A text with an `open-url` or `dial`
  suggestion goes as a button template instead, since only a template carries such buttons: the text (at
  most 640 characters) above 1 to 3 buttons.
- `picture` / `video` / `file`: an `image` / `video` / `file` attachment Meta fetches from `fileUrl`.
  Messenger's attachments carry no caption, so a `message` with them is refused rather than dropped;
  `fileName`, `fileSize` and `thumbnailUrl` have no Messenger field and are left out (Meta names a file by
  its URL). `suggestions` become quick replies (`reply` only).
- `rich_card`: a generic template, one element per card (1 to 10, a carousel beyond one): `title`
  (required, at most 80), `description` as the subtitle (at most 80), `image` as `image_url`, and the
  card's `suggestions` as its buttons (at most 3): `reply` → `postback` (payload: `postbackData`, or the
  text), `open-url` → `web_url` (`postbackData` is the URL), `dial` → `phone_number` (`postbackData` is the
  number, sent as `+<digits>`). Meta wants something besides the title in every element. A generic
  template has no text of its own, so a `message` is refused; message-level `suggestions` become quick
  replies.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from openmmp.providers.content import list_field, text_field, url_field

TEXT_MAX = 2000
BUTTON_TEXT_MAX = 640
"""The text above a button template's buttons."""
QUICK_REPLIES_MAX = 13
QUICK_REPLY_TITLE_MAX = 20
PAYLOAD_MAX = 1000
"""A quick reply's or a postback button's payload."""
ELEMENTS_MAX = 10
TITLE_MAX = 80
SUBTITLE_MAX = 80
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20

SUPPORTED_TYPES = frozenset({"text", "picture", "video", "file", "rich_card"})
ATTACHMENT_TYPES: Mapping[str, str] = {"picture": "image", "video": "video", "file": "file"}
"""The attachment `type` of each MMP media type."""
_WHAT = {"picture": "picture", "video": "video", "file": "file", "rich_card": "generic template"}
_text = partial(text_field, on="Messenger")
_url = partial(url_field, on="Messenger")


def to_messenger_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """The Send API's `message` object for an MMP message object (placeholders already rendered).

    `recipient` and `messaging_type` belong to the call, not here. Raises ValueError naming the MMP field
    when the message cannot go to Messenger as it is.
    """
    if not isinstance(message, Mapping):
        raise ValueError("message: must be an object")
    kind = message.get("type")
    if kind not in SUPPORTED_TYPES:
        raise ValueError(f"message.type: {kind!r} is not supported on Messenger")
    suggestions = list_field(message.get("suggestions"), "message.suggestions")
    if kind == "text":
        text = _text(message.get("message"), "message.message", TEXT_MAX, required=True)
        if any(_action(s, f"message.suggestions[{n}]") != "reply" for n, s in enumerate(suggestions)):
            return _button_template(text, suggestions)
        return _with_quick_replies({"text": text}, suggestions)
    if message.get("message"):
        where = "richCards[0].description" if kind == "rich_card" else "a text message of its own"
        raise ValueError(
            f"message.message: a Messenger {_WHAT[kind]} carries no text; send it as {where} instead"
        )
    if kind == "rich_card":
        return _with_quick_replies(_generic_template(message.get("richCards")), suggestions)
    url = _url(message.get("fileUrl"), "message.fileUrl")
    attachment = {"type": ATTACHMENT_TYPES[kind], "payload": {"url": url}}
    return _with_quick_replies({"attachment": attachment}, suggestions)


# ---- plain fields ------------------------------------------------------------------------------------------


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: must be an object")
    return value


# ---- suggestions: quick replies and buttons ----------------------------------------------------------------


def _action(value: Any, field: str) -> str:
    action = _object(value, field).get("action")
    if action not in ("reply", "open-url", "dial"):
        raise ValueError(f"{field}.action: {action!r} is not supported on Messenger (reply, open-url, dial)")
    return str(action)


def _with_quick_replies(built: dict[str, Any], suggestions: list[Any]) -> dict[str, Any]:
    """`built` with `suggestions` as its quick replies, which can only send a text back (`reply`)."""
    if not suggestions:
        return built
    if len(suggestions) > QUICK_REPLIES_MAX:
        raise ValueError(f"message.suggestions: at most {QUICK_REPLIES_MAX} quick replies on Messenger")
    replies = []
    for n, suggestion in enumerate(suggestions):
        field = f"message.suggestions[{n}]"
        if _action(suggestion, field) != "reply":
            raise ValueError(
                f"{field}.action: only reply suggestions (quick replies) go with a Messenger picture, "
                "video, file or card; put links and numbers on a card's buttons"
            )
        title, payload = _reply(suggestion, field, QUICK_REPLY_TITLE_MAX)
        replies.append({"content_type": "text", "title": title, "payload": payload})
    return {**built, "quick_replies": replies}


def _reply(suggestion: Mapping[str, Any], field: str, title_max: int) -> tuple[str, str]:
    """A reply's title (its text) and payload (its postbackData, or the text)."""
    title = _text(suggestion.get("text"), f"{field}.text", title_max, required=True)
    payload = _text(suggestion.get("postbackData"), f"{field}.postbackData", PAYLOAD_MAX) or title
    return title, payload


def _button(value: Any, field: str) -> dict[str, Any]:
    """A template button: `reply` → postback, `open-url` → web_url, `dial` → phone_number."""
    action = _action(value, field)
    suggestion = _object(value, field)
    if action == "reply":
        title, payload = _reply(suggestion, field, BUTTON_TITLE_MAX)
        return {"type": "postback", "title": title, "payload": payload}
    title = _text(suggestion.get("text"), f"{field}.text", BUTTON_TITLE_MAX, required=True)
    if action == "open-url":
        return {
            "type": "web_url",
            "url": _url(suggestion.get("postbackData"), f"{field}.postbackData"),
            "title": title,
        }
    number = _text(suggestion.get("postbackData"), f"{field}.postbackData", 32, required=True)
    digits = "".join(char for char in number.removeprefix("tel:") if char.isdigit())
    if not 6 <= len(digits) <= 15:
        raise ValueError(f"{field}.postbackData: the phone number to dial, with its country code")
    return {"type": "phone_number", "title": title, "payload": f"+{digits}"}


def _buttons(value: Any, field: str, *, required: bool) -> list[dict[str, Any]]:
    given = list_field(value, field)
    if len(given) > BUTTONS_MAX or (required and not given):
        raise ValueError(f"{field}: {'1' if required else '0'} to {BUTTONS_MAX} buttons on Messenger")
    return [_button(item, f"{field}[{n}]") for n, item in enumerate(given)]


# ---- templates ---------------------------------------------------------------------------------------------


def _button_template(text: str, suggestions: list[Any]) -> dict[str, Any]:
    if len(text) > BUTTON_TEXT_MAX:
        raise ValueError(
            f"message.message: at most {BUTTON_TEXT_MAX} characters on Messenger above link or dial buttons"
        )
    payload = {
        "template_type": "button",
        "text": text,
        "buttons": _buttons(suggestions, "message.suggestions", required=True),
    }
    return {"attachment": {"type": "template", "payload": payload}}


def _generic_template(value: Any) -> dict[str, Any]:
    cards = list_field(value, "message.richCards")
    if not 1 <= len(cards) <= ELEMENTS_MAX:
        raise ValueError(f"message.richCards: 1 to {ELEMENTS_MAX} cards on Messenger")
    elements = [_element(card, f"message.richCards[{n}]") for n, card in enumerate(cards)]
    return {"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": elements}}}


def _element(value: Any, field: str) -> dict[str, Any]:
    card = _object(value, field)
    element: dict[str, Any] = {"title": _text(card.get("title"), f"{field}.title", TITLE_MAX, required=True)}
    subtitle = _text(card.get("description"), f"{field}.description", SUBTITLE_MAX)
    if subtitle:
        element["subtitle"] = subtitle
    if card.get("image"):
        element["image_url"] = _url(card["image"], f"{field}.image")
    buttons = _buttons(card.get("suggestions"), f"{field}.suggestions", required=False)
    if buttons:
        element["buttons"] = buttons
    if len(element) == 1:
        raise ValueError(
            f"{field}: Messenger needs a description, an image or a suggestion besides the title"
        )
    return element
