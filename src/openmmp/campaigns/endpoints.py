"""The Bulk Campaign routes (api.md §4.6) under /api/v1/bulk-campaign."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import CompanyKey, Subject
from openmmp.campaigns import events, runs, service
from openmmp.campaigns.contact_file import ColumnMapping
from openmmp.campaigns.imports import start_import
from openmmp.campaigns.schemas import (
    BulkCampaign,
    BulkCampaignBroadcastRequest,
    BulkCampaignBroadcastResponse,
    BulkCampaignConversationRequest,
    BulkCampaignConversationResponse,
    BulkCampaignSearchResponse,
    CreateBulkCampaignRequest,
)
from openmmp.deps import KeyringDep, SettingsDep
from openmmp.errors import Invalid, responses
from openmmp.kit.db import SessionDep, after_commit, request_database
from openmmp.kit.paths import API_PREFIX
from openmmp.kit.schemas import PageNumber, PageSize
from openmmp.models import Campaign
from openmmp.models.campaign import CampaignStatus, CampaignType
from openmmp.tasks.schemas import BackgroundTaskResponse, task_response

router = APIRouter(prefix="/bulk-campaign", tags=["Bulk Campaign"])

ChangeRun = Callable[[AsyncSession, Subject, str], Awaitable[Campaign]]
CampaignId = Annotated[str, Path(alias="campaignId", description="The campaign's `publicId`")]
CONTACTS_UPLOAD = re.compile(re.escape(API_PREFIX) + r"/bulk-campaign/[^/]+/contacts")
"""The route that takes files, up to OPENMMP_CAMPAIGNS__MAX_UPLOAD_BYTES rather than an API body's size."""
_FILE_TYPES = ("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@router.post(
    "",
    summary="Create bulk campaign",
    description="A campaign of one channel and one APPROVED template of it (whose type is the campaign's), "
    "status 1 PENDING: its contacts are uploaded next, then it is broadcast. "
    "404 naming `channels[0].accountId` or "
    "`channels[0].templateId` for what is not the company's; 400 for a template that is not APPROVED or not "
    "for the channel.",
    status_code=201,
    response_model=BulkCampaign,
    responses=responses(400, 401, 403, 404, 413),
)
async def create_campaign(
    body: CreateBulkCampaignRequest, subject: CompanyKey, session: SessionDep
) -> BulkCampaign:
    return service.response(await service.create(session, subject, body))


@router.get(
    "",
    summary="Get list bulk campaign",
    description="The company's campaigns, newest first: `name` matches a part of the name.",
    response_model=BulkCampaignSearchResponse,
    responses=responses(400, 401, 403),
)
async def list_campaigns(
    subject: CompanyKey,
    session: SessionDep,
    name: Annotated[str | None, Query(max_length=200)] = None,
    status: CampaignStatus | None = None,
    type_: Annotated[CampaignType | None, Query(alias="type")] = None,
    page: PageNumber = 1,
    size: PageSize = 20,
) -> BulkCampaignSearchResponse:
    total, found = await service.page(
        session,
        subject,
        name=name,
        status=int(status) if status is not None else None,
        type_=int(type_) if type_ is not None else None,
        page=page,
        size=size,
    )
    return BulkCampaignSearchResponse(
        total=total, page=page, size=size, items=[service.response(shown) for shown in found]
    )


@router.get(
    "/{campaignId}",
    summary="Get bulk campaign",
    description="The campaign, with its contacts counted per status (`progress`).",
    response_model=BulkCampaign,
    responses=responses(401, 403, 404),
)
async def get_campaign(
    campaign_id: CampaignId, subject: CompanyKey, session: SessionDep, settings: SettingsDep
) -> BulkCampaign:
    shown = await service.get(session, subject, campaign_id)
    return service.response(shown, await service.progress(session, shown.campaign, settings))


