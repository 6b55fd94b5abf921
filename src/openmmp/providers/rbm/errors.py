"""RBM's answers to `agentMessages.create` mapped to `ProviderError` (retryable or final).

Google answers with real HTTP statuses and a JSON error `{"error": {"code", "message", "status"}}`
(providers.md §4):

- 404 NOT_FOUND: the phone cannot be reached over RCS (no RCS, RCS turned off, or the agent is not
  launched on the user's carrier). Final: the core's fallback, when the send named one, takes over.
- 400 INVALID_ARGUMENT (a message the device or RBM does not take), 403 PERMISSION_DENIED (the agent is
  not launched there, or the user is not one of an unlaunched agent's testers): final.
- 401 UNAUTHENTICATED: the access token was refused. The client asks for a fresh one and tries once more
  inside the same attempt; a second 401 is final (the service account cannot act for the agent).
- 409 ALREADY_EXISTS: the messageId was taken, which only our own earlier attempt of the same message
  can have done (message ids are derived from the channel and the message): the message went.
- 429 RESOURCE_EXHAUSTED: rate limited (with `Retry-After` when given). 5xx, 408 and no answer:
  retryable.

Codes are `RBM_<HTTP status>`; messages are Google's status word and a cause, never a token.

The management calls (Business Communications, and the RBM API's testers, capabilities and
users:batchGet) fail the same way and are mapped by `management_error`: 429 is `RATE_LIMITED` (the code
the contract's callers look for, e.g. the reachability task keeping to users:batchGet's 600 a minute),
5xx, 408 and no answer are retryable, any other refusal is final with Google's own message, which says
what was wrong with the request (a region that cannot change, an agent Google does not know).
"""

from __future__ import annotations

from typing import Any

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import ProviderError
from openmmp.providers.upstream import parse_retry_after

MESSAGE_MAX = 300
NOT_RCS_CAPABLE = (
    "the phone number is not reachable over RCS (no RCS, RCS turned off, or the agent is not launched "
    "on its carrier)"
)
_CAUSES = {
    400: "RBM refused the message as built",
    401: "the service account's access token was refused",
    403: "the agent may not message this user (not launched on the carrier, or not a tester)",
    404: NOT_RCS_CAPABLE,
}
_STATUS_WORDS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
}


def google_error(response: HttpResponse) -> tuple[str, str]:
    """(status word, Google's message) of an error answer; defaults when the body is not Google's JSON."""
    status, message = _STATUS_WORDS.get(response.status_code, f"HTTP {response.status_code}"), ""
    try:
        body: Any = response.json()
    except ValueError:
        return status, message
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        if isinstance(error.get("status"), str) and error["status"]:
            status = error["status"]
        if isinstance(error.get("message"), str):
            message = error["message"]
    return status, message


def send_error(response: HttpResponse) -> ProviderError:
    """The `ProviderError` for a send answered with an error status (not 409, which means sent)."""
    code = response.status_code
    status, said = google_error(response)
    if code == 429:
        return ProviderError(
            "RBM_429",
            f"{status}: RBM asks the agent to slow down",
            retryable=True,
            rate_limited=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if code >= 500 or code == 408:
        text = f"{status}: {said or 'RBM did not take the message now'}"
        return ProviderError(f"RBM_{code}", text[:MESSAGE_MAX], retryable=True)
    cause = _CAUSES.get(code)
    text = f"{status}: {cause}" if cause else status
    if said and code != 404:
        text = f"{text} ({said})"
    return ProviderError(f"RBM_{code}", text[:MESSAGE_MAX], retryable=False)


def management_error(response: HttpResponse, doing: str) -> ProviderError:
    """The `ProviderError` for a management call answered with an error status; `doing` names the call
    in a few words ("creating the agent"), since one operation makes several."""
    code = response.status_code
    status, said = google_error(response)
    if code == 429:
        return ProviderError(
            "RATE_LIMITED",
            f"{status}: Google asks to slow down ({doing})"[:MESSAGE_MAX],
            retryable=True,
            rate_limited=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    text = f"{status}: {said or 'no reason given'} ({doing})"[:MESSAGE_MAX]
    return ProviderError(f"RBM_{code}", text, retryable=code >= 500 or code == 408)
