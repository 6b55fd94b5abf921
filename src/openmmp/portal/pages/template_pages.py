"""Message templates: the company's list, editor (with a live preview per channel), details, update and
delete; and the operator's queue of templates waiting for the operator's review.

Pages call what the Template API calls (templates/endpoints.py) with the viewer's `subject`, and the queue
what the CLI calls (`operator_list`, `operator_review`). The editor writes the API's
CreateFormTemplateMessage of one message (text, or a picture, video or file with a caption, and up to three
buttons) for a channel whose templates the operator reviews; templates of the other forms (conversation
flows, an upstream's own form such as WhatsApp's) are read, previewed, submitted again and deleted here,
and written with the API. A new or updated template waits for review at once (REQUEST): the API has no
DRAFT step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Form, Query, Request
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from openmmp.api_keys.auth import Subject
from openmmp.channels.service import channels, open_credentials
from openmmp.deps import KeyringDep
from openmmp.errors import AppError, Invalid, validation_items
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import SessionDep, after_commit, request_database
from openmmp.messages import rendering
from openmmp.messages.capabilities import check_content
from openmmp.messages.schemas import MessageObject
from openmmp.models import Channel, Template
from openmmp.models.template import TemplateStatus, TemplateType
from openmmp.portal import repository as portal_repository
from openmmp.portal.web import (
    PORTAL,
    CompanyEditorDep,
    CompanyViewerDep,
    OperatorDep,
    OperatorEditorDep,
    Viewer,
    application_name,
    portal_router,
    redirect,
    render,
)
from openmmp.providers.applications import Application
from openmmp.providers.base import Addressing, Provider, ProviderContext
from openmmp.providers.registry import REGISTRY
from openmmp.templates import service as templates
from openmmp.templates.endpoints import UpstreamContext
from openmmp.templates.schemas import CreateFormTemplateMessage, RejectTemplateRequest, TemplateForm

router = portal_router()

PAGE_SIZE = 50
QUEUE_LIMIT = 500
MESSAGE_TYPES = ("text", "picture", "video", "file")
BUTTON_ACTIONS = ("open-url", "reply", "dial")
BUTTONS = (1, 2, 3)
_BUTTON_PARTS = {"action": "Action", "text": "Text", "postbackData": "Data"}
FIELDS = (
    "name",
    "accountId",
    "description",
    "expireType",
    "ttl",
    "messageType",
    "text",
    "fileUrl",
    "fileName",
    "samples",
    *(f"button{n}{part}" for n in BUTTONS for part in _BUTTON_PARTS.values()),
)
_MESSAGE_FIELDS = {"type": "messageType", "message": "text", "fileUrl": "fileUrl", "fileName": "fileName"}
_SUGGESTION = re.compile(r"message\.suggestions\[(\d+)\](?:\.(\w+))?")
_FORMS: TypeAdapter[Any] = TypeAdapter(TemplateForm)

Fields = dict[str, str]
Problems = list[tuple[str, str]]


@dataclass(frozen=True)
class Option:
    """A channel the editor writes templates for."""

    channel: Channel

    @property
    def label(self) -> str:
        return f"{self.channel.name} ({application_name(self.channel.application_id)})"


@dataclass
class Preview:
    """A message as the preview shows it, or what is wrong with it."""

    message: dict[str, Any] | None = None
    channel: str = ""
    variables: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    errors: Problems = field(default_factory=list)

    @property
    def json(self) -> str:
        return json.dumps(self.message, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class Row:
    """A template as the pages list it."""

    template: Template
    account_id: str | None
    channel: str
    status: str
    reviewer: str
    reviewed_upstream: bool


def reviewer_of(template: Template) -> str:
    if template.upstream is None:
        return "operator"
    provider = REGISTRY.for_application(template.application_id)
    return f"{provider.title if provider else 'its upstream'} (upstream)"


def _row(template: Template, account_id: str | None, names: dict[int, str]) -> Row:
    application = application_name(template.application_id)
    if template.channel_id is None:
        channel = f"every {application} channel"
    else:
        channel = f"{names.get(template.channel_id, account_id or '')} ({application})"
    return Row(
        template=template,
        account_id=account_id,
        channel=channel,
        status=TemplateStatus(template.status).name,
        reviewer=reviewer_of(template),
        reviewed_upstream=template.upstream is not None,
    )


def _operator_reviewed(channel: Channel) -> bool:
    provider = REGISTRY.for_application(channel.application_id)
    return provider is not None and not provider.reviews_templates and provider.addressing != Addressing.EMAIL


async def _options(session: AsyncSession, subject: Subject) -> list[Option]:
    return [Option(c) for c in await channels.all_of(session, subject) if _operator_reviewed(c)]


def _chosen(options: list[Option], account_id: str) -> Option:
    for option in options:
        if option.channel.public_id == account_id:
            return option
    raise Invalid("choose one of your channels whose templates the operator reviews", name="accountId")


def _form_name(name: str, slots: list[int]) -> str:
    """The editor's field for an error the API names by its wire path (`messages[0].message.message`)."""
    name = name.removeprefix("messages[0].")
    button = _SUGGESTION.match(name)
    if button:
        index = int(button[1])
        slot = slots[index] if index < len(slots) else index + 1
        return f"button{slot}{_BUTTON_PARTS.get(button[2] or '', 'Text')}"
    if name == "message" or name.startswith("messages"):
        return "text"
    if name.startswith("message."):
        return _MESSAGE_FIELDS.get(re.split(r"[.\[]", name[len("message.") :])[0], "text")
    return name


