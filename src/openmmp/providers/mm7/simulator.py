"""A local MMSC speaking MM7: `POST /mm7` takes SubmitReqs as an operator's MMSC does, then reports.

A SubmitReq is checked as an MMSC checks it: HTTP Basic when the `password` knob is set (else any
account), the VASPID when `vasp_ids` names the known ones (else any), one recipient with a phone
number, the SOAP envelope and the content it points to (`cid:`), whose parts must be SMIL, text,
image, video or audio and at most `max_content_bytes` together. The answer is a `SubmitRsp` (1000 and
a MessageID) or a SOAP fault with an `RSErrorRsp` (HTTP 500). What follows an accepted message obeys
the shared sandbox rule (`providers.simulation`): digits 0–6 a `DeliveryReportReq` Retrieved then a
`ReadReplyReq` Read, 7 Retrieved only, 8 refused at submit (2003 Address Not Found), 9 two 3000
Server Errors for the same TransactionID, then as 0–6. In rates mode an undelivered message is
reported Expired. Like real MMSCs it does not collapse a repeated TransactionID (it counts it among
the stats' `duplicates`).

Reports go to the URL registered for the VASPID (`POST /_sandbox/vasps` `{"vaspId", "callbackUrl"}`,
the analogue of the operator configuring the MMSC), with HTTP Basic: the account the SubmitReq came
with, else the VASPID and the `callback_secret` knob. Until a VASP's first registration since the
start, its reports wait (see `HeldUntilRegistered`).

Sandbox control: `POST /_sandbox/vasps`, `GET /_sandbox/submissions/{messageId}` (what the MMSC made of
a message: subject, recipient, parts, text), `GET /_sandbox/media/sample.png` (a real PNG to send
without the internet), `GET /_sandbox/stats`, `POST /_sandbox/faults` (`rate_limit` answers 4006 with
Retry-After, `final_error` the fault's `status` or 2000).
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient
from openmmp.providers.mm7 import mime, soap
from openmmp.providers.mm7.callbacks import SANDBOX_CALLBACK_SECRET, verify_login
from openmmp.providers.mm7.client import SANDBOX_PATH, basic_authorization
from openmmp.providers.mm7.content import MAX_CONTENT_BYTES
from openmmp.providers.mm7.errors import STATUS_TEXT
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    HttpSimulator,
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    edge_fault,
    json_response,
    knobs,
    last_digit,
    now_ms,
    read_json,
    sandbox_error,
)

CLIENT_ERROR = 2000
ADDRESS_ERROR = 2002
ADDRESS_NOT_FOUND = 2003
CONTENT_REFUSED = 2004
SERVER_ERROR = 3000
MULTIPLE_ADDRESSES = 3003
IMPROPER_IDENTIFICATION = 4001
VALIDATION_ERROR = 4004
SERVICE_UNAVAILABLE = 4006
_CONTENT_KINDS = ("text/", "application/smil", "image/", "video/", "audio/")
_XML = "text/xml; charset=utf-8"


@dataclass
class Mm7Knobs:
    """The MM7 simulator's own knobs."""

    requests_per_second: int = 20
    """SubmitReqs accepted per second per VASPID; beyond, 4006 Service unavailable (as MMSCs throttle)."""
    callback_secret: str = SANDBOX_CALLBACK_SECRET
    """The password of reports to VASPs that submitted without an account; must be the platform's
    `OPENMMP_PROVIDERS__MM7_CALLBACK_SECRET` (empty: the sandbox's default, as the platform's is)."""
    username: str = ""
    password: str = ""
    """With a password, every SubmitReq must carry HTTP Basic with this account (else HTTP 401)."""
    vasp_ids: str = ""
    """Comma-separated VASPIDs the MMSC knows; others get 4001 Improper identification. Empty: any."""
    max_content_bytes: int = MAX_CONTENT_BYTES
    """The largest MMS content accepted (2004 Multimedia content refused beyond)."""


