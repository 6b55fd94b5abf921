"""The SMTP simulator of sandbox mode: a real SMTP server (aiosmtpd) deciding by magic addresses.

Like the phone numbers' last digit for the other simulators, a recipient's local part decides (a magic
word first, else its last digit):

| recipient | at RCPT TO | later |
|---|---|---|
| `name+reject@...`, or ending in 8 | 550 5.1.1: a final refusal at send | — |
| `name+defer@...`, or ending in 9 | 451 4.3.0 twice per sender and recipient, then accepted | delivered |
| `name+bounce@...` | accepted | a failure DSN (RFC 3464, `5.1.1`, `smtp; 550 ...`) |
| anything else | accepted | delivered: a success DSN when the sender asked (`NOTIFY=SUCCESS`) |

Reports go where a relay sends them: to the envelope sender, here over SMTP to the platform's bounce
listener, after `bounce_delay_s`, with the original's ENVID (`MAIL FROM:<...> ENVID=...`) as
`Original-Envelope-Id` and its headers. The listener is the `bounce_host`/`bounce_port` knobs (the
platform's own options of the same names), or whichever listener told the simulator where it listens
(`POST /_sandbox/bounces`), newest first. With a `username` knob, clients must authenticate (AUTH PLAIN
or LOGIN, over the plain connection: it is a local simulator). Injected faults answer MAIL FROM:
`http_503` 451, `rate_limit` 421, `final_error` 554, `timeout` no answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import warnings
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default
from typing import Any

import aiosmtplib
import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.simulation import (
    FaultInjector,
    SimulatorConfig,
    SimulatorStats,
    json_response,
    knobs,
    last_digit,
    read_json,
    sandbox_error,
    socket_simulator_app,
)
from openmmp.providers.smtp import dsn

logger = structlog.get_logger(__name__)

_MAX_TARGETS = 8


@dataclass(frozen=True)
class SmtpKnobs:
    """The SMTP simulator's own knobs (`simulate --set smtp.<name>=...`)."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port."""
    username: str = ""
    password: str = ""
    bounce_delay_s: float = 0.1
    bounce_host: str = ""
    """Where reports go (the platform's bounce listener) until a listener says where it is."""
    bounce_port: int = 0
    bounce_domain: str = ""
    """The platform's option, taken so that both sides share their settings; reports go to the listener
    whatever the return path's domain."""
    bounce_secret: str = ""
    """The platform's option, likewise: the listener checks the return path, the simulator does not."""


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
    """aiosmtpd's server, also taking the DSN extension's parameters (RFC 3461: ENVID and RET at MAIL
    FROM, NOTIFY and ORCPT at RCPT TO), which it would refuse; the ENVID is kept for the reports, and
    each accepted recipient's NOTIFY."""

    envid = ""
    notify_next = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notify: dict[str, str] = {}

    async def smtp_MAIL(self, arg: str) -> None:
        self.envid = ""
        self.notify = {}
        await super().smtp_MAIL(self._taken(arg, {"ENVID": "envid"}, drop={"RET"}))

    async def smtp_RCPT(self, arg: str) -> None:
        self.notify_next = ""
        await super().smtp_RCPT(self._taken(arg, {"NOTIFY": "notify_next"}, drop={"ORCPT"}))

    def _taken(self, arg: str, keep: dict[str, str], *, drop: set[str]) -> str:
        """`arg` without the DSN parameters; those of `keep` are set on the named attributes."""
        kept = []
        for word in (arg or "").split():
            name, _, value = word.partition("=")
            if name.upper() in keep:
                setattr(self, keep[name.upper()], value)
            elif name.upper() not in drop:
                kept.append(word)
        return " ".join(kept)


def _magic(address: str) -> str:
    """What an address's local part asks for: its magic word (`dara+bounce@x` → `bounce`), else by its
    last digit as the phone numbers do (8 `reject`, 9 `defer`), else ""."""
    local = address.rsplit("@", 1)[0]
    if "+" in local:
        return local.rsplit("+", 1)[1].lower()
    if local and local[-1].isdigit():
        return {8: "reject", 9: "defer"}.get(last_digit(local), "")
    return ""


