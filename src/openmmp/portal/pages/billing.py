"""Billing: the company's messages and billable units of a period per application (Get Channel Summary),
and the CDR of a period exported as a background task, followed while it runs and downloaded as CSV.

Periods are whole UTC days given as YYYY-MM-DD, both days included: `fromDate` from its midnight,
`toDate` to the next midnight (the API's epoch ms `toDate` is not included).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Form, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from openmmp.api_keys.auth import Subject
from openmmp.billing import cdr
from openmmp.billing.endpoints import BillingCdrRequest
from openmmp.billing.summary import summary
from openmmp.channels.service import channels
from openmmp.errors import Invalid
from openmmp.kit.db import SessionDep, request_database
from openmmp.kit.time import MAX_EPOCH_MS, now_ms
from openmmp.models import BackgroundTask
from openmmp.models.task import TaskStatus
from openmmp.portal.web import (
    PORTAL,
    CompanyEditorDep,
    CompanyViewerDep,
    application_name,
    is_htmx,
    portal_router,
    redirect,
    render,
)
from openmmp.tasks import service as tasks
from openmmp.tasks.endpoints import result_response
from openmmp.tasks.schemas import task_response

router = portal_router("/billing")

DAY_MS = 86_400_000
DEFAULT_DAYS = 7
"""The period a page shows when none is given: the last week, today included."""
RECENT_EXPORTS = 5
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = date(1970, 1, 1)


def _midnight(value: str, name: str) -> int:
    """The first millisecond (UTC) of a YYYY-MM-DD day; a 400 naming the field for anything else."""
    if not _DATE.fullmatch(value):
        raise Invalid("must be a date as YYYY-MM-DD", name=name)
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise Invalid(f"{value} is not a day of the calendar", name=name) from exc
    if day < _EPOCH:
        raise Invalid("must be 1970-01-01 or later", name=name)
    return (day - _EPOCH).days * DAY_MS


def period(from_text: str, to_text: str) -> tuple[int, int]:
    """[first, end) in epoch ms of the days from `from_text` to `to_text`, both included."""
    first = _midnight(from_text, "fromDate")
    end = min(_midnight(to_text, "toDate") + DAY_MS, MAX_EPOCH_MS)
    if end <= first:
        raise Invalid("must not be before fromDate", name="toDate")
    return first, end


def _day(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).date().isoformat()


@router.get("")
async def billing(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    from_text: Annotated[str, Query(alias="fromDate", max_length=40)] = "",
    to_text: Annotated[str, Query(alias="toDate", max_length=40)] = "",
    account_id: Annotated[str, Query(alias="accountId", max_length=36)] = "",
) -> Response:
    subject = viewer.subject
    today = now_ms() // DAY_MS * DAY_MS
    from_text = from_text or _day(today - (DEFAULT_DAYS - 1) * DAY_MS)
    to_text = to_text or _day(today)
    first, end = period(from_text, to_text)
    answer = await summary(session, subject, account_id=account_id or None, from_date=first, to_date=end)
    owned = await channels.all_of(session, subject)
    _, recent = await tasks.search(session, subject, type=cdr.TYPE, page=1, size=RECENT_EXPORTS)
    return render(
        request,
        "billing.html",
        from_text=from_text,
        to_text=to_text,
        account_id=account_id,
        channels=[(c.public_id, c.name) for c in owned],
        answer=answer,
        applications=[(application_name(a.application_id), a) for a in answer.applications],
        exports=[_export_view(t, {c.id: c.name for c in owned}) for t in recent],
    )


def _export_view(task: BackgroundTask, channel_names: dict[int, str]) -> dict[str, Any]:
    """A CDR export as the pages show it: the API's view of the task, its period as days, its channel."""
    params = task.params or {}
    return {
        "task": task_response(task),
        "from_day": _day(int(params.get("fromDate", 0))),
        "to_day": _day(max(0, int(params.get("toDate", DAY_MS)) - 1)),
        "channel": channel_names.get(task.channel_id, "") if task.channel_id is not None else "",
    }


async def _export(session: AsyncSession, subject: Subject, task_id: str) -> BackgroundTask:
    """The company's CDR export, as the API's billing routes find it: 404 for any other task."""
    task = await tasks.get(session, subject, public_id=task_id)
    if task.type != cdr.TYPE:
        raise tasks.TaskNotFound("No such billing request")
    return task


@router.post("/cdr")
async def create_cdr(
    request: Request,
    viewer: CompanyEditorDep,
    from_text: Annotated[str, Form(alias="fromDate", max_length=40)],
    to_text: Annotated[str, Form(alias="toDate", max_length=40)],
    account_id: Annotated[str, Form(alias="accountId", max_length=36)] = "",
) -> Response:
    """Create billing request, as the API does: the export runs as a background task. No request
    transaction: `request_export` writes in a session of its own (SQLite has one write connection)."""
    subject = viewer.subject
    first, end = period(from_text, to_text)
    body = BillingCdrRequest.model_validate(
        {"fromDate": first, "toDate": end, "accountId": account_id or None}
    )
    task = await cdr.request_export(
        request_database(request),
        subject,
        from_date=body.from_date,
        to_date=body.to_date,
        account_id=body.account_id,
        application_id=None,
    )
    request.app.state.wake_workers()
    return redirect(request, f"{PORTAL}/billing/cdr/{task.public_id}", notice="The CDR export has started")


@router.get("/cdr/{task_id}")
async def cdr_status(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, task_id: str
) -> Response:
    """The export's progress: the page, or (htmx, every 2 s until it ends) its status fragment."""
    subject = viewer.subject
    task = await _export(session, subject, task_id)
    running = task.status in (TaskStatus.PENDING, TaskStatus.PROCESSING)
    if is_htmx(request):
        return render(request, "billing_cdr_status.html", export=_export_view(task, {}), running=running)
    names = {c.id: c.name for c in await channels.all_of(session, subject)}
    return render(request, "billing_cdr.html", export=_export_view(task, names), running=running)


@router.get("/cdr/{task_id}/download")
async def cdr_download(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, task_id: str
) -> Response:
    """Download billing: the CSV of a DONE export, streamed as the API streams it (409 until DONE)."""
    await _export(session, viewer.subject, task_id)
    return result_response(request, await tasks.finished(session, viewer.subject, public_id=task_id))
