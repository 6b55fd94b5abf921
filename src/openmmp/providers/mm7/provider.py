"""MMS over MM7 on the provider contract: a VASP account at the operator's MMSC (3GPP TS 23.140 Rel-6).

A send is one SubmitReq to one phone (`client`), the MMS built from the message (`content`: SMIL, the
text, media fetched from their URLs when sent), with the send's `subject`, an ExpiryDate when the
message expires, and delivery and read reports asked for. Reports come as `DeliveryReportReq` and
`ReadReplyReq` to the channel's callback URL, proven by HTTP Basic (`callbacks`).

Where sends go: in sandbox mode the simulator (`ctx.base_url`), whatever `url` says, as for every
provider; otherwise the channel's `url`, checked like an SMSC host. Where reports come from: in sandbox
mode the set-up registers the channel's callback URL with the simulator; a real MMSC is configured by
the operator, out of band, with `{public_url}/callbacks/mm7/{accountId}` and the credentials it will
present (the channel's `username`/`password`, or its `vaspId` with the operator's callback secret).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackReply,
    CallbackRequest,
    Credentials,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    ProviderError,
    RateLimit,
    SendOk,
    SendUnit,
    one_unit_each,
)
from openmmp.providers.mm7 import callbacks, soap
from openmmp.providers.mm7 import content as mms
from openmmp.providers.mm7.client import SANDBOX_PATH, Mm7Client, media_http, transaction_id, upstream_http
from openmmp.providers.simulation import sandbox_control

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

Ident = Field(min_length=1, max_length=200)


class Mm7Credentials(Credentials):
    """An MM7 VASP account at the operator's MMSC. `url` is the MMSC's MM7 endpoint: tenant input the
    server connects to, checked like an SMSC host (`targets`)."""

    identity_fields = ("url", "vasp_id")

    url: str = Field(min_length=1, max_length=2000, description="The MMSC's MM7 endpoint (http or https)")
    vasp_id: str = Ident
    vas_id: str = Ident
    sender_address: str = Field(
        min_length=1, max_length=40, description="Short code, number or address the MMS comes from"
    )
    username: str | None = Field(default=None, max_length=200, description="HTTP Basic, with `password`")
    password: str | None = Field(default=None, max_length=4096)

    @field_validator("url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("put the account in username and password, not in the URL")
        if port == 0:
            raise ValueError("the port must be 1 to 65535")
        return value

    @model_validator(mode="after")
    def _login_in_pairs(self) -> Mm7Credentials:
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together")
        return self

    def targets(self) -> list[tuple[str, str, int]]:
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return [("url", parts.hostname or "", port)]


class Mm7Options(BaseModel):
    callback_secret: str = Field(
        default="",
        description="Password MMSCs present (with the channel's vaspId as user) in HTTP Basic on MM7 "
        "reports to channels without a username and password of their own.",
    )


class Mm7Provider(Provider):
    name = "mm7"
    application = Application.MMS
    title = "MMS (MM7)"
    message_types = frozenset({"text", "picture", "video", "file", "text_with_attachment"})
    send_fields = frozenset({"subject"})
    rate_limit = RateLimit(requests=20, window_seconds=1.0, per="VASP account")
    idempotent = False
    addressing = Addressing.PHONE
    credentials_model = Mm7Credentials
    options_model = Mm7Options
    callback_auth = (
        "HTTP Basic: the channel's `username` and `password`, or, for a channel without them, its "
        "`vaspId` and the operator's MM7 callback secret. Answered with a DeliveryReportRsp or "
        "ReadReplyRsp (`text/xml`)."
    )
    callback_proof = "sender"
    receives_messages = False
    reports_read = True
    sandbox_credentials = {
        "url": "https://mmsc.example.com/mm7",
        "vaspId": "demo",
        "vasId": "demo",
        "senderAddress": "DEMO",
    }
    default_base_url = ""

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        mms.check(content)

    def needs_setup(self, *, sandbox: bool) -> bool:
        return sandbox

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        body = {"vaspId": str(credentials["vaspId"]), "callbackUrl": callback_url}
        await sandbox_control(ctx.http, f"{ctx.base_url}/_sandbox/vasps", body, simulator=self.title)

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        url = f"{ctx.base_url}{SANDBOX_PATH}" if ctx.sandbox else str(credentials["url"])
        client = Mm7Client(
            upstream_http(ctx, url),
            url,
            username=credentials.get("username"),
            password=credentials.get("password"),
        )
        return one_unit_each(outgoing, _Sender(ctx, client, credentials).send)

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        login = callbacks.callback_login(
            credentials, ctx.secret("callback_secret", callbacks.SANDBOX_CALLBACK_SECRET)
        )
        return login is not None and callbacks.verify_login(request.header("authorization"), *login)

    def acknowledge(self, request: CallbackRequest, outcome: str) -> CallbackReply | None:
        return CallbackReply(200, callbacks.answer(request.body), media_type="text/xml")

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return callbacks.parse_callback(body)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.mm7.simulator import create_mm7_simulator

        return create_mm7_simulator(config, http)


class _Sender:
    """Sends one channel's messages: the media fetched, the MMS built, one SubmitReq each.

    A message's whole attempt (fetch and submit) stays within the upstream timeout, as dispatch's
    lease expects of one request: the fetch may take half of it, the submit what is left.
    """

    def __init__(self, ctx: ProviderContext, client: Mm7Client, credentials: Mapping[str, Any]) -> None:
        self._ctx = ctx
        self._client = client
        self._credentials = credentials

    async def send(self, message: Outgoing) -> SendOk:
        loop = asyncio.get_running_loop()
        timeout = self._ctx.http.timeout
        deadline = loop.time() + timeout
        try:
            text = mms.text_of(message.content)
            subject = mms.subject_of(message.content)
            refs = mms.media_refs(message.content)
        except ValueError as exc:
            # The API checked the message already; failing here means it can never be sent.
            raise ProviderError("MM7_INVALID_MESSAGE", str(exc), retryable=False) from exc
        media = await mms.fetch_all(
            media_http(self._ctx), refs, timeout=timeout / 2, text_bytes=len(text.encode("utf-8"))
        )
        request = soap.SubmitReq(
            transaction_id=transaction_id(message.key),
            vasp_id=str(self._credentials["vaspId"]),
            vas_id=str(self._credentials["vasId"]),
            sender=str(self._credentials["senderAddress"]),
            recipient=message.recipient,
            content_id=mms.CONTENT_ID,
            subject=subject,
            expiry_ms=message.expire_at_ms,
        )
        # The fetch took at most half: the submit has the rest (never less than half).
        left = max(deadline - loop.time(), timeout / 2)
        return await self._client.submit(request, mms.mms(text, media), timeout=left)