@router.post(
    "/{campaignId}/broadcast",
    summary="Send Bulk Campaign Broadcast",
    description="Start sending the campaign (status 2 STARTED, then 3 PROCESSING, 4 DONE once every "
    "contact is handed to the channel): `broadcastType` 2 SEND_NOW, or 1 SCHEDULER at `scheduleTime` (epoch "
    "ms, or an ISO 8601 date and time in `timeZone`). `contacts` (up to 1,000) are added first, all or "
    "none (400 naming `contacts[i].phone`). Contacts are sent at the channel's limit, after every "
    "transactional send, each at most once whatever happens (`clientMessageId` `cmp-<campaignId>-<n>` "
    "unless the contact gave its own): a campaign already running answers with its run, as does the same "
    "`requestId` again, and a DONE one runs again for the contacts added since. 409 for a PAUSED (resume "
    "it) or CANCELLED campaign; 400 naming `contacts` for a campaign without contacts, `scheduleTime` for "
    "a time not in the future.",
    response_model=BulkCampaignBroadcastResponse,
    responses=responses(400, 401, 403, 404, 409),
)
async def broadcast_campaign(
    campaign_id: CampaignId,
    body: BulkCampaignBroadcastRequest,
    request: Request,
    subject: CompanyKey,
    session: SessionDep,
) -> BulkCampaignBroadcastResponse:
    answer = await runs.broadcast(session, subject, campaign_id, body)
    after_commit(request, request.app.state.wake_workers)
    return answer


async def _changed(
    change: ChangeRun, campaign_id: str, request: Request, subject: Subject, session: AsyncSession
) -> BulkCampaign:
    campaign = await change(session, subject, campaign_id)
    after_commit(request, request.app.state.wake_workers)
    shown = await service.get(session, subject, campaign.public_id)
    return service.response(shown, await service.progress(session, campaign, request.app.state.settings))


@router.post(
    "/{campaignId}/pause",
    summary="Pause bulk campaign",
    description="A running campaign (2 STARTED, 3 PROCESSING) → 8 PAUSED: no more of its contacts are "
    "queued (those already in the outbox, up to OPENMMP_CAMPAIGNS__QUEUE_AHEAD_SECONDS of the channel's "
    "limit, still go). Pausing a PAUSED one changes nothing; 409 for any other status.",
    response_model=BulkCampaign,
    responses=responses(401, 403, 404, 409),
)
async def pause_campaign(
    campaign_id: CampaignId, request: Request, subject: CompanyKey, session: SessionDep
) -> BulkCampaign:
    return await _changed(runs.pause, campaign_id, request, subject, session)


@router.post(
    "/{campaignId}/resume",
    summary="Resume bulk campaign",
    description="A PAUSED campaign (by the company, or by itself: see `reason`) → 2 STARTED: its contacts "
    "not sent yet go on, none twice. Resuming a running one changes nothing; 409 for any other status.",
    response_model=BulkCampaign,
    responses=responses(401, 403, 404, 409),
)
async def resume_campaign(
    campaign_id: CampaignId, request: Request, subject: CompanyKey, session: SessionDep
) -> BulkCampaign:
    return await _changed(runs.resume, campaign_id, request, subject, session)


@router.post(
    "/{campaignId}/cancel",
    summary="Cancel bulk campaign",
    description="Any campaign not DONE → 9 CANCELLED, for good: its contacts not sent are never sent. "
    "Cancelling a CANCELLED one changes nothing; 409 for a DONE one.",
    response_model=BulkCampaign,
    responses=responses(401, 403, 404, 409),
)
async def cancel_campaign(
    campaign_id: CampaignId, request: Request, subject: CompanyKey, session: SessionDep
) -> BulkCampaign:
    return await _changed(runs.cancel, campaign_id, request, subject, session)