class _Refused(Exception):
    def __init__(self, code: int, details: str = "") -> None:
        super().__init__(details or STATUS_TEXT.get(code, str(code)))
        self.status = soap.Status(code, STATUS_TEXT.get(code, "Error"), details)


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An accepted message, with what its reports need."""

    vasp_id: str
    message_id: str
    recipient: str
    sender: str
    authorization: str
    delivery_report: bool
    read_reply: bool


def create_mm7_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The MM7 MMSC simulator as a Starlette app; `http` sends its reports."""
    return _Mm7Simulator(config, http).app


class _Mm7Simulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "mm7", Mm7Knobs)
        # `--set` hands over what parses as JSON as such (`mm7.password=1234` is a number): text here.
        self._callback_secret = str(self._knobs.callback_secret or SANDBOX_CALLBACK_SECRET)
        self._login = (str(self._knobs.username), str(self._knobs.password))
        self._known = {v.strip() for v in str(self._knobs.vasp_ids).split(",") if v.strip()}
        self._limiter = TokenBucketLimiter(capacity=self._knobs.requests_per_second, window_s=1.0)
        self._callback_urls: dict[str, str] = {}
        self._submissions: LruMap[str, dict[str, Any]] = LruMap(config.max_tracked_keys)
        self._sequence = itertools.count(1)
        # Base64 makes media a third larger; the envelope and MIME headers add a little.
        self._max_request_bytes = self._knobs.max_content_bytes * 4 // 3 + 64 * 1024
        routes = [
            Route(SANDBOX_PATH, self._submit, methods=["POST"]),
            Route("/_sandbox/vasps", self._sandbox_vasp, methods=["POST"]),
            Route("/_sandbox/submissions/{message_id}", self._sandbox_submission, methods=["GET"]),
            Route("/_sandbox/media/sample.png", self._sandbox_media, methods=["GET"]),
        ]
        super().__init__(config, http, routes)
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)

    def _message_id(self) -> str:
        return f"{int(time.time() * 1000):x}{next(self._sequence) & 0xFFFFF:05x}"

    # ---- SubmitReq -------------------------------------------------------------------------------------

    async def _submit(self, request: Request) -> Response:
        self._stats.requests += 1
        raw = await _body(request, self._max_request_bytes)
        fault = self._faults.take()
        if fault is not None:
            return await self._fault(request, fault.kind, fault.status)
        if self._login[1] and not verify_login(request.headers.get("authorization"), *self._login):
            self._stats.reject(401)
            return Response("Unauthorized", 401, {"www-authenticate": 'Basic realm="MM7"'}, "text/plain")
        transaction = ""
        try:
            if raw is None:
                raise _Refused(CONTENT_REFUSED, f"larger than {self._max_request_bytes} bytes")
            envelope, whole = _envelope(request.headers.get("content-type", ""), raw)
            try:
                submit = soap.read_submit(envelope)
            except soap.NotMm7 as exc:
                raise _Refused(VALIDATION_ERROR, str(exc)) from exc
            transaction = submit.transaction_id
            if not self._limiter.try_acquire(submit.vasp_id):
                self._stats.rate_limited += 1
                throttled = soap.Status(SERVICE_UNAVAILABLE, "Service unavailable", "throttled")
                return _fault(transaction, throttled, {"retry-after": "1"})
            phone = self._addressed(submit)
            parts = self._content(whole, submit.content_id)
        except _Refused as refused:
            self._stats.reject(refused.status.code)
            return _fault(transaction, refused.status)

        key = f"{submit.vasp_id}:{transaction}"
        outcome = self._planner.decide(digit=last_digit(phone), attempt_key=key)
        if outcome is Outcome.FINAL_ERROR:
            self._stats.reject(ADDRESS_NOT_FOUND)
            status = soap.Status(
                ADDRESS_NOT_FOUND, "Address Not Found", "the recipient is not an MMS subscriber"
            )
            return _fault(transaction, status)
        if outcome is Outcome.RETRYABLE_ERROR:
            self._stats.reject(SERVER_ERROR)
            return _fault(transaction, soap.Status(SERVER_ERROR, "Server Error", "temporary failure"))
        message_id = self._message_id()
        self._stats.accept(key)
        if self._config.track_keys:
            self._submissions.set(message_id, _record(message_id, submit, parts))
        accepted = _Accepted(
            vasp_id=submit.vasp_id,
            message_id=message_id,
            recipient=f"+{phone}",
            sender=submit.sender,
            authorization=self._report_authorization(request, submit.vasp_id),
            delivery_report=submit.delivery_report,
            read_reply=submit.read_reply,
        )
        if submit.vasp_id in self._callback_urls:
            self._scheduler.spawn(self._lifecycle(accepted, outcome))
        else:
            self._held.hold(submit.vasp_id, lambda: self._lifecycle(accepted, outcome))
        answer = soap.answer("SubmitRsp", transaction, soap.Status(1000, "Success"), message_id=message_id)
        return Response(answer, media_type=_XML)

    async def _fault(self, request: Request, kind: str, status: int | None) -> Response:
        if (edge := await edge_fault(request, kind, self._config, self._stats)) is not None:
            return edge
        if kind == "rate_limit":
            self._stats.rate_limited += 1
            throttled = soap.Status(SERVICE_UNAVAILABLE, "Service unavailable", "throttled (sandbox fault)")
            return _fault("", throttled, {"retry-after": "1"})
        code = status or CLIENT_ERROR
        self._stats.reject(code)
        return _fault("", soap.Status(code, STATUS_TEXT.get(code, "Error"), "sandbox fault"))

    def _addressed(self, submit: soap.SubmitReq) -> str:
        """The recipient's digits, once the VASP and the addressing are found acceptable."""
        if self._known and submit.vasp_id not in self._known:
            raise _Refused(IMPROPER_IDENTIFICATION, f"unknown VASPID {submit.vasp_id!r}")
        if submit.recipients != 1:
            raise _Refused(MULTIPLE_ADDRESSES, "one recipient per SubmitReq")
        digits = submit.recipient
        if not digits.isdigit() or not 8 <= len(digits) <= 15:
            raise _Refused(ADDRESS_ERROR, "the recipient is not an international phone number")
        return digits

    def _content(self, whole: mime.Part, content_id: str) -> tuple[mime.Part, ...]:
        """The MMS's parts, checked: there, of kinds a handset shows, small enough."""
        content = whole.find(content_id)
        if content is None:
            raise _Refused(CONTENT_REFUSED, f"no part has Content-ID <{content_id}>")
        parts = content.parts or (content,)
        for part in parts:
            if not part.media_type.startswith(_CONTENT_KINDS):
                raise _Refused(CONTENT_REFUSED, f"{part.media_type or 'untyped'} parts are not supported")
        size, limit = sum(len(part.body) for part in parts), self._knobs.max_content_bytes
        if size > limit:
            raise _Refused(CONTENT_REFUSED, f"content of {size} bytes; at most {limit}")
        return parts

    def _report_authorization(self, request: Request, vasp_id: str) -> str:
        """How reports to this VASP authenticate: as it did, else with the VASPID and the secret."""
        given = request.headers.get("authorization", "")
        if given.lower().startswith("basic "):
            return given
        return basic_authorization(vasp_id, self._callback_secret)

    # ---- reports ---------------------------------------------------------------------------------------

    async def _lifecycle(self, accepted: _Accepted, outcome: Outcome) -> None:
        latency = self._config.callback_latency_s
        await asyncio.sleep(latency)
        if outcome is Outcome.FAILED_LATER:
            await self._report(accepted, "DeliveryReportReq", "Expired", "not retrieved before it expired")
            return
        if accepted.delivery_report:
            await self._report(accepted, "DeliveryReportReq", "Retrieved")
        if outcome is Outcome.DELIVERED_AND_SEEN and accepted.read_reply:
            await asyncio.sleep(latency)
            await self._report(accepted, "ReadReplyReq", "Read")

    async def _report(self, accepted: _Accepted, kind: soap.ReportKind, status: str, text: str = "") -> None:
        url = self._callback_urls.get(accepted.vasp_id)
        if url is None:
            return
        report = soap.Report(
            kind=kind,
            transaction_id=f"sim-{next(self._sequence)}",
            message_id=accepted.message_id,
            recipient=accepted.recipient,
            sender=accepted.sender,
            mm_status=status,
            timestamp_ms=now_ms(),
            status_text=text,
        )
        headers = {"content-type": _XML, "soapaction": '""', "authorization": accepted.authorization}
        await self._scheduler.post(url, soap.report_req(report), headers)

    # ---- sandbox control ------------------------------------------------------------------------------

    async def _sandbox_vasp(self, request: Request) -> Response:
        """Register (or with an empty `callbackUrl`, remove) where a VASP's reports go."""
        try:
            body = await read_json(request)
        except ValueError as exc:
            return sandbox_error(str(exc))
        vasp_id = body.get("vaspId") if isinstance(body, dict) else None
        url = body.get("callbackUrl") if isinstance(body, dict) else None
        if not isinstance(vasp_id, str) or not vasp_id:
            return sandbox_error("vaspId is required")
        if url in (None, ""):
            self._callback_urls.pop(vasp_id, None)
            self._held.configured(vasp_id, registered=False)
            return json_response({"vaspId": vasp_id, "callbackUrl": None})
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return sandbox_error("callbackUrl must be an http(s) URL")
        self._callback_urls[vasp_id] = url
        self._held.configured(vasp_id, registered=True)
        return json_response({"vaspId": vasp_id, "callbackUrl": url})

    async def _sandbox_submission(self, request: Request) -> Response:
        found = self._submissions.get(request.path_params["message_id"])
        if found is None:
            return sandbox_error("no such message (or key tracking is off)", 404)
        return json_response(found)

    async def _sandbox_media(self, request: Request) -> Response:
        return Response(SAMPLE_PNG, media_type="image/png")


