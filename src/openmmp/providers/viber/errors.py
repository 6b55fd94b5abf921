"""Viber Business Messages outcomes mapped to `ProviderError` (retryable or final).

Like the Bot API, the service answers HTTP 200 with the outcome in `status` (providers.md §2). Retryable:
1 INTERNAL_FAILURE, 7 TIMEOUT, 12 TOO_MANY_REQUESTS (rate limited), HTTP 5xx / 429 and no answer at all.
Everything else is about the request or the receiver and final.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import ProviderError
from openmmp.providers.upstream import bad_response, transport_error
from openmmp.providers.viber_bot.errors import response_body

__all__ = ["STATUS_NAMES", "bad_response", "check_response", "status_error", "transport_error"]

STATUS_NAMES: Mapping[int, str] = {
    0: "SUCCESS",
    1: "INTERNAL_FAILURE",
    2: "BAD_SERVICE_ID",
    3: "BAD_DATA",
    5: "BAD_MESSAGE_TYPE",
    6: "BAD_PARAMETERS",
    7: "TIMEOUT",
    8: "USER_BLOCKED",
    9: "NOT_VIBER_USER",
    10: "NO_SUITABLE_DEVICE",
    11: "UNAUTHORIZED_IP",
    # Not in the public list: OpenMMP's simulator answers it when a service_id exceeds its rate.
    12: "TOO_MANY_REQUESTS",
    13: "NOT_PERMITTED",
    18: "BAD_LABEL",
    20: "INVALID_TTL",
    21: "WAIT_FOR_USER_RESPONSE",
    27: "INVALID_PHONE_NUMBER",
    # 28-32 are file, thumbnail, size and duration checks whose exact names are partner-confidential.
    28: "FILE_VALIDATION_ERROR",
    29: "FILE_VALIDATION_ERROR",
    30: "FILE_VALIDATION_ERROR",
    31: "FILE_VALIDATION_ERROR",
    32: "FILE_VALIDATION_ERROR",
    38: "TEMPLATE_NOT_FOUND",
    39: "TEMPLATE_VALIDATION_ERROR",
    40: "SURVEY_VALIDATION",
    41: "CAROUSEL_VALIDATION",
    43: "SERVICE_BLOCKED",
    401: "UNAUTHORIZED_IP",
}
"""Viber Business Messages `status` codes and their names."""

INTERNAL_FAILURE = 1
TIMEOUT = 7
TOO_MANY_REQUESTS = 12


def status_error(status: int, status_message: str | None = None) -> ProviderError:
    """The `ProviderError` for a non-zero Viber BM `status`; the message is the code's name."""
    message = STATUS_NAMES.get(status) or status_message or "UNKNOWN_STATUS"
    code = f"VIBER_{status}"
    if status == TOO_MANY_REQUESTS:
        return ProviderError(code, message, retryable=True, rate_limited=True)
    if status in (INTERNAL_FAILURE, TIMEOUT):
        return ProviderError(code, message, retryable=True)
    return ProviderError(code, message, retryable=False)


def check_response(response: HttpResponse) -> dict[str, Any]:
    """Return the body of a successful answer (`status` 0); raise `ProviderError` otherwise."""
    body = response_body(response)
    status = body.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        raise bad_response("the upstream answer has no numeric status")
    if status != 0:
        message = body.get("status_message")
        raise status_error(status, message if isinstance(message, str) else None)
    return body
