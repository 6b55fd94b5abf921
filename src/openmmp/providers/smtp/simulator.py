"""The SMTP simulator of sandbox mode: a real SMTP server (aiosmtpd) deciding by magic addresses.

Like the phone numbers' last digit for the other simulators, a recipient's local part decides:

| recipient | at RCPT TO | later |
|---|---|---|
| `name+reject@...` | 550 5.1.1: a final refusal at send | — |
| `name+defer@...` | 451 4.3.0 twice for the same sender and recipient, then accepted | delivered |
| `name+bounce@...` | accepted | a DSN (RFC 3464, `5.1.1`, `smtp; 550 ...`) after `bounce_delay_s` |
| anything else | accepted | delivered |

A bounce goes where a relay sends it: to the envelope sender, here over SMTP to the `dsn_host` and
`dsn_port` knobs (the platform's bounce listener), with the original's ENVID (`MAIL FROM:<...> ENVID=...`)
as `Original-Envelope-Id` and its headers. With a `username` knob, clients must authenticate (AUTH PLAIN
or LOGIN, over the plain connection: it is a local simulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import warnings
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.simulation import SimulatorConfig, SimulatorStats
from openmmp.providers.smtp import dsn


@dataclass(frozen=True)
class SmtpKnobs:
    """The SMTP simulator's own knobs (`simulate --set smtp.<name>=...`)."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port."""
    username: str = ""
    password: str = ""
    bounce_delay_s: float = 0.1
    dsn_host: str = ""
    """Where bounces go (the platform's bounce listener); none are sent while it is empty."""
    dsn_port: int = 0


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class _Attempts:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def next(self, sender: str, recipient: str) -> int:
        key = (sender.lower(), recipient.lower())
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]


class _DsnSmtp(SMTP):
    """aiosmtpd's server, also taking the DSN extension's MAIL FROM parameters (RFC 3461: ENVID, RET),
    which it would refuse; the ENVID is kept for the bounce."""

    envid = ""

    async def smtp_MAIL(self, arg: str) -> None:
        kept = []
        self.envid = ""
        for word in (arg or "").split():
            name, _, value = word.partition("=")
            if name.upper() == "ENVID":
                self.envid = value
            elif name.upper() != "RET":
                kept.append(word)
        await super().smtp_MAIL(" ".join(kept))


def _magic(address: str) -> str:
    """The magic word of an address's local part (`dara+bounce@x` → `bounce`), or ""."""
    local = address.rsplit("@", 1)[0]
    return local.rsplit("+", 1)[1].lower() if "+" in local else ""


class SmtpSimulator:
    def __init__(self, config: SimulatorConfig, knobs: SmtpKnobs) -> None:
        self.knobs = knobs
        self.counts = SimulatorStats(config)
        self.received: list[Received] = []
        self.bounces_sent = 0
        self._attempts = _Attempts()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self.address: tuple[str, int] = ("", 0)

    async def start(self) -> int:
        """Listen; the port (the knob's, or a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.knobs.host, self.knobs.port)
        self.address = (self.knobs.host, int(self._server.sockets[0].getsockname()[1]))
        return self.address[1]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _protocol(self) -> SMTP:
        auth: dict[str, Any] = {}
        if self.knobs.username:
            auth = {"auth_required": True, "auth_require_tls": False, "authenticator": self._authenticate}
        with warnings.catch_warnings():
            # AUTH without TLS: a local simulator, on purpose (aiosmtpd warns at every connection).
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return _DsnSmtp(self, hostname="smtp-sim.openmmp.local", ident="OpenMMP SMTP simulator", **auth)

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        good = constant_time_equals(data.login.decode(), self.knobs.username) and constant_time_equals(
            data.password.decode(), self.knobs.password
        )
        return AuthResult(success=good, handled=False)

    async def handle_RCPT(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, _options: list[str]
    ) -> str:
        magic = _magic(address)
        if magic == "reject":
            self.counts.reject(550)
            return "550 5.1.1 Recipient address rejected: user unknown"
        if magic == "defer" and self._attempts.next(envelope.mail_from or "", address) <= 2:
            self.counts.reject(451)
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_EHLO(
        self, _server: SMTP, session: Session, _envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """The server's EHLO answer, with the DSN extension announced."""
        session.host_name = hostname
        return [*responses[:-1], "250-DSN", responses[-1]]

    async def handle_DATA(self, server: SMTP, _session: Session, envelope: Envelope) -> str:
        data = bytes(envelope.original_content or b"")
        sender = envelope.mail_from or ""
        received = Received(sender, list(envelope.rcpt_tos), data)
        self.received.append(received)
        original = message_from_bytes(data, policy=default)
        queue_id = f"{next(self._ids):08X}"
        for recipient in received.rcpt_tos:
            self.counts.accept(f"{recipient}:{original.get('Message-ID', queue_id)}")
            if _magic(recipient) == "bounce":
                envid = server.envid if isinstance(server, _DsnSmtp) else ""
                headers = "".join(f"{name}: {value}\r\n" for name, value in original.items())
                self._spawn(self._bounce(sender, recipient, envid, headers))
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bounce(self, sender: str, recipient: str, envid: str, headers: str) -> None:
        await asyncio.sleep(self.knobs.bounce_delay_s)
        if not self.knobs.dsn_host or not sender:
            return
        report = dsn.build(
            reporting_mta="smtp-sim.openmmp.local",
            to=sender,
            recipient=recipient,
            status="5.1.1",
            diagnostic=f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: user unknown",
            envelope_id=envid,
            original_headers=headers,
        )
        client = aiosmtplib.SMTP(hostname=self.knobs.dsn_host, port=self.knobs.dsn_port, timeout=5)
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            async with client:
                await client.mail("")  # a bounce has the null reverse path: it is never bounced itself
                await client.rcpt(sender)
                await client.data(report)
            self.bounces_sent += 1
