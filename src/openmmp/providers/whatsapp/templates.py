"""WhatsApp message templates: the form Meta reviews, its rules, Meta's copy, and how an approved one is sent.

A company's template goes to Meta as `POST {base}/{wabaId}/message_templates` (providers.md §3) in
the MMP API's form `WhatsappFormCreateTemplateMessage`: `name`, `accountId`, `category`, `language`,
`parameterFormat` and `components`, which are Meta's own component objects under Meta's own names
(`header_text`, `phone_number`, ...), so that a template copied from Meta's documentation or WhatsApp
Manager goes as it is. Meta answers with the template's id at once; its verdict comes later, as a
`message_template_status_update` webhook (`callbacks`). A submission is idempotent (`submit`: Meta's
refusal of a second template of a name and language is answered with the first when it is the same).
Meta edits a template's category and components in place (`POST {base}/{template-id}`, reviewed again);
one renamed or in another language is submitted anew and the old one deleted (`edit`); and
`DELETE {base}/{wabaId}/message_templates?name&hsm_id` deletes one (`delete`).

The form is checked against Meta's documented rules before anything is sent (`check_components`, which
the simulator applies too), so a template Meta would refuse is a 400 naming the field instead of an
upstream error: one BODY (at most 1,024 characters), at most one HEADER (a text of at most 60 with at
most one variable, or a medium with a sample, or a location), FOOTER (at most 60, no variables) and
BUTTONS (1 to 10: at most 2 URL, 1 PHONE_NUMBER, 1 COPY_CODE; labels at most 25). Placeholders are
`{{1}}`, `{{2}}`, ... in order, each once, without gaps, numbered per component as Meta numbers them
(POSITIONAL), or `{{snake_name}}` (NAMED), never both; every variable needs a sample (`example`).

**Variables.** A send of the template gives one parameter per variable, by name (`template_variables`),
in this order:

- the header's: `header.1` for a POSITIONAL text header's `{{1}}` (Meta numbers the header apart from
  the body); `header.image`, `header.video` or `header.document` for a media header (the medium's
  http(s) URL); `header.latitude`, `header.longitude`, `header.name` and `header.address` for a
  location header;
- the body's: `1`, `2`, ... as in its text (POSITIONAL);
- in a NAMED template, each `{{name}}` of the header and the body is the variable `name` (one
  variable, filling both, when both use it);
- the buttons': `button.<index>` (Meta's 0-based index in BUTTONS) for a URL button's `{{1}}` (the end
  of its URL) and for a COPY_CODE button (the code it copies).

`template_message` turns them into the `fb_whatsapp_template` message that `payload` sends.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self
from urllib.parse import quote

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from openmmp.kit.http import HttpClient
from openmmp.kit.schemas import RequestModel
from openmmp.kit.validators import http_url
from openmmp.providers.base import ProviderError, TemplateReview
from openmmp.providers.upstream import bad_response
from openmmp.providers.whatsapp import payload
from openmmp.providers.whatsapp.callbacks import TEMPLATE_STATUSES, template_cause
from openmmp.providers.whatsapp.client import GraphClient
from openmmp.providers.whatsapp.errors import DUPLICATE_TEMPLATE

NAME_MAX = payload.TEMPLATE_NAME_MAX
BODY_MAX = 1024
HEADER_TEXT_MAX = payload.HEADER_TEXT_MAX
FOOTER_TEXT_MAX = payload.FOOTER_TEXT_MAX
BUTTONS_MAX = payload.TEMPLATE_BUTTONS_MAX
BUTTON_TEXT_MAX = 25
BUTTON_URL_MAX = 2000
PHONE_NUMBER_MAX = 20
COPY_CODE_MAX = payload.COUPON_CODE_MAX
EXAMPLE_MAX = 1024
BUTTONS_OF_A_KIND_MAX: Mapping[str, int] = {"URL": 2, "PHONE_NUMBER": 1, "COPY_CODE": 1}
BODY_PARAMETER_MAX = 1024
"""A body parameter's limit when the template has other components (Meta's; alone, the send path's)."""
LOCATION_TEXT_MAX = 1000

