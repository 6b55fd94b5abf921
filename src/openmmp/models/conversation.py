from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class Conversation(IdMixin, Base):
    """One end user on one BOT channel.

    `public_id` is the `from` of inbound webhooks and the `to` of replies.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("channel_id", "external_id"),
        Index("ix_conversations_phone", "channel_id", "phone"),
        Index("ix_conversations_started", "channel_id", "created_at"),
    )

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200), doc="The upstream's user id")
    name: Mapped[str] = mapped_column(String(200), default="")
    avatar_url: Mapped[str] = mapped_column(String(2000), default="")
    language: Mapped[str] = mapped_column(String(20), default="")
    country: Mapped[str] = mapped_column(String(20), default="")
    phone: Mapped[str | None] = mapped_column(String(20))
    subscribed: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class InboundMessage(IdMixin, Base):
    """Something an end user did on a BOT channel: wrote, subscribed, unsubscribed, opened the chat."""

    __tablename__ = "inbound_messages"

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        Id, ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(30))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
