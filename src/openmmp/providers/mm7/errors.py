"""MM7 outcomes mapped to `ProviderError` (retryable or final).

A SubmitReq can fail in four layers: the transport (no answer: retryable), the HTTP status (429, or 503
with Retry-After: rate limited; other 5xx retryable; 401/403: the VASP's credentials, final), a SOAP
fault, and the MM7 `StatusCode` of a `SubmitRsp` or of the fault's `RSErrorRsp`. The status codes
(TS 23.140 §8.7.4) and what OpenMMP makes of them:

- 1xxx success (1000, 1100 partial success: with one recipient, it went).
- 2xxx client errors — the request or the recipient is wrong (2002 Address Error, 2004 content
  refused, ...): final.
- 3xxx server errors: 3000 Server Error and the vendor codes of the range (gateway timeouts, throughput
  exceeded) are retryable; 3001 Not Possible, 3002 Message rejected, 3003 Multiple addresses not
  supported and 3004 Application Addressing not supported are the MMSC's verdict on this message: final.
- 4xxx service errors: 4006 Service unavailable ("the server is busy", what MMSCs answer when a VASP
  exceeds its throughput) is rate limiting; the others (identification, version, validation, service
  denied, 4005 "should not be sent again") are final.

The error code is `MM7_<StatusCode>` and its message the MMSC's StatusText and Details.
"""

from __future__ import annotations

from collections.abc import Mapping

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.mm7 import mime, soap
from openmmp.providers.upstream import bad_response, parse_retry_after

STATUS_TEXT: Mapping[int, str] = {
    1000: "Success",
    1100: "Partial success",
    2000: "Client error",
    2001: "Operation restricted",
    2002: "Address Error",
    2003: "Address Not Found",
    2004: "Multimedia content refused",
    2005: "Message ID Not found",
    2006: "LinkedID not found",
    2007: "Message format corrupt",
    2008: "Application ID not found",
    2009: "Reply Application ID not found",
    3000: "Server Error",
    3001: "Not Possible",
    3002: "Message rejected",
    3003: "Multiple addresses not supported",
    3004: "Application Addressing not supported",
    4000: "General service error",
    4001: "Improper identification",
    4002: "Unsupported version",
    4003: "Unsupported operation",
    4004: "Validation error",
    4005: "Service error",
    4006: "Service unavailable",
    4007: "Service denied",
    4008: "Application denied",
}
"""The status codes of TS 23.140 and their names."""

SERVICE_UNAVAILABLE = 4006
_FINAL_SERVER_ERRORS = frozenset({3001, 3002, 3003, 3004})
MESSAGE_MAX = 300


def retryable(code: int) -> bool:
    """Whether a request refused with MM7 status `code` may go through when sent again."""
    if code == SERVICE_UNAVAILABLE:
        return True
    return 3000 <= code < 4000 and code not in _FINAL_SERVER_ERRORS


def status_error(status: soap.Status, *, retry_after: float | None = None) -> ProviderError:
    """The `ProviderError` for an MM7 status that is not a success."""
    name = status.text or STATUS_TEXT.get(status.code, "Unknown status")
    message = f"{name}: {status.details}" if status.details else name
    return ProviderError(
        f"MM7_{status.code}",
        message[:MESSAGE_MAX],
        retryable=retryable(status.code),
        rate_limited=status.code == SERVICE_UNAVAILABLE,
        retry_after=retry_after,
    )


def fault_error(answer: soap.Answer) -> ProviderError:
    """A SOAP fault without an MM7 status: the server's fault may pass, the client's will not."""
    by_server = answer.fault_code == "Server"
    return ProviderError(
        "MM7_SOAP_FAULT",
        (answer.fault_string or f"SOAP fault ({answer.fault_code or 'no faultcode'})")[:MESSAGE_MAX],
        retryable=by_server,
    )


def _http_error(response: HttpResponse) -> ProviderError | None:
    """What the HTTP status alone says, before the body is read (None: read the body)."""
    code = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if code == 429 or (code == 503 and retry_after is not None):
        return ProviderError(
            f"MM7_HTTP_{code}",
            f"HTTP {code}: the MMSC asks to slow down",
            retryable=True,
            rate_limited=True,
            retry_after=retry_after,
        )
    if code in (401, 403):
        return ProviderError(
            f"MM7_HTTP_{code}",
            f"HTTP {code}: the MMSC refused the VASP's credentials (username, password, VASPID)",
            retryable=False,
        )
    return None


def _soap_part(response: HttpResponse) -> bytes:
    """The SOAP envelope of an answer, which may come alone or as the root of a multipart/related."""
    content_type = response.headers.get("content-type", "")
    if mime.media_type(content_type) != "multipart/related":
        return response.content
    whole = mime.decode(content_type, response.content)
    root = next((p for p in whole.parts if p.media_type in ("text/xml", "application/soap+xml")), None)
    return root.body if root is not None else b""


def submit_outcome(response: HttpResponse, transaction_id: str) -> SendOk:
    """The MMSC's answer to a SubmitReq: `SendOk` with its MessageID, or raise the `ProviderError`."""
    early = _http_error(response)
    if early is not None:
        raise early
    code = response.status_code
    try:
        answer = soap.read_answer(_soap_part(response))
    except soap.NotMm7 as exc:
        if code >= 500:
            raise ProviderError(f"MM7_HTTP_{code}", f"HTTP {code}", retryable=True) from exc
        if not 200 <= code < 300:
            raise ProviderError(f"MM7_HTTP_{code}", f"HTTP {code}", retryable=False) from exc
        raise bad_response(f"the MMSC answered with something that is not MM7 ({exc})") from exc
    if answer.transaction_id and answer.transaction_id != transaction_id:
        raise bad_response(f"the MMSC answered transaction {answer.transaction_id!r}, not {transaction_id!r}")
    if answer.status is None:
        raise fault_error(answer)
    if not answer.status.ok:
        raise status_error(answer.status, retry_after=parse_retry_after(response.headers.get("retry-after")))
    if answer.kind != "SubmitRsp" or not answer.message_id:
        raise bad_response(f"the MMSC answered {answer.kind} without a MessageID")
    return SendOk(provider_message_id=answer.message_id)
