"""Viber REST Bot API outcomes mapped to `ProviderError` (retryable or final).

The Bot API answers HTTP 200 with the outcome in the body's `status` (providers.md §1), so a request can fail
in three layers: the transport (`HttpUnreachable`), the HTTP status (5xx / 429 from a proxy or an outage)
and the body's `status`. Only rate limiting and upstream trouble are worth a retry; everything the upstream
said about the request itself is final.

The HTTP layer's helpers here (`http_status_error`, `response_body`) are shared with the Viber Business
Messages adapter, which fails in the same three layers; the transport's failures are `providers.upstream`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import ProviderError
from openmmp.providers.upstream import bad_response, parse_retry_after

STATUS_NAMES: Mapping[int, str] = {
    0: "ok",
    1: "invalidUrl",
    2: "invalidAuthToken",
    3: "badData",
    4: "missingData",
    5: "receiverNotRegistered",
    6: "receiverNotSubscribed",
    7: "publicAccountBlocked",
    8: "publicAccountNotFound",
    9: "publicAccountSuspended",
    10: "webhookNotSet",
    11: "receiverNoSuitableDevice",
    12: "tooManyRequests",
    13: "apiVersionNotSupported",
    14: "incompatibleWithVersion",
}
"""Viber Bot `status` codes and their names as the upstream spells them."""

TOO_MANY_REQUESTS = 12


def status_error(status: int, status_message: str | None = None) -> ProviderError:
    """The `ProviderError` for a non-zero Viber Bot `status` (whole call or one `failed_list` entry)."""
    message = status_message or STATUS_NAMES.get(status, "generalError")
    if status == TOO_MANY_REQUESTS:
        return ProviderError(f"VIBER_BOT_{status}", message, retryable=True, rate_limited=True)
    return ProviderError(f"VIBER_BOT_{status}", message, retryable=False)


def http_status_error(response: HttpResponse) -> ProviderError | None:
    """The error for a non-2xx HTTP answer, or None when the HTTP layer succeeded.

    These APIs never use HTTP status for their own errors, so a non-2xx comes from the upstream's edge:
    429 and 5xx are transient, any other code means the request can never go through as built.
    """
    code = response.status_code
    if 200 <= code < 300:
        return None
    if code == 429:
        retry_after = parse_retry_after(_header(response.headers, "retry-after"))
        return ProviderError(
            "UPSTREAM_HTTP_429",
            "HTTP 429 Too Many Requests",
            retryable=True,
            rate_limited=True,
            retry_after=retry_after,
        )
    if code >= 500:
        return ProviderError(f"UPSTREAM_HTTP_{code}", f"HTTP {code}", retryable=True)
    return ProviderError(f"UPSTREAM_HTTP_{code}", f"HTTP {code}", retryable=False)


def response_body(response: HttpResponse) -> dict[str, Any]:
    """Check the HTTP layer and return the JSON object body, or raise the matching `ProviderError`."""
    error = http_status_error(response)
    if error is not None:
        raise error
    try:
        body = response.json()
    except ValueError as exc:
        raise bad_response("the upstream answered with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise bad_response("the upstream answered with JSON that is not an object")
    return body


def check_response(response: HttpResponse) -> dict[str, Any]:
    """Return the body of a successful Viber Bot answer (`status` 0); raise `ProviderError` otherwise."""
    body = response_body(response)
    status = body.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        raise bad_response("the upstream answer has no numeric status")
    if status != 0:
        message = body.get("status_message")
        raise status_error(status, message if isinstance(message, str) else None)
    return body


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # kit.http hands over httpx's lower-cased names, but be safe with any Mapping.
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None