COMPONENT_TYPES = ("HEADER", "BODY", "FOOTER", "BUTTONS")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE")
_MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
_LOCATION_PARTS = ("latitude", "longitude", "name", "address")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_POSITION = re.compile(r"[1-9][0-9]*")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
"""A NAMED variable: what the send path takes as a parameter's name."""
_URL_VARIABLE = "{{1}}"
_SPACES = " " * 5


# ---- Meta's rules ------------------------------------------------------------------------------------------


def placeholders(text: str, where: str, parameter_format: str) -> list[str]:
    """The variables of `text` in order (`"1"`, `"2"`, ... or names). ValueError naming `where` for a
    placeholder that is malformed, of the other format, repeated, or (POSITIONAL) out of order."""
    variables = _PLACEHOLDER.findall(text)
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise ValueError(f"{where}: unbalanced braces; a variable is written {{{{1}}}} or {{{{name}}}}")
    for variable in variables:
        positional, named = _POSITION.fullmatch(variable), _NAME.fullmatch(variable)
        if parameter_format == "POSITIONAL" and not positional:
            what = "a named variable" if named else "not a variable"
            raise ValueError(
                f"{where}: {{{{{variable}}}}} is {what}; the template's parameter format is POSITIONAL "
                "({{1}}, {{2}}, ...)"
            )
        if parameter_format == "NAMED" and not named:
            what = "a positional variable" if positional else "not a variable"
            raise ValueError(
                f"{where}: {{{{{variable}}}}} is {what}; the template's parameter format is NAMED "
                "({{lower_case_name}})"
            )
    if len(set(variables)) != len(variables):
        twice = next(variable for variable in variables if variables.count(variable) > 1)
        raise ValueError(f"{where}: {{{{{twice}}}}} appears twice; each variable appears once")
    if parameter_format == "POSITIONAL" and variables != [str(n) for n in range(1, len(variables) + 1)]:
        found = ", ".join(f"{{{{{variable}}}}}" for variable in variables)
        raise ValueError(
            f"{where}: variables are {{{{1}}}}, {{{{2}}}}, ... in order without gaps (found {found})"
        )
    return variables


def check_components(components: Any, parameter_format: str = "POSITIONAL") -> None:
    """Raise ValueError("components[<n>]...: ...") for components Meta refuses when a template is created
    with `parameter_format` (POSITIONAL or NAMED).

    Takes Meta's form (its field names; types and formats in any case), as parsed JSON of any shape:
    the simulator checks what it is sent with it, the provider what a company submits.
    """
    if not isinstance(components, list) or not components:
        raise ValueError("components: a list of HEADER, BODY, FOOTER and BUTTONS components")
    seen: dict[str, int] = {}
    for n, component in enumerate(components):
        where = f"components[{n}]"
        if not isinstance(component, Mapping):
            raise ValueError(f"{where}: must be an object")
        kind = _upper(component.get("type"))
        if kind not in COMPONENT_TYPES:
            raise ValueError(f"{where}.type: HEADER, BODY, FOOTER or BUTTONS")
        if kind in seen:
            raise ValueError(f"{where}.type: a template has one {kind} (components[{seen[kind]}] is one)")
        seen[kind] = n
        if kind == "HEADER":
            _check_header(component, where, parameter_format)
        elif kind == "BODY":
            text = _text(component.get("text"), f"{where}.text", BODY_MAX)
            variables = placeholders(text, f"{where}.text", parameter_format)
            _check_samples(component.get("example"), variables, f"{where}.example", "body", parameter_format)
        elif kind == "FOOTER":
            text = _text(component.get("text"), f"{where}.text", FOOTER_TEXT_MAX)
            if "{{" in text:
                raise ValueError(f"{where}.text: a footer has no variables")
        else:
            _check_buttons(component.get("buttons"), f"{where}.buttons")
    if "BODY" not in seen:
        raise ValueError("components: a BODY component is required")