def _problems(exc: AppError | ValidationError, slots: list[int], prefix: str = "") -> Problems:
    items = validation_items(exc.errors()) if isinstance(exc, ValidationError) else exc.items
    return [(_form_name(prefix + item.name, slots), item.message) for item in items]


def _posted(form: Any) -> Fields:
    fields: Fields = {}
    for name in FIELDS:
        value = form.get(name)
        text = value if isinstance(value, str) else ""
        fields[name] = text if name in ("text", "samples") else text.strip()
    return fields


def _message(fields: Fields) -> tuple[dict[str, Any], list[int]]:
    """The MMP message object of the editor's fields, and the button slot of each of its suggestions."""
    message: dict[str, Any] = {"type": fields["messageType"] or "text"}
    for wire, name in (("message", "text"), ("fileUrl", "fileUrl"), ("fileName", "fileName")):
        if fields[name].strip():
            message[wire] = fields[name]
    suggestions, slots = [], []
    for n in BUTTONS:
        text, data = fields[f"button{n}Text"], fields[f"button{n}Data"]
        if text or data:
            suggestion = {"action": fields[f"button{n}Action"] or BUTTON_ACTIONS[0], "text": text}
            suggestions.append(suggestion | ({"postbackData": data} if data else {}))
            slots.append(n)
    if suggestions:
        message["suggestions"] = suggestions
    return message, slots


def _body(fields: Fields, channel: Channel, message: dict[str, Any]) -> dict[str, Any]:
    """CreateFormTemplateMessage (wire names) of the editor's fields."""
    body: dict[str, Any] = {
        "name": fields["name"],
        "type": int(TemplateType.BROADCAST_ONLY),
        "applicationId": channel.application_id,
        "accountId": channel.public_id,
        "expireType": fields["expireType"] or "NONE",
        "messages": [{"id": "m1", "name": "message", "status": "START", "message": message}],
    }
    for name in ("description", "ttl"):
        if fields[name]:
            body[name] = fields[name]
    return body