async def _body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it exceeds `limit` bytes (the rest is not kept)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _envelope(content_type: str, raw: bytes) -> tuple[bytes, mime.Part]:
    """The SOAP envelope of a SubmitReq and the whole multipart it came in."""
    if mime.media_type(content_type) != "multipart/related":
        raise _Refused(VALIDATION_ERROR, "a SubmitReq is multipart/related (SOAP with attachments)")
    whole = mime.decode(content_type, raw)
    start = _start(content_type)
    root = whole.find(start) if start else None
    if root is None:
        root = next(iter(whole.parts), None)
    if root is None or root.media_type not in ("text/xml", "application/soap+xml"):
        raise _Refused(VALIDATION_ERROR, "the first part is not the SOAP envelope")
    return root.body, whole


def _start(content_type: str) -> str:
    """The Content-ID the `start` parameter names, without brackets; "" when there is none."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "start":
            return value.strip().strip('"').strip("<>")
    return ""


def _fault(transaction: str, status: soap.Status, headers: dict[str, str] | None = None) -> Response:
    return Response(soap.fault(transaction, status, by_server=True), 500, headers, _XML)


def _record(message_id: str, submit: soap.SubmitReq, parts: tuple[mime.Part, ...]) -> dict[str, Any]:
    """What the MMSC made of a message, for `GET /_sandbox/submissions/{messageId}`."""
    return {
        "messageId": message_id,
        "transactionId": submit.transaction_id,
        "vaspId": submit.vasp_id,
        "vasId": submit.vas_id,
        "sender": submit.sender,
        "recipient": submit.recipient,
        "subject": submit.subject,
        "expiryMs": submit.expiry_ms,
        "deliveryReport": submit.delivery_report,
        "readReply": submit.read_reply,
        "parts": [
            {
                "contentType": p.media_type,
                "contentId": p.content_id,
                "location": p.location,
                "size": len(p.body),
            }
            for p in parts
        ],
        "text": "\n".join(p.body.decode("utf-8", "replace") for p in parts if p.media_type == "text/plain"),
    }


def _sample_png(size: int = 16) -> bytes:
    """A small real PNG (an RGB gradient), so the sandbox can send a picture without the internet."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 16, y * 16, 200)) for x in range(size)) for y in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


SAMPLE_PNG = _sample_png()
