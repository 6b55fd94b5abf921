"""The company's bulk campaigns: the list, a new campaign, and a campaign's page (its contacts uploaded
with the import's progress, its broadcast, pause / resume / cancel, and its live progress).

Every page calls what the Bulk Campaign API calls (campaigns/endpoints.py) with the viewer's `Subject`,
so a company sees and acts on its own campaigns only (another's is a 404, as one that does not exist).

The contacts file comes as a multipart form (the portal's script sends it by XMLHttpRequest to show the
bytes sent); like the API's upload it is streamed into the import as it arrives, never held whole.
"""

from __future__ import annotations

import collections
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import available_timezones

from fastapi import Form, Query, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from starlette.responses import Response

from openmmp.api_keys.auth import Subject
from openmmp.campaigns import repository, runs, service
from openmmp.campaigns.contact_file import ColumnMapping
from openmmp.campaigns.imports import TYPE as IMPORT
from openmmp.campaigns.imports import start_import
from openmmp.campaigns.schemas import (
    BulkCampaignBroadcastRequest,
    BulkCampaignProgress,
    CreateBulkCampaignRequest,
)
from openmmp.channels.service import channels
from openmmp.deps import SettingsDep
from openmmp.errors import AppError, Invalid, PayloadTooLarge, RejectedBody
from openmmp.kit.db import SessionDep, after_commit, request_database
from openmmp.kit.schemas import PageNumber
from openmmp.kit.zones import country_zone
from openmmp.models import BackgroundTask, Campaign
from openmmp.models.campaign import BroadcastType, CampaignStatus, CampaignType
from openmmp.models.task import TaskStatus
from openmmp.models.template import TemplateType
from openmmp.portal.web import (
    CSRF_HEADER,
    PORTAL,
    CompanyEditorDep,
    CompanyViewerDep,
    Viewer,
    is_htmx,
    portal_router,
    redirect,
    render,
)
from openmmp.settings import Settings
from openmmp.tasks import service as tasks
from openmmp.tasks.endpoints import result_response
from openmmp.tasks.schemas import task_response
from openmmp.templates import service as templates

router = portal_router("/campaigns")

CONTACTS_UPLOAD = re.compile(re.escape(PORTAL) + r"/campaigns/[^/]+/contacts")
"""The portal's upload of a campaign's contacts: its body, a form holding a file of up to
OPENMMP_CAMPAIGNS__MAX_UPLOAD_BYTES, may be that (and `UPLOAD_FORM_BYTES`) long rather than a form's
OPENMMP_MAX_BODY_BYTES."""
UPLOAD_FORM_BYTES = 64 * 1024
"""Room for the upload form around its file (part boundaries and headers, the CSRF token, the phone
column): the file itself is held to OPENMMP_CAMPAIGNS__MAX_UPLOAD_BYTES."""
PAGE_SIZE = 20
TEMPLATE_CHOICES = 100
"""APPROVED templates offered for a channel on the new campaign's form (the API's largest page)."""
RECENT_IMPORTS = 20
"""The company's latest imports looked through for the campaign's own, shown on its page."""
_FIELD_BYTES = 1024
_MAX_FIELDS = 10
_READ_BYTES = 64 * 1024
_ZONES = sorted(available_timezones())
_WAITING = ("not_send", "in_queue", "processing", "draft")
"""Contacts of the progress not handed to the channel for good yet (the rest are sent, delivered, read,
failed or blacklisted)."""
_COUNTS = (
    ("not_send", "notSend", "Not sent"),
    ("in_queue", "inQueue", "Pending (in queue)"),
    ("processing", "processing", "Processing"),
    ("sent", "sent", "Sent"),
    ("delivered", "delivered", "Delivered"),
    ("read", "read", "Read"),
    ("fail", "fail", "Failed"),
    ("black_list", "blackList", "Blacklisted"),
    ("done", "done", "Done"),
    ("draft", "draft", "Draft"),
)
"""Each count of the API's progress: its field, its wire name (the element's id is `count-<wire name>`)
and its label."""

ChangeRun = Callable[[AsyncSession, Subject, str], Awaitable[Campaign]]