def _upper(value: Any) -> Any:
    # Meta's documentation spells types and formats both ways ("HEADER", "header").
    return value.upper() if isinstance(value, str) else value


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: required")
    if len(value) > limit:
        raise ValueError(f"{where}: at most {limit} characters")
    return value


def _check_header(header: Mapping[str, Any], where: str, parameter_format: str) -> None:
    form = _upper(header.get("format"))
    if form not in HEADER_FORMATS:
        raise ValueError(f"{where}.format: TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION")
    if form == "TEXT":
        text = _text(header.get("text"), f"{where}.text", HEADER_TEXT_MAX)
        variables = placeholders(text, f"{where}.text", parameter_format)
        if len(variables) > 1:
            raise ValueError(f"{where}.text: a header has at most one variable")
        _check_samples(header.get("example"), variables, f"{where}.example", "header", parameter_format)
        return
    if header.get("text") is not None:
        raise ValueError(f"{where}.text: only a TEXT header has a text")
    if form in _MEDIA_FORMATS:
        example = header.get("example")
        handles = example.get("header_handle") if isinstance(example, Mapping) else None
        if not _strings(handles, 1):
            raise ValueError(
                f"{where}.example.header_handle: a media header needs a sample, one handle of Meta's "
                "Resumable Upload API"
            )


def _strings(value: Any, count: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == count
        and all(isinstance(item, str) and item.strip() for item in value)
    )


def _check_samples(
    example: Any, variables: Sequence[str], where: str, component: str, parameter_format: str
) -> None:
    """Meta reviews a template only with a sample value for each of its variables."""
    if not variables:
        return
    given = example if isinstance(example, Mapping) else {}
    if parameter_format == "POSITIONAL":
        key = f"{component}_text"
        values = given.get(key)
        if component == "body":  # one row of samples: [["Dara", "4711"]]
            values = values[0] if isinstance(values, list) and len(values) == 1 else None
        if not _strings(values, len(variables)):
            shape = '["..."]' if component == "header" else '[["...", ...]]'
            raise ValueError(f"{where}.{key}: a sample for each of its {len(variables)} variables: {shape}")
        return
    key = f"{component}_text_named_params"
    samples = given.get(key)
    named = (
        {item.get("param_name"): item.get("example") for item in samples if isinstance(item, Mapping)}
        if isinstance(samples, list)
        else {}
    )
    if (
        not isinstance(samples, list)
        or len(samples) != len(variables)
        or set(named) != set(variables)
        or not all(isinstance(value, str) and value.strip() for value in named.values())
    ):
        raise ValueError(
            f"{where}.{key}: a sample {{param_name, example}} for each variable: {', '.join(variables)}"
        )


def _check_buttons(buttons: Any, where: str) -> None:
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= BUTTONS_MAX:
        raise ValueError(f"{where}: 1 to {BUTTONS_MAX} buttons")
    kinds: Counter[str] = Counter()
    for n, button in enumerate(buttons):
        at = f"{where}[{n}]"
        if not isinstance(button, Mapping):
            raise ValueError(f"{at}: must be an object")
        kind = _upper(button.get("type"))
        if kind not in BUTTON_TYPES:
            raise ValueError(f"{at}.type: QUICK_REPLY, URL, PHONE_NUMBER or COPY_CODE")
        kinds[kind] += 1
        if kinds[kind] > BUTTONS_OF_A_KIND_MAX.get(kind, BUTTONS_MAX):
            raise ValueError(f"{at}: a template has at most {BUTTONS_OF_A_KIND_MAX[kind]} {kind} buttons")
        if kind == "COPY_CODE":  # its label is Meta's own; the sample is the code
            _text(button.get("example"), f"{at}.example", COPY_CODE_MAX)
            continue
        _text(button.get("text"), f"{at}.text", BUTTON_TEXT_MAX)
        if kind == "PHONE_NUMBER":
            _text(button.get("phone_number"), f"{at}.phone_number", PHONE_NUMBER_MAX)
        elif kind == "URL":
            _check_url_button(button, at)


