"""The one place that speaks HTTP to the outside world (upstreams, simulators' callbacks, webhooks).

Everything else talks through `HttpClient`, so timeouts, connection reuse and error classification are
decided once. Errors are reduced to two kinds a caller can act on: the peer could not be reached in time
(`HttpUnreachable`, always worth retrying) or it answered (`HttpResponse`, whatever its status).

Built on aiohttp. httpx was the first choice; measured on this project's 2-core machine, one POST of a
webhook to a local receiver cost ~3.3 ms of client CPU through httpx and ~0.16 ms through aiohttp, and
every message costs several such requests (send, callbacks, webhooks), so the client was the largest
cost of a message end to end (profiles in the README's Performance section).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


class HttpUnreachable(Exception):
    """The request did not get an answer: timeout, refused connection, DNS failure, broken stream."""

    def __init__(self, message: str, *, timed_out: bool, kind: str = "Timeout") -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.kind = kind


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status_code: int
    headers: Mapping[str, str]
    content: bytes
    elapsed_ms: float

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not JSON."""
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"response is not JSON: {exc}") from exc

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


def _kind(exc: Exception) -> str:
    """A failure's kind in words that do not depend on the HTTP library (kept in attempt logs)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "RemoteProtocolError"
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return "InvalidURL"
    return "NetworkError"


class HttpClient:
    """A pooled async HTTP client. Create one per process and close it on shutdown.

    Connections are kept alive and reused per host, at most `max_connections` in all; requests beyond
    that wait for a free connection before their timeout starts. Redirects are never followed (a webhook
    endpoint must not bounce a delivery elsewhere) and no cookies are kept between requests.
    """

    def __init__(self, *, timeout: float = 10.0, max_connections: int = 64) -> None:
        self._timeout = timeout
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the event loop it was made in.
        session = self._session
        loop = asyncio.get_running_loop()
        if session is None or session.closed or self._loop is not loop:
            self._loop = loop
            self._session = session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return session

    async def post(
        self,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        """POST `json` (serialised compactly) or raw `content`; returns whatever the peer answered."""
        body = content if content is not None else orjson.dumps(json)
        sent_headers = {"content-type": "application/json", **(headers or {})}
        return await self.request("POST", url, content=body, headers=sent_headers, timeout=timeout)

    async def get(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> HttpResponse:
        return await self.request("GET", url, headers=headers, timeout=timeout)

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        limit = aiohttp.ClientTimeout(total=self._timeout if timeout is None else timeout)
        async with self._slots:
            started = time.perf_counter()
            try:
                async with self._client().request(
                    method,
                    url,
                    data=content,
                    headers=dict(headers or {}),
                    timeout=limit,
                    allow_redirects=False,
                ) as response:
                    body = await response.read()
            except TimeoutError as exc:
                raise HttpUnreachable(f"{method} {url} timed out", timed_out=True) from exc
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                kind = _kind(exc)
                raise HttpUnreachable(f"{method} {url} failed: {kind}", timed_out=False, kind=kind) from exc
        return HttpResponse(
            status_code=response.status,
            headers={name.lower(): value for name, value in response.headers.items()},
            content=body,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
