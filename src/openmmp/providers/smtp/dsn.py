"""Delivery status notifications (RFC 3464): what a relay mails back about a message it could not deliver.

A DSN is a `multipart/report; report-type=delivery-status` message: a human-readable part, a
`message/delivery-status` part (per-message fields, then one group of fields per recipient: `Action`,
`Status`, `Diagnostic-Code`, `Final-Recipient`), and usually the original's headers. `parse` reads the
verdicts and what names the original message: its `Original-Envelope-Id` (the ENVID OpenMMP gives at
MAIL FROM) and the original `Message-ID`; `build` writes one (the SMTP simulator's bounces).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.policy import default
from email.utils import format_datetime, make_msgid

_SMTP_CODE = re.compile(r"^\s*smtp\s*;\s*(\d{3})\b", re.IGNORECASE)


class NotADsn(ValueError):
    """The message is no delivery status notification."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the report says of one recipient."""

    recipient: str
    action: str
    """failed, delayed, delivered, relayed or expanded."""
    status: str
    """The enhanced status code, e.g. 5.1.1."""
    diagnostic: str
    """As the remote server said it, e.g. `smtp; 550 5.1.1 <a@b.example>: user unknown`."""

    @property
    def smtp_code(self) -> int | None:
        """The remote server's reply code (550), when the diagnostic is an SMTP one."""
        found = _SMTP_CODE.match(self.diagnostic)
        return int(found[1]) if found else None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@dataclass(frozen=True, slots=True)
class Report:
    envelope_id: str
    """`Original-Envelope-Id`, or "" when the relay gave none."""
    original_message_id: str
    """The original's `Message-ID` from its returned headers, or "" when they are not there."""
    verdicts: tuple[Verdict, ...]


def _blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part: the per-message one first."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    return [
        message_from_bytes(chunk.strip().encode() + b"\n")
        for chunk in re.split(r"\r?\n\r?\n", text)
        if chunk.strip()
    ]


def _address(value: str | None) -> str:
    """`rfc822; a@b.example` → `a@b.example`."""
    if not value:
        return ""
    return value.split(";", 1)[-1].strip().strip("<>")


def parse(raw: bytes) -> Report:
    """The report in `raw`; NotADsn when it is none."""
    message = message_from_bytes(raw, policy=default)
    if message.get_content_type() != "multipart/report":
        raise NotADsn("not a multipart/report")
    status_part = next((p for p in message.walk() if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        raise NotADsn("no message/delivery-status part")
    blocks = _blocks(status_part)
    if len(blocks) < 2:
        raise NotADsn("no per-recipient fields")
    per_message, recipients = blocks[0], blocks[1:]
    verdicts = tuple(
        Verdict(
            recipient=_address(block.get("Final-Recipient") or block.get("Original-Recipient")),
            action=str(block.get("Action", "")).strip().lower(),
            status=str(block.get("Status", "")).strip(),
            diagnostic=str(block.get("Diagnostic-Code", "")).strip(),
        )
        for block in recipients
        if block.get("Action")
    )
    if not verdicts:
        raise NotADsn("no recipient has an Action")
    original = ""
    for part in message.walk():
        if part.get_content_type() in ("text/rfc822-headers", "message/rfc822"):
            body = part.get_payload()
            if isinstance(body, list) and body and isinstance(body[0], Message):
                original = str(body[0].get("Message-ID", ""))
            elif isinstance(body, str):
                found = re.search(r"^Message-ID:\s*(\S+)", body, re.IGNORECASE | re.MULTILINE)
                original = found[1] if found else ""
            break
    return Report(
        envelope_id=str(per_message.get("Original-Envelope-Id", "")).strip(),
        original_message_id=original.strip(),
        verdicts=verdicts,
    )


def build(
    *,
    reporting_mta: str,
    to: str,
    recipient: str,
    status: str,
    diagnostic: str,
    envelope_id: str = "",
    original_headers: str = "",
    action: str = "failed",
) -> bytes:
    """A DSN from `reporting_mta` to `to` (the original's envelope sender) about `recipient`."""
    boundary = f"dsn-{uuid.uuid4().hex}"
    per_message = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envelope_id:
        per_message.append(f"Original-Envelope-Id: {envelope_id}")
    parts = [
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Your message to <{recipient}> could not be delivered: {diagnostic}\r\n",
        "Content-Type: message/delivery-status\r\n\r\n"
        + "\r\n".join(per_message)
        + "\r\n\r\n"
        + "\r\n".join(
            [
                f"Final-Recipient: rfc822; {recipient}",
                f"Action: {action}",
                f"Status: {status}",
                f"Diagnostic-Code: {diagnostic}",
            ]
        )
        + "\r\n",
    ]
    if original_headers:
        parts.append("Content-Type: text/rfc822-headers\r\n\r\n" + original_headers.strip() + "\r\n")
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: {to}",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    body = "".join(f"--{boundary}\r\n{part}" for part in parts) + f"--{boundary}--\r\n"
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()