def _samples(text: str) -> dict[str, str]:
    """Sample parameter values, one `name=value` a line."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise Invalid(f"line {number}: write name=value", name="samples")
        found[name.strip()] = value.strip()
    return found


def editor_fields(template: Template, account_id: str | None) -> Fields | None:
    """The editor's fields of a stored template, or None when it is more than the editor writes."""
    if (
        template.upstream is not None
        or template.type != TemplateType.BROADCAST_ONLY
        or template.expire_type == "EXPIRE_TIME"
        or account_id is None
        or len(template.messages) != 1
    ):
        return None
    message = template.messages[0]["message"]
    suggestions = message.get("suggestions") or []
    if (
        set(message) - {"type", "message", "fileUrl", "fileName", "suggestions"}
        or message["type"] not in MESSAGE_TYPES
        or len(suggestions) > len(BUTTONS)
        or any(s.get("action") not in BUTTON_ACTIONS for s in suggestions)
    ):
        return None
    fields = dict.fromkeys(FIELDS, "")
    fields |= {
        "name": template.name,
        "accountId": account_id,
        "description": template.description or "",
        "expireType": template.expire_type,
        "ttl": str(template.ttl or ""),
        "messageType": message["type"],
        "text": message.get("message", ""),
        "fileUrl": message.get("fileUrl", ""),
        "fileName": message.get("fileName", ""),
        "samples": "".join(f"{name}=\n" for name in template.variables),
    }
    for n, suggestion in zip(BUTTONS, suggestions, strict=False):
        fields[f"button{n}Action"] = suggestion["action"]
        fields[f"button{n}Text"] = suggestion.get("text", "")
        fields[f"button{n}Data"] = suggestion.get("postbackData", "")
    return fields


def stored_form(template: Template, account_id: str | None) -> Any:
    """The form (TemplateForm) the template was saved with, to submit it again as it is."""
    if template.upstream is not None:
        return _FORMS.validate_python(template.upstream)
    body: dict[str, Any] = {
        "name": template.name,
        "type": template.type,
        "applicationId": template.application_id,
        "accountId": account_id,
        "description": template.description,
        "expireType": template.expire_type,
        "ttl": template.ttl,
        "expireTime": template.expire_time,
        "messages": template.messages,
    }
    return _FORMS.validate_python({k: v for k, v in body.items() if v is not None})


def _preview(fields: Fields, options: list[Option], keyring: Keyring) -> Preview:
    """What the editor's message looks like on its channel: its placeholders filled with the sample
    values given (the others left as they are), checked as a send on that channel checks it, as the
    API's Preview Template does for a saved template."""
    message, slots = _message(fields)
    shown = Preview()
    try:
        option = _chosen(options, fields["accountId"])
        shown.channel = option.label
        samples = _samples(fields["samples"])
        checked = MessageObject.model_validate(message).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        shown.variables = sorted(rendering.placeholders(checked))
        shown.missing = [name for name in shown.variables if name not in samples]
        shown.unknown = sorted(set(samples) - set(shown.variables))
        shown.message = rendering.render(
            checked, {name: samples.get(name, "{{" + name + "}}") for name in shown.variables}
        )
        provider = REGISTRY.of(Application(option.channel.application_id))
        check_content(provider, shown.message, open_credentials(keyring, option.channel))
    except ValidationError as exc:
        shown.errors = _problems(exc, slots, prefix="message.")
    except AppError as exc:
        shown.errors = _problems(exc, slots)
    return shown


async def _release(session: AsyncSession) -> None:
    """End the request's transaction before a service that opens its own sessions (`save`, `delete`):
    on SQLite the request's write transaction holds the process's one write connection, which they need
    (the API's endpoints for them take no request transaction)."""
    await session.commit()


def _editor(
    request: Request,
    *,
    fields: Fields,
    options: list[Option],
    keyring: Keyring,
    editing: Row | None = None,
    errors: Problems | None = None,
) -> Response:
    preview = _preview(fields, options, keyring) if fields["text"] or fields["fileUrl"] else None
    return render(
        request,
        "templates_edit.html",
        status_code=400 if errors else 200,
        fields=fields,
        options=options,
        editing=editing,
        errors=errors or [],
        preview=preview,
        choices=[(o.channel.public_id, o.label) for o in options],
        kinds=[(kind, kind) for kind in MESSAGE_TYPES],
        actions=[(action, action) for action in BUTTON_ACTIONS],
        buttons=BUTTONS,
    )


