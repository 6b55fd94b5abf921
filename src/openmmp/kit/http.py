"""The one place that speaks HTTP to the outside world (upstreams, simulators' callbacks, webhooks).

Everything else talks through `HttpClient`, so timeouts, connection reuse and error classification are
decided once. Errors are reduced to two kinds a caller can act on: the peer could not be reached in time
(`HttpUnreachable`, always worth retrying) or it answered (`HttpResponse`, whatever its status).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


class HttpUnreachable(Exception):
    """The request did not get an answer: timeout, refused connection, DNS failure, broken stream."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


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


class HttpClient:
    """A pooled async HTTP client. Create one per process and close it on shutdown."""

    def __init__(self, *, timeout: float = 10.0, max_connections: int = 64) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

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
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout)
        try:
            response = await self._client.request(method, url, content=content, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise HttpUnreachable(f"{method} {url} timed out", timed_out=True) from exc
        except httpx.HTTPError as exc:
            raise HttpUnreachable(f"{method} {url} failed: {type(exc).__name__}", timed_out=False) from exc
        return HttpResponse(
            status_code=response.status_code,
            headers=dict(response.headers),
            content=response.content,
            elapsed_ms=response.elapsed.total_seconds() * 1000.0,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