@router.post(
    "/{campaignId}/message",
    summary="Send Bulk Contact Message",
    description="The campaign's template to one contact now (a transactional send, ahead of campaign "
    "traffic), with `params` or those the contact was imported with; a phone new to the campaign becomes "
    "its contact. A contact is sent once: one already sent, by this or by the campaign's run, answers with "
    "its message. 400 naming the parameter or field that does not fit; 409 for a CANCELLED campaign.",
    response_model=BulkCampaignConversationResponse,
    responses=responses(400, 401, 403, 404, 409),
)
async def message_contact(
    campaign_id: CampaignId,
    body: BulkCampaignConversationRequest,
    request: Request,
    subject: CompanyKey,
    session: SessionDep,
    keyring: KeyringDep,
) -> BulkCampaignConversationResponse:
    answer = await runs.message(session, keyring, subject, campaign_id, body)
    after_commit(request, request.app.state.wake_workers)
    return answer


@router.get(
    "/{campaignId}/events",
    summary="Follow bulk campaign progress",
    description="Server-sent events (`text/event-stream`): an `event: progress` whose `data` is the "
    "campaign as Get bulk campaign gives it, at once and then whenever it changes (looked at every "
    "OPENMMP_CAMPAIGNS__EVENTS_INTERVAL_SECONDS), and a `: keep-alive` comment between. The stream ends "
    "after the event in which the campaign is DONE or CANCELLED with no contact left in queue.",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The events", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **responses(401, 403, 404),
    },
)
async def follow_campaign(
    campaign_id: CampaignId, request: Request, subject: CompanyKey, session: SessionDep
) -> StreamingResponse:
    await service.get(session, subject, campaign_id)
    return StreamingResponse(
        events.progress_events(request, subject, campaign_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _mapping(phone_column: str, params: list[str] | None) -> ColumnMapping:
    if not params:
        return ColumnMapping(phone=phone_column)
    columns: dict[str, str] = {}
    for given in params:
        name, sep, column = given.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise Invalid(f"{given!r} is not <parameter>=<column>", name="param")
        columns[name.strip()] = column.strip()
    return ColumnMapping(phone=phone_column, params=columns)


@router.post(
    "/{campaignId}/contacts",
    summary="Upload bulk campaign contacts",
    description="The body is the file itself, a CSV (UTF-8, with a header row) or an XLSX workbook (its "
    "first sheet), told apart by `filename`'s extension, else by `Content-Type`; it is streamed, never held "
    "whole, up to OPENMMP_CAMPAIGNS__MAX_UPLOAD_BYTES. `phoneColumn` names the column of phones (national "
    "numbers in the channel's default country); each `param=<parameter>=<column>` maps a template parameter "
    "to a column, and without any every other column is a parameter named after its header. The import runs "
    "as a background task (202): follow it at `GET /api/v1/background-task/{id}` (progress by bytes read); "
    "its summary counts the rows, the contacts imported, the invalid rows and the duplicates (a phone is a "
    "campaign's contact once), and its result file is a CSV `line,phone,error` of the rows not imported "
    "because they are invalid. A file or mapping that cannot be read is a 400 at once.",
    status_code=202,
    response_model=BackgroundTaskResponse,
    responses=responses(400, 401, 403, 404, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in _FILE_TYPES},
        }
    },
)
async def upload_contacts(
    campaign_id: CampaignId,
    request: Request,
    subject: CompanyKey,
    settings: SettingsDep,
    phone_column: Annotated[str, Query(alias="phoneColumn", min_length=1, max_length=200)] = "phone",
    param: Annotated[list[str] | None, Query(max_length=200)] = None,
    filename: Annotated[str | None, Query(max_length=255)] = None,
) -> BackgroundTaskResponse:
    task = await start_import(
        request_database(request),
        subject,
        campaign_id,
        filename=filename or "",
        content_type=request.headers.get("content-type"),
        body=request.stream(),
        mapping=_mapping(phone_column, param),
        work_dir=settings.data_dir / "imports",
    )
    request.app.state.wake_workers()
    return task_response(task)
