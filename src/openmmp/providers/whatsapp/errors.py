"""Cloud API answers mapped to `SendOk` or a `ProviderError` (retryable or final).

Meta answers as the Graph API does (`meta.graph`, providers.md §3). The error's code is `WHATSAPP_<code>`
and its message Meta's words with the details.

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

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import SendOk
from openmmp.providers.meta.graph import GraphErrors
from openmmp.providers.upstream import bad_response

RATE_LIMITS: Mapping[int, float] = {130429: 1.0, 131056: 6.0, 4: 60.0, 613: 60.0, 80007: 60.0}
"""Rate-limit codes and how long to wait when Meta gives no Retry-After (seconds)."""
RETRYABLE = frozenset({1, 2, 131000, 131016, 131057})
OUTSIDE_WINDOW = 131047
TOKEN_INVALID = 190
DUPLICATE_TEMPLATE = 2388024
"""The subcode (of 100) for a template whose name and language the WhatsApp Business account has."""

GRAPH = GraphErrors(
    prefix="WHATSAPP",
    rate_limits=RATE_LIMITS,
    retryable=RETRYABLE,
    own_subcodes=frozenset({DUPLICATE_TEMPLATE}),
    explained={
        OUTSIDE_WINDOW: (
            "outside the 24-hour customer-service window: the end user has not written to this number in "
            "the last 24 hours, so only a template (fb_whatsapp_template) may reach them"
        ),
        TOKEN_INVALID: "the channel's accessToken is invalid or expired (credentials.accessToken)",
        DUPLICATE_TEMPLATE: (
            "the WhatsApp Business account has a template of this name in this language already: submit "
            "this one under another name"
        ),
    },
)
"""The Cloud API's codes; `GRAPH.answer` answers the Graph API calls other than a send (onboarding's steps,
the webhook override, templates), their errors classified as a send's would be."""


def send_outcome(response: HttpResponse) -> SendOk:
    """The answer to `POST /{phone-number-id}/messages`: `SendOk` with the wamid, or raise the error."""
    if not response.ok:
        raise GRAPH.failure(response)
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