def _check_url_button(button: Mapping[str, Any], at: str) -> None:
    url = _text(button.get("url"), f"{at}.url", BUTTON_URL_MAX)
    try:
        http_url(url.replace(_URL_VARIABLE, ""))
    except ValueError as exc:
        raise ValueError(f"{at}.url: {exc}") from None
    if "{{" not in url:
        return
    if _PLACEHOLDER.findall(url) != ["1"] or not url.endswith(_URL_VARIABLE):
        raise ValueError(f"{at}.url: at most one variable, {{{{1}}}}, at the end of the URL")
    if not _strings(button.get("example"), 1):
        raise ValueError(f'{at}.example: a sample of the whole URL, its variable filled in: ["https://..."]')


# ---- the form ----------------------------------------------------------------------------------------------


class _MetaObject(RequestModel):
    """Part of Meta's own component objects: Meta's field names on the wire, not camelCase."""

    model_config = ConfigDict(alias_generator=None)


class WhatsappTemplateNamedSample(_MetaObject):
    param_name: str = Field(min_length=1, max_length=100, description="The NAMED variable")
    example: str = Field(min_length=1, max_length=EXAMPLE_MAX, description="A value it could take")


class WhatsappTemplateExample(_MetaObject):
    """Samples Meta's reviewers see: one for each variable, a medium for a media header."""

    header_text: list[str] | None = Field(default=None, max_length=1)
    header_text_named_params: list[WhatsappTemplateNamedSample] | None = Field(default=None, max_length=1)
    header_handle: list[str] | None = Field(default=None, max_length=1)
    body_text: list[list[str]] | None = Field(default=None, max_length=1)
    body_text_named_params: list[WhatsappTemplateNamedSample] | None = None