class SmtpSimulator:
    def __init__(self, config: SimulatorConfig, knobs: SmtpKnobs) -> None:
        self.knobs = knobs
        self.config = config
        self.counts = SimulatorStats(config)
        self.faults = FaultInjector()
        self.received: list[Received] = []
        self.reports_sent = 0
        self.targets: list[tuple[str, int]] = (
            [(knobs.bounce_host, knobs.bounce_port)] if knobs.bounce_host and knobs.bounce_port else []
        )
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

    def report_to(self, host: str, port: int) -> None:
        """A bounce listener saying where it listens: reports go there first from now on."""
        target = (host, port)
        self.targets = [target, *[t for t in self.targets if t != target]][:_MAX_TARGETS]

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

    async def handle_MAIL(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.counts.requests += 1
        fault = self.faults.take()
        if fault is not None:
            self.counts.faults_injected += 1
            if fault.kind == "timeout":
                await asyncio.sleep(self.config.fault_hang_s)
                return "451 4.4.2 Timed out"
            if fault.kind == "rate_limit":
                self.counts.rate_limited += 1
                return "421 4.7.0 Too many messages, slow down"
            if fault.kind == "final_error":
                return "554 5.7.1 Sender refused"
            return "451 4.3.2 System not accepting messages now"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, _session: Session, envelope: Envelope, address: str, _options: list[str]
    ) -> str:
        magic = _magic(address)
        if magic == "reject":
            self.counts.reject(550)
            return "550 5.1.1 Recipient address rejected: user unknown"
        if magic == "defer" and self._attempts.next(envelope.mail_from or "", address) <= 2:
            self.counts.reject(451)
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        if isinstance(server, _DsnSmtp):
            server.notify[address] = server.notify_next.upper()
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
        headers = "".join(f"{name}: {value}\r\n" for name, value in original.items())
        envid = server.envid if isinstance(server, _DsnSmtp) else ""
        notify = server.notify if isinstance(server, _DsnSmtp) else {}
        for recipient in received.rcpt_tos:
            self.counts.accept(f"{recipient}:{original.get('Message-ID', queue_id)}")
            if _magic(recipient) == "bounce":
                self._spawn(self._report(sender, recipient, envid, headers, delivered=False))
            elif "SUCCESS" in notify.get(recipient, ""):
                self._spawn(self._report(sender, recipient, envid, headers, delivered=True))
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(
        self, sender: str, recipient: str, envid: str, headers: str, *, delivered: bool
    ) -> None:
        """Mail a DSN about `recipient` to `sender`, trying the listeners in turn, again and again."""
        await asyncio.sleep(self.knobs.bounce_delay_s)
        if not sender:
            return
        if delivered:
            status, diagnostic = "2.0.0", "smtp; 250 2.0.0 Ok: delivered to mailbox"
        else:
            status, diagnostic = "5.1.1", f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected"
        report = dsn.build(
            reporting_mta="smtp-sim.openmmp.local",
            to=sender,
            recipient=recipient,
            status=status,
            diagnostic=diagnostic,
            envelope_id=envid,
            original_headers=headers,
            action="delivered" if delivered else "failed",
        )
        # As the other simulators retry their callbacks: a listener may be restarting.
        for attempt in range(self.config.callback_retries + 1):
            for host, port in list(self.targets):
                if await self._mail_report(host, port, sender, report):
                    self.reports_sent += 1
                    return
            await asyncio.sleep(self.config.callback_retry_base_s * 2**attempt)
        self.counts.callbacks_failed += 1
        logger.warning("smtp_simulator_report_undelivered", recipient=recipient)

    async def _mail_report(self, host: str, port: int, sender: str, report: bytes) -> bool:
        client = aiosmtplib.SMTP(hostname=host, port=port, timeout=5, start_tls=False)
        try:
            async with client:
                await client.mail("")  # a report has the null reverse path: it is never bounced itself
                await client.rcpt(sender)
                await client.data(report)
        except (aiosmtplib.SMTPException, OSError):
            return False
        return True

    def stats_json(self, *, detail: bool) -> dict[str, Any]:
        data = self.counts.as_json(detail=detail, pending_callbacks=len(self._tasks))
        data["reportsSent"] = self.reports_sent
        data["reportTargets"] = [f"{host}:{port}" for host, port in self.targets]
        return data


def smtp_app(config: SimulatorConfig) -> Starlette:
    """The SMTP simulator as the `smtp` simulator app: its lifespan listens for SMTP on the knobs' host
    and port; its routes are the sandbox controls (`address`, `stats`, `faults`, and `bounces` where a
    bounce listener says where it listens)."""
    simulator = SmtpSimulator(config, knobs(config, "smtp", SmtpKnobs))

    async def report_to(request: Request) -> Response:
        try:
            body = await read_json(request)
            host, port = body["host"], body["port"]
            ipaddress.ip_address(host)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError("port")
        except (ValueError, KeyError, TypeError):
            return sandbox_error("host (an IP address) and port are required")
        simulator.report_to(host, port)
        return json_response({"targets": [f"{h}:{p}" for h, p in simulator.targets]})

    return socket_simulator_app(
        simulator,
        simulator.start,
        event="smtp_simulator_listening",
        routes=[Route("/_sandbox/bounces", report_to, methods=["POST"])],
    )
