"""Send API answers mapped to `SendOk` or a `ProviderError` (retryable or final).

Meta answers as the Graph API does (`meta.graph`, providers.md §7). The error's code is `MESSENGER_<code>`
and its message Meta's words.

- Rate limits, waited out and never a failure (`rate_limited`, with Meta's `Retry-After` or a minute): 4
  (the app's calls), 17 (the user's), 32 (the Page's), 613 (the Send API's own limit, e.g. audio and
  video beyond 10 a second) and 80006 (Messenger's business-use-case limit).
- Passing trouble, tried again: 1 and 2 (unknown or temporary errors), 1200 ("Temporary send message
  failure"), any other code answered with HTTP 5xx, and no answer at all.
- Everything else is final: 10 with subcode 2018278 (outside the 24-hour window, which the core's
  accept-time check keeps from happening unless the end user's window closed while the message waited),
  551 (the end user is not available: they blocked the Page or left), 100 with subcode 2018001 (no user
  with this PSID on this Page), 190 (the Page token is invalid or expired), 10 and 200 (permissions), 100
  (the request), ...

The subcodes that name a failure of their own become the error's code (`MESSENGER_2018278`,
`MESSENGER_2018001`): their codes alone (10, 100) say little.
"""

from __future__ import annotations

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import SendOk
from openmmp.providers.meta.graph import GraphErrors
from openmmp.providers.upstream import bad_response

RATE_LIMIT_WAIT_S = 60.0
"""How long to wait out a rate limit when Meta gives no Retry-After."""
OUTSIDE_WINDOW = 2018278
"""The subcode (of 10) for a message outside the 24-hour window."""
NO_MATCHING_USER = 2018001
"""The subcode (of 100) for a PSID that is no user of the Page."""
USER_UNAVAILABLE = 551
TOKEN_INVALID = 190

GRAPH = GraphErrors(
    prefix="MESSENGER",
    rate_limits=dict.fromkeys((4, 17, 32, 613, 80006), RATE_LIMIT_WAIT_S),
    retryable=frozenset({1, 2, 1200}),
    own_subcodes=frozenset({OUTSIDE_WINDOW, NO_MATCHING_USER}),
    explained={
        OUTSIDE_WINDOW: (
            "outside the 24-hour window: the end user has not written to this Page in the last 24 hours, "
            "so Messenger takes no message to them until they write again"
        ),
        NO_MATCHING_USER: "no end user with this PSID on this Page",
        USER_UNAVAILABLE: "the end user is not available (they blocked the Page, or their account is gone)",
        TOKEN_INVALID: "the channel's pageAccessToken is invalid or expired (credentials.pageAccessToken)",
    },
)


def send_outcome(response: HttpResponse) -> SendOk:
    """The answer to `POST /{page-id}/messages`: `SendOk` with the message's mid, or raise the error."""
    body = GRAPH.answer(response)
    mid = body.get("message_id")
    if not isinstance(mid, str) or not mid:
        raise bad_response("the Send API accepted the message but named no message_id")
    return SendOk(provider_message_id=mid)
