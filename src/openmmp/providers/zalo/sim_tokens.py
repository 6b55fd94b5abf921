"""The Zalo simulators' OAuth v4 tokens: issuing, rotating, expiring and checking them.

Zalo's access tokens live `ttl_s` (25 hours by default) and its refresh tokens work once: a renewal
(`POST /v4/oa/access_token`, `grant_type=refresh_token`) answers a new pair, spends the refresh token and
retires the access token issued with it. A token the book never issued is taken as good: it was issued
by an earlier life of the simulator, since the sandbox keeps its channels across restarts. A retired or
expired access token is refused with -216; a spent refresh token gets OAuth's error answer.

Routes (`token_routes`): the OAuth endpoint, and the sandbox's own `POST /_sandbox/zalo/expire`
(`{"accessToken": ...}`: that token expires now) and `GET /_sandbox/zalo/tokens` (counts, for tests).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.providers.simulation import LruMap, json_response, read_json, sandbox_error

DEFAULT_TTL_S = 90_000.0
TOKEN_INVALID = -216
INVALID_REFRESH_TOKEN = -14014
INVALID_REQUEST = -14002
MAX_TRACKED = 100_000
RENEWAL_GRANT = "refresh_token"
"""The only `grant_type` the simulator serves (the authorization-code grant happens in Zalo's console)."""


@dataclass
class _Issued:
    """A refresh token the book issued: for which app, with which access token, and whether spent."""

    app_id: str
    access_token: str
    spent: bool = False


class TokenBook:
    """The simulator's token state (bounded: the oldest tokens are forgotten, and then taken as good)."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, capacity: int = MAX_TRACKED) -> None:
        self.ttl_s = ttl_s
        self.refreshes = 0
        self._expires: LruMap[str, float] = LruMap(capacity)
        """Access tokens by when they expire (`time.monotonic()`); retired ones at 0."""
        self._apps: LruMap[str, str] = LruMap(capacity)
        """The app of each access token issued."""
        self._refresh: LruMap[str, _Issued] = LruMap(capacity)
        self._spent_unknown: LruMap[tuple[str, str], bool] = LruMap(capacity)
        """Refresh tokens of an earlier life spent in this one, by app."""

    def check(self, access_token: str) -> int | None:
        """None when `access_token` is good now, else Zalo's error code for it."""
        if not access_token:
            return TOKEN_INVALID
        expires = self._expires.get(access_token)
        if expires is not None and time.monotonic() >= expires:
            return TOKEN_INVALID
        return None

    def app_of(self, access_token: str) -> str | None:
        """The app `access_token` was issued to, when the book issued it."""
        return self._apps.get(access_token)

    def expire(self, access_token: str) -> None:
        """Make `access_token` expired from now on (issued or not)."""
        self._expires.set(access_token, 0.0)

    def issue(self, app_id: str) -> dict[str, Any]:
        """A new token pair for `app_id`, as OAuth answers it."""
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        self._expires.set(access, time.monotonic() + self.ttl_s)
        self._apps.set(access, app_id)
        self._refresh.set(refresh, _Issued(app_id, access))
        return {"access_token": access, "refresh_token": refresh, "expires_in": str(int(self.ttl_s))}

    def refresh(self, app_id: str, refresh_token: str) -> dict[str, Any] | None:
        """The new pair for `refresh_token` (spending it and retiring its access token), or None when it
        is spent or belongs to another app."""
        issued = self._refresh.get(refresh_token)
        if issued is not None:
            if issued.spent or issued.app_id != app_id:
                return None
            issued.spent = True
            self.expire(issued.access_token)
        else:
            if self._spent_unknown.get((app_id, refresh_token)):
                return None
            self._spent_unknown.set((app_id, refresh_token), True)
        self.refreshes += 1
        return self.issue(app_id)


def _oauth_error(code: int, name: str, description: str) -> Response:
    # Zalo's OAuth server answers its refusals with HTTP 200, as the Open API does.
    return json_response({"error": code, "error_name": name, "error_description": description})


def _renewal(form: dict[str, str]) -> tuple[str, str] | None:
    """The app and the refresh token a renewal's form names; None for a form that is not one."""
    app_id, grant, given = form.get("app_id", ""), form.get("grant_type", ""), form.get("refresh_token", "")
    if not app_id or grant != RENEWAL_GRANT or not given:
        return None
    return app_id, given


def token_routes(book: TokenBook) -> list[Route]:
    """The OAuth v4 token endpoint and the sandbox's token controls, served from `book`."""

    async def renew(request: Request) -> Response:
        if not request.headers.get("secret_key"):
            return _oauth_error(INVALID_REQUEST, "Invalid parameter", "secret_key is missing")
        asked = _renewal(dict(parse_qsl((await request.body()).decode("utf-8", "replace"))))
        if asked is None:
            return _oauth_error(
                INVALID_REQUEST, "Invalid parameter", "app_id, grant_type=refresh_token and refresh_token"
            )
        pair = book.refresh(*asked)
        if pair is None:
            return _oauth_error(INVALID_REFRESH_TOKEN, "Invalid refresh token", "Refresh token is invalid")
        return json_response(pair)

    async def expire(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError as exc:
            return sandbox_error(str(exc))
        token = body.get("accessToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return sandbox_error("accessToken is required")
        book.expire(token)
        return json_response({"expired": True})

    async def tokens(_request: Request) -> Response:
        return json_response({"refreshes": book.refreshes})

    return [
        Route("/v4/oa/access_token", renew, methods=["POST"]),
        Route("/_sandbox/zalo/expire", expire, methods=["POST"]),
        Route("/_sandbox/zalo/tokens", tokens, methods=["GET"]),
    ]
