"""Wire schemas of the Bulk Campaign endpoints (api.md §4.6): names are the MMP API's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.models.campaign import BroadcastType, CampaignStatus, CampaignType, ContactStatus

Category = Literal["ENFORCE", "LBA", "MASS"]


class BulkCampaignChannel(RequestModel):
    """The channel a campaign sends on, and the APPROVED template of it that it sends."""

    account_id: str = Field(min_length=1, max_length=36, description="The channel's publicId")
    template_id: str = Field(
        min_length=1, max_length=36, description="An APPROVED template the channel sends"
    )


class CreateBulkCampaignRequest(RequestModel):
    """A new campaign (status 1 PENDING): its contacts are uploaded next."""

    name: str = Field(min_length=1, max_length=200)
    type: CampaignType = Field(description="1 BROADCAST_ONLY, 2 CONVERSATION (the template's flow)")
    category: Category | None = Field(default=None, description="ENFORCE, LBA or MASS")
    channels: list[BulkCampaignChannel] = Field(
        min_length=1, max_length=1, description="The channel and template (one per campaign in this version)"
    )
    expired_date: int | None = Field(default=None, ge=0, description="Epoch ms: nothing is sent after it")


class BulkCampaignChannelResponse(ResponseModel):
    account_id: str
    template_id: str


class BulkCampaignProgress(ResponseModel):
    """How many contacts are in each state (api.md §2 campaign contact status, by name)."""

    total: int
    not_send: int = 0
    in_queue: int = 0
    processing: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    fail: int = 0
    black_list: int = 0
    done: int = 0
    draft: int = 0


class BulkCampaign(ResponseModel):
    public_id: str
    name: str
    type: CampaignType
    category: Category | None
    status: CampaignStatus = Field(
        description="1 PENDING, 2 STARTED, 3 PROCESSING, 4 DONE, 8 PAUSED, 9 CANCELLED"
    )
    cause: str = Field(description="The status's name")
    channels: list[BulkCampaignChannelResponse]
    broadcast_type: BroadcastType | None = None
    schedule_time: int | None = None
    expired_date: int | None = None
    total_contact: int
    progress: BulkCampaignProgress | None = Field(
        default=None, description="Counts per contact status (Get a campaign only)"
    )
    created_date: int
    updated_date: int


class BulkCampaignSearchResponse(ResponseModel):
    total: int
    page: int
    size: int
    items: list[BulkCampaign]


PROGRESS_FIELDS: dict[int, str] = {
    ContactStatus.DRAFT: "draft",
    ContactStatus.NOT_SEND: "not_send",
    ContactStatus.PROCESSING: "processing",
    ContactStatus.DONE: "done",
    ContactStatus.FAIL: "fail",
    ContactStatus.SENT: "sent",
    ContactStatus.DELIVERED: "delivered",
    ContactStatus.READ: "read",
    ContactStatus.BLACK_LIST: "black_list",
    ContactStatus.IN_QUEUE: "in_queue",
}
"""Where each contact status is counted in BulkCampaignProgress."""