async def _save_posted(
    request: Request,
    session: AsyncSession,
    viewer: Viewer,
    keyring: Keyring,
    context: Callable[[Provider], ProviderContext],
    *,
    editing: Row | None,
) -> Response:
    """Create (or with `editing`, update) the template of the posted editor; the editor again, with the
    fields named, when the API's rules refuse it."""
    fields = _posted(await request.form())
    options = await _options(session, viewer.subject)
    await _release(session)
    message, slots = _message(fields)
    try:
        option = _chosen(options, fields["accountId"])
        form = CreateFormTemplateMessage.model_validate(_body(fields, option.channel, message))
        saved, _ = await templates.save(
            request_database(request),
            keyring,
            viewer.subject,
            context,
            form=form,
            public_id=editing.template.public_id if editing else None,
        )
    except (ValidationError, AppError) as exc:
        if isinstance(exc, AppError) and exc.status_code not in (400, 409):
            raise
        problems = _problems(exc, slots)
        return _editor(
            request, fields=fields, options=options, keyring=keyring, editing=editing, errors=problems
        )
    request.app.state.wake_workers()
    verb = "updated" if editing else "created"
    return redirect(
        request,
        f"{PORTAL}/templates/{saved.public_id}",
        notice=f"Template {saved.name} {verb}: it waits for the operator's review",
    )


