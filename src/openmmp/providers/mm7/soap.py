"""MM7's SOAP envelopes (3GPP TS 23.140 Rel-6, schema REL-6-MM7-1-4): built and read, nothing else.

Built: `SubmitReq` (VASP → MMSC), `DeliveryReportReq` / `ReadReplyReq` (MMSC → VASP, for the simulator),
their answers (`SubmitRsp`, `DeliveryReportRsp`, `ReadReplyRsp`) and SOAP faults carrying
`RSErrorRsp` / `VASPErrorRsp`. Elements go in the schema's order, in the Rel-6 namespace.

Read: by local names, whatever the namespace, since MMSCs answer in the MM7 version they speak (Rel-5
1-2, Rel-6 1-4, ...) and the elements OpenMMP needs have kept their names. The bodies come from the
network: a document with a DTD is refused before parsing (SOAP forbids DTDs), so no entity can expand
and nothing external is ever fetched.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MM7_NS = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4"
MM7_VERSION = "6.8.0"
SUCCESS = 1000

ReportKind = Literal["DeliveryReportReq", "ReadReplyReq"]
AnswerKind = Literal["SubmitRsp", "DeliveryReportRsp", "ReadReplyRsp"]


class NotMm7(ValueError):
    """A body that is not an MM7 SOAP message (or not the one expected); the reason is the message."""


@dataclass(frozen=True, slots=True)
class Status:
    """An MM7 `Status`: `code` (1xxx success, 2xxx client, 3xxx server, 4xxx service errors)."""

    code: int
    text: str = ""
    details: str = ""

    @property
    def ok(self) -> bool:
        return 1000 <= self.code < 2000


@dataclass(frozen=True, slots=True)
class SubmitReq:
    """One MMS to one recipient. `recipient` is E.164 digits; `content_id` names the MIME part holding
    the MMS (`<Content href="cid:...">`); `expiry_ms` becomes ExpiryDate."""

    transaction_id: str
    vasp_id: str
    vas_id: str
    sender: str
    recipient: str
    content_id: str
    subject: str | None = None
    expiry_ms: int | None = None
    delivery_report: bool = True
    read_reply: bool = True
    recipients: int = 1
    """How many recipients the request named (To, Cc and Bcc): OpenMMP always names one."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the other side answered: a `SubmitRsp` (or another `...Rsp`), an `RSErrorRsp` /
    `VASPErrorRsp`, or a bare SOAP fault (`status` None, `fault_code` "Client" or "Server")."""

    kind: str
    transaction_id: str
    status: Status | None
    message_id: str = ""
    fault_code: str = ""
    fault_string: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """A `DeliveryReportReq` (MMStatus Retrieved, Expired, ...) or a `ReadReplyReq` (Read, Deleted)."""

    kind: ReportKind
    transaction_id: str
    message_id: str
    recipient: str
    sender: str
    mm_status: str
    timestamp_ms: int
    status_text: str = ""
    raw: Mapping[str, str] = field(default_factory=dict)


# ---- building ----------------------------------------------------------------------------------------


def _el(name: str, *children: str, text: str | None = None, attrs: Mapping[str, str] | None = None) -> str:
    attributes = "".join(f" {key}={quoteattr(value)}" for key, value in (attrs or {}).items())
    inner = escape(text) if text is not None else "".join(children)
    return f"<{name}{attributes}>{inner}</{name}>"


def _envelope(transaction_id: str, body: str) -> bytes:
    header = _el(
        "env:Header",
        _el(
            "mm7:TransactionID",
            text=transaction_id,
            attrs={"xmlns:mm7": MM7_NS, "env:mustUnderstand": "1"},
        ),
    )
    envelope = _el("env:Envelope", header, _el("env:Body", body), attrs={"xmlns:env": SOAP_ENV})
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + envelope).encode("utf-8")


def address(value: str) -> str:
    """An MM7 address element for `value`: an e-mail address, a phone number, or a short code.

    A sender with more than eight digits is a number (an MSISDN); shorter digits or letters are a short
    code, as operators hand them out to VASPs.
    """
    if "@" in value:
        return _el("RFC2822Address", text=value)
    digits = value[1:] if value.startswith("+") else value
    if digits.isdigit() and len(digits) > 8:
        return _el("Number", text=value)
    return _el("ShortCode", text=value)


def iso_time(epoch_ms: int) -> str:
    """An xs:dateTime in UTC, to the second."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def submit_req(request: SubmitReq) -> bytes:
    """The SOAP envelope of a SubmitReq, with delivery and read reports asked for as `request` says."""
    children = [
        _el("MM7Version", text=MM7_VERSION),
        _el(
            "SenderIdentification",
            _el("VASPID", text=request.vasp_id),
            _el("VASID", text=request.vas_id),
            _el("SenderAddress", address(request.sender)),
        ),
        _el("Recipients", _el("To", _el("Number", text=f"+{request.recipient}"))),
        _el("MessageClass", text="Informational"),
    ]
    if request.expiry_ms is not None:
        children.append(_el("ExpiryDate", text=iso_time(request.expiry_ms)))
    children += [
        _el("DeliveryReport", text="true" if request.delivery_report else "false"),
        _el("ReadReply", text="true" if request.read_reply else "false"),
    ]
    if request.subject:
        children.append(_el("Subject", text=request.subject))
    children.append(f'<Content href={quoteattr("cid:" + request.content_id)} allowAdaptations="true"/>')
    return _envelope(request.transaction_id, _el("SubmitReq", *children, attrs={"xmlns": MM7_NS}))


