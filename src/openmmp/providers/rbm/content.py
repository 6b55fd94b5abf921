"""MMP message objects as RBM `contentMessage`s, with RBM's limits checked when a send is accepted.

One MMP message is one AgentMessage, whose `contentMessage` holds exactly one of `text`, `contentInfo` (a
file by URL) or `richCard`, plus up to 11 suggestion chips (providers.md §4):

- `text`: `message`, at most 3,072 characters.
- `picture`, `video`, `file`: `fileUrl` (and `thumbnailUrl`) as `contentInfo`; RBM carries no caption
  with a file, so `message` is refused (a rich card has an image and a description).
- `rich_card`: one card is a standalone card (`rcsRichCardsOpts.orientation` VERTICAL or HORIZONTAL,
  `imageAlign` LEFT or RIGHT with HORIZONTAL), two to ten a carousel (MEDIUM width); `rcsRichCardsOpts.type`
  must agree with the count when given. Each card: `title` ≤ 200, `description` ≤ 2,000, `image` as its
  media (MEDIUM height), at most 4 suggestions; at least one of title, description and image.

Suggestions (api.md's SuggestionActionType): `reply` is a suggested reply, the others suggested actions:
`open-url` opens `postbackData` (the URL), `dial` calls it (E.164), `VIEW_LOCATION` shows "lat,lng" (or
searches for any other text), `SHARE_LOCATION` asks for the user's location, and `CalendarEventAction`
takes a JSON object `{"startTime", "endTime", "title"?, "description"?}` (RFC 3339 times) in
`postbackData`. Labels are at most 25 characters. What RBM sends back when a chip is tapped (its
`postbackData`) is the MMP `postbackData` for replies, URLs, numbers and locations, else the label.

Every `ValueError` starts with the MMP field at fault (`message.richCards[1].suggestions: ...`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

TEXT_MAX = 3072
TITLE_MAX = 200
DESCRIPTION_MAX = 2000
LABEL_MAX = 25
POSTBACK_MAX = 2048
MESSAGE_SUGGESTIONS_MAX = 11
CARD_SUGGESTIONS_MAX = 4
CAROUSEL_CARDS = (2, 10)
MEDIA_MAX_BYTES = 100 * 1024 * 1024
PAYLOAD_MAX_BYTES = 250 * 1024
URL_MAX = 2048

ORIENTATIONS = ("VERTICAL", "HORIZONTAL")
ALIGNMENTS = ("LEFT", "RIGHT")
_FILE_TYPES = {"picture": "picture", "video": "video", "file": "file"}
_LAT_LNG = re.compile(r"^\s*(-?\d{1,3}(?:\.\d+)?)\s*,\s*(-?\d{1,3}(?:\.\d+)?)\s*$")
_DIAL_NOISE = re.compile(r"[\s().-]")


def content_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """The `contentMessage` for an MMP message object (wire names). ValueError naming the MMP field when
    RBM cannot take it as it is."""
    if not isinstance(message, Mapping):
        raise ValueError("message: must be an object")
    kind = message.get("type")
    if kind == "text":
        content: dict[str, Any] = {"text": _text(message)}
    elif kind in _FILE_TYPES:
        content = {"contentInfo": _file(message, kind)}
    elif kind == "rich_card":
        content = {"richCard": _rich_card(message)}
    else:
        raise ValueError(f"message.type: {kind!r} is not sent over RCS")
    suggestions = _suggestions(message.get("suggestions"), "message.suggestions", MESSAGE_SUGGESTIONS_MAX)
    if suggestions:
        content["suggestions"] = suggestions
    if len(orjson.dumps(content)) > PAYLOAD_MAX_BYTES:
        raise ValueError("message: larger than RBM's 250 KB for one message")
    return content


def _text(message: Mapping[str, Any]) -> str:
    text = message.get("message")
    if not isinstance(text, str) or not text:
        raise ValueError("message.message: required")
    if len(text) > TEXT_MAX:
        raise ValueError(f"message.message: at most {TEXT_MAX} characters on RCS")
    return text


def _file(message: Mapping[str, Any], kind: str) -> dict[str, Any]:
    if message.get("message"):
        raise ValueError(
            f"message.message: an RCS {kind} carries no text; send a rich_card with the image and a "
            "description instead"
        )
    size = message.get("fileSize")
    if isinstance(size, int) and not isinstance(size, bool) and size > MEDIA_MAX_BYTES:
        raise ValueError("message.fileSize: at most 100 MiB on RCS")
    info: dict[str, Any] = {"fileUrl": _url(message.get("fileUrl"), "message.fileUrl"), "forceRefresh": False}
    thumbnail = message.get("thumbnailUrl")
    if thumbnail is not None:
        info["thumbnailUrl"] = _url(thumbnail, "message.thumbnailUrl")
    return info


def _url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: required")
    if len(value) > URL_MAX:
        raise ValueError(f"{field}: at most {URL_MAX} characters on RCS")
    return value


def _rich_card(message: Mapping[str, Any]) -> dict[str, Any]:
    if message.get("message"):
        raise ValueError(
            "message.message: an RCS rich card carries its text in richCards[].title and .description"
        )
    cards = message.get("richCards")
    if not isinstance(cards, list) or not cards:
        raise ValueError("message.richCards: required, one card or a carousel of 2 to 10")
    low, high = CAROUSEL_CARDS
    if len(cards) > high:
        raise ValueError(f"message.richCards: at most {high} cards in an RCS carousel")
    options = message.get("rcsRichCardsOpts") or {}
    if not isinstance(options, Mapping):
        raise ValueError("message.rcsRichCardsOpts: must be an object")
    layout = options.get("type")
    if layout == "STANDALONE" and len(cards) != 1:
        raise ValueError("message.richCards: a STANDALONE rich card is exactly one card")
    if layout == "CAROUSEL" and len(cards) < low:
        raise ValueError(f"message.richCards: an RCS carousel has {low} to {high} cards")
    if len(cards) == 1:
        orientation = _choice(options.get("orientation"), ORIENTATIONS, "orientation") or "VERTICAL"
        alignment = _choice(options.get("imageAlign"), ALIGNMENTS, "imageAlign")
        if alignment and orientation != "HORIZONTAL":
            raise ValueError("message.rcsRichCardsOpts.imageAlign: only with a HORIZONTAL orientation")
        standalone: dict[str, Any] = {
            "cardOrientation": orientation,
            "cardContent": _card(cards[0], "message.richCards[0]", media_height=orientation == "VERTICAL"),
        }
        if orientation == "HORIZONTAL":
            standalone["thumbnailImageAlignment"] = alignment or "LEFT"
        return {"standaloneCard": standalone}
    for name in ("orientation", "imageAlign"):
        if options.get(name) is not None:
            raise ValueError(f"message.rcsRichCardsOpts.{name}: only for a standalone card, not a carousel")
    contents = [_card(card, f"message.richCards[{n}]", media_height=True) for n, card in enumerate(cards)]
    return {"carouselCard": {"cardWidth": "MEDIUM", "cardContents": contents}}


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> str | None:
    if value is None:
        return None
    chosen = value.upper() if isinstance(value, str) else value
    if chosen not in allowed:
        raise ValueError(f"message.rcsRichCardsOpts.{name}: one of {', '.join(allowed)}")
    return str(chosen)


def _card(card: Any, field: str, *, media_height: bool) -> dict[str, Any]:
    if not isinstance(card, Mapping):
        raise ValueError(f"{field}: must be an object")
    content: dict[str, Any] = {}
    title, description, image = card.get("title"), card.get("description"), card.get("image")
    if title:
        if not isinstance(title, str) or len(title) > TITLE_MAX:
            raise ValueError(f"{field}.title: at most {TITLE_MAX} characters on RCS")
        content["title"] = title
    if description:
        if not isinstance(description, str) or len(description) > DESCRIPTION_MAX:
            raise ValueError(f"{field}.description: at most {DESCRIPTION_MAX} characters on RCS")
        content["description"] = description
    if image:
        media: dict[str, Any] = {
            "contentInfo": {"fileUrl": _url(image, f"{field}.image"), "forceRefresh": False}
        }
        if media_height:
            media["height"] = "MEDIUM"
        content["media"] = media
    if not content:
        raise ValueError(f"{field}: needs a title, a description or an image")
    suggestions = _suggestions(card.get("suggestions"), f"{field}.suggestions", CARD_SUGGESTIONS_MAX)
    if suggestions:
        content["suggestions"] = suggestions
    return content


def _suggestions(value: Any, field: str, most: int) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field}: must be a list")
    if len(value) > most:
        raise ValueError(f"{field}: at most {most} on RCS")
    return [_suggestion(item, f"{field}[{n}]") for n, item in enumerate(value)]


def _suggestion(item: Any, field: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise ValueError(f"{field}: must be an object")
    label = item.get("text")
    if not isinstance(label, str) or not label:
        raise ValueError(f"{field}.text: required")
    if len(label) > LABEL_MAX:
        raise ValueError(f"{field}.text: at most {LABEL_MAX} characters on RCS")
    data = item.get("postbackData")
    if data is not None and (not isinstance(data, str) or len(data) > POSTBACK_MAX):
        raise ValueError(f"{field}.postbackData: at most {POSTBACK_MAX} characters on RCS")
    action = item.get("action")
    if action == "reply":
        return {"reply": {"text": label, "postbackData": data or label}}
    chip: dict[str, Any] = {"text": label, "postbackData": data or label}
    if action == "open-url":
        chip["openUrlAction"] = {"url": _url(data, f"{field}.postbackData")}
    elif action == "dial":
        chip["dialAction"] = {"phoneNumber": _dial(data, f"{field}.postbackData")}
    elif action == "VIEW_LOCATION":
        chip["viewLocationAction"] = _location(data, label, f"{field}.postbackData")
    elif action == "SHARE_LOCATION":
        chip["shareLocationAction"] = {}
    elif action == "CalendarEventAction":
        chip["createCalendarEventAction"] = _calendar_event(data, label, f"{field}.postbackData")
        chip["postbackData"] = label
    else:
        raise ValueError(f"{field}.action: {action!r} is not an RCS suggestion")
    return {"action": chip}


def _dial(value: Any, field: str) -> str:
    number = _DIAL_NOISE.sub("", value) if isinstance(value, str) else ""
    digits = number[1:] if number.startswith("+") else ""
    if not (digits.isascii() and digits.isdigit() and 3 <= len(digits) <= 15):
        raise ValueError(f"{field}: the number to dial, in E.164 (+ and up to 15 digits)")
    return number


def _location(value: Any, label: str, field: str) -> dict[str, Any]:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'{field}: required, "latitude,longitude" or a place to search for')
    found = _LAT_LNG.match(value)
    if found is None:
        return {"query": value.strip()}
    latitude, longitude = float(found[1]), float(found[2])
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ValueError(f"{field}: latitude -90 to 90, longitude -180 to 180")
    return {"latLong": {"latitude": latitude, "longitude": longitude}, "label": label}


def _calendar_event(value: Any, label: str, field: str) -> dict[str, Any]:
    wanted = f'{field}: a JSON object {{"startTime", "endTime", "title"?, "description"?}} (RFC 3339 times)'
    try:
        event = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise ValueError(wanted)
    times = []
    for name in ("startTime", "endTime"):
        stamp = event.get(name)
        if not isinstance(stamp, str):
            raise ValueError(wanted)
        try:
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{field}: {name} must be an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise ValueError(f"{field}: {name} needs a UTC offset (e.g. 2026-01-31T09:00:00Z)")
        times.append(moment)
    if times[1] <= times[0]:
        raise ValueError(f"{field}: endTime must be after startTime")
    title, description = event.get("title") or label, event.get("description") or ""
    if not isinstance(title, str) or not isinstance(description, str):
        raise ValueError(f"{field}: title and description must be strings")
    return {
        "startTime": event["startTime"],
        "endTime": event["endTime"],
        "title": title,
        "description": description or title,
    }
