"""Failures any HTTP upstream can have, whatever its protocol: no answer at all (`transport_error`), an
answer that is not the upstream's protocol (`bad_response`), and how long a `Retry-After` says to wait
(`parse_retry_after`). Each provider's `errors` maps what its upstream says on top of these.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

from openmmp.kit.http import HttpUnreachable
from openmmp.providers.base import ProviderError


def transport_error(exc: HttpUnreachable) -> ProviderError:
    """No answer at all: always retryable, since the upstream never said no."""
    if exc.timed_out:
        return ProviderError("UPSTREAM_TIMEOUT", "the upstream did not answer in time", retryable=True)
    return ProviderError("UPSTREAM_UNREACHABLE", "the upstream could not be reached", retryable=True)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None when absent or odd."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def bad_response(detail: str) -> ProviderError:
    """An answer that is not the upstream's protocol (HTML error page, truncated JSON): worth a retry."""
    return ProviderError("UPSTREAM_BAD_RESPONSE", detail, retryable=True)