def _url(public_id: str) -> str:
    return f"{PORTAL}/campaigns/{public_id}"


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@dataclass(frozen=True)
class _Progress:
    """A campaign's progress as its page shows it: the API's counts, and what they add up to."""

    counts: BulkCampaignProgress
    handled: int
    percent: int
    rate: str
    eta: str

    @classmethod
    def of(cls, counts: BulkCampaignProgress) -> _Progress:
        handled = counts.total - sum(getattr(counts, name) for name in _WAITING)
        rate = counts.rate_per_second
        eta = counts.eta_seconds
        return cls(
            counts=counts,
            handled=handled,
            percent=handled * 100 // counts.total if counts.total else 0,
            rate=f"{rate:g} per second" if rate is not None else "—",
            eta=_duration(eta) if eta is not None else "—",
        )

    def rows(self) -> list[tuple[str, str, int]]:
        return [(wire, label, getattr(self.counts, name)) for name, wire, label in _COUNTS]


async def _campaign_view(session: AsyncSession, campaign: Campaign, settings: Settings) -> dict[str, Any]:
    """What the progress fragment shows: the campaign, its counts (the API's `progress`), and whether the
    page keeps polling (as the API's event stream goes on: until the campaign is DONE or CANCELLED with
    nothing left in queue)."""
    counts = await service.progress(session, campaign, settings)
    status = CampaignStatus(campaign.status)
    return {
        "campaign": campaign,
        "cause": status.name,
        "progress": _Progress.of(counts),
        "live": not (status in repository.CLOSED and counts.in_queue == 0),
        "can_pause": status in repository.RUNNING,
        "can_resume": status == CampaignStatus.PAUSED,
        "can_cancel": status not in repository.CLOSED,
        "base": _url(campaign.public_id),
    }


@router.get("")
async def list_campaigns(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    settings: SettingsDep,
    name: Annotated[str | None, Query(max_length=200)] = None,
    page: PageNumber = 1,
) -> Response:
    subject = viewer.subject
    total, found = await service.page(
        session, subject, name=name or None, status=None, type_=None, page=page, size=PAGE_SIZE
    )
    channel_names = {c.public_id: c.name for c in await channels.all_of(session, subject)}
    template_names: dict[str, str] = {}
    rows = []
    for shown in found:
        if shown.template_id not in template_names:
            template, _ = await templates.get(session, subject, public_id=shown.template_id)
            template_names[shown.template_id] = template.name
        rows.append(
            {
                "campaign": shown.campaign,
                "cause": CampaignStatus(shown.campaign.status).name,
                "template": template_names[shown.template_id],
                "channel": channel_names.get(shown.account_id, shown.account_id),
                "progress": _Progress.of(await service.progress(session, shown.campaign, settings)),
            }
        )
    return render(
        request,
        "campaigns.html",
        rows=rows,
        total=total,
        page=page,
        pages=max(1, math.ceil(total / PAGE_SIZE)),
        name=name or "",
    )


async def _template_choices(
    session: AsyncSession, subject: Subject, account_id: str
) -> list[tuple[str, str]]:
    _, found = await templates.approved(
        session, subject, account_id=account_id, application_id=None, page=1, size=TEMPLATE_CHOICES
    )
    return [(t.public_id, f"{t.name} ({TemplateType(t.type).name})") for t, _ in found]


@router.get("/new")
async def new_campaign(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    account_id: Annotated[str | None, Query(alias="accountId", max_length=36)] = None,
) -> Response:
    owned = await channels.all_of(session, viewer.subject)
    chosen = account_id or (owned[0].public_id if owned else None)
    choices = await _template_choices(session, viewer.subject, chosen) if chosen else []
    return render(
        request,
        "campaign_new.html",
        channels=[(c.public_id, c.name) for c in owned],
        chosen=chosen,
        template_choices=choices,
        types=[(int(t), t.name.replace("_", " ").capitalize()) for t in CampaignType],
    )


