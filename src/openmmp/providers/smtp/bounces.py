"""Bounces: the signed return path each e-mail is sent with, and the server that takes what comes back.

Every message goes out with its own envelope sender (VERP): `{token}@{bounce domain}`, where the token
names the channel and the message and carries an HMAC under the operator's bounce secret. Relays mail
delivery status notifications (RFC 3464) to that address; the operator points the bounce domain's MX at
the workers, whose `BounceListener` (an aiosmtpd server) refuses any recipient whose token does not
verify, reads the DSN and hands each verdict to the core as a JSON body of its making:
`{"kind": "dsn", "id", "action", "status", "code", "diagnostic", "recipient", "at"}`. It answers 250 only
once the core has stored the event, 451 when it could not (the relay tries again later). The same token is
the DSN's ENVID, so the report names the message even when a relay rewrites the return path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from openmmp.providers.base import REFUSED, ChannelSink, Link, ProviderContext, ProviderError
from openmmp.providers.simulation import sandbox_control
from openmmp.providers.smtp import dsn

log = structlog.get_logger(__name__)

SANDBOX_BOUNCE_SECRET = "openmmp-sandbox-bounce-secret"  # noqa: S105 - published on purpose
"""The bounce secret of sandbox mode when the operator sets none (published: the sandbox proves nothing)."""
_REGISTER_RETRY_MAX_S = 5.0
_REGISTER_AGAIN_S = 60.0


@dataclass(frozen=True, slots=True)
class Token:
    """What a return path names: the channel (`account_id`) and the message (`key`)."""

    account_id: str
    key: int

    @property
    def message_id(self) -> str:
        """The provider message id the message was recorded under (`SendOk.provider_message_id`)."""
        return message_id(self.key)


def message_id(key: int) -> str:
    return f"mail-{key}"


def bounce_secret(ctx: ProviderContext) -> str:
    """The operator's bounce secret; the sandbox's published one in sandbox mode. "" means bounces are
    not tracked (outside sandbox mode, until the operator sets one)."""
    return ctx.secret("bounce_secret", SANDBOX_BOUNCE_SECRET)


def _signature(secret: str, account_id: str, key: int) -> str:
    return hmac.new(secret.encode(), f"{account_id}.{key}".encode(), hashlib.sha256).hexdigest()[:12]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def token(secret: str, account_id: str, key: int) -> str:
    """The signed token for a message: at most 59 characters of [0-9a-z.], so that it fits an address's
    local part (64) and an ENVID as it is."""
    return f"{uuid.UUID(account_id).hex}.{_base36(key)}.{_signature(secret, account_id, key)}"


def read_token(secret: str, text: str) -> Token | None:
    """The token in `text` (a return path's local part, or an ENVID), or None when it is none of ours or
    its signature is wrong."""
    parts = text.lower().split(".")
    if len(parts) != 3 or not secret:
        return None
    hex_id, key_text, signature = parts
    try:
        account_id, key = str(uuid.UUID(hex=hex_id)), int(key_text, 36)
    except ValueError:
        return None
    if not hmac.compare_digest(signature, _signature(secret, account_id, key)):
        return None
    return Token(account_id, key)


def return_path(ctx: ProviderContext, account_id: str, key: int) -> str | None:
    """The envelope sender for a message, or None when bounces are not tracked (no bounce secret)."""
    secret = bounce_secret(ctx)
    if not secret or not account_id:
        return None
    domain = str(ctx.options.get("bounce_domain") or "bounces.openmmp.local")
    return f"{token(secret, account_id, key)}@{domain}"


class _Handler:
    """aiosmtpd hooks: recipients must be valid tokens; a DSN's verdicts go to the sink."""

    def __init__(self, secret: str, sink: ChannelSink) -> None:
        self._secret = secret
        self._sink = sink

    async def handle_RCPT(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, _options: list[str]
    ) -> str:
        if read_token(self._secret, address.rsplit("@", 1)[0]) is None:
            return "550 5.1.1 No such bounce address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        try:
            report = dsn.parse(raw)
        except dsn.NotADsn:
            # An auto-reply or a human answering the return path: nothing to report, nothing to retry.
            return "250 2.0.0 Ok: not a delivery report, dropped"
        tokens = [read_token(self._secret, rcpt.rsplit("@", 1)[0]) for rcpt in envelope.rcpt_tos]
        try:
            for found in {t for t in tokens if t is not None}:
                for verdict in report.verdicts:
                    if verdict.action not in ("failed", "delivered"):
                        continue
                    outcome = await self._sink(found.account_id, _body(found, verdict))
                    if outcome == REFUSED:
                        log.warning("bounce_refused", channel=found.account_id)
        except Exception:
            log.exception("bounce_not_stored")
            return "451 4.3.0 Could not store the report, try again later"
        return "250 2.0.0 Ok"


def _body(found: Token, verdict: dsn.Verdict) -> bytes:
    return orjson.dumps(
        {
            "kind": "dsn",
            "id": found.message_id,
            "action": verdict.action,
            "status": verdict.status,
            "code": verdict.smtp_code,
            "diagnostic": verdict.diagnostic[:400],
            "recipient": verdict.recipient,
            "at": int(time.time() * 1000),
        }
    )


class BounceListener(Link):
    """The workers' SMTP server for bounces, on the operator's `bounce_host`/`bounce_port` (the port
    shared by every worker process of the machine); port 0 takes a free one. In sandbox mode it tells the
    simulator where it listens, since the simulator mails its reports there."""

    def __init__(self, ctx: ProviderContext, sink: ChannelSink) -> None:
        self._ctx = ctx
        self._sink = sink
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] = ("", 0)

    @property
    def up(self) -> int:
        return 1 if self._server is not None and self._server.is_serving() else 0

    async def run(self, stop: asyncio.Event) -> None:
        secret = bounce_secret(self._ctx)
        if not secret:
            # A deployment that sends no e-mail needs no secret: said, not warned.
            log.info("bounces_not_tracked", reason="OPENMMP_PROVIDERS__SMTP_BOUNCE_SECRET is not set")
            return
        host = str(self._ctx.options.get("bounce_host") or "127.0.0.1")
        port = int(self._ctx.options.get("bounce_port") or 0)
        handler = _Handler(secret, self._sink)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="bounces.openmmp.local", ident="OpenMMP bounces"),
            host,
            port,
            reuse_port=port != 0,
        )
        self.address = (host, int(self._server.sockets[0].getsockname()[1]))
        log.info("bounce_listener_listening", host=self.address[0], port=self.address[1])
        try:
            await (self._register(stop) if self._ctx.sandbox else stop.wait())
        finally:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _register(self, stop: asyncio.Event) -> None:
        """Tell the sandbox's simulator where reports go: again after a failure (it may be starting),
        and every minute (it may have restarted and forgotten)."""
        body: dict[str, Any] = {"host": self.address[0], "port": self.address[1]}
        failures = 0
        while not stop.is_set():
            try:
                await sandbox_control(
                    self._ctx.http, f"{self._ctx.base_url}/_sandbox/bounces", body, simulator="SMTP"
                )
                failures, delay = 0, _REGISTER_AGAIN_S
            except ProviderError:
                failures += 1
                delay = min(_REGISTER_RETRY_MAX_S, 0.2 * 2**failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
