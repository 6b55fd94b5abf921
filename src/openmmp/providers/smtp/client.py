"""Sending one e-mail over SMTP (aiosmtplib): where to, the message itself, and what the answer means.

Where: in sandbox mode the built-in simulator (its address asked of its controls once per process); else
the channel's own `smtpUrl` (tenant input: its host is checked at every connection, as an SMSC's is) or,
without one, the operator's relay (`OPENMMP_PROVIDERS__SMTP_BASE_URL`). `smtp://` is submission with
STARTTLS (required when there is a password; port 587 by default), `smtps://` implicit TLS (465).

Each message is one SMTP transaction on a connection of its own, with a Message-ID fixed by the message
(a repeat after a crash carries the same one, which mail clients collapse), its signed return path, and
the DSN extension's ENVID and NOTIFY=SUCCESS,FAILURE where the relay offers DSN.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from openmmp.providers.base import Outgoing, ProviderContext, ProviderError, SendOk, SendOutcome
from openmmp.providers.simulation import sandbox_control
from openmmp.providers.smtp import bounces
from openmmp.providers.targets import checked_address

Security = Literal["starttls", "tls", "none"]
_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
_sandbox_relays: dict[str, tuple[str, int]] = {}
"""The simulator's SMTP address by its controls' base URL, asked once per process."""


@dataclass(frozen=True, slots=True)
class Relay:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None
    tenant: bool = False
    """The channel named it: its host is checked before connecting."""


def parse_url(url: str, *, tenant: bool) -> Relay:
    """The relay an `smtp://` or `smtps://` URL names; ValueError saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an smtp:// or smtps:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be smtp[s]://[user:password@]host[:port] and nothing more")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return Relay(
        host=parts.hostname,
        port=port,
        security="tls" if parts.scheme == "smtps" else "starttls",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tenant=tenant,
    )


async def relay(ctx: ProviderContext, credentials: Mapping[str, Any]) -> Relay:
    """Where this channel's mail goes now (see the module's docstring)."""
    if ctx.sandbox:
        known = _sandbox_relays.get(ctx.base_url)
        if known is None:
            where = await sandbox_control(
                ctx.http, f"{ctx.base_url}/_sandbox/address", None, simulator="SMTP"
            )
            known = _sandbox_relays[ctx.base_url] = (str(where["host"]), int(where["port"]))
        return Relay(known[0], known[1], "none")
    own = credentials.get("smtpUrl")
    if own:
        return parse_url(str(own), tenant=True)
    if not ctx.base_url:
        raise ProviderError(
            "SMTP_NO_RELAY",
            "The channel has no smtpUrl and the operator configured no relay",
            retryable=False,
        )
    return parse_url(ctx.base_url, tenant=False)


def build(credentials: Mapping[str, Any], message: Outgoing) -> EmailMessage:
    """The message as it goes out: text, and HTML beside it when given."""
    content = message.content
    sender = str(credentials["from"])
    domain = sender.rsplit("@", 1)[1]
    mail = EmailMessage()
    name = credentials.get("fromName")
    mail["From"] = Address(display_name=str(name), addr_spec=sender) if name else sender
    mail["To"] = message.recipient
    mail["Subject"] = str(content.get("subject") or "")
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = f"<{bounces.message_id(message.key)}.{message.account_id or 'openmmp'}@{domain}>"
    mail.set_content(str(content.get("message") or ""))
    html = content.get("html")
    if html:
        mail.add_alternative(str(html), subtype="html")
    return mail


async def send(ctx: ProviderContext, credentials: Mapping[str, Any], message: Outgoing) -> SendOutcome:
    """Send one message; its outcome (never raises for what the relay or the network did)."""
    try:
        where = await relay(ctx, credentials)
        client = await _connect(ctx, where)
    except ProviderError as exc:
        return exc
    except ValueError as exc:  # the operator's relay setting is no smtp:// URL
        return ProviderError("SMTP_NO_RELAY", f"The operator's relay setting {exc}", retryable=False)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        _sandbox_relays.pop(ctx.base_url, None)
        return _unreachable(exc)
    try:
        return await _transaction(ctx, client, where, credentials, message)
    except aiosmtplib.SMTPResponseException as exc:
        return _refused(exc.code, exc.message)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refusal = exc.recipients[0]
        return _refused(refusal.code, refusal.message)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return _unreachable(exc)
    finally:
        client.close()


async def _connect(ctx: ProviderContext, where: Relay) -> aiosmtplib.SMTP:
    timeout = ctx.http.timeout
    # STARTTLS whenever the relay offers it (`_transaction` sends no password without TLS).
    start_tls = None if where.security == "starttls" else False
    options: dict[str, Any] = {"timeout": timeout, "use_tls": where.security == "tls", "start_tls": start_tls}
    if where.tenant:
        # Connect to the address the check allowed, not to whatever the name resolves to a moment later.
        address = await checked_address(ctx, where.host, where.port, code="SMTP_TARGET_REFUSED")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (address, where.port)), timeout
            )
        except BaseException:
            sock.close()
            raise
        client = aiosmtplib.SMTP(hostname=where.host, sock=sock, **options)
    else:
        client = aiosmtplib.SMTP(hostname=where.host, port=where.port, **options)
    await client.connect()
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()  # what the relay offers (DSN) is known before the transaction starts
    return client


async def _transaction(
    ctx: ProviderContext,
    client: aiosmtplib.SMTP,
    where: Relay,
    credentials: Mapping[str, Any],
    message: Outgoing,
) -> SendOutcome:
    if where.username:
        if client.get_transport_info("sslcontext") is None:
            return ProviderError(
                "SMTP_NO_TLS", "The relay offers no TLS: the password is never sent in clear", retryable=False
            )
        await client.login(where.username, where.password or "")
    sender = bounces.return_path(ctx, message.account_id, message.key) or str(credentials["from"])
    mail_options: list[str] = []
    rcpt_options: list[str] = []
    if client.supports_extension("dsn") and sender != credentials["from"]:
        envid = sender.rsplit("@", 1)[0]
        mail_options = [f"ENVID={envid}", "RET=HDRS"]
        rcpt_options = ["NOTIFY=SUCCESS,FAILURE"]
    await client.sendmail(
        sender,
        [message.recipient],
        build(credentials, message).as_bytes(),
        mail_options=mail_options,
        rcpt_options=rcpt_options,
    )
    return SendOk(bounces.message_id(message.key))


def _refused(code: int, text: str) -> ProviderError:
    """A reply the relay refused with: 4xx passes (421, the relay shedding load, is its rate limit),
    5xx is final."""
    return ProviderError(
        f"SMTP_{code}",
        text.strip()[:300] or f"The relay answered {code}",
        retryable=400 <= code < 500,
        rate_limited=code == 421,
    )


def _unreachable(exc: BaseException) -> ProviderError:
    timed_out = isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError)
    return ProviderError(
        "SMTP_TIMEOUT" if timed_out else "SMTP_UNREACHABLE",
        f"The relay {'did not answer in time' if timed_out else 'was not reached'} ({type(exc).__name__})",
        retryable=True,
    )