@router.get("/new/templates")
async def template_field(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    account_id: Annotated[str, Query(alias="accountId", min_length=1, max_length=36)],
) -> Response:
    """The template choice for the channel chosen (htmx swaps it in when the channel changes)."""
    choices = await _template_choices(session, viewer.subject, account_id)
    return render(request, "campaign_templates.html", template_choices=choices)


@router.post("")
async def create_campaign(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    name: Annotated[str, Form()] = "",
    type_: Annotated[str, Form(alias="type")] = "",
    category: Annotated[str, Form()] = "",
    account_id: Annotated[str, Form(alias="accountId")] = "",
    template_id: Annotated[str, Form(alias="templateId")] = "",
) -> Response:
    body = CreateBulkCampaignRequest.model_validate(
        {
            "name": name,
            "type": type_ or None,
            "category": category or None,
            "channels": [{"accountId": account_id, "templateId": template_id}],
        }
    )
    shown = await service.create(session, viewer.subject, body)
    return redirect(
        request, _url(shown.campaign.public_id), notice="Campaign created: upload its contacts next"
    )


async def _import_of(
    session: AsyncSession, subject: Subject, campaign: Campaign, task_id: str
) -> BackgroundTask:
    """The company's task that imports contacts into `campaign`; 404 for any other task."""
    task = await tasks.get(session, subject, public_id=task_id)
    if task.type != IMPORT or task.params.get("campaignId") != campaign.id:
        raise tasks.TaskNotFound("No such import of this campaign")
    return task


async def _latest_import(
    session: AsyncSession, subject: Subject, campaign: Campaign
) -> BackgroundTask | None:
    _, found = await tasks.search(session, subject, type=IMPORT, page=1, size=RECENT_IMPORTS)
    return next((t for t in found if t.params.get("campaignId") == campaign.id), None)


def _import_view(public_id: str, task: BackgroundTask) -> dict[str, Any]:
    shown = task_response(task)
    base = f"{_url(public_id)}/imports/{shown.id}"
    return {
        "job": shown,
        "job_url": base,
        "report_url": f"{base}/report",
        "polling": shown.status in (TaskStatus.PENDING, TaskStatus.PROCESSING),
    }


@router.get("/{public_id}")
async def show_campaign(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    settings: SettingsDep,
    public_id: str,
    task: Annotated[str | None, Query(max_length=36)] = None,
) -> Response:
    subject = viewer.subject
    shown = await service.get(session, subject, public_id)
    campaign = shown.campaign
    channel = await channels.get(session, subject, public_id=shown.account_id)
    template, _ = await templates.get(session, subject, public_id=shown.template_id)
    found = (
        await _import_of(session, subject, campaign, task)
        if task
        else await _latest_import(session, subject, campaign)
    )
    country = viewer.company.country if viewer.company is not None else None
    return render(
        request,
        "campaign.html",
        **await _campaign_view(session, campaign, settings),
        channel=channel,
        message_template=template,
        template_type=TemplateType(template.type).name,
        variables=templates.variables_of(template),
        imported=_import_view(campaign.public_id, found) if found is not None else None,
        takes_contacts=campaign.status not in repository.CLOSED,
        can_broadcast=campaign.status == CampaignStatus.PENDING,
        request_id=uuid.uuid4().hex,
        zone=(country_zone(country) if country else None) or "UTC",
        zones=_ZONES,
        send_now=int(BroadcastType.SEND_NOW),
        scheduler=int(BroadcastType.SCHEDULER),
    )


@router.get("/{public_id}/progress")
async def campaign_progress(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, settings: SettingsDep, public_id: str
) -> Response:
    """The live part of the campaign's page, polled every 2 s while the campaign goes on."""
    shown = await service.get(session, viewer.subject, public_id)
    view = await _campaign_view(session, shown.campaign, settings)
    return render(request, "campaign_progress.html", **view)