@router.get("/templates")
async def list_templates(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    found = await templates.of_company(
        session, viewer.subject, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1
    )
    names = {c.id: c.name for c in await channels.all_of(session, viewer.subject)}
    return render(
        request,
        "templates.html",
        rows=[_row(t, a, names) for t, a in found[:PAGE_SIZE]],
        page=page,
        more=len(found) > PAGE_SIZE,
    )


@router.get("/templates/new")
async def new_template(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    keyring: KeyringDep,
    account_id: Annotated[str, Query(alias="accountId", max_length=36)] = "",
) -> Response:
    options = await _options(session, viewer.subject)
    fields = dict.fromkeys(FIELDS, "") | {"expireType": "NONE", "messageType": "text"}
    fields["accountId"] = account_id or (options[0].channel.public_id if options else "")
    return _editor(request, fields=fields, options=options, keyring=keyring)


@router.post("/templates/preview")
async def preview_draft(
    request: Request, session: SessionDep, viewer: CompanyEditorDep, keyring: KeyringDep
) -> Response:
    """The editor's live preview (an htmx fragment). It changes nothing, but is a POST like every form
    of the portal: it carries the CSRF token too (htmx sends it)."""
    fields = _posted(await request.form())
    shown = _preview(fields, await _options(session, viewer.subject), keyring)
    return render(request, "templates_preview.html", status_code=400 if shown.errors else 200, preview=shown)


@router.post("/templates")
async def create_template(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    context: UpstreamContext,
) -> Response:
    return await _save_posted(request, session, viewer, keyring, context, editing=None)


async def _shown_row(session: AsyncSession, subject: Subject, public_id: str) -> Row:
    template, account_id = await templates.get(session, subject, public_id=public_id)
    names = {c.id: c.name for c in await channels.all_of(session, subject)}
    return _row(template, account_id, names)


@router.get("/templates/{public_id}")
async def show_template(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, public_id: str
) -> Response:
    row = await _shown_row(session, viewer.subject, public_id)
    template = row.template
    first = templates.message_for(template, {}) if template.upstream is None else None
    return render(
        request,
        "templates_show.html",
        row=row,
        first=first,
        editable=editor_fields(template, row.account_id) is not None,
        resubmittable=template.status in (TemplateStatus.DRAFT, TemplateStatus.REJECTED),
        samples="".join(f"{name}=\n" for name in template.variables),
        messages_json=json.dumps(template.messages, indent=2, ensure_ascii=False),
        upstream_json=json.dumps(template.upstream, indent=2, ensure_ascii=False)
        if template.upstream
        else "",
    )


@router.post("/templates/{public_id}/preview")
async def preview_template(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    public_id: str,
    samples: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    """The API's Preview Template (an htmx fragment) with the values given: changes nothing."""
    shown = Preview()
    try:
        shown.message = await templates.preview(
            session, keyring, viewer.subject, public_id=public_id, params=_samples(samples), account_id=None
        )
    except AppError as exc:
        if exc.status_code != 400:
            raise
        shown.errors = [(item.name, item.message) for item in exc.items]
    return render(request, "templates_preview.html", status_code=400 if shown.errors else 200, preview=shown)


@router.get("/templates/{public_id}/edit")
async def edit_template(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, keyring: KeyringDep, public_id: str
) -> Response:
    row = await _shown_row(session, viewer.subject, public_id)
    fields = editor_fields(row.template, row.account_id)
    if fields is None:
        raise Invalid(
            "this template is more than the portal's editor writes: update it with the API", name="templateId"
        )
    options = await _options(session, viewer.subject)
    return _editor(request, fields=fields, options=options, keyring=keyring, editing=row)


@router.post("/templates/{public_id}")
async def update_template(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    context: UpstreamContext,
    public_id: str,
) -> Response:
    row = await _shown_row(session, viewer.subject, public_id)
    return await _save_posted(request, session, viewer, keyring, context, editing=row)


@router.post("/templates/{public_id}/submit")
async def submit_template(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    context: UpstreamContext,
    public_id: str,
) -> Response:
    """Submit a rejected template for review again as it is (the API's Update with its own form)."""
    template, account_id = await templates.get(session, viewer.subject, public_id=public_id)
    if template.status not in (TemplateStatus.DRAFT, TemplateStatus.REJECTED):
        raise Invalid(
            "only a DRAFT or REJECTED template is submitted again; edit it to change it", name="status"
        )
    form = stored_form(template, account_id)
    await _release(session)
    saved, _ = await templates.save(
        request_database(request), keyring, viewer.subject, context, form=form, public_id=public_id
    )
    request.app.state.wake_workers()
    status = TemplateStatus(saved.status).name
    return redirect(
        request, f"{PORTAL}/templates/{public_id}", notice=f"Submitted for approval: it is {status}"
    )


@router.post("/templates/{public_id}/delete")
async def delete_template(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    context: UpstreamContext,
    public_id: str,
) -> Response:
    template, _ = await templates.get(session, viewer.subject, public_id=public_id)
    name = template.name
    await _release(session)
    await templates.delete(request_database(request), keyring, viewer.subject, context, public_id=public_id)
    return redirect(request, f"{PORTAL}/templates", notice=f"Template {name} deleted")


@router.get("/review")
async def review_queue(request: Request, session: SessionDep, viewer: OperatorDep) -> Response:
    """Every company's templates waiting for the operator's review (not an upstream's), oldest first."""
    waiting = await templates.operator_list(session, status=TemplateStatus.REQUEST, limit=QUEUE_LIMIT)
    companies = {c.public_id: c.name for c in await portal_repository.companies(session)}
    items = [
        {
            "template": template,
            "account_id": account_id,
            "company": companies.get(company, company),
            "company_id": company,
            "application": application_name(template.application_id),
            "first": templates.message_for(template, {}),
            "messages_json": json.dumps(template.messages, indent=2, ensure_ascii=False),
        }
        for template, account_id, company in waiting
        if template.upstream is None
    ]
    return render(request, "review.html", items=items, full=len(waiting) >= QUEUE_LIMIT, limit=QUEUE_LIMIT)


@router.post("/review/{public_id}/approve")
async def approve_template(
    request: Request, session: SessionDep, viewer: OperatorEditorDep, public_id: str
) -> Response:
    template, _ = await templates.operator_review(session, public_id=public_id, approve=True, cause=None)
    after_commit(request, request.app.state.wake_workers)
    return redirect(request, f"{PORTAL}/review", notice=f"Approved template {template.name}")


@router.post("/review/{public_id}/reject")
async def reject_template(
    request: Request,
    session: SessionDep,
    viewer: OperatorEditorDep,
    public_id: str,
    cause: Annotated[str, Form()] = "",
) -> Response:
    body = RejectTemplateRequest.model_validate({"cause": cause.strip()})
    template, _ = await templates.operator_review(
        session, public_id=public_id, approve=False, cause=body.cause
    )
    after_commit(request, request.app.state.wake_workers)
    return redirect(request, f"{PORTAL}/review", notice=f"Rejected template {template.name}")