class WhatsappTemplateButton(_MetaObject):
    type: Literal["QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE"]
    text: str | None = Field(default=None, max_length=BUTTON_TEXT_MAX, description="The button's label")
    url: str | None = Field(
        default=None, max_length=BUTTON_URL_MAX, description="URL: where it goes; may end with {{1}}"
    )
    phone_number: str | None = Field(default=None, max_length=PHONE_NUMBER_MAX, description="PHONE_NUMBER")
    example: str | list[str] | None = Field(
        default=None, description="URL: the whole URL with {{1}} filled in, in a list; COPY_CODE: a code"
    )

    @field_validator("type", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return _upper(value)


class WhatsappTemplateComponent(_MetaObject):
    """One of Meta's components: HEADER (`format`, `text`?, `example`?), BODY (`text`, `example`?),
    FOOTER (`text`) or BUTTONS (`buttons`)."""

    type: Literal["HEADER", "BODY", "FOOTER", "BUTTONS"]
    format: Literal["TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION"] | None = None
    text: str | None = Field(default=None, max_length=BODY_MAX)
    example: WhatsappTemplateExample | None = None
    buttons: list[WhatsappTemplateButton] | None = Field(default=None, max_length=BUTTONS_MAX)

    @field_validator("type", "format", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return _upper(value)

    def upstream(self) -> dict[str, Any]:
        """The component as Meta takes it."""
        return self.model_dump(exclude_none=True)


class WhatsappFormCreateTemplateMessage(RequestModel):
    """A WhatsApp template for Meta's review (api.md §4.5): Meta's template, named and filed under the
    channel's WhatsApp Business account. `accountId` is the channel it is submitted through."""

    name: str = Field(
        min_length=1,
        max_length=NAME_MAX,
        pattern=r"^[a-z0-9_]+$",
        description="The template's name on WhatsApp (lower-case letters, digits, _); a send's templateId",
    )
    account_id: str | None = Field(default=None, max_length=36, description="The channel's publicId")
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"]
    language: str = Field(
        pattern=r"^[a-z]{2,3}(?:_[A-Za-z0-9]{2,4})?$", description="Its language code, e.g. en_US, pt_BR, km"
    )
    parameter_format: Literal["POSITIONAL", "NAMED"] = Field(
        default="POSITIONAL", description="Variables written {{1}}, {{2}}, ... or {{snake_name}}"
    )
    components: list[WhatsappTemplateComponent] = Field(
        min_length=1, max_length=len(COMPONENT_TYPES), description="Meta's components, under Meta's names"
    )

    @model_validator(mode="after")
    def _metas_rules(self) -> Self:
        check_components([c.upstream() for c in self.components], self.parameter_format)
        return self

    def upstream(self) -> dict[str, Any]:
        """The body of `POST /{waba-id}/message_templates`."""
        body: dict[str, Any] = {
            "name": self.name,
            "language": self.language,
            "category": self.category,
            "components": [component.upstream() for component in self.components],
        }
        if self.parameter_format == "NAMED":
            body["parameter_format"] = "NAMED"
        return body

    def component(self, kind: str) -> WhatsappTemplateComponent | None:
        """Its component of type `kind`, if it has one."""
        return next((c for c in self.components if c.type == kind), None)


def form(template: Mapping[str, Any]) -> WhatsappFormCreateTemplateMessage:
    """`template` (wire names) as the form; ValueError("<field>: <problem>") for the first thing wrong."""
    try:
        return WhatsappFormCreateTemplateMessage.model_validate(template)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        message = str(first["msg"]).removeprefix("Value error, ")
        # Meta's rules name the field in their message already.
        raise ValueError(f"{where}: {message}" if where else message) from None


# ---- Meta's copy: submitting, editing, deleting ------------------------------------------------------------


_DUPLICATE = f"WHATSAPP_{DUPLICATE_TEMPLATE}"
_NO_OBJECT = "WHATSAPP_100"
"""What Meta answers for an id it has no object of (100, subcode 33), among other faults of a request."""
_LISTED = "id,name,language,status,category,parameter_format,components,rejected_reason"
_PAGE = "100"
_GONE = frozenset({"PENDING_DELETION", "DELETED"})
"""Statuses of a template Meta is deleting or has deleted."""


async def submit(
    http: HttpClient, base_url: str, credentials: Mapping[str, Any], template: Mapping[str, Any]
) -> TemplateReview:
    """Submit `template` for Meta's review on the channel's WhatsApp Business account; its id and review
    so far (Meta approves some templates at once).

    Idempotent: Meta keys templates by name and language and refuses a second one (`WHATSAPP_2388024`),
    so on that refusal the account's template of this name and language is the answer when it is this
    very template (same category, parameter format and components: a submission repeated after a lost
    answer). When it is another, the refusal stands. Raises as `Provider.submit_template` says.
    """
    body = form(template).upstream()
    graph = GraphClient(http, base_url)
    try:
        answer = await graph.post(
            f"{_waba(credentials)}/message_templates", token=_token(credentials), body=body
        )
    except ProviderError as refused:
        if refused.code != _DUPLICATE:
            raise
        held = await _held(graph, credentials, body)
        if held is None:
            raise
        return held
    template_id = _template_id(answer.get("id"), "the Graph API took the template but named no template id")
    return _review(template_id, answer.get("status"), None) or TemplateReview(template_id)


async def edit(
    http: HttpClient,
    base_url: str,
    credentials: Mapping[str, Any],
    template_id: str,
    template: Mapping[str, Any],
) -> TemplateReview:
    """Make Meta's template `template_id` the `template` and have it reviewed again; its id (a new one
    when it had to be replaced) and review so far.

    Meta edits a template in place (`POST /{template-id}`), but only its category and components: to
    Meta a template under another name or in another language is another template, so that one is
    submitted (`submit`) and the old one deleted. Meta's copy says which it is (`GET /{template-id}`).
    A replacement repeated after a lost answer finds the old template gone and the new one there, which
    is then the answer. Raises as `Provider.edit_template` says.
    """
    body = form(template).upstream()
    graph = GraphClient(http, base_url)
    path = quote(template_id, safe="")
    try:
        current = await graph.get(path, token=_token(credentials), query={"fields": "id,name,language"})
    except ProviderError as refused:
        held = await _held(graph, credentials, body) if refused.code == _NO_OBJECT else None
        if held is None:
            raise
        return held
    name = current.get("name")
    if not isinstance(name, str) or not name:
        raise bad_response("the Graph API named no name for the template")
    if (name, current.get("language")) == (body["name"], body["language"]):
        changed = {"category": body["category"], "components": body["components"]}
        _confirmed(await graph.post(path, token=_token(credentials), body=changed), "the edit")
        return TemplateReview(template_id)
    review = await submit(http, base_url, credentials, template)
    await _remove(http, base_url, credentials, name, template_id)
    return review


async def delete(
    http: HttpClient,
    base_url: str,
    credentials: Mapping[str, Any],
    template_id: str,
    template: Mapping[str, Any],
) -> None:
    """Delete Meta's template `template_id` (`template`: its form as submitted, whose name Meta wants
    along with the id). Raises as `Provider.delete_template` says."""
    await _remove(http, base_url, credentials, str(template["name"]), template_id)


def _waba(credentials: Mapping[str, Any]) -> str:
    return quote(str(credentials["wabaId"]), safe="")


def _token(credentials: Mapping[str, Any]) -> str:
    return str(credentials["accessToken"])


def _template_id(value: Any, missing: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise bad_response(missing)
    return value


def _review(template_id: str, status: Any, reason: Any) -> TemplateReview | None:
    """The review of Meta's template in Meta's `status`; None for a status that is no review (DELETED,
    ARCHIVED, ...)."""
    decided = TEMPLATE_STATUSES.get(status) if isinstance(status, str) else None
    if decided is None:
        return None
    cause = template_cause(status, reason) if decided == "REJECTED" else ""
    return TemplateReview(template_id, decided, cause)


def _confirmed(answer: Mapping[str, Any], what: str) -> None:
    if answer.get("success") is not True:
        raise bad_response(f"the Graph API answered {what} without success")


async def _held(
    graph: GraphClient, credentials: Mapping[str, Any], body: Mapping[str, Any]
) -> TemplateReview | None:
    """The review of the account's template that is `body` (Meta's form) already, if it has one."""
    for item in await _named(graph, credentials, body["name"]):
        if item.get("language") != body["language"] or not _same(item, body):
            continue
        template_id = _template_id(item.get("id"), "the Graph API listed a template without its id")
        review = _review(template_id, item.get("status"), item.get("rejected_reason"))
        if review is not None:
            return review
    return None


def _same(item: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether Meta's template `item` has the category, parameter format and components of `body`."""
    return bool(
        item.get("category") == body["category"]
        and item.get("parameter_format", "POSITIONAL") == body.get("parameter_format", "POSITIONAL")
        and _canonical(item.get("components")) == _canonical(body["components"])
    )


def _canonical(value: Any) -> Any:
    # Meta spells types and formats in either case; the rest of a component is compared as it is.
    if isinstance(value, Mapping):
        return {
            key: _upper(item) if key in ("type", "format") else _canonical(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


async def _named(graph: GraphClient, credentials: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The account's templates named `name` exactly (Meta's `name` filter also finds names containing
    it), every page of them."""
    path = f"{_waba(credentials)}/message_templates"
    query = {"name": name, "fields": _LISTED, "limit": _PAGE}
    found: list[dict[str, Any]] = []
    while True:
        page = await graph.get(path, token=_token(credentials), query=query)
        data = page.get("data")
        if not isinstance(data, list):
            raise bad_response("the Graph API listed templates without a data list")
        found += [item for item in data if isinstance(item, dict) and item.get("name") == name]
        after = _next_cursor(page)
        if after is None:
            return found
        query = {**query, "after": after}


def _next_cursor(page: Mapping[str, Any]) -> str | None:
    """The cursor of the list's next page; None on its last."""
    paging = page.get("paging")
    if not isinstance(paging, Mapping) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, Mapping) else None
    return after if isinstance(after, str) and after else None


async def _remove(
    http: HttpClient, base_url: str, credentials: Mapping[str, Any], name: str, template_id: str
) -> None:
    """`DELETE /{waba-id}/message_templates?name&hsm_id`: the one template (by its name alone Meta would
    delete every language of it). One Meta no longer has counts as deleted: Meta refuses to delete it,
    and its list no longer holds it."""
    try:
        await _delete(http, base_url, credentials, name, template_id)
    except ProviderError as refused:
        if refused.retryable or await _still_there(
            GraphClient(http, base_url), credentials, name, template_id
        ):
            raise


async def _delete(
    http: HttpClient, base_url: str, credentials: Mapping[str, Any], name: str, template_id: str
) -> None:
    path = f"{_waba(credentials)}/message_templates"
    answer = await GraphClient(http, base_url).delete(
        path, token=_token(credentials), query={"name": name, "hsm_id": template_id}
    )
    _confirmed(answer, "the deletion")


async def _still_there(
    graph: GraphClient, credentials: Mapping[str, Any], name: str, template_id: str
) -> bool:
    """Whether the account still has the template, as far as its list says (True when it cannot be
    listed either: then the refusal to delete it stands)."""
    try:
        named = await _named(graph, credentials, name)
    except ProviderError:
        return True
    return any(str(item.get("id")) == template_id and item.get("status") not in _GONE for item in named)


# ---- sending an approved one -------------------------------------------------------------------------------


def variables(template: Mapping[str, Any]) -> list[str]:
    """The names of the parameters a send of `template` gives, in order (the module's scheme)."""
    names: list[str] = []
    for name, _kind in _slots(form(template)):
        if name not in names:
            names.append(name)
    return names


def _slots(template: WhatsappFormCreateTemplateMessage) -> list[tuple[str, str]]:
    """Each place a parameter goes, as (variable, kind): kind says where and what, e.g. "header.text",
    "body.text", "header.image", "header.latitude", "button.url", "button.coupon"."""
    named = template.parameter_format == "NAMED"
    slots: list[tuple[str, str]] = []
    header = template.component("HEADER")
    if header is not None and header.format == "TEXT":
        for token in placeholders(header.text or "", "header", template.parameter_format):
            slots.append((token if named else f"header.{token}", "header.text"))
    elif header is not None and header.format == "LOCATION":
        slots += [(f"header.{part}", f"header.{part}") for part in _LOCATION_PARTS]
    elif header is not None and header.format is not None:
        medium = header.format.lower()
        slots.append((f"header.{medium}", f"header.{medium}"))
    body = template.component("BODY")
    if body is not None:
        slots += [
            (token, "body.text") for token in placeholders(body.text or "", "body", template.parameter_format)
        ]
    buttons = template.component("BUTTONS")
    for index, button in enumerate(buttons.buttons or [] if buttons is not None else []):
        if button.type == "URL" and button.url and button.url.endswith(_URL_VARIABLE):
            slots.append((f"button.{index}", "button.url"))
        elif button.type == "COPY_CODE":
            slots.append((f"button.{index}", "button.coupon"))
    return slots


def message(template: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """The `fb_whatsapp_template` message sending the approved `template` with `params` (by variable).

    ValueError("params.<name>: ...") for a parameter missing, unknown, or one Meta would refuse: texts
    without new lines, tabs or more than four spaces in a row (Meta's 132018), within the component's
    limit; media as http(s) URLs; a location's coordinates as numbers.
    """
    made = form(template)
    slots = _slots(made)
    known = {name for name, _kind in slots}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"params.{unknown[0]}: not a variable of the template ({', '.join(sorted(known))})")
    named = made.parameter_format == "NAMED"
    body_limit = BODY_PARAMETER_MAX if len(made.components) > 1 else payload.TEXT_MAX
    header: list[Any] = []
    body: list[Any] = []
    buttons: list[dict[str, Any]] = []
    location: dict[str, Any] = {}
    button_urls = _button_urls(made)
    for name, kind in slots:
        value = _value(params, name)
        if kind in ("header.text", "body.text"):
            text = _text_parameter(value, name, HEADER_TEXT_MAX if kind == "header.text" else body_limit)
            (header if kind == "header.text" else body).append(
                {"name": name, "text": text} if named else text
            )
        elif kind in ("header.image", "header.video", "header.document"):
            medium = kind.removeprefix("header.")
            header.append({"type": medium, medium: {"link": _url_parameter(value, name)}})
        elif kind in ("header.latitude", "header.longitude"):
            location[kind.removeprefix("header.")] = _coordinate(
                value, name, 90 if "latitude" in kind else 180
            )
        elif kind in ("header.name", "header.address"):
            location[kind.removeprefix("header.")] = _text_parameter(value, name, LOCATION_TEXT_MAX)
        else:
            index = int(name.removeprefix("button."))
            if kind == "button.url":
                limit = BUTTON_URL_MAX - len(button_urls[index]) + len(_URL_VARIABLE)
                suffix = {"type": "text", "text": _text_parameter(value, name, limit)}
                buttons.append({"sub_type": "url", "index": index, "parameters": [suffix]})
            else:
                coupon = {"type": "coupon_code", "coupon_code": _text_parameter(value, name, COPY_CODE_MAX)}
                buttons.append({"sub_type": "copy_code", "index": index, "parameters": [coupon]})
    if location:
        header.append({"type": "location", "location": location})
    param: dict[str, Any] = {"templateId": made.name, "language": made.language}
    for key, items in (("header", header), ("body", body), ("buttons", buttons)):
        if items:
            param[key] = items
    return {"type": "fb_whatsapp_template", "whatsappTemplateParam": param}


def _button_urls(template: WhatsappFormCreateTemplateMessage) -> dict[int, str]:
    buttons = template.component("BUTTONS")
    return {n: b.url or "" for n, b in enumerate(buttons.buttons or [] if buttons is not None else [])}


def _value(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise ValueError(f"params.{name}: required: a variable of the template")
    if not isinstance(value, str):
        raise ValueError(f"params.{name}: must be a text")
    if not value.strip():
        raise ValueError(f"params.{name}: required: a variable of the template")
    return value


def _text_parameter(value: str, name: str, limit: int) -> str:
    if "\n" in value or "\t" in value or _SPACES in value:
        raise ValueError(
            f"params.{name}: WhatsApp refuses new lines, tabs and more than four spaces in a row"
        )
    if len(value) > limit:
        raise ValueError(f"params.{name}: at most {limit} characters here on WhatsApp")
    return value


def _url_parameter(value: str, name: str) -> str:
    try:
        return http_url(value)
    except ValueError as exc:
        raise ValueError(f"params.{name}: {exc}") from None


def _coordinate(value: str, name: str, bound: int) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"params.{name}: must be a number") from None
    if not -bound <= number <= bound:
        raise ValueError(f"params.{name}: must be between -{bound} and {bound}")
    return number