def _status(status: Status) -> str:
    parts = [_el("StatusCode", text=str(status.code)), _el("StatusText", text=status.text)]
    if status.details:
        parts.append(_el("Details", text=status.details))
    return _el("Status", *parts)


def answer(kind: AnswerKind, transaction_id: str, status: Status, *, message_id: str = "") -> bytes:
    """A `SubmitRsp`, `DeliveryReportRsp` or `ReadReplyRsp` (a SubmitRsp names the MessageID)."""
    children = [_el("MM7Version", text=MM7_VERSION), _status(status)]
    if message_id:
        children.append(_el("MessageID", text=message_id))
    return _envelope(transaction_id, _el(kind, *children, attrs={"xmlns": MM7_NS}))


def fault(transaction_id: str, status: Status, *, by_server: bool) -> bytes:
    """A SOAP fault whose detail is an `RSErrorRsp` (sent by the MMSC, `by_server`) or a `VASPErrorRsp`.

    SOAP 1.1 sends faults with HTTP 500; `faultcode` says whose fault it is (Client for 2xxx and 4xxx).
    """
    whose = "env:Server" if 3000 <= status.code < 4000 else "env:Client"
    error = "RSErrorRsp" if by_server else "VASPErrorRsp"
    detail = _el(error, _el("MM7Version", text=MM7_VERSION), _status(status), attrs={"xmlns": MM7_NS})
    body = _el(
        "env:Fault",
        _el("faultcode", text=whose),
        _el("faultstring", text=status.text),
        _el("detail", detail),
    )
    return _envelope(transaction_id, body)


def report_req(report: Report) -> bytes:
    """A `DeliveryReportReq` or `ReadReplyReq` about one message to one recipient."""
    moment = "Date" if report.kind == "DeliveryReportReq" else "TimeStamp"
    children = [
        _el("MM7Version", text=MM7_VERSION),
        _el("MessageID", text=report.message_id),
        _el("Recipient", address(report.recipient)),
        _el("Sender", address(report.sender)),
        _el(moment, text=iso_time(report.timestamp_ms)),
        _el("MMStatus", text=report.mm_status),
    ]
    if report.status_text:
        children.append(_el("StatusText", text=report.status_text))
    return _envelope(report.transaction_id, _el(report.kind, *children, attrs={"xmlns": MM7_NS}))


# ---- reading -----------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    return next((child for child in element if _local(child.tag) == name), None)


def _text(element: ET.Element | None, *path: str) -> str:
    for name in path:
        element = _child(element, name)
    return "".join(element.itertext()).strip() if element is not None else ""


def _root(raw: bytes) -> ET.Element:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotMm7("the body is not UTF-8 XML") from exc
    # Without a DTD no entity can be declared: nothing expands, nothing external is resolved. NUL
    # cannot be in XML text, so the check also sees through an encoding that would hide the markup.
    if "<!DOCTYPE" in text or "<!ENTITY" in text or "\x00" in text:
        raise NotMm7("a SOAP message must not carry a DTD")
    try:
        return ET.fromstring(text)  # noqa: S314 - DTD-free text only (checked above)
    except ET.ParseError as exc:
        raise NotMm7("the body is not well-formed XML") from exc


def _envelope_parts(raw: bytes) -> tuple[str, ET.Element]:
    """The TransactionID and the one element in the SOAP Body."""
    root = _root(raw)
    if _local(root.tag) != "Envelope":
        raise NotMm7("the body is not a SOAP envelope")
    transaction_id = _text(root, "Header", "TransactionID")
    body = _child(root, "Body")
    content = next(iter(body), None) if body is not None else None
    if content is None:
        raise NotMm7("the SOAP envelope has an empty Body")
    return transaction_id, content


