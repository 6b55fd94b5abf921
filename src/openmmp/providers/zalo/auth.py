"""Renewing a Zalo channel's OAuth v4 tokens.

Zalo's access token lives 25 hours (`expires_in: "90000"`); its refresh token about three months and works
once: every renewal answers a new pair, and the old refresh token is spent. So the caller must store what
this returns before anything else uses the channel (the core does, one renewal at a time per channel).

`POST {oauth}/v4/oa/access_token`, form-encoded `app_id`, `grant_type=refresh_token`, `refresh_token`,
with header `secret_key: <the app's secret key>`. The answer is `{access_token, refresh_token,
expires_in}`, or `{error, error_name?, error_description?}` when Zalo refuses (a spent or revoked refresh
token, a wrong app secret): then the company must connect the channel again, and no retry helps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from openmmp.kit.http import HttpUnreachable
from openmmp.providers.base import ProviderContext, ProviderError
from openmmp.providers.upstream import bad_response, parse_retry_after, transport_error
from openmmp.providers.zalo.credentials import zalo_hosts
from openmmp.providers.zalo.errors import MESSAGE_MAX, RATE_LIMIT_WAIT_S

TOKEN_PATH = "/v4/oa/access_token"  # noqa: S105 - a path, not a secret
SECRET_HEADER = "secret_key"  # noqa: S105 - a header's name, not a secret


async def refresh_tokens(ctx: ProviderContext, credentials: Mapping[str, Any]) -> dict[str, Any]:
    """The channel's credentials (wire names, every field) with the access and refresh tokens Zalo
    issued for its refresh token. Raises `ProviderError`: retryable when Zalo could not be reached or
    answered HTTP 5xx/429, final when it refused the refresh token. Never logs the tokens."""
    form = {
        "app_id": str(credentials["appId"]),
        "grant_type": "refresh_token",
        "refresh_token": str(credentials["refreshToken"]),
    }
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        SECRET_HEADER: str(credentials["secretKey"]),
    }
    url = f"{zalo_hosts(ctx).oauth}{TOKEN_PATH}"
    unreachable: ProviderError | None = None
    try:
        response = await ctx.http.post(url, content=urlencode(form).encode("ascii"), headers=headers)
    except HttpUnreachable as exc:
        unreachable = transport_error(exc)
    if unreachable is not None:
        raise unreachable
    if response.status_code == 429:
        raise ProviderError(
            "ZALO_OAUTH_429",
            "Zalo's OAuth server asks to slow down",
            retryable=True,
            rate_limited=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")) or RATE_LIMIT_WAIT_S,
        )
    if response.status_code >= 500:
        raise ProviderError(
            f"ZALO_OAUTH_{response.status_code}",
            f"Zalo's OAuth server answered HTTP {response.status_code}",
            retryable=True,
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_response("Zalo's OAuth server answered with something that is not a JSON object")
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if isinstance(access, str) and access and isinstance(refresh, str) and refresh:
        return {**credentials, "accessToken": access, "refreshToken": refresh}
    if "error" in body or not response.ok:
        raise _refused(body, response.status_code)
    raise bad_response("Zalo's OAuth server answered without an access_token and a refresh_token")


def _refused(body: Mapping[str, Any], status: int) -> ProviderError:
    """Zalo refused the renewal: final, since only the OA's admin granting access again can help."""
    code = body.get("error")
    word = str(code) if isinstance(code, int | str) and not isinstance(code, bool) else f"HTTP_{status}"
    said = "; ".join(
        str(body[key]) for key in ("error_name", "error_description") if isinstance(body.get(key), str)
    )
    text = (
        "Zalo refused to renew the channel's tokens: the refresh token is spent, revoked or expired, or "
        "the app's secret key is wrong; the OA's admin must grant the app access again "
        "(credentials.refreshToken)"
    )
    if said:
        text = f"{text} ({said})"
    return ProviderError(f"ZALO_OAUTH_{word}", text[:MESSAGE_MAX], retryable=False)
