"""The billing CDR routes (api.md §4.7) under /api/v1/billing/cdr: a request, its status, its file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from openmmp.api_keys.auth import CompanyKey
from openmmp.billing import cdr
from openmmp.errors import responses
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import RequestModel
from openmmp.kit.time import MAX_EPOCH_MS
from openmmp.models import BackgroundTask
from openmmp.providers.applications import Application
from openmmp.tasks import service as tasks
from openmmp.tasks.endpoints import DOWNLOAD_RESPONSES, result_response
from openmmp.tasks.schemas import BackgroundTaskResponse, task_response

router = APIRouter(prefix="/billing/cdr", tags=["Billing"])

TaskId = Annotated[str, Path(alias="taskId", description="The billing request's background task `id`")]


class BillingCdrRequest(RequestModel):
    """The messages created in [fromDate, toDate) of one channel, or of all the company's."""

    from_date: int = Field(ge=0, le=MAX_EPOCH_MS, description="Epoch ms")
    to_date: int = Field(ge=1, le=MAX_EPOCH_MS, description="Epoch ms, not included")
    account_id: str | None = Field(default=None, max_length=36, description="The channel's publicId")
    application_id: Application | None = Field(
        default=None, description="Only the company's channels of this application"
    )


async def _export(session: SessionDep, subject: CompanyKey, task_id: str) -> BackgroundTask:
    task = await tasks.get(session, subject, public_id=task_id)
    if task.type != cdr.TYPE:
        raise tasks.TaskNotFound("No such billing request")
    return task


@router.post(
    "",
    summary="Create billing request",
    description="Export the billing CDR of a period as a background task (202): a CSV "
    f"`{','.join(cdr.HEADER)}`, a row of `type` MESSAGE per billable message (accepted upstream: SENT, "
    "DELIVERED, READ, or FAIL after it was accepted) created in [fromDate, toDate), then one of `type` "
    "CONVERSATION per conversation an end user started in it; of the channel `accountId`, of the company's "
    "channels of `applicationId`, or of all its channels. `tariffType` is TRANSACTIONAL or CAMPAIGN "
    "(CONVERSATION for conversations), `segments` the upstream messages a message went as, `country` the "
    "recipient's (by calling code), `status` the message's now. Follow it with Get billing request status; "
    "Download billing once it is DONE. Resumed from its last step after a restart. 400 naming `toDate` "
    "when it is not after `fromDate`, `applicationId` when the channel is of another; 404 naming "
    "`accountId` for another company's channel.",
    status_code=202,
    response_model=BackgroundTaskResponse,
    responses=responses(400, 401, 403, 404),
)
async def create_billing_request(
    body: BillingCdrRequest, request: Request, subject: CompanyKey
) -> BackgroundTaskResponse:
    task = await cdr.request_export(
        request.app.state.db,
        subject,
        from_date=body.from_date,
        to_date=body.to_date,
        account_id=body.account_id,
        application_id=int(body.application_id) if body.application_id is not None else None,
    )
    request.app.state.wake_workers()
    return task_response(task)


@router.get(
    "/{taskId}",
    summary="Get billing request status",
    description="The export's background task: status, progress, and once DONE its `summary` (`rows`) and "
    "`resultFile`.",
    response_model=BackgroundTaskResponse,
    responses=responses(401, 403, 404),
)
async def get_billing_request(
    task_id: TaskId, subject: CompanyKey, session: SessionDep
) -> BackgroundTaskResponse:
    return task_response(await _export(session, subject, task_id))


@router.get(
    "/{taskId}/download",
    summary="Download billing",
    description="The CDR of a DONE export, streamed as CSV with `Content-Length`. 409 while it is not DONE.",
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
)
async def download_billing(
    task_id: TaskId, subject: CompanyKey, session: SessionDep, request: Request
) -> StreamingResponse:
    await _export(session, subject, task_id)
    return result_response(request, await tasks.finished(session, subject, public_id=task_id))
