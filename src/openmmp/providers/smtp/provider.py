"""E-mail over SMTP on the provider contract (`applicationId` 24): the one provider that `listens`.

A send is one SMTP transaction to the channel's relay (client.py), addressed by e-mail (`email` in place
of `phone`), with `subject` and an optional `html` body beside the text of `message`. The relay's
acceptance is SENT. What follows arrives as delivery status notifications mailed to the message's signed
return path, which the workers' bounce listener takes (bounces.py): a failure is FAIL with the remote
server's SMTP code (`SMTP_550`), a success report DELIVERED. Nothing comes over HTTP, so the callback
route refuses every request for e-mail channels. SMTP has no idempotency key: a send repeated after a
crash is mailed twice, with the same Message-ID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from pydantic import BaseModel, Field, field_validator

from openmmp.kit.http import HttpClient
from openmmp.kit.validators import mailbox
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackRejected,
    CallbackRequest,
    ChannelSink,
    Credentials,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    RateLimit,
    SendUnit,
    StatusEvent,
    one_unit_each,
)
from openmmp.providers.smtp import client
from openmmp.providers.smtp.bounces import BounceListener

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

SUBJECT_MAX = 900


class EmailCredentials(Credentials):
    """The sender, and optionally the company's own relay (else the operator's)."""

    from_: str = Field(alias="from", min_length=3, max_length=200, description="The sender's address")
    from_name: str | None = Field(default=None, min_length=1, max_length=100, description="Shown beside it")
    smtp_url: str | None = Field(
        default=None,
        max_length=2000,
        description="smtp://user:password@host[:587] (STARTTLS) or smtps://...[:465]; default: the "
        "operator's relay",
    )

    @field_validator("from_")
    @classmethod
    def _sender(cls, value: str) -> str:
        return mailbox(value)

    @field_validator("from_name")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value):
            raise ValueError("must be one line")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _relay(cls, value: str | None) -> str | None:
        if value is not None:
            client.parse_url(value, tenant=True)
        return value

    def targets(self) -> list[tuple[str, str, int]]:
        if not self.smtp_url:
            return []
        relay = client.parse_url(self.smtp_url, tenant=True)
        return [("smtpUrl", relay.host, relay.port)]


class EmailOptions(BaseModel):
    """The operator's bounce handling: where the workers take bounces, and the secret signing return
    paths (without one, outside sandbox mode, bounces are not tracked and mail is sent from `from`)."""

    bounce_domain: str = Field(
        default="bounces.openmmp.local",
        description="Domain of the return paths; its MX must reach the workers' bounce listener",
    )
    bounce_secret: str = Field(
        default="", description="HMAC key signing return paths (required to track bounces)"
    )
    bounce_host: str = Field(default="127.0.0.1", description="Where the workers' bounce listener listens")
    bounce_port: int = Field(
        default=0, ge=0, le=65535, description="Its port, shared by the worker processes"
    )


class EmailProvider(Provider):
    name = "smtp"
    application = Application.EMAIL
    title = "E-mail (SMTP)"
    message_types = frozenset({"text"})
    example_message: ClassVar[Mapping[str, Any]] = {
        "type": "text",
        "message": "Your statement for November is ready.",
        "subject": "Your statement",
    }
    rate_limit = RateLimit(requests=50, window_seconds=1.0, per="relay account")
    idempotent = False
    addressing = Addressing.EMAIL
    credentials_model = EmailCredentials
    options_model = EmailOptions
    callback_auth = "None: bounces arrive at the workers' SMTP listener, so every request here is refused."
    sandbox_credentials = {"from": "demo@openmmp.local", "fromName": "OpenMMP demo"}
    default_base_url = ""
    listens = True
    reports_read = False
    receives_messages = False
    send_fields = frozenset({"subject", "html"})

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        subject = content.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise ValueError("subject: an e-mail needs a subject")
        if len(subject) > SUBJECT_MAX or "\r" in subject or "\n" in subject:
            raise ValueError(f"subject: must be one line of at most {SUBJECT_MAX} characters")
        text = content.get("message")
        if not text and not content.get("html"):
            raise ValueError("message.message: an e-mail needs a text (or an html body)")
        if content.get("suggestions") or content.get("fileUrl") or content.get("attachments"):
            raise ValueError("message: an e-mail takes text, subject and html only")

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        return one_unit_each(outgoing, lambda message: client.send(ctx, credentials, message))

    def listener(self, ctx: ProviderContext, sink: ChannelSink) -> Link:
        return BounceListener(ctx, sink)

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        return False

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        try:
            event = orjson.loads(body)
            if event["kind"] != "dsn":
                raise CallbackRejected(f"unknown e-mail report kind {event['kind']!r}")
            return [_status(event)]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CallbackRejected("not a delivery report of OpenMMP's bounce listener") from exc

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.smtp.simulator import smtp_app

        return smtp_app(config)


def _status(event: Mapping[str, Any]) -> StatusEvent:
    failed = event["action"] == "failed"
    code = event.get("code")
    reason = f"SMTP_{code}" if code else f"SMTP_{event['status']}"
    return StatusEvent(
        provider_message_id=str(event["id"]),
        status="FAIL" if failed else "DELIVERED",
        timestamp_ms=int(event["at"]),
        dedupe_key=f"dsn:{event['id']}:{event['action']}:{event['status']}",
        raw=event,
        error_code=reason if failed else None,
        error_message=str(event.get("diagnostic") or "The message bounced") if failed else None,
    )
