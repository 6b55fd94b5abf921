from enum import IntEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class CampaignStatus(IntEnum):
    """api.md §2 BulkCampaignStatus (the campaign's run), with OpenMMP's PAUSED and CANCELLED."""

    PENDING = 1
    STARTED = 2
    PROCESSING = 3
    DONE = 4
    PAUSED = 8
    CANCELLED = 9


class CampaignType(IntEnum):
    """api.md §2 BulkCampaignType."""

    BROADCAST_ONLY = 1
    CONVERSATION = 2


class BroadcastType(IntEnum):
    """api.md §2 BulkBroadcastType: at `scheduleTime`, or now."""

    SCHEDULER = 1
    SEND_NOW = 2


class ContactStatus(IntEnum):
    """api.md §2 campaign contact status."""

    DRAFT = -1
    NOT_SEND = 0
    PROCESSING = 1
    DONE = 2
    FAIL = 3
    SENT = 4
    DELIVERED = 5
    READ = 6
    BLACK_LIST = 7
    IN_QUEUE = 9


class Campaign(IdMixin, Base):
    """A company's bulk campaign: one channel, one approved template of it, and its contacts.

    `category` is the MMP API's ENFORCE, LBA or MASS; `expired_date` (epoch ms) ends its sending.
    `contacts_total` counts its contacts (kept by the imports and the sends that add them).
    """

    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_company", "company_id", "status", "id"),)

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    template_id: Mapped[int] = mapped_column(Id, ForeignKey("templates.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[int] = mapped_column(default=CampaignType.BROADCAST_ONLY)
    category: Mapped[str | None] = mapped_column(String(10), doc="ENFORCE, LBA or MASS")
    status: Mapped[int] = mapped_column(default=CampaignStatus.PENDING)
    broadcast_type: Mapped[int | None] = mapped_column(doc="BroadcastType, once broadcast")
    schedule_time: Mapped[int | None] = mapped_column(BigInteger, doc="Epoch ms (SCHEDULER)")
    expired_date: Mapped[int | None] = mapped_column(BigInteger, doc="Epoch ms: nothing is sent after it")
    contacts_total: Mapped[int] = mapped_column(BigInteger, default=0)
    job_id: Mapped[str | None] = mapped_column(String(36), doc="The run's public id (the broadcast's jobId)")
    request_id: Mapped[str | None] = mapped_column(String(100), doc="The broadcast's requestId")
    time_zone: Mapped[str | None] = mapped_column(String(64), doc="IANA zone of `scheduleTime`")
    started_at: Mapped[int | None] = mapped_column(BigInteger, doc="Epoch ms of the first send queued")
    reason: Mapped[str | None] = mapped_column(String(300), doc="Why it is paused, waiting or done")
    watch_from: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="The failure rate counts contacts after this id"
    )
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class CampaignContact(Base):
    """One recipient of a campaign: a phone (E.164 digits, once per campaign) and its template parameters.

    `message_id` is the message sent to it, once sent: a contact is sent at most once,
    however often its campaign is started, paused, resumed or its worker restarted.
    """

    __tablename__ = "campaign_contacts"
    __table_args__ = (
        UniqueConstraint("campaign_id", "phone", name="uq_campaign_contacts_phone"),
        Index("ix_campaign_contacts_status", "campaign_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_message_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[int] = mapped_column(default=ContactStatus.NOT_SEND)
    message_id: Mapped[int | None] = mapped_column(Id, ForeignKey("messages.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(String(300), doc="Why it was not sent (status FAIL)")
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
