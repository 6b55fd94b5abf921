"""Zalo's answers mapped to a result or a `ProviderError`; the one HTTP call both Zalo providers make.

Zalo answers HTTP 200 whatever happened, with the envelope `{"data": {...}, "error": 0, "message":
"Success"}`; a non-zero `error` is the refusal (providers.md §5 "Key errors"). What decides:

- Expired credentials (-216, -220, -124: the access token is invalid or expired): `stale_credentials`, so
  the core renews the tokens and calls again; final by itself.
- Rate limits, waited out (`rate_limited`): -32 (4,000 requests a minute per app), and HTTP 429.
- Passing trouble, tried again: no answer, HTTP 5xx, an answer outside the envelope.
- Everything else is final, explained where the code says something a company can act on (the
  night-time ban of promotional messages, the daily quota, the 7-day interaction window, ...).

The error's code is `ZALO_<code>` (e.g. `ZALO_-216`) and its message the explanation with Zalo's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import orjson

from openmmp.kit.http import HttpResponse, HttpUnreachable
from openmmp.providers.base import ProviderContext, ProviderError
from openmmp.providers.upstream import bad_response, parse_retry_after, transport_error

MESSAGE_MAX = 300
RATE_LIMIT_WAIT_S = 60.0
"""How long to wait out Zalo's per-minute rate limit when it gives no Retry-After."""
TOKEN_HEADER = "access_token"  # noqa: S105 - a header's name, not a secret

STALE_TOKEN_CODES = frozenset({-216, -220, -124})
RATE_LIMITED = -32
NO_INTERACTION = -230

_EXPLAINED: Mapping[int, str] = {
    -216: "the access token is invalid (credentials.accessToken)",
    -220: "the access token has expired (credentials.accessToken)",
    -124: "the access token is invalid or expired (credentials.accessToken)",
    -32: "Zalo's rate limit for the app was exceeded",
    -234: "promotional messages go only between 07:00 and 22:00 Vietnam time",
    -133: "promotional messages go only between 07:00 and 22:00 Vietnam time",
    -144: "the Official Account's daily quota of these messages is used up",
    -230: (
        "the end user has not interacted with the Official Account in the last 7 days, so Zalo takes no "
        "consultation message to them until they do"
    ),
    -108: "the phone number is invalid",
    -114: "the end user cannot receive this message (inactive, blocked the OA, or not on Zalo)",
    -119: "the end user cannot receive this message (inactive, blocked the OA, or not on Zalo)",
    -115: "the Official Account's balance is not enough to pay for this message",
    -137: "the Official Account's balance is not enough to pay for this message",
    -131: "the template is not approved",
    -146: "the template was disabled for its low quality",
    -1121: "a template parameter is too long",
    -1122: "a template parameter is missing",
}


def zalo_error(code: int, message: str) -> ProviderError:
    """The `ProviderError` for Zalo's `error` `code` with Zalo's own `message`."""
    said = message.strip()
    explained = _EXPLAINED.get(code)
    if explained is None:
        text = said or f"Zalo error {code}"
    else:
        text = f"{explained} ({said})" if said else explained
    text = text[:MESSAGE_MAX]
    if code in STALE_TOKEN_CODES:
        return ProviderError(f"ZALO_{code}", text, retryable=False, stale_credentials=True)
    if code == RATE_LIMITED:
        return ProviderError(
            f"ZALO_{code}", text, retryable=True, rate_limited=True, retry_after=RATE_LIMIT_WAIT_S
        )
    return ProviderError(f"ZALO_{code}", text, retryable=False)


def envelope_data(status: int, content: bytes, retry_after: str | None = None) -> Mapping[str, Any]:
    """The `data` of an answer with `error: 0` ({} when it has none); raises the `ProviderError` of any
    other answer (an HTTP `status` with `content` and a `Retry-After` header value)."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if status == 429:
        raise ProviderError(
            "ZALO_HTTP_429",
            "Zalo asks to slow down",
            retryable=True,
            rate_limited=True,
            retry_after=parse_retry_after(retry_after) or RATE_LIMIT_WAIT_S,
        )
    if status >= 500:
        raise ProviderError(f"ZALO_HTTP_{status}", f"Zalo answered HTTP {status}", retryable=True)
    if not isinstance(body, dict) or "error" not in body:
        if 200 <= status < 300:
            raise bad_response("Zalo answered with something that is not its envelope")
        raise ProviderError(f"ZALO_HTTP_{status}", f"Zalo answered HTTP {status}", retryable=False)
    code = body.get("error")
    if isinstance(code, str):
        code = int(code) if code.lstrip("-").isdigit() else None
    if isinstance(code, bool) or not isinstance(code, int):
        raise bad_response("Zalo answered with an envelope whose error is not a number")
    if code != 0:
        said = body.get("message")
        raise zalo_error(code, said if isinstance(said, str) else "")
    data = body.get("data")
    return data if isinstance(data, dict) else {}


async def call_zalo(
    ctx: ProviderContext,
    method: str,
    url: str,
    *,
    access_token: str,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Mapping[str, Any]:
    """One call to Zalo's API as the OA (header `access_token`, not Bearer): `json` or `form` as the body,
    `params` in the query. Returns the answer's `data` ({} when absent); raises `ProviderError`."""
    response = await zalo_request(
        ctx, method, url, access_token=access_token, json=json, params=params, form=form, headers=headers
    )
    return envelope_data(response.status_code, response.content, response.headers.get("retry-after"))


async def zalo_request(
    ctx: ProviderContext,
    method: str,
    url: str,
    *,
    access_token: str,
    json: Any = None,
    params: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """The HTTP exchange of a call to Zalo as the OA, its answer unread; raises `ProviderError` (retryable)
    only when Zalo could not be reached."""
    sent_headers = {TOKEN_HEADER: access_token, **(headers or {})}
    content: bytes | None = None
    if form is not None:
        content = urlencode(form).encode("ascii")
        sent_headers["content-type"] = "application/x-www-form-urlencoded"
    elif json is not None:
        content = orjson.dumps(json)
        sent_headers["content-type"] = "application/json"
    target = f"{url}?{urlencode(params)}" if params else url
    unreachable: ProviderError | None = None
    try:
        return await ctx.http.request(method, target, content=content, headers=sent_headers)
    except HttpUnreachable as exc:
        # Raised outside this block so that the transport's exception does not ride along as context.
        unreachable = transport_error(exc)
    raise unreachable
