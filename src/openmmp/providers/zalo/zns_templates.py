"""ZNS templates: the form Zalo reviews, its rules, Zalo's copy, and how an approved one is sent.

A company's template goes to Zalo as `POST {business}/template/create` (providers.md §5) in the MMP
API's form `ZaloZnsFormCreateTemplateMessage`: its `name`, `templateType` (1 custom, 2 OTP, 3 payment,
4 voucher, 5 rating), `tag` (1 transaction, 2 customer care, 3 promotion: promotional templates go only
in the daytime), an optional `title` and the `content`, both with Zalo's `<param_name>` placeholders,
the `params` they use (`name`, Zalo's parameter `type` code, a `sampleValue` the reviewers see,
optionally a `maxLength` the platform holds sends to), a `note` for the reviewers and the channel
(`accountId`). Zalo answers with
the template's id at once, PENDING_REVIEW; its verdict comes later as a `change_template_status` webhook
(`zns_callbacks`).

Rules checked before anything is sent (the simulator applies them too): the content at most 400
characters, and at most 400 with the samples filled in (a ZNS message's size); every placeholder
declared in `params`, every declared parameter used, no name twice.

**Idempotent submission.** Zalo keys nothing by name, so a submission repeated after its answer was lost
would make a second template. Before creating one, the OA's templates are listed (`GET /template/all`):
one of the same name, made within the last `ADOPT_WINDOW_MS`, still PENDING_REVIEW or ENABLE, whose
tag and parameter names (`GET /template/info/v2`) are the form's, is the answer. An older one is another
submission (Zalo keeps templates the platform deleted, below) and is never adopted.

**Edit** is `POST /template/edit` with the template's id: Zalo edits in place (same id) and reviews it
again. **Delete**: Zalo's API deletes no template (only the OA's admin can, in Zalo's console), so the
platform forgets its copy and asks nothing of Zalo; the template stays on Zalo, where nobody sends it.

**Sending** an approved template names Zalo's id of it (the one `/template/create` answered, which the
platform keeps). `template_variables` are the `params` names in order; `template_message` is the
`zalo_zns_template` message with those values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from openmmp.kit.schemas import RequestModel
from openmmp.providers.base import ProviderContext, TemplateReview
from openmmp.providers.upstream import bad_response
from openmmp.providers.zalo.credentials import zalo_hosts
from openmmp.providers.zalo.errors import call_zalo, zalo_error
from openmmp.providers.zalo.zns_callbacks import TEMPLATE_STATUSES, template_cause
from openmmp.providers.zalo.zns_http import error_code, said, zalo_envelope
from openmmp.providers.zalo.zns_payload import CONTENT_MAX, MESSAGE_TYPE, PARAM_FIELD

NAME_MAX = 60
TITLE_MAX = 65
NOTE_MAX = 400
PARAMS_MAX = 20
PARAM_NAME = re.compile(r"[A-Za-z0-9_]{1,30}")
PLACEHOLDER = re.compile(r"<([^<>]*)>")
TAG_NAMES: Mapping[int, str] = {1: "TRANSACTION", 2: "CUSTOMER_CARE", 3: "PROMOTION"}
"""Zalo's names of the tags (how `GET /template/info/v2` writes `templateTag`)."""
PROMOTION = 3
ADOPT_WINDOW_MS = 3_600_000
"""How recent a template of the same name must be to be taken as this very submission, repeated."""
LIST_PAGE = 100
LIST_PAGES_MAX = 50
_ADOPTABLE = frozenset({"ENABLE", "PENDING_REVIEW"})


# ---- Zalo's rules ------------------------------------------------------------------------------------------


def placeholders(text: str, where: str) -> list[str]:
    """The parameters `text` uses, in order of first use; ValueError naming `where` for a placeholder
    that is no parameter's name (Zalo's are `<letters_digits_underscores>`)."""
    found: list[str] = []
    for name in PLACEHOLDER.findall(text):
        if not PARAM_NAME.fullmatch(name):
            raise ValueError(
                f"{where}: <{name}> is not a parameter; a placeholder is <name> (letters, digits, _; at "
                "most 30)"
            )
        if name not in found:
            found.append(name)
    return found


def check_layout(title: str, content: str, params: Sequence[tuple[str, str]]) -> None:
    """Zalo's rules for a template's texts and its `params` ((name, sample) in order): ValueError
    ("<field>: ...") naming the field at fault (`title`, `content`, `params`)."""
    if not content.strip():
        raise ValueError("content: required")
    if len(content) > CONTENT_MAX:
        raise ValueError(f"content: at most {CONTENT_MAX} characters (it has {len(content)})")
    if len(title) > TITLE_MAX:
        raise ValueError(f"title: at most {TITLE_MAX} characters")
    names = [name for name, _sample in params]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise ValueError(f"params: {twice} is declared twice")
    used = placeholders(title, "title") + placeholders(content, "content")
    undeclared = [name for name in used if name not in names]
    if undeclared:
        raise ValueError(f"content: <{undeclared[0]}> is not declared in params")
    unused = [name for name in names if name not in used]
    if unused:
        raise ValueError(f"params: {unused[0]} is declared but neither the title nor the content uses it")
    samples = dict(params)
    rendered = len(render(content, samples))
    if rendered > CONTENT_MAX:
        raise ValueError(
            f"params: the content with the samples filled in has {rendered} characters; a ZNS message has "
            f"at most {CONTENT_MAX}"
        )


