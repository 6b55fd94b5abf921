"""The Bulk Campaign routes (api.md §4.6) under /api/v1/bulk-campaign."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from openmmp.api_keys.auth import CompanyKey
from openmmp.campaigns import service
from openmmp.campaigns.schemas import BulkCampaign, BulkCampaignSearchResponse, CreateBulkCampaignRequest
from openmmp.errors import responses
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import PageNumber, PageSize
from openmmp.models.campaign import CampaignStatus, CampaignType

router = APIRouter(prefix="/bulk-campaign", tags=["Bulk Campaign"])

CampaignId = Annotated[str, Path(alias="campaignId", description="The campaign's `publicId`")]


@router.post(
    "",
    summary="Create bulk campaign",
    description="A campaign of one channel and one APPROVED template of it (whose type is the campaign's), "
    "status 1 PENDING: upload its contacts, then broadcast it. 404 naming `channels[0].accountId` or "
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
async def get_campaign(campaign_id: CampaignId, subject: CompanyKey, session: SessionDep) -> BulkCampaign:
    shown = await service.get(session, subject, campaign_id)
    return service.response(shown, await service.progress(session, shown.campaign))
