"""MM7 reports from the MMSC: who may send them, and what they mean.

The MMSC POSTs a `DeliveryReportReq` when the message reached the phone or could not, and a
`ReadReplyReq` when the user read it, each a SOAP envelope (alone, or as the root of a
`multipart/related`), to `{public_url}/callbacks/mm7/{accountId}`.

**Proof.** MM7 signs nothing; MMSCs authenticate to a VASP with HTTP Basic. OpenMMP takes the channel's
own `username` and `password` when it has them (the account the MMSC is configured with for this VASP),
else the channel's `vaspId` as user with the operator's MM7 callback secret as password
(`OPENMMP_PROVIDERS__MM7_CALLBACK_SECRET`; in sandbox mode the simulator's published default). This
proves who sent a report, not that its body is untouched on the way: that is TLS's job (an https
public URL).

**Meaning.** `DeliveryReportReq` MMStatus `Retrieved` (and `Forwarded`: the user passed it on unread,
so it reached them) → DELIVERED; `Expired`, `Rejected` and `Unrecognised` → FAIL with `error.code`
`MM7_<MMStatus>` and the MMSC's StatusText (or a description); `Indeterminate`, `Deferred` and the like
are not final and change nothing. `ReadReplyReq` `Read` → READ; `Deleted` (unread) and
`Indeterminate` change nothing. A repeat of a report has the same dedupe key (kind, MessageID, MMStatus).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.base import CallbackRejected, StatusEvent
from openmmp.providers.mm7 import mime, soap

SANDBOX_CALLBACK_SECRET = "sandbox-mm7-callback-secret"  # noqa: S105 - published on purpose
"""The sandbox's callback password (simulator and platform agree on it); deployments set their own."""

_DELIVERED = frozenset({"retrieved", "forwarded"})
_FAILED: Mapping[str, str] = {
    "expired": "the message expired before the recipient retrieved it",
    "rejected": "the recipient or their handset rejected the message",
    "unrecognised": "the recipient's handset did not recognise the message",
}


def callback_login(credentials: Mapping[str, Any], operator_secret: str) -> tuple[str, str] | None:
    """The user and password a report for the channel with `credentials` must carry; None when there is
    none to check against (no channel password and no operator secret): then every report is refused."""
    username, password = credentials.get("username"), credentials.get("password")
    if username and password:
        return str(username), str(password)
    if operator_secret:
        return str(credentials.get("vaspId", "")), operator_secret
    return None


def verify_login(authorization: str | None, username: str, password: str) -> bool:
    """True when `authorization` is HTTP Basic with exactly `username` and `password` (constant time)."""
    if not authorization or not password:
        return False
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, colon, given_password = decoded.partition(":")
    if not colon:
        return False
    # Both compared whatever the first says: the time tells nothing about which was wrong.
    return constant_time_equals(given_user, username) & constant_time_equals(given_password, password)


def soap_of(raw: bytes) -> bytes:
    """The SOAP envelope of a report: the body itself, or the XML root of a multipart body."""
    whole = mime.decode_unlabelled(raw)
    if whole is None:
        return raw
    xml = [p for p in whole.parts if p.media_type in ("text/xml", "application/soap+xml")]
    return xml[0].body if xml else b""


def answer(raw: bytes) -> bytes:
    """What the MMSC expects back for a stored report: its Rsp, 1000 Success, the TransactionID echoed."""
    report = soap.read_report(soap_of(raw))
    kind: soap.AnswerKind = "DeliveryReportRsp" if report.kind == "DeliveryReportReq" else "ReadReplyRsp"
    return soap.answer(kind, report.transaction_id, soap.Status(1000, "Success"))


def parse_callback(raw: bytes) -> Sequence[StatusEvent]:
    """The status event in a report; none for a report that is not final (Indeterminate, Deleted, ...).

    Raises `CallbackRejected` for a body that is not an MM7 report. `provider_message_id` is the
    MessageID, as the SubmitRsp named it.
    """
    try:
        report = soap.read_report(soap_of(raw))
    except soap.NotMm7 as exc:
        raise CallbackRejected(f"not an MM7 report: {exc}") from exc
    status = report.mm_status.strip().lower()
    kind = "delivery" if report.kind == "DeliveryReportReq" else "read"
    event: dict[str, Any] = {
        "provider_message_id": report.message_id,
        "timestamp_ms": report.timestamp_ms,
        "dedupe_key": f"{kind}:{report.message_id}:{status}",
        "raw": dict(report.raw),
    }
    if kind == "read":
        return [StatusEvent(status="READ", **event)] if status == "read" else []
    if status in _DELIVERED:
        return [StatusEvent(status="DELIVERED", **event)]
    if status in _FAILED:
        return [
            StatusEvent(
                status="FAIL",
                error_code=f"MM7_{report.mm_status.strip()}",
                error_message=report.status_text or _FAILED[status],
                **event,
            )
        ]
    return []
