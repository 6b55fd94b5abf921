"""Wire schemas of the Bulk Campaign endpoints (api.md §4.6): names are the MMP API's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.kit.zones import TimeZoneName
from openmmp.messages.schemas import ParamValue
from openmmp.models.campaign import BroadcastType, CampaignStatus, CampaignType, ContactStatus

Category = Literal["ENFORCE", "LBA", "MASS"]
MAX_INLINE_CONTACTS = 1000
"""Contacts a broadcast may give with it (more come as a file: Upload bulk campaign contacts)."""


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
    rate_per_second: float | None = Field(
        default=None, description="The channel's limit the campaign is sent at (sends per second)"
    )
    eta_seconds: int | None = Field(
        default=None,
        description="While it runs: the contacts left (not sent, in queue) at that rate, in seconds "
        "(quiet hours not counted)",
    )


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
    job_id: str | None = Field(default=None, description="The run's id, once broadcast")
    time_zone: str | None = Field(default=None, description="The zone `scheduleTime` was given in")
    started_date: int | None = Field(default=None, description="When its first send was queued (epoch ms)")
    reason: str | None = Field(
        default=None, description="Why it is PAUSED, waiting (quiet hours) or DONE early (expired)"
    )
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


class BulkCampaignContact(RequestModel):
    """A contact given with the broadcast: added to the campaign (once per phone) before it starts."""

    phone: str = Field(min_length=1, max_length=32)
    params: dict[str, ParamValue] = Field(default_factory=dict, description="The template's parameters")
    client_message_id: str | None = Field(
        default=None, min_length=1, max_length=100, description="Its send's idempotency key"
    )


class BulkCampaignBroadcastRequest(RequestModel):
    """Send Bulk Campaign Broadcast: start sending the campaign's contacts, now or at `scheduleTime`."""

    broadcast_type: BroadcastType = Field(description="1 SCHEDULER (at scheduleTime), 2 SEND_NOW")
    schedule_time: int | str | None = Field(
        default=None,
        description="SCHEDULER: epoch ms, or an ISO 8601 date and time (2026-12-24T09:00:00) in `timeZone` "
        "unless it gives its own offset",
    )
    time_zone: TimeZoneName | None = Field(
        default=None, description="IANA zone of a `scheduleTime` without offset; default UTC"
    )
    contacts: list[BulkCampaignContact] | None = Field(default=None, max_length=MAX_INLINE_CONTACTS)
    request_id: str | None = Field(
        default=None, max_length=100, description="The same requestId again gets the same answer"
    )


class BulkCampaignBroadcastResponse(ResponseModel):
    campaign_id: str
    job_id: str
    status: CampaignStatus
    total_contact: int


class BulkCampaignConversationRequest(RequestModel):
    """Send Bulk Contact Message: the campaign's template to one contact, now."""

    phone: str = Field(min_length=1, max_length=32)
    params: dict[str, ParamValue] | None = Field(
        default=None, description="The template's parameters; default: those the contact was imported with"
    )
    client_message_id: str | None = Field(default=None, min_length=1, max_length=100)


class BulkCampaignConversationResponse(ResponseModel):
    campaign_id: str
    phone: str
    message_id: str
    client_message_id: str
    status: int = Field(description="The message's status (api.md §2 MessageStatus)")
    cause: str
    contact_status: ContactStatus
