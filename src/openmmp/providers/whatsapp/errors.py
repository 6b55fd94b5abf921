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
  type), 132000 and 132001 (the template's parameters, or no such template: not approved yet counts as
  none), 133010 (the number is not registered), 368 (blocked for policy), ...

A few subcodes name a failure of their own and become the error's code: 2388024 (of 100), a template
submitted under a name the WhatsApp Business account already has in that language. Meta's words for
template submissions are mostly in `error_user_msg`, which the message carries too.
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
DUPLICATE_TEMPLATE = 2388024
"""The subcode (of 100) for a template whose name and language the WhatsApp Business account has."""
OWN_SUBCODES = frozenset({DUPLICATE_TEMPLATE})
"""Subcodes that name a failure of their own: the error's code is `WHATSAPP_<subcode>`."""
MESSAGE_MAX = 300

_EXPLAINED: Mapping[int, str] = {
    OUTSIDE_WINDOW: (
        "outside the 24-hour customer-service window: the end user has not written to this number in the "
        "last 24 hours, so only a template (fb_whatsapp_template) may reach them"
    ),
    TOKEN_INVALID: "the channel's accessToken is invalid or expired (credentials.accessToken)",
    DUPLICATE_TEMPLATE: (
        "the WhatsApp Business account has a template of this name in this language already: submit "
        "this one under another name"
    ),
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
    """Meta's words for an error object: its message (or title), then the details and the words meant for
    people (`error_user_msg`) when they add anything."""
    message = error.get("message") or error.get("title") or ""
    data = error.get("error_data")
    text = str(message)
    for more in (data.get("details") if isinstance(data, Mapping) else None, error.get("error_user_msg")):
        if isinstance(more, str) and more and more not in text:
            text = f"{text}: {more}" if text else more
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
    override, a template submitted), or raise its error, classified as a send's would be."""
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
        subcode = error.get("error_subcode")
        if subcode in OWN_SUBCODES:
            code = subcode
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
