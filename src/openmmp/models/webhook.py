from enum import IntEnum

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class DeliveryState(IntEnum):
    PENDING = 1
    DELIVERED = 2
    HELD = 3  # the endpoint is FAILED: kept, not sent, until it is re-activated
    FAILED = 4  # every attempt its schedule allows failed: given up (replayable); later events go out


class WebhookDelivery(IdMixin, Base):
    """One event for one channel's webhook URL; `public_id` is the stable `webhook-id` header.

    `body` is the exact JSON sent, so every retry carries the same bytes and signature input.
    Deliveries with the same `ordering_key` (a message) go out strictly in `id` order.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "ordering_key", "id"),
        Index("ix_webhook_deliveries_channel", "channel_id", "id"),
    )

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    ordering_key: Mapped[str | None] = mapped_column(String(64))
    event_type: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[int] = mapped_column(default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    lease_until: Mapped[int] = mapped_column(BigInteger, default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger)


class WebhookAttempt(Base):
    """One try of a delivery: when, to where, what came back (first 2 KiB) and how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        Id, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    attempted_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    status_code: Mapped[int | None]
    latency_ms: Mapped[float] = mapped_column(Float)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(String(500))
