from enum import IntEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class MessageStatus(IntEnum):
    """api.md §2. Order of progress is PENDING < SENT < DELIVERED < READ; FAIL is terminal."""

    PENDING = 1
    SENT = 2
    FAIL = 3
    DELIVERED = 4
    READ = 5


CAUSES = {
    MessageStatus.PENDING: "PENDING",
    MessageStatus.SENT: "SEND",
    MessageStatus.FAIL: "FAIL",
    MessageStatus.DELIVERED: "DELIVERED",
    MessageStatus.READ: "READ",
}


class Priority(IntEnum):
    """Transactional sends are claimed before campaign traffic (architecture.md invariant 6)."""

    TRANSACTIONAL = 0
    CAMPAIGN = 1


class Message(IdMixin, Base):
    """One outbound message to one recipient; `public_id` is the wire `messageId`."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("company_id", "client_message_id"),
        Index("ix_messages_provider", "channel_id", "provider_message_id"),
        Index("ix_messages_recipient", "channel_id", "recipient", "id"),
        Index("ix_messages_expiry", "status", "expire_at"),
    )

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("conversations.id", ondelete="SET NULL")
    )
    client_message_id: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(200), doc="The upstream's address: phone or user id")
    content: Mapped[dict[str, Any]] = mapped_column(JSON, doc="The rendered MMP message object")
    status: Mapped[int] = mapped_column(default=MessageStatus.PENDING)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    segments: Mapped[int] = mapped_column(
        default=1, server_default="1", doc="Upstream messages it went as (the parts of a long SMS)"
    )
    parent_id: Mapped[int | None] = mapped_column(
        Id, index=True, doc="A fallback leg: the first message of its chain"
    )
    fallback: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True),
        doc="Its place in a fallback chain: leg, root (first message's public id), rest (the channels "
        "still to try), afterSeconds, next (the leg that followed it, once one did)",
    )
    priority: Mapped[int] = mapped_column(default=Priority.TRANSACTIONAL)
    attempts: Mapped[int] = mapped_column(default=0)
    expire_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class MessageEvent(Base):
    """One step of a message's history, with the provider's raw event when there was one."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    status: Mapped[int]
    timestamp: Mapped[int] = mapped_column(BigInteger)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class MessagePart(Base):
    """One part of a message sent as several upstream messages (`SendOk.parts`): its upstream id, by
    which its report finds it, and what that report said. The message is final once every part is."""

    __tablename__ = "message_parts"
    # Not unique: an upstream may hand out an id again (an SMSC counting from 1 after a restart).
    __table_args__ = (Index("ix_message_parts_provider", "channel_id", "provider_message_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(Id)
    number: Mapped[int] = mapped_column(doc="From 1, in the order the parts were sent")
    provider_message_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[int] = mapped_column(default=MessageStatus.SENT)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))


class Job(Base):
    """The outbox: work written in the same transaction as the rows it is about.

    A worker claims due jobs (`run_at` passed) by moving `run_at` and `lease_until` to the end of its
    lease; a job whose lease ran out is due again, so a dead worker's work is picked up. Done jobs are
    deleted. `ix_jobs_claim` serves every claim, in order (queue/sql.py); `ix_jobs_due` the backlog per kind.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "kind", "company_id", "priority", "run_at", "id"),
        Index("ix_jobs_due", "kind", "run_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    company_id: Mapped[int] = mapped_column(Id)
    channel_id: Mapped[int | None] = mapped_column(Id)
    message_id: Mapped[int | None] = mapped_column(Id)
    priority: Mapped[int] = mapped_column(default=Priority.TRANSACTIONAL)
    run_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    lease_until: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class EventOutcome:
    APPLIED = "applied"
    DUPLICATE_STATUS = "no_change"
    UNMATCHED = "unmatched"  # no message has this token (yet): retried by the reconciler for a while
    UNKNOWN = "unknown"  # never matched a message
    INBOUND = "inbound"
    PING = "ping"
    CHANNEL = "channel"  # a change of the channel's own state
    TEMPLATE = "template"  # an upstream decision about a template, kept for the templates domain


class ProviderEvent(Base):
    """Every callback a provider sent, raw, once per `dedupe_key` (repeats are recognised here).

    A status callback can overtake the commit that records the send it is about; it is then kept
    UNMATCHED and applied by the reconciler once the message carries its `provider_message_id`.
    """

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("channel_id", "dedupe_key"),
        Index("ix_provider_events_outcome", "outcome", "received_at"),
        Index("ix_provider_events_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(String(300))
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(30))
    raw: Mapped[str] = mapped_column(Text)
    received_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