@router.post("/{public_id}/broadcast")
async def broadcast_campaign(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    public_id: str,
    broadcast_type: Annotated[str, Form(alias="broadcastType")] = "",
    schedule_time: Annotated[str, Form(alias="scheduleTime")] = "",
    time_zone: Annotated[str, Form(alias="timeZone")] = "",
    request_id: Annotated[str, Form(alias="requestId")] = "",
) -> Response:
    # SEND_NOW takes no time (the API refuses one): the form's date field may still hold what was typed.
    scheduled = broadcast_type == str(int(BroadcastType.SCHEDULER))
    body = BulkCampaignBroadcastRequest.model_validate(
        {
            "broadcastType": broadcast_type or None,
            "scheduleTime": (schedule_time or None) if scheduled else None,
            "timeZone": (time_zone or None) if scheduled else None,
            "requestId": request_id or None,
        }
    )
    await runs.broadcast(session, viewer.subject, public_id, body)
    after_commit(request, request.app.state.wake_workers)
    notice = "The campaign is scheduled" if scheduled else "The campaign is sending"
    return redirect(request, _url(public_id), notice=notice)


async def _change(
    request: Request, session: AsyncSession, viewer: Viewer, public_id: str, change: ChangeRun
) -> Response:
    campaign = await change(session, viewer.subject, public_id)
    after_commit(request, request.app.state.wake_workers)
    return redirect(
        request, _url(public_id), notice=f"The campaign is {CampaignStatus(campaign.status).name}"
    )


@router.post("/{public_id}/pause")
async def pause_campaign(
    request: Request, session: SessionDep, viewer: CompanyEditorDep, public_id: str
) -> Response:
    return await _change(request, session, viewer, public_id, runs.pause)


@router.post("/{public_id}/resume")
async def resume_campaign(
    request: Request, session: SessionDep, viewer: CompanyEditorDep, public_id: str
) -> Response:
    return await _change(request, session, viewer, public_id, runs.resume)


@router.post("/{public_id}/cancel")
async def cancel_campaign(
    request: Request, session: SessionDep, viewer: CompanyEditorDep, public_id: str
) -> Response:
    return await _change(request, session, viewer, public_id, runs.cancel)


class _BodyRefused(AppError):
    """The body was refused while it arrived (too large, too slow), shown as the portal shows errors."""

    def __init__(self, refused: RejectedBody) -> None:
        super().__init__(str(refused.detail), name="file")
        self.status_code = refused.status_code


@dataclass(frozen=True)
class _Part:
    name: str
    filename: str | None
    content_type: str | None


class _StreamedForm:
    """A multipart/form-data body read as it arrives: the fields before its file, then the file's bytes
    piece by piece, which go on into the import while the rest still arrives."""

    def __init__(self, request: Request) -> None:
        kind, options = parse_options_header(request.headers.get("content-type"))
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise Invalid("send the file in a multipart/form-data form", name="file")
        self._chunks = request.stream()
        self._ended = False
        # The parser's callbacks only record what they meet; the reader goes through it in order.
        self._events: collections.deque[tuple[str, Any]] = collections.deque()
        self._headers: dict[bytes, bytes] = {}
        self._header = self._value = b""
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._headers.clear,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": lambda: self._events.append(("end", None)),
            },
        )

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header.lower()] = self._value
        self._header = self._value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        filename = options.get(b"filename")
        content_type = self._headers.get(b"content-type")
        part = _Part(
            name=options.get(b"name", b"").decode("utf-8", "replace"),
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
            content_type=content_type.decode("latin-1") if content_type else None,
        )
        self._events.append(("part", part))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", data[start:end]))

    async def _next(self) -> tuple[str, Any] | None:
        """The next thing the parser met: ("part", _Part), ("data", bytes) or ("end", None); None once the
        body is read."""
        while not self._events:
            if self._ended:
                return None
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._ended = True
                continue
            except RejectedBody as refused:
                raise _BodyRefused(refused) from None
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise Invalid(f"the form cannot be read: {exc}", name="file") from None
        return self._events.popleft()

    async def fields_then_file(self) -> tuple[dict[str, str], _Part]:
        """The fields before the file (the form puts them first), and the file's part."""
        fields: dict[str, str] = {}
        part: _Part | None = None
        value = bytearray()
        while (event := await self._next()) is not None:
            kind, payload = event
            if kind == "part" and payload.filename is not None:
                return fields, payload
            if kind == "part":
                part, value = payload, bytearray()
            elif kind == "data":
                value += payload
                if len(value) > _FIELD_BYTES:
                    raise Invalid(f"longer than {_FIELD_BYTES} bytes", name=part.name if part else "form")
            elif part is not None:
                fields[part.name] = value.decode("utf-8", "replace")
                if len(fields) > _MAX_FIELDS:
                    raise Invalid("the form has too many fields", name="form")
        raise Invalid("choose a CSV or XLSX file", name="file")

    async def file_data(self) -> AsyncIterator[bytes]:
        while (event := await self._next()) is not None:
            kind, payload = event
            if kind == "end":
                return
            yield payload
        raise Invalid("the form ended inside the file: upload it again", name="file")