def render(text: str, values: Mapping[str, str]) -> str:
    """`text` with each `<name>` replaced by its value (those without one left as they are)."""
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), text)


# ---- the form ----------------------------------------------------------------------------------------------


class ZaloZnsFormTemplateParam(RequestModel):
    """One parameter of a ZNS template: a `<name>` placeholder of its title or content."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,30}$", description="Its name, as in <name>")
    type: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Zalo's parameter type, by its code in Zalo's template console (1 when not given)",
    )
    sample_value: str = Field(
        min_length=1, max_length=CONTENT_MAX, description="A value Zalo's reviewers see"
    )
    max_length: int | None = Field(
        default=None, ge=1, le=CONTENT_MAX, description="The longest value a send may give it"
    )

    @model_validator(mode="after")
    def _sample_fits(self) -> Self:
        if self.max_length is not None and len(self.sample_value) > self.max_length:
            raise ValueError(f"sampleValue: longer than its maxLength ({self.max_length})")
        return self


class ZaloZnsFormCreateTemplateMessage(RequestModel):
    """A ZNS template for Zalo's review (api.md §4.5), submitted through the channel `accountId`."""

    name: str = Field(min_length=1, max_length=NAME_MAX, description="The template's name on Zalo")
    account_id: str | None = Field(default=None, max_length=36, description="The channel's publicId")
    template_type: Literal[1, 2, 3, 4, 5] = Field(
        description="1 custom, 2 OTP, 3 payment request, 4 voucher, 5 rating"
    )
    tag: Literal[1, 2, 3] = Field(
        description="1 transaction, 2 customer care, 3 promotion (sent only 07:00-22:00 Vietnam time)"
    )
    title: str | None = Field(default=None, max_length=TITLE_MAX, description="Its title; may use <name>")
    content: str = Field(
        min_length=1, max_length=CONTENT_MAX, description="Its text, with Zalo's <param_name> placeholders"
    )
    params: list[ZaloZnsFormTemplateParam] = Field(
        default_factory=list, max_length=PARAMS_MAX, description="Every parameter the texts use, in order"
    )
    note: str | None = Field(default=None, max_length=NOTE_MAX, description="A note for Zalo's reviewers")

    @model_validator(mode="after")
    def _zalos_rules(self) -> Self:
        check_layout(self.title or "", self.content, [(p.name, p.sample_value) for p in self.params])
        return self

    def upstream(self) -> dict[str, Any]:
        """The body of `POST /template/create` (and, with `template_id`, of `/template/edit`)."""
        components: list[dict[str, Any]] = []
        if self.title:
            components.append({"TITLE": {"value": self.title}})
        components.append({"PARAGRAPH": {"value": self.content}})
        body: dict[str, Any] = {
            "template_name": self.name,
            "template_type": self.template_type,
            "tag": str(self.tag),
            "layout": {"body": {"components": components}},
            "params": [
                {"type": str(p.type), "name": p.name, "sample_value": p.sample_value} for p in self.params
            ],
        }
        if self.note:
            body["note"] = self.note
        return body


def form(template: Mapping[str, Any]) -> ZaloZnsFormCreateTemplateMessage:
    """`template` (wire names) as the form; ValueError("<field>: <problem>") for the first thing wrong."""
    try:
        return ZaloZnsFormCreateTemplateMessage.model_validate(template)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        message = str(first["msg"]).removeprefix("Value error, ")
        # The rules of several fields at once name the field in their message already.
        raise ValueError(f"{where}: {message}" if where else message) from None


# ---- sending an approved one -------------------------------------------------------------------------------


def variables(template: Mapping[str, Any]) -> list[str]:
    """The names of the parameters a send of `template` gives: its `params`, in order."""
    return [param.name for param in form(template).params]


def message(template: Mapping[str, Any], params: Mapping[str, str], template_id: str) -> dict[str, Any]:
    """The `zalo_zns_template` message sending the approved `template` (Zalo's `template_id`) with `params`
    (by name).

    ValueError("params.<name>: ...") for a parameter missing, unknown, longer than its `maxLength`, or
    values that make the message longer than ZNS takes."""
    made = form(template)
    known = [param.name for param in made.params]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"params.{unknown[0]}: not a parameter of the template ({', '.join(known)})")
    data: dict[str, str] = {}
    for param in made.params:
        value = params.get(param.name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"params.{param.name}: required: a parameter of the template")
        if param.max_length is not None and len(value) > param.max_length:
            raise ValueError(f"params.{param.name}: at most {param.max_length} characters")
        data[param.name] = value
    rendered = len(render(made.content, data))
    if rendered > CONTENT_MAX:
        raise ValueError(
            f"params: the message would have {rendered} characters; ZNS sends at most {CONTENT_MAX}"
        )
    return {"type": MESSAGE_TYPE, PARAM_FIELD: {"templateId": template_id, "templateData": data}}


