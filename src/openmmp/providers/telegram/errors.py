"""Bot API answers mapped to a result or a `ProviderError` (retryable or final).

Every answer is the envelope `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description",
"parameters"?}`, with the HTTP status equal to `error_code`. What decides:

- Rate limits, waited out and never a failure (`rate_limited`): 429 `Too Many Requests: retry after N`,
  with `parameters.retry_after` in seconds (the bot's ~30 messages/s, a chat's ~1/s, a group's 20/min).
- Passing trouble, tried again: 5xx (Telegram's own or its edge's, JSON or not), answers outside the
  envelope, and no answer at all.
- Everything else is final, with Telegram's words as the cause: 400 (`Bad Request: chat not found`, a
  group upgraded to a supergroup, which names the new chat in `parameters.migrate_to_chat_id`, a media URL
  Telegram could not fetch), 403 (`Forbidden: bot was blocked by the user`, `user is deactivated`), 401
  and 404 (the bot's token is refused: the channel's credentials).

The bot's token is part of every request's URL, so no error here carries the URL or the transport's own
exception (see `TelegramClient._call`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import ProviderError
from openmmp.providers.upstream import bad_response, parse_retry_after
from openmmp.providers.viber_bot.errors import http_status_error

TOO_MANY_REQUESTS = 429
MESSAGE_MAX = 300

_EXPLAINED: Mapping[int, str] = {
    401: "the bot's token was refused (credentials.botToken)",
    404: "no bot has this token (credentials.botToken)",
}


def api_error(
    code: int, description: str, parameters: Mapping[str, Any], *, retry_after_header: str | None = None
) -> ProviderError:
    """The `ProviderError` for an `ok: false` answer: `TELEGRAM_<error_code>` with Telegram's words."""
    text = description.strip() or f"error {code}"
    if code in _EXPLAINED:
        text = f"{_EXPLAINED[code]} ({text})"
    migrated = parameters.get("migrate_to_chat_id")
    if isinstance(migrated, int) and not isinstance(migrated, bool):
        text = f"{text} (the group is now the supergroup {migrated})"
    text = text[:MESSAGE_MAX]
    retry_after = _seconds(parameters.get("retry_after"))
    if code == TOO_MANY_REQUESTS or retry_after is not None:
        wait = retry_after if retry_after is not None else parse_retry_after(retry_after_header)
        return ProviderError(f"TELEGRAM_{code}", text, retryable=True, rate_limited=True, retry_after=wait)
    return ProviderError(f"TELEGRAM_{code}", text, retryable=code >= 500)


def check_response(response: HttpResponse) -> Any:
    """The `result` of a successful answer; raises the matching `ProviderError` otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("ok") is True and response.ok:
        return body.get("result")
    if isinstance(body, dict) and body.get("ok") is False:
        code = body.get("error_code")
        if isinstance(code, bool) or not isinstance(code, int):
            code = response.status_code
        description = body.get("description")
        parameters = body.get("parameters")
        raise api_error(
            code,
            description if isinstance(description, str) else "",
            parameters if isinstance(parameters, Mapping) else {},
            retry_after_header=response.headers.get("retry-after"),
        )
    # Not the envelope: an edge proxy's page (502, 504) or something truncated on the way.
    error = http_status_error(response)
    if error is not None:
        raise error
    raise bad_response("the upstream answered with something that is not the Bot API's envelope")


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)
