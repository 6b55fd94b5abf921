"""MMP message objects → WhatsApp Cloud API message bodies, with the Cloud API's limits.

`to_whatsapp_payload` is also the accept-time check of WHATSAPP messages (`Provider.check_message`), so it
is pure and fast and raises ValueError whose text starts with the MMP field at fault
(``message.whatsappInteractive.action.buttons[3]: ...``): a message the Cloud API would refuse is refused
with a 400 before anything is queued, instead of failing minutes later as a 131009.

What maps to what (providers.md §3):

- `text`: `text.body` from `message` (at most 4,096 characters); a link in it gets a preview.
- `picture` / `video` / `file`: `image` / `video` / `document` with the `message` as caption (at most
  1,024) and, for a file, `fileName` as its file name. The media go by link (`fileUrl`, fetched by
  Meta), or by id when `fileUrl` names a media object of the Graph API,
  `https://graph.facebook.com/[v21.0/]<media id>` (what an upload returned, and how inbound media are
  given to the business): such a URL needs the channel's token to be read, so Meta could never fetch it
  as a link.
- `location`: `location` from the MMP `location` (latitude, longitude, name, address).
- `fb_whatsapp_template`: `template` from `whatsappTemplateParam`: `templateId` is the template's name,
  `language` its language code (default `en_US`); `header` and `body` are the parameters of those
  components, each a text (positional: `{{1}}`, `{{2}}`, ...), a `{"name", "text"}` pair (named:
  `{{first_name}}`) or a Cloud API parameter object (`{"type": "image", "image": {"link": ...}}`,
  `currency`, `date_time`, ...); `buttons` are the button components in order, each a text (a quick-reply
  button's payload) or a Cloud API button component (`{"sub_type": "url", "parameters": [...]}`).
- `FB_WHATSAPP_INTERACTIVE`: `interactive` from `whatsappInteractive`, Meta's own interactive object of
  type `button` (1 to 3 reply buttons) or `list`; it is rebuilt from the fields the Cloud API knows, so
  nothing else reaches Meta.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import Any

from openmmp.providers.content import list_field, text_field, url_field

TEXT_MAX = 4096
CAPTION_MAX = 1024
INTERACTIVE_BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_TEXT_MAX = 60
REPLY_BUTTONS_MAX = 3
REPLY_TITLE_MAX = 20
REPLY_ID_MAX = 256
LIST_BUTTON_MAX = 20
LIST_SECTIONS_MAX = 10
LIST_ROWS_MAX = 10
SECTION_TITLE_MAX = 24
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
TEMPLATE_NAME_MAX = 512
TEMPLATE_BUTTONS_MAX = 10
QUICK_REPLY_PAYLOAD_MAX = 256
COUPON_CODE_MAX = 15
FILE_NAME_MAX = 240
DEFAULT_LANGUAGE = "en_US"

SUPPORTED_TYPES = frozenset(
    {"text", "picture", "video", "file", "location", "fb_whatsapp_template", "FB_WHATSAPP_INTERACTIVE"}
)
_MEDIA = {"picture": "image", "video": "video", "file": "document"}
_GRAPH_MEDIA = re.compile(r"https://graph\.facebook\.com/(?:v\d+\.\d+/)?(\d{1,30})/?")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:_[A-Za-z0-9]{2,4})?")
_PARAMETER_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_BUTTON_PARAMETERS = {
    "quick_reply": "payload",
    "url": "text",
    "copy_code": "coupon_code",
    "flow": "action",
}
_HEADER_MEDIA = ("image", "video", "document")
_BODY_OBJECTS = ("currency", "date_time")
_text = partial(text_field, on="WhatsApp")
_link = partial(url_field, on="WhatsApp")


def to_whatsapp_payload(message: Mapping[str, Any]) -> dict[str, Any]:
    """The Cloud API message fields for an MMP message object (placeholders already rendered).

    Returns `type` and the type's object (`text`, `image`, `template`, `interactive`, ...) without
    `messaging_product`, `recipient_type` or `to`, which belong to the call. Raises ValueError naming the
    MMP field when the message cannot go to WhatsApp as it is.
    """
    if not isinstance(message, Mapping):
        raise ValueError("message: must be an object")
    kind = message.get("type")
    if kind not in SUPPORTED_TYPES:
        raise ValueError(f"message.type: {kind!r} is not supported on WhatsApp")
    if message.get("suggestions"):
        raise ValueError(
            "message.suggestions: WhatsApp has no suggestion chips; send reply buttons or a list as "
            "FB_WHATSAPP_INTERACTIVE"
        )
    if kind == "text":
        body = _text(message.get("message"), "message.message", TEXT_MAX, required=True)
        return {"type": "text", "text": {"body": body, "preview_url": "://" in body}}
    if kind in _MEDIA:
        return _media(message, _MEDIA[kind])
    if kind == "location":
        return {"type": "location", "location": _location(message.get("location"), "message.location")}
    if kind == "fb_whatsapp_template":
        return {"type": "template", "template": _template(message.get("whatsappTemplateParam"))}
    return {"type": "interactive", "interactive": _interactive(message.get("whatsappInteractive"))}


def graph_media_id(url: str) -> str | None:
    """The media id a Graph API media URL names (`https://graph.facebook.com/v21.0/<id>`), else None."""
    found = _GRAPH_MEDIA.fullmatch(url.strip())
    return found.group(1) if found else None


def graph_media_url(media_id: str) -> str:
    """The Graph API URL of a media object: what inbound media become (`fileUrl`), and what goes back by
    id when a business sends it on."""
    return f"https://graph.facebook.com/{media_id}"


# ---- plain fields ------------------------------------------------------------------------------------------


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        raise ValueError(f"{field}: required")
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: must be an object")
    return value


def _media_object(value: Any, field: str) -> dict[str, Any]:
    """A Cloud API media reference `{link}` or `{id}` (as given in a template or interactive header)."""
    media = _object(value, field)
    if media.get("id") is not None:
        return {"id": _text(media["id"], f"{field}.id", 100, required=True)}
    return {"link": _link(media.get("link"), f"{field}.link")}


def _media(message: Mapping[str, Any], kind: str) -> dict[str, Any]:
    url = _link(message.get("fileUrl"), "message.fileUrl")
    media_id = graph_media_id(url)
    media: dict[str, Any] = {"id": media_id} if media_id else {"link": url}
    caption = _text(message.get("message"), "message.message", CAPTION_MAX)
    if caption:
        media["caption"] = caption
    if kind == "document":
        name = _text(message.get("fileName"), "message.fileName", FILE_NAME_MAX)
        if name:
            media["filename"] = name
    return {"type": kind, kind: media}


def _number(value: Any, field: str, bound: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: must be a number")
    if not -bound <= value <= bound:
        raise ValueError(f"{field}: must be between {-bound:g} and {bound:g}")
    return value


def _location(value: Any, field: str) -> dict[str, Any]:
    place = _object(value, field)
    location: dict[str, Any] = {
        "latitude": _number(place.get("latitude"), f"{field}.latitude", 90),
        "longitude": _number(place.get("longitude"), f"{field}.longitude", 180),
    }
    for name in ("name", "address"):
        text = _text(place.get(name), f"{field}.{name}", 1000)
        if text:
            location[name] = text
    return location


def _distinct(values: list[str], field: str, what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{field}: two have the same {what}; WhatsApp needs each to be different")


# ---- templates ---------------------------------------------------------------------------------------------


def _template(value: Any) -> dict[str, Any]:
    field = "message.whatsappTemplateParam"
    param = _object(value, field)
    name = _text(param.get("templateId"), f"{field}.templateId", TEMPLATE_NAME_MAX, required=True)
    if not _TEMPLATE_NAME.fullmatch(name):
        raise ValueError(
            f"{field}.templateId: the template's name on WhatsApp (lower-case letters, digits and _)"
        )
    language = param.get("language") or DEFAULT_LANGUAGE
    if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
        raise ValueError(f"{field}.language: a WhatsApp language code such as en_US, pt_BR or km")
    components: list[dict[str, Any]] = []
    header = list_field(param.get("header"), f"{field}.header")
    if len(header) > 1:
        raise ValueError(f"{field}.header: a template header takes one parameter")
    if header:
        components.append({"type": "header", "parameters": _parameters(header, f"{field}.header", "header")})
    body = list_field(param.get("body"), f"{field}.body")
    if body:
        components.append({"type": "body", "parameters": _parameters(body, f"{field}.body", "body")})
    buttons = list_field(param.get("buttons"), f"{field}.buttons")
    if len(buttons) > TEMPLATE_BUTTONS_MAX:
        raise ValueError(f"{field}.buttons: at most {TEMPLATE_BUTTONS_MAX} on WhatsApp")
    components += [_template_button(b, n, f"{field}.buttons[{n}]") for n, b in enumerate(buttons)]
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    return template


def _parameters(items: list[Any], field: str, where: str) -> list[dict[str, Any]]:
    built = [_parameter(item, f"{field}[{n}]", where) for n, item in enumerate(items)]
    named = [p for p in built if p["type"] == "text" and "parameter_name" in p]
    positional = [p for p in built if p["type"] == "text" and "parameter_name" not in p]
    if named and positional:
        raise ValueError(f"{field}: either every text parameter has a name or none has (as the template)")
    _distinct([p["parameter_name"] for p in named], field, "name")
    return built


def _parameter(item: Any, field: str, where: str) -> dict[str, Any]:
    limit = HEADER_TEXT_MAX if where == "header" else TEXT_MAX
    if isinstance(item, str | int | float) and not isinstance(item, bool):
        return {"type": "text", "text": _text(str(item), field, limit, required=True)}
    if not isinstance(item, Mapping):
        raise ValueError(f"{field}: a text, a {{name, text}} pair or a Cloud API parameter object")
    kind = item.get("type", "text" if "name" in item else None)
    if kind == "text":
        parameter = {"type": "text", "text": _text(item.get("text"), f"{field}.text", limit, required=True)}
        name = item.get("parameter_name", item.get("name"))
        if name is not None:
            if not isinstance(name, str) or not _PARAMETER_NAME.fullmatch(name):
                raise ValueError(
                    f"{field}.name: the template variable's name (lower-case letters, digits, _)"
                )
            parameter["parameter_name"] = name
        return parameter
    if where == "header" and kind in _HEADER_MEDIA:
        media = _media_object(item.get(kind), f"{field}.{kind}")
        if kind == "document" and item[kind].get("filename") is not None:
            media["filename"] = _text(item[kind]["filename"], f"{field}.document.filename", FILE_NAME_MAX)
        return {"type": kind, kind: media}
    if where == "header" and kind == "location":
        return {"type": "location", "location": _location(item.get("location"), f"{field}.location")}
    if where == "body" and kind in _BODY_OBJECTS:
        return {"type": kind, kind: dict(_object(item.get(kind), f"{field}.{kind}"))}
    allowed = "text, image, video, document or location" if where == "header" else "text, currency, date_time"
    raise ValueError(f"{field}.type: {kind!r} is not a {where} parameter (one of {allowed})")


def _template_button(item: Any, position: int, field: str) -> dict[str, Any]:
    if isinstance(item, str):
        payload = _text(item, field, QUICK_REPLY_PAYLOAD_MAX, required=True)
        parameters: list[dict[str, Any]] = [{"type": "payload", "payload": payload}]
        return {"type": "button", "sub_type": "quick_reply", "index": str(position), "parameters": parameters}
    button = _object(item, field)
    sub_type = button.get("sub_type")
    if sub_type not in _BUTTON_PARAMETERS:
        raise ValueError(f"{field}.sub_type: one of {', '.join(_BUTTON_PARAMETERS)}")
    index = button.get("index", position)
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < TEMPLATE_BUTTONS_MAX:
        raise ValueError(f"{field}.index: the button's position in the template, 0 to 9")
    wanted = _BUTTON_PARAMETERS[sub_type]
    given = list_field(button.get("parameters"), f"{field}.parameters")
    if len(given) != 1:
        raise ValueError(f"{field}.parameters: one {wanted} parameter")
    parameter = _object(given[0], f"{field}.parameters[0]")
    if parameter.get("type") != wanted:
        raise ValueError(f"{field}.parameters[0].type: a {sub_type} button takes a {wanted} parameter")
    limits = {"payload": QUICK_REPLY_PAYLOAD_MAX, "text": 2000, "coupon_code": COUPON_CODE_MAX}
    if wanted == "action":
        value: Any = dict(_object(parameter.get("action"), f"{field}.parameters[0].action"))
    else:
        value = _text(parameter.get(wanted), f"{field}.parameters[0].{wanted}", limits[wanted], required=True)
    return {
        "type": "button",
        "sub_type": sub_type,
        "index": str(index),
        "parameters": [{"type": wanted, wanted: value}],
    }


# ---- interactive -------------------------------------------------------------------------------------------


def _interactive(value: Any) -> dict[str, Any]:
    field = "message.whatsappInteractive"
    given = _object(value, field)
    kind = given.get("type")
    if kind not in ("button", "list"):
        raise ValueError(f"{field}.type: button (reply buttons) or list")
    interactive: dict[str, Any] = {"type": kind}
    if given.get("header") is not None:
        interactive["header"] = _interactive_header(
            given["header"], f"{field}.header", media=kind == "button"
        )
    body = _object(given.get("body"), f"{field}.body")
    interactive["body"] = {
        "text": _text(body.get("text"), f"{field}.body.text", INTERACTIVE_BODY_MAX, required=True)
    }
    if given.get("footer") is not None:
        footer = _object(given["footer"], f"{field}.footer")
        interactive["footer"] = {
            "text": _text(footer.get("text"), f"{field}.footer.text", FOOTER_TEXT_MAX, required=True)
        }
    action = _object(given.get("action"), f"{field}.action")
    if kind == "button":
        interactive["action"] = {"buttons": _reply_buttons(action.get("buttons"), f"{field}.action.buttons")}
    else:
        interactive["action"] = _list_action(action, f"{field}.action")
    return interactive


def _interactive_header(value: Any, field: str, *, media: bool) -> dict[str, Any]:
    header = _object(value, field)
    kind = header.get("type")
    if kind == "text":
        return {
            "type": "text",
            "text": _text(header.get("text"), f"{field}.text", HEADER_TEXT_MAX, required=True),
        }
    if media and kind in _HEADER_MEDIA:
        return {"type": kind, kind: _media_object(header.get(kind), f"{field}.{kind}")}
    allowed = "text, image, video or document" if media else "text (a list's header is text only)"
    raise ValueError(f"{field}.type: {allowed}")


def _reply_buttons(value: Any, field: str) -> list[dict[str, Any]]:
    buttons = list_field(value, field)
    if not 1 <= len(buttons) <= REPLY_BUTTONS_MAX:
        raise ValueError(f"{field}: 1 to {REPLY_BUTTONS_MAX} reply buttons")
    ids, titles = [], []
    for n, item in enumerate(buttons):
        button = _object(item, f"{field}[{n}]")
        if button.get("type", "reply") != "reply":
            raise ValueError(f"{field}[{n}].type: reply")
        reply = _object(button.get("reply"), f"{field}[{n}].reply")
        ids.append(_text(reply.get("id"), f"{field}[{n}].reply.id", REPLY_ID_MAX, required=True))
        titles.append(_text(reply.get("title"), f"{field}[{n}].reply.title", REPLY_TITLE_MAX, required=True))
    _distinct(ids, field, "reply.id")
    _distinct(titles, field, "reply.title")
    return [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in zip(ids, titles, strict=True)]


def _list_action(action: Mapping[str, Any], field: str) -> dict[str, Any]:
    button = _text(action.get("button"), f"{field}.button", LIST_BUTTON_MAX, required=True)
    sections = list_field(action.get("sections"), f"{field}.sections")
    if not 1 <= len(sections) <= LIST_SECTIONS_MAX:
        raise ValueError(f"{field}.sections: 1 to {LIST_SECTIONS_MAX} sections")
    built, ids = [], []
    for s, item in enumerate(sections):
        where = f"{field}.sections[{s}]"
        section = _object(item, where)
        title = _text(section.get("title"), f"{where}.title", SECTION_TITLE_MAX, required=len(sections) > 1)
        rows = list_field(section.get("rows"), f"{where}.rows")
        if not rows:
            raise ValueError(f"{where}.rows: at least one row")
        built_rows = []
        for r, entry in enumerate(rows):
            row = _object(entry, f"{where}.rows[{r}]")
            made = {
                "id": _text(row.get("id"), f"{where}.rows[{r}].id", ROW_ID_MAX, required=True),
                "title": _text(row.get("title"), f"{where}.rows[{r}].title", ROW_TITLE_MAX, required=True),
            }
            description = _text(row.get("description"), f"{where}.rows[{r}].description", ROW_DESCRIPTION_MAX)
            if description:
                made["description"] = description
            ids.append(made["id"])
            built_rows.append(made)
        made_section: dict[str, Any] = {"rows": built_rows}
        if title:
            made_section["title"] = title
        built.append(made_section)
    if len(ids) > LIST_ROWS_MAX:
        raise ValueError(f"{field}.sections: at most {LIST_ROWS_MAX} rows in all the sections together")
    _distinct(ids, f"{field}.sections", "row id")
    return {"button": button, "sections": built}
