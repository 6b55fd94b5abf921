"""The Graph API's answers mapped to JSON objects or a `ProviderError` (retryable or final).

Meta answers with real HTTP status codes and, on failure, its envelope `{"error": {"message", "type",
"code", "error_subcode"?, "error_data": {"details"}?, "error_user_msg"?, "fbtrace_id"}}`. The envelope's
`code` decides, as Meta recommends; the HTTP status only where there is no envelope (an edge proxy's 502,
a 429 without a body). Which codes are rate limits, passing trouble or failures of their own differs by
product: each names its own in a `GraphErrors`, whose errors' codes are `<prefix>_<code>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openmmp.kit.http import HttpClient, HttpResponse, HttpUnreachable
from openmmp.providers.base import ProviderError
from openmmp.providers.upstream import bad_response, parse_retry_after, transport_error

MESSAGE_MAX = 300


@dataclass(frozen=True)
class GraphErrors:
    """How one product classifies Meta's error codes, and its errors' code prefix."""

    prefix: str
    rate_limits: Mapping[int, float]
    """Rate-limit codes (waited out, never a failure) and how long to wait when Meta gives no
    Retry-After (seconds)."""
    retryable: frozenset[int]
    """Passing trouble: tried again (so is any other code answered with HTTP 5xx)."""
    own_subcodes: frozenset[int] = frozenset()
    """Subcodes that name a failure of their own: the error's code is `<prefix>_<subcode>`."""
    explained: Mapping[int, str] = field(default_factory=dict)
    """What a code (or own subcode) means for the channel, put before Meta's words."""

    def code_error(
        self, code: int, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> ProviderError:
        """The `ProviderError` for a Meta error `code` with Meta's `message` (answer or webhook alike)."""
        text = message.strip() or f"error {code}"
        if code in self.explained:
            text = f"{self.explained[code]} ({text})"
        text = text[:MESSAGE_MAX]
        name = f"{self.prefix}_{code}"
        if code in self.rate_limits:
            wait = retry_after if retry_after is not None else self.rate_limits[code]
            return ProviderError(name, text, retryable=True, rate_limited=True, retry_after=wait)
        server_side = http_status is not None and http_status >= 500
        return ProviderError(name, text, retryable=code in self.retryable or server_side)

    def answer(self, response: HttpResponse) -> dict[str, Any]:
        """The JSON object answering a Graph API call, or raise its error, classified."""
        if not response.ok:
            raise self.failure(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise bad_response("the Graph API answered with something that is not JSON") from exc
        if not isinstance(body, dict):
            raise bad_response("the Graph API answered with something that is not a JSON object")
        return body

    def failure(self, response: HttpResponse) -> ProviderError:
        """The error a failed answer (`response.ok` false) stands for: its envelope's, else its status's."""
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(error, dict) and isinstance(code, int) and not isinstance(code, bool):
            subcode = error.get("error_subcode")
            if subcode in self.own_subcodes:
                code = subcode
            return self.code_error(code, describe(error), http_status=status, retry_after=retry_after)
        if status == 429:
            return ProviderError(
                f"{self.prefix}_HTTP_429",
                "HTTP 429 Too Many Requests",
                retryable=True,
                rate_limited=True,
                retry_after=retry_after,
            )
        return ProviderError(f"{self.prefix}_HTTP_{status}", f"HTTP {status}", retryable=status >= 500)


async def post(http: HttpClient, url: str, body: dict[str, Any], *, token: str) -> HttpResponse:
    """POST the JSON `body` to the Graph API with `token` as Bearer, never in the URL's `access_token`
    (which Meta's samples use), so that no URL a log or an error names carries it. No answer at all is a
    retryable `ProviderError`; nothing here retries."""
    try:
        return await http.post(url, json=body, headers={"authorization": f"Bearer {token}"})
    except HttpUnreachable as exc:
        raise transport_error(exc) from exc


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
