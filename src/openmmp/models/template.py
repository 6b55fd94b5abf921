from enum import IntEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class TemplateStatus(IntEnum):
    """api.md §2 TemplateStatus. Only APPROVED templates send."""

    DRAFT = 0
    REQUEST = 1
    APPROVED = 2
    REJECTED = 3


class TemplateType(IntEnum):
    """api.md §2 TemplateType: one message to broadcast, or a conversation flow of several."""

    BROADCAST_ONLY = 1
    CONVERSATION = 2


class Template(IdMixin, Base):
    """A company's message template: reviewed (by the operator, or by the upstream), then sent by id.

    `channel_id` (the template's `accountId`) ties it to one channel; without one it serves every channel
    of its application. `messages` are TemplateMessage objects (wire names) with `{{name}}` placeholders;
    `upstream` is the upstream's own form instead, for applications whose upstream reviews templates, and
    `upstream_id` the upstream's id of it, which its verdicts name. `variables` are the parameters a send
    must give, worked out when the template is saved.
    """

    __tablename__ = "templates"
    __table_args__ = (
        Index("ix_templates_company", "company_id", "status", "id"),
        Index("ix_templates_upstream", "application_id", "upstream_id"),
    )

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    application_id: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[int] = mapped_column(default=TemplateType.BROADCAST_ONLY)
    status: Mapped[int] = mapped_column(default=TemplateStatus.REQUEST)
    status_cause: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(String(1000))
    expire_type: Mapped[str] = mapped_column(String(20), default="NONE", doc="NONE, TTL or EXPIRE_TIME")
    ttl: Mapped[int | None] = mapped_column(doc="Seconds (expire_type TTL)")
    expire_time: Mapped[int | None] = mapped_column(BigInteger, doc="Epoch ms (expire_type EXPIRE_TIME)")
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    upstream: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    upstream_id: Mapped[str | None] = mapped_column(String(200))
    variables: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class FlowStatus:
    """Where a conversation flow is (a TemplateFlow's `status`)."""

    WAITING = "WAITING"  # for the end user's reply to `step`
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"


class TemplateFlow(IdMixin, Base):
    """A CONVERSATION template running with one end user (templates/flows.py).

    Started by Broadcast Template Message, whose message is the flow's START step (`message_id`, the id
    its API answer gave). `steps` are the template's messages as they were then: editing or deleting the
    template later changes no running flow. The flow is the recipient's on its channel: their
    conversation (`conversation_id`), or, until they first write, their `phone`. `answers` are their
    replies by `answerId`; `replied_up_to` is the last inbound message of the conversation the flow has
    taken as a reply, so a reply is applied once however often its job runs. At most one flow per
    recipient and channel waits: a newer one ends the older.
    """

    __tablename__ = "template_flows"
    __table_args__ = (
        Index("ix_template_flows_conversation", "channel_id", "conversation_id", "status"),
        Index("ix_template_flows_phone", "channel_id", "phone", "status"),
    )

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    phone: Mapped[str | None] = mapped_column(String(20))
    template_public_id: Mapped[str] = mapped_column(String(36))
    message_id: Mapped[str] = mapped_column(String(36), unique=True, doc="The START message's public id")
    api_key_id: Mapped[int] = mapped_column(Id, doc="The key that started it: the flow's sends are its")
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    answers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default=FlowStatus.WAITING)
    step: Mapped[str] = mapped_column(String(100), doc="The step sent last")
    sent: Mapped[list[str]] = mapped_column(JSON, default=list, doc="Public ids of the messages it sent")
    replied_up_to: Mapped[int] = mapped_column(Id, default=0)
    expire_at: Mapped[int | None] = mapped_column(BigInteger)
    cause: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