@dataclass(frozen=True)
class _Upload:
    fields: dict[str, str]
    filename: str
    content_type: str | None
    body: AsyncIterator[bytes]


async def _spooled(file: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await file.read(_READ_BYTES):
        yield chunk


async def _at_most(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the file is larger than {limit} bytes (OPENMMP_CAMPAIGNS__MAX_UPLOAD_BYTES)", name="file"
            )
        yield chunk


async def _upload_form(request: Request, limit: int) -> _Upload:
    if request.headers.get(CSRF_HEADER) is None:
        # A browser without JavaScript posted the form itself: the CSRF check has read it already (its
        # file spooled to a temporary file by Starlette), so it is taken from there.
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            raise Invalid("choose a CSV or XLSX file", name="file")
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        return _Upload(fields, file.filename, file.content_type, _at_most(_spooled(file), limit))
    streamed = _StreamedForm(request)
    fields, part = await streamed.fields_then_file()
    if not part.filename:
        raise Invalid("choose a CSV or XLSX file", name="file")
    return _Upload(fields, part.filename, part.content_type, _at_most(streamed.file_data(), limit))


@router.post("/{public_id}/contacts")
async def upload_contacts(
    request: Request,
    viewer: CompanyEditorDep,
    settings: SettingsDep,
    public_id: str,
) -> Response:
    """Start importing the file's contacts, as Upload bulk campaign contacts does: the import's progress
    (a fragment that follows it) for the portal's script, the campaign's page otherwise.

    Takes no request transaction: the import stores the file in transactions of its own as it arrives,
    which may take minutes, and on SQLite a request's write transaction would hold the one write lock
    they wait for."""
    subject = viewer.subject
    upload = await _upload_form(request, settings.campaigns.max_upload_bytes)
    phone_column = upload.fields.get("phoneColumn", "").strip() or "phone"
    if len(phone_column) > 200:
        raise Invalid("at most 200 characters", name="phoneColumn")
    db = request_database(request)
    task = await start_import(
        db,
        subject,
        public_id,
        filename=upload.filename,
        content_type=upload.content_type,
        body=upload.body,
        mapping=ColumnMapping(phone=phone_column),
        work_dir=settings.data_dir / "imports",
    )
    request.app.state.wake_workers()
    if not is_htmx(request):
        return redirect(request, f"{_url(public_id)}?task={task.public_id}", notice="The import has started")
    return render(request, "campaign_import.html", status_code=202, **_import_view(public_id, task))


@router.get("/{public_id}/imports/{task_id}")
async def import_progress(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, public_id: str, task_id: str
) -> Response:
    """An import's progress, polled every second until it is DONE or FAIL."""
    shown = await service.get(session, viewer.subject, public_id)
    task = await _import_of(session, viewer.subject, shown.campaign, task_id)
    return render(request, "campaign_import.html", **_import_view(public_id, task))


@router.get("/{public_id}/imports/{task_id}/report")
async def import_report(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, public_id: str, task_id: str
) -> Response:
    """The rows the import could not take (a CSV `line,phone,error`), as the API's result file."""
    shown = await service.get(session, viewer.subject, public_id)
    task = await _import_of(session, viewer.subject, shown.campaign, task_id)
    return result_response(request, await tasks.finished(session, viewer.subject, public_id=task.public_id))