def _read_status(element: ET.Element | None) -> Status | None:
    status = _child(element, "Status")
    if status is None:
        return None
    code = _text(status, "StatusCode")
    if not code.isdigit():
        raise NotMm7("the MM7 Status has no numeric StatusCode")
    return Status(int(code), _text(status, "StatusText"), _text(status, "Details"))


def read_answer(raw: bytes) -> Answer:
    """The answer in a SOAP envelope: any `...Rsp` with its Status, or a fault with its detail."""
    transaction_id, content = _envelope_parts(raw)
    kind = _local(content.tag)
    if kind == "Fault":
        detail = _child(content, "detail")
        error = next(iter(detail), None) if detail is not None else None
        code = _text(content, "faultcode")
        return Answer(
            kind=_local(error.tag) if error is not None else "Fault",
            transaction_id=transaction_id,
            status=_read_status(error),
            fault_code=code.rsplit(":", 1)[-1],
            fault_string=_text(content, "faultstring"),
        )
    if not kind.endswith("Rsp"):
        raise NotMm7(f"expected an MM7 answer, got {kind}")
    status = _read_status(content)
    if status is None:
        raise NotMm7(f"the {kind} has no Status")
    return Answer(kind, transaction_id, status, message_id=_text(content, "MessageID"))


def read_submit(raw: bytes) -> SubmitReq:
    """A SubmitReq envelope (what the simulator receives). Raises NotMm7 naming what is missing."""
    transaction_id, content = _envelope_parts(raw)
    if _local(content.tag) != "SubmitReq":
        raise NotMm7(f"expected a SubmitReq, got {_local(content.tag)}")
    sender = _child(content, "SenderIdentification")
    recipients = _child(content, "Recipients")
    # To, Cc and Bcc, each holding address elements.
    named = [element for kind in recipients for element in kind] if recipients is not None else []
    reference = _child(content, "Content")
    href = reference.get("href", "") if reference is not None else ""
    expiry = _text(content, "ExpiryDate")
    request = SubmitReq(
        transaction_id=transaction_id,
        vasp_id=_text(sender, "VASPID"),
        vas_id=_text(sender, "VASID"),
        sender=_address_text(_child(sender, "SenderAddress")),
        recipient=("".join(named[0].itertext()).strip().removeprefix("+") if named else ""),
        content_id=href[4:] if href.startswith("cid:") else "",
        subject=_text(content, "Subject") or None,
        expiry_ms=epoch_ms(expiry) if expiry else None,
        delivery_report=_text(content, "DeliveryReport").lower() in ("true", "1"),
        read_reply=_text(content, "ReadReply").lower() in ("true", "1"),
        recipients=len(named),
    )
    if not transaction_id:
        raise NotMm7("the SOAP Header has no TransactionID")
    if not request.content_id:
        raise NotMm7('the SubmitReq has no Content href="cid:..."')
    return request


def _address_text(element: ET.Element | None) -> str:
    """The value of an address element (`<Recipient><Number>...</Number></Recipient>`)."""
    inner = next(iter(element), None) if element is not None else None
    return "".join(inner.itertext()).strip() if inner is not None else _text(element)


def read_report(raw: bytes) -> Report:
    """A DeliveryReportReq or ReadReplyReq. Raises NotMm7 for anything else, or one lacking what a
    report must name (MessageID, MMStatus, its time)."""
    transaction_id, content = _envelope_parts(raw)
    kind = _local(content.tag)
    if kind not in ("DeliveryReportReq", "ReadReplyReq"):
        raise NotMm7(f"expected a DeliveryReportReq or ReadReplyReq, got {kind}")
    message_id = _text(content, "MessageID")
    mm_status = _text(content, "MMStatus")
    when = _text(content, "Date" if kind == "DeliveryReportReq" else "TimeStamp")
    if not message_id or not mm_status:
        raise NotMm7(f"the {kind} names no MessageID or MMStatus")
    recipient = _address_text(_child(content, "Recipient"))
    sender = _address_text(_child(content, "Sender"))
    status_text = _text(content, "StatusText")
    return Report(
        kind="DeliveryReportReq" if kind == "DeliveryReportReq" else "ReadReplyReq",
        transaction_id=transaction_id,
        message_id=message_id,
        recipient=recipient,
        sender=sender,
        mm_status=mm_status,
        timestamp_ms=epoch_ms(when),
        status_text=status_text,
        raw={
            "kind": kind,
            "transactionId": transaction_id,
            "messageId": message_id,
            "recipient": recipient,
            "sender": sender,
            "mmStatus": mm_status,
            "time": when,
            "statusText": status_text,
        },
    )


def epoch_ms(value: str) -> int:
    """An xs:dateTime as epoch milliseconds (UTC when it names no zone). Raises NotMm7 when it is none."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise NotMm7(f"{value!r} is not an xs:dateTime") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
