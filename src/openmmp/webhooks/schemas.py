"""The outbound webhook bodies of api.md §5, to the letter: these names are the published contract."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


WEBHOOK_HEADERS_DOC = (
    "Signed with Standard Webhooks headers: `webhook-id` (stable across retries), `webhook-timestamp` "
    "(seconds), `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>` keyed by the channel's "
    "`whsec_` secret). Answer 2xx within 10 s; anything else is retried with back-off for at least 24 h."
)
