"""The outbound webhooks, declared on the app so /openapi.json describes them."""

from fastapi import FastAPI

from openmmp.webhooks.schemas import (
    WEBHOOK_HEADERS_DOC,
    ChannelWebhook,
    InboundWebhook,
    StatusWebhook,
    TemplateWebhook,
)


def document_webhooks(app: FastAPI) -> None:
    @app.webhooks.post(
        "message-status", summary="Message status changed (type 1)", description=WEBHOOK_HEADERS_DOC
    )
    def message_status(body: StatusWebhook) -> None:
        """Sent to the channel's webhook URL for every status change of a message, in status order."""

    @app.webhooks.post("inbound-message", summary="Inbound message (type 2)", description=WEBHOOK_HEADERS_DOC)
    def inbound_message(body: InboundWebhook) -> None:
        """Sent when an end user writes, subscribes, unsubscribes or opens the conversation."""

    @app.webhooks.post(
        "template-status", summary="Template status changed (type 3)", description=WEBHOOK_HEADERS_DOC
    )
    def template_status(body: TemplateWebhook) -> None:
        """Sent to the template's channel when the template is submitted, approved or rejected."""

    @app.webhooks.post(
        "channel-status", summary="Channel status changed (type 4)", description=WEBHOOK_HEADERS_DOC
    )
    def channel_status(body: ChannelWebhook) -> None:
        """Sent when the upstream changes the channel's state (an RCS agent's launch verdict, ...)."""
