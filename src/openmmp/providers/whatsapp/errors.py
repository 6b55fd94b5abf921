"""Cloud API answers mapped to `SendOk` or a `ProviderError` (retryable or final).

Meta answers with real HTTP status codes and, on failure, its Graph API envelope
`{"error": {"message", "type", "code", "error_subcode"?, "error_data": {"details"}?, "fbtrace_id"}}`
(providers.md §3). The envelope's `code` decides, as Meta recommends; the HTTP status only where there is
no envelope (an edge proxy's 502, a 429 without a body). The error's code is `WHATSAPP_<code>` and its
message Meta's words with the details.

- Rate limits, waited out and never a failure (`rate_limited`, with `retry_after`): 130429 (the phone
  number's throughput: a second), 131056 (the pair rate, one user getting more than about one message
  every 6 s: 6 s), 4, 613 and 80007 (the app's or the WhatsApp Business account's call limits: a minute).
- Passing trouble, tried again: 1 and 2 (the Graph API's unknown or temporary errors), 131000 (something
  went wrong), 131016 (service unavailable), 131057 (account in maintenance), any other code answered
  with HTTP 5xx, and no answer at all.
- Everything else is the message's or the channel's and final: 131047 (the end user has not written in
  24 hours: only a template may reach them), 190 (the channel's access token is invalid or expired), 10 and
  200 (permissions), 100, 131008, 131009 (the request), 131026 (undeliverable), 131051 (unsupported
  type), 132000 and 132001 (the template's parameters, or no such template), 133010 (the number is not
  registered), 368 (blocked for policy), ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.viber_bot.errors import bad_response, parse_retry_after

RATE_LIMITS: Mapping[int, float] = {130429: 1.0, 131056: 6.0, 4: 60.0, 613: 60.0, 80007: 60.0}
"""Rate-limit codes and how long to wait when Meta gives no Retry-After (seconds)."""
RETRYABLE = frozenset({1, 2, 131000, 131016, 131057})
OUTSIDE_WINDOW = 131047
TOKEN_INVALID = 190
MESSAGE_MAX = 300

_EXPLAINED: Mapping[int, str] = {
    OUTSIDE_WINDOW: (
        "outside the 24-hour customer-service window: the end user has not written to this number in the "
        "last 24 hours, so only a template (fb_whatsapp_template) may reach them"
    ),
    TOKEN_INVALID: "the channel's accessToken is invalid or expired (credentials.accessToken)",
}


def code_error(
    code: int, message: str, *, http_status: int | None = None, retry_after: float | None = None
) -> ProviderError:
    """The `ProviderError` for a Meta error `code` with Meta's `message` (answer or webhook alike)."""
    text = message.strip() or f"error {code}"
    if code in _EXPLAINED:
        text = f"{_EXPLAINED[code]} ({text})"
    text = text[:MESSAGE_MAX]
    if code in RATE_LIMITS:
        wait = retry_after if retry_after is not None else RATE_LIMITS[code]
        return ProviderError(f"WHATSAPP_{code}", text, retryable=True, rate_limited=True, retry_after=wait)
    server_side = http_status is not None and http_status >= 500
    return ProviderError(f"WHATSAPP_{code}", text, retryable=code in RETRYABLE or server_side)


def describe(error: Mapping[str, Any]) -> str:
    """Meta's words for an error object: its message (or title) and the details when they add anything."""
    message = error.get("message") or error.get("title") or ""
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    text = str(message)
    if isinstance(details, str) and details and details not in text:
        text = f"{text}: {details}" if text else details
    return text


def send_outcome(response: HttpResponse) -> SendOk:
    """The answer to `POST /{phone-number-id}/messages`: `SendOk` with the wamid, or raise the error."""
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if not response.ok:
        raise _failure(response, retry_after)
    try:
        body = response.json()
    except ValueError as exc:
        raise bad_response("the Cloud API answered with something that is not JSON") from exc
    messages = body.get("messages") if isinstance(body, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else None
    wamid = first.get("id") if isinstance(first, dict) else None
    if not isinstance(wamid, str) or not wamid:
        raise bad_response("the Cloud API accepted the message but named no message id")
    return SendOk(provider_message_id=wamid)


def graph_answer(response: HttpResponse) -> dict[str, Any]:
    """The JSON object answering a Graph API call other than a send (onboarding's steps, the webhook
    override), or raise its error, classified as a send's would be."""
    if not response.ok:
        raise _failure(response, parse_retry_after(response.headers.get("retry-after")))
    try:
        body = response.json()
    except ValueError as exc:
        raise bad_response("the Graph API answered with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise bad_response("the Graph API answered with something that is not a JSON object")
    return body


def _failure(response: HttpResponse, retry_after: float | None) -> ProviderError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(error, dict) and isinstance(code, int) and not isinstance(code, bool):
        return code_error(code, describe(error), http_status=status, retry_after=retry_after)
    if status == 429:
        return ProviderError(
            "WHATSAPP_HTTP_429",
            "HTTP 429 Too Many Requests",
            retryable=True,
            rate_limited=True,
            retry_after=retry_after,
        )
    return ProviderError(f"WHATSAPP_HTTP_{status}", f"HTTP {status}", retryable=status >= 500)
