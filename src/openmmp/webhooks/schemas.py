"""The outbound webhook bodies of api.md §5, to the letter: these names are the published contract."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openmmp.kit.schemas import RequestModel, ResponseModel


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StatusWebhook(_Wire):
    """`type: 1`: a message's status changed (SENT, DELIVERED, READ or FAIL)."""

    messageId: str
    cause: Literal["SEND", "DELIVERED", "READ", "FAIL"]
    clientMessageId: str
    timestamp: int = Field(description="Epoch milliseconds of the change")
    type: Literal[1]
    status: Literal[2, 3, 4, 5] = Field(description="2 SENT, 3 FAIL, 4 DELIVERED, 5 READ")
    publicId: str = Field(description="The channel's public id")
    applicationId: int


class WebhookContact(_Wire):
    avatarUrl: str
    name: str
    language: str
    country: str
    address: str | None
    phone: str


class InboundWebhookMessage(_Wire):
    type: str = Field(description="A MessageType, or SUBSCRIBED / UNSUBSCRIBED / CONVERSATION_STARTED")
    message: str
    extra: dict[str, Any] = Field(description="The provider's raw message")


class InboundWebhook(_Wire):
    """`type: 2`: an end user wrote, subscribed, unsubscribed or opened the conversation."""

    from_: str = Field(alias="from", description="Conversation id; pass it as `to` to reply")
    contact: WebhookContact
    messageId: str
    message: InboundWebhookMessage
    timestamp: int
    type: Literal[2]
    channelId: str
    publicId: str
    applicationId: int


class WebhookObjectState(_Wire):
    publicId: str = Field(description="The template's or the channel's id")
    status: int = Field(
        description="A template: 1 REQUEST, 2 APPROVED, 3 REJECTED. A channel: 1 REQUEST, 2 PROCESSING, "
        "3 LAUNCH, 4 SUSPEND, 5 REJECT, 6 ACCEPT"
    )
    cause: str | None


class _StateWebhook(_Wire):
    """What the `type: 3` and `type: 4` bodies share (api.md §5.3)."""

    timestamp: int
    publicId: str = Field(description="The channel (accountId)")
    applicationId: int


class TemplateWebhook(_StateWebhook):
    """`type: 3`: a template's status changed (REQUEST on create and update, then APPROVED or REJECTED
    with the reason)."""

    type: Literal[3]
    template: WebhookObjectState


class ChannelWebhook(_StateWebhook):
    """`type: 4`: the channel's status changed (an RCS agent launched or rejected, an account suspended,
    ...)."""

    type: Literal[4]
    channel: WebhookObjectState


WEBHOOK_HEADERS_DOC = (
    "Signed with Standard Webhooks headers: `webhook-id` (stable across retries), `webhook-timestamp` "
    "(seconds), `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>` keyed by the channel's "
    "`whsec_` secret). Answer 2xx within 10 s; anything else is retried with back-off for at least 24 h."
)


# --- The delivery log and replay API (OpenMMP's own, not part of the published bodies) ---------------


class DeliveryStateName(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    HELD = "HELD"
    FAILED = "FAILED"


class WebhookDeliveryResponse(ResponseModel):
    """One webhook event for the channel's endpoint and how its delivery is going."""

    webhook_id: str = Field(description="The `webhook-id` header: stable across retries and replays")
    event_type: int = Field(description="1 EVENT (status), 2 MESSAGE (inbound), 3 TEMPLATE, 4 CHANNEL")
    state: DeliveryStateName = Field(
        description="PENDING (to be sent or retried), DELIVERED (answered 2xx), HELD (kept while the "
        "endpoint is FAILED; sent when it is re-activated), FAILED (every attempt failed: given up, "
        "replayable; the message's later events went out)"
    )
    attempts: int = Field(description="Attempts since it was created, replayed or released")
    last_status_code: int | None = Field(description="HTTP status of the last attempt; null: no answer")
    last_error: str | None = None
    created_date: int
    delivered_date: int | None = None
    next_attempt_date: int | None = Field(default=None, description="When PENDING: the next try (epoch ms)")


class WebhookAttemptResponse(ResponseModel):
    attempted_date: int
    url: str
    status_code: int | None = Field(description="null: no answer (timeout, connection error, refused)")
    latency_ms: float
    response_excerpt: str = Field(description="The first 2 KiB of the answer")
    error: str | None = None


class WebhookDeliveryDetail(WebhookDeliveryResponse):
    body: Any = Field(description="The JSON body, exactly as sent")
    attempt_log: list[WebhookAttemptResponse] = Field(description="Every attempt, oldest first")


class ReplayWebhooksRequest(RequestModel):
    """Which of the channel's deliveries to send again; no field: all of them."""

    from_date: int | None = Field(default=None, ge=0, description="Created at or after (epoch ms)")
    to_date: int | None = Field(default=None, ge=0, description="Created at or before (epoch ms)")
    state: DeliveryStateName | None = Field(default=None, description="Only deliveries in this state")


class ReplayWebhooksResponse(ResponseModel):
    count: int = Field(description="Deliveries queued again (or held, while the endpoint is FAILED)")
