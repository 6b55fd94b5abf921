"""Failures any HTTP upstream can have, whatever its protocol: no answer at all (`transport_error`), an
answer that is not the upstream's protocol (`bad_response`), and how long a `Retry-After` says to wait
(`parse_retry_after`). Each provider's `errors` maps what its upstream says on top of these. And the
client for hosts a tenant names (`checked_http`: an MMSC, the company's media files).
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from weakref import WeakKeyDictionary

from openmmp.kit.http import HttpClient, HttpUnreachable, IpAddress
from openmmp.providers.base import ProviderContext, ProviderError, TargetCheck

# Per shared client: the checked clients made from it, by (check, host). A checked client has its own
# connections and lives as long as its parent, so one is made per upstream host a tenant names (few: one
# per channel at most) and one for all media, whose hosts are many.
_checked: WeakKeyDictionary[HttpClient, dict[tuple[TargetCheck, str], HttpClient]] = WeakKeyDictionary()


def checked_http(ctx: ProviderContext, host: str = "") -> HttpClient:
    """The client for connections to a host a tenant named: each address checked (`ctx.target_check`)
    outside sandbox mode, where the simulators are local. `host` is the upstream's name, which the
    operator may allow by name (an MMSC); "" for the company's media files, checked by address only, since
    a host the operator allows by name is an upstream it trusts, not any tenant's media server."""
    check = ctx.target_check
    if ctx.sandbox or check is None:
        return ctx.http
    made = _checked.setdefault(ctx.http, {})
    client = made.get((check, host))
    if client is None:

        def address_check(address: IpAddress) -> str | None:
            return check(host, address)

        client = made[(check, host)] = ctx.http.checked(address_check)
    return client


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
