"""SMS over SMPP 3.4 on the provider contract (providers.md §8b): the one `connected` provider so far.

A worker keeps each SMS channel's binds open (`SmppLink`); a send submits the message's parts there,
GSM-7 or UCS-2 chosen by its text, a long text in UDH-concatenated parts, each asking for a delivery
receipt. Receipts and end users' messages arrive on the binds and reach the core as JSON bodies of the
link's making, which `parse` reads: `{"kind": "receipt", "id", "stat", "err", "done", "at"}` and
`{"kind": "mo", "from", "to", "text", "parts", "at", "key"}`, and when the SMSC refuses the account
itself (wrong system_id or password) `{"kind": "channel", "status": "REJECT", "cause", "at"}`. Nothing
comes over HTTP, so the callback route refuses every request for SMS channels. SMPP has no idempotency
key: a submit repeated after a crash reaches the phone twice (its parts carry the same concatenation
reference, so a phone that got them before puts the same message together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from pydantic import Field

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackRejected,
    CallbackRequest,
    ChannelEvent,
    Contact,
    Credentials,
    EventSink,
    InboundEvent,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    SendOutcome,
    SendUnit,
    StatusEvent,
    one_unit_each,
)
from openmmp.providers.simulation import sandbox_control
from openmmp.providers.smpp import text as sms_text
from openmmp.providers.smpp.link import SmppLink

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

_FAILED_STATES = {
    "UNDELIV": "The SMSC could not deliver it",
    "EXPIRED": "Its validity period ended before it was delivered",
    "REJECTD": "The SMSC rejected it",
    "DELETED": "It was deleted at the SMSC",
    "UNKNOWN": "The SMSC does not know what became of it",
}


class SmsCredentials(Credentials):
    """An SMPP account at the operator's SMSC. `host` and `port` are where the workers bind: tenant
    input, checked like a webhook URL unless the operator allows the host."""

    identity_fields = ("host", "port", "system_id")
    target_fields = (("host", "port"),)

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: str = Field(min_length=1, max_length=8)
    source_addr: str = Field(min_length=1, max_length=20, description="Sender id or number")
    source_ton: int | None = Field(default=None, ge=0, le=6, description="Default: from `sourceAddr`")
    source_npi: int | None = Field(default=None, ge=0, le=18, description="Default: from `sourceAddr`")
    system_type: str | None = Field(default=None, max_length=12)
    binds: int = Field(default=1, ge=1, le=10, description="Connections each worker process keeps")
    window: int = Field(default=10, ge=1, le=100, description="submit_sm in flight per bind")
    bind_mode: Literal["transceiver", "transmitter+receiver"] = "transceiver"


class SmppProvider(Provider):
    name = "smpp"
    application = Application.SMS
    title = "SMS (SMPP 3.4)"
    message_types = frozenset({"text"})
    example_message: ClassVar[Mapping[str, Any]] = {"type": "text", "message": "Your code is 4711"}
    rate_limit = RateLimit(requests=100, window_seconds=1.0, per="SMPP account")
    idempotent = False
    addressing = Addressing.PHONE
    credentials_model = SmsCredentials
    callback_auth = (
        "None: receipts and replies arrive on the channel's SMPP binds, so every request here is refused."
    )
    sandbox_credentials = {
        "host": "127.0.0.1",
        "port": 2775,
        "systemId": "demo",
        "password": "demo",
        "sourceAddr": "DEMO",
    }
    default_base_url = ""
    connected = True
    sends_parts = True
    reports_read = False

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        _encoded(content, reference=0)

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        if not isinstance(link, SmppLink):
            raise ValueError("SMS channels send through their binds")
        binds = link

        async def submit(message: Outgoing) -> SendOutcome:
            # The same reference on every attempt: a phone puts repeated parts together again.
            encoded = _encoded(message.content, reference=message.key & 0xFF)
            return await binds.submit(message.recipient, encoded, message.expire_at_ms)

        return one_unit_each(outgoing, submit)

    def link(self, ctx: ProviderContext, credentials: Mapping[str, Any], sink: EventSink) -> Link:
        return SmppLink(ctx, credentials, sink)

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        return False

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        try:
            event = orjson.loads(body)
            kind = event["kind"]
            if kind == "receipt":
                return [_status(event)]
            if kind == "mo":
                return [_inbound(event)]
            if kind == "channel":
                return [_channel(event)]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CallbackRejected("not an SMPP delivery of OpenMMP's") from exc
        raise CallbackRejected(f"unknown SMPP delivery kind {kind!r}")

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.smpp.smsc import smsc_app

        return smsc_app(config)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        if not user.phone:
            raise ValueError("phone: SMS users write from a phone number")
        answer = await sandbox_control(
            ctx.http,
            f"{ctx.base_url}/_sandbox/inbound",
            {
                "systemId": credentials["systemId"],
                "phone": user.phone,
                "text": user.text,
                "to": credentials["sourceAddr"],
            },
            simulator=self.title,
        )
        return SandboxWritten(user_id=user.phone, message_token=str(answer.get("token", "")))


def _encoded(content: Mapping[str, Any], *, reference: int) -> sms_text.Encoded:
    text = content.get("message")
    if not isinstance(text, str) or not text:
        raise ValueError("message: an SMS needs its text")
    try:
        return sms_text.encode(text, reference)
    except sms_text.TextTooLong as exc:
        raise ValueError(f"message: too long for SMS ({exc})") from exc


def _status(event: Mapping[str, Any]) -> StatusEvent:
    state, error = str(event["stat"]), str(event.get("err") or "000")
    failed = state in _FAILED_STATES
    return StatusEvent(
        provider_message_id=str(event["id"]),
        status="FAIL" if failed else "DELIVERED",
        # When it arrived: the receipt's own `done date` has only minutes (it stays in `raw`).
        timestamp_ms=int(event["at"]),
        # With its submit date: an SMSC that counts its ids again from 1 after a restart reuses them.
        dedupe_key=f"receipt:{event['id']}:{state}:{event.get('submit') or ''}",
        raw=event,
        error_code=f"SMPP_{state}" if failed else None,
        error_message=f"{_FAILED_STATES[state]} (err:{error})" if failed else None,
    )


def _channel(event: Mapping[str, Any]) -> ChannelEvent:
    if event["status"] != "REJECT":
        raise ValueError("an SMPP link only rejects channels")
    return ChannelEvent(
        status="REJECT",
        cause=str(event["cause"]),
        timestamp_ms=int(event["at"]),
        dedupe_key=f"channel:REJECT:{event['at']}",
        raw=event,
    )


def _inbound(event: Mapping[str, Any]) -> InboundEvent:
    phone = str(event["from"])
    return InboundEvent(
        kind="message",
        contact=Contact(id=phone, phone=phone),
        message={"type": "text", "message": str(event["text"]), "extra": dict(event)},
        timestamp_ms=int(event["at"]),
        dedupe_key=f"mo:{event['key']}",
        raw=event,
    )