# ---- Zalo's copy: submitting, editing, deleting ------------------------------------------------------------


async def submit(
    ctx: ProviderContext, credentials: Mapping[str, Any], template: Mapping[str, Any]
) -> TemplateReview:
    """Submit `template` for Zalo's review; its id and review so far. A submission repeated after a
    lost answer gets the template it made (see the module). Raises as `Provider.submit_template`."""
    made = form(template)
    held = await _held(ctx, credentials, made)
    if held is not None:
        return held
    data = await call_zalo(
        ctx,
        "POST",
        f"{zalo_hosts(ctx).business}/template/create",
        access_token=_token(credentials),
        json=made.upstream(),
    )
    template_id = _template_id(data.get("template_id"), "Zalo took the template but named no template_id")
    return _review(template_id, data.get("status"), data.get("reason")) or TemplateReview(template_id)


async def edit(
    ctx: ProviderContext, credentials: Mapping[str, Any], template_id: str, template: Mapping[str, Any]
) -> TemplateReview:
    """Make Zalo's template `template_id` the `template` (Zalo keeps its id) and have it reviewed again."""
    body = {"template_id": template_id, **form(template).upstream()}
    data = await call_zalo(
        ctx,
        "POST",
        f"{zalo_hosts(ctx).business}/template/edit",
        access_token=_token(credentials),
        json=body,
    )
    edited = _template_id(data.get("template_id") or template_id, "Zalo named no template_id")
    return _review(edited, data.get("status"), data.get("reason")) or TemplateReview(edited)


def _token(credentials: Mapping[str, Any]) -> str:
    return str(credentials["accessToken"])


def _template_id(value: Any, missing: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise bad_response(missing)
    return value.strip()


def _review(template_id: str, status: Any, reason: Any) -> TemplateReview | None:
    """The review of Zalo's template in Zalo's `status`; None for a status Zalo did not give."""
    decided = TEMPLATE_STATUSES.get(status) if isinstance(status, str) else None
    if decided is None:
        return None
    cause = template_cause(status, reason) if decided == "REJECTED" else ""
    return TemplateReview(template_id, decided, cause)


async def _held(
    ctx: ProviderContext, credentials: Mapping[str, Any], made: ZaloZnsFormCreateTemplateMessage
) -> TemplateReview | None:
    """The review of the OA's template that is this submission already, if it has one (see the module)."""
    since = int(time.time() * 1000) - ADOPT_WINDOW_MS
    for item in await _listed(ctx, credentials):
        if (
            item.get("templateName") != made.name
            or item.get("status") not in _ADOPTABLE
            or _int(item.get("createdTime")) < since
        ):
            continue
        template_id = _template_id(item.get("templateId"), "Zalo listed a template without its templateId")
        info = await call_zalo(
            ctx,
            "GET",
            f"{zalo_hosts(ctx).business}/template/info/v2",
            access_token=_token(credentials),
            params={"template_id": template_id},
        )
        if _same(info, made):
            return _review(template_id, info.get("status", item.get("status")), info.get("reason"))
    return None


def _same(info: Mapping[str, Any], made: ZaloZnsFormCreateTemplateMessage) -> bool:
    """Whether Zalo's template (`info`) has the form's tag and parameters (by name, in order; Zalo may
    describe their types in words of its own)."""
    listed = info.get("listParams")
    names = [p.get("name") for p in listed if isinstance(p, Mapping)] if isinstance(listed, list) else []
    return info.get("templateTag") == TAG_NAMES[made.tag] and names == [p.name for p in made.params]


async def _listed(ctx: ProviderContext, credentials: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every template of the OA, as `GET /template/all` lists them (page by page)."""
    found: list[Mapping[str, Any]] = []
    for page in range(LIST_PAGES_MAX):
        body = await zalo_envelope(
            ctx,
            "GET",
            f"{zalo_hosts(ctx).business}/template/all",
            access_token=_token(credentials),
            params={"offset": str(page * LIST_PAGE), "limit": str(LIST_PAGE)},
        )
        if error_code(body) != 0:
            raise zalo_error(error_code(body), said(body))
        data = body.get("data")
        if data is None:
            return found
        if not isinstance(data, list):
            raise bad_response("Zalo listed templates without a data list")
        found += [item for item in data if isinstance(item, Mapping)]
        metadata = body.get("metadata")
        total = _int(metadata.get("total")) if isinstance(metadata, Mapping) else 0
        if len(data) < LIST_PAGE or len(found) >= total:
            return found
    return found


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return 0
