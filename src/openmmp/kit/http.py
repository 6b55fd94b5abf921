"""The one place that speaks HTTP to the outside world (upstreams, simulators' callbacks, webhooks).

Everything else talks through `HttpClient`, so timeouts, connection reuse and error classification are
decided once. Errors are reduced to two kinds a caller can act on: the peer could not be reached in time
(`HttpUnreachable`, always worth retrying) or it answered (`HttpResponse`, whatever its status).

Built on aiohttp. httpx was the first choice; measured on this project's 2-core machine, one POST of a
webhook to a local receiver cost ~3.3 ms of client CPU through httpx and ~0.16 ms through aiohttp, and
every message costs several such requests (send, callbacks, webhooks), so the client was the largest
cost of a message end to end (profiles in the README's Performance section).

A client made with an `address_check` (webhooks, whose targets tenants choose) refuses, at connection
time, every address the check objects to: the name is resolved once for the connection and refused if
any of its addresses is, and the address each socket is about to connect to is checked again, so what
was checked is what is connected to (a literal IP, a cached answer, a resolver that changes its mind).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AddressCheck = Callable[[IpAddress], str | None]
"""Why no connection may be made to an address (a phrase following "<address> is"), or None when it may."""

ADDRESS_REFUSED = "AddressRefused"
"""The `HttpUnreachable.kind` of a connection refused by the client's `address_check`."""


class HttpUnreachable(Exception):
    """The request did not get an answer: timeout, refused connection, DNS failure, broken stream.

    `detail` says more when the client knows more than the kind: for ADDRESS_REFUSED, which address was
    refused and why ("rebind.example resolves to 127.0.0.1, which is a loopback address").
    """

    def __init__(self, message: str, *, timed_out: bool, kind: str = "Timeout", detail: str = "") -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.kind = kind
        self.detail = detail


class _AddressRefused(OSError):
    """Raised inside the connector (which passes OSErrors on as connection errors) to refuse an address."""


def _refusal(check: AddressCheck, host: str) -> str | None:
    """Why `check` refuses the address `host` (an IP address as text), or None when it accepts it."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host} is not an IP address"
    problem = check(address)
    return None if problem is None else f"{address}, which is {problem}"


class _CheckedResolver(AbstractResolver):
    """The system resolver (as `loop.getaddrinfo`), refusing a name when any of its addresses is refused.

    The connector resolves once per connection (or reuses an answer it cached, which was checked), and
    connects only to the addresses returned here.
    """

    def __init__(self, check: AddressCheck) -> None:
        self._check = check
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            refusal = _refusal(self._check, result["host"])
            if refusal is not None:
                raise _AddressRefused(f"{host} resolves to {refusal}")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def _checked_socket(check: AddressCheck, addr_info: aiohttp.AddrInfoType) -> socket.socket:
    """The socket for one connection attempt, made only when `check` accepts the address it will use.

    The last word: literal IP hosts never reach the resolver, and this sees every address tried.
    """
    family, type_, proto, _canonical, sockaddr = addr_info
    refusal = _refusal(check, str(sockaddr[0]))
    if refusal is not None:
        raise _AddressRefused(f"the connection would go to {refusal}")
    return socket.socket(family=family, type=type_, proto=proto)


def _address_refused(exc: BaseException) -> _AddressRefused | None:
    """The address refusal behind `exc` (aiohttp wraps it as the cause of a connector error), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _AddressRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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

    With `address_check`, no connection is made to an address it objects to, whatever the URL's host is
    or resolved to before: the request fails with HttpUnreachable of kind ADDRESS_REFUSED.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_connections: int = 64,
        address_check: AddressCheck | None = None,
    ) -> None:
        self._timeout = timeout
        self._max_connections = max_connections
        self._address_check = address_check
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checked: list[HttpClient] = []

    @property
    def timeout(self) -> float:
        """How long a request may take to be answered, in seconds."""
        return self._timeout

    def checked(self, address_check: AddressCheck) -> HttpClient:
        """A client like this one whose connections refuse every address `address_check` objects to.

        It has its own connections (a pooled connection is never shared with an unchecked client), shares
        this client's `max_connections` request slots, and is closed by this client's `aclose()`.
        """
        client = HttpClient(
            timeout=self._timeout, max_connections=self._max_connections, address_check=address_check
        )
        client._slots = self._slots
        self._checked.append(client)
        return client

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the event loop it was made in.
        session = self._session
        loop = asyncio.get_running_loop()
        if session is None or session.closed or self._loop is not loop:
            self._loop = loop
            check = self._address_check
            if check is None:
                connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            else:
                connector = aiohttp.TCPConnector(
                    limit=self._max_connections,
                    limit_per_host=0,
                    resolver=_CheckedResolver(check),
                    socket_factory=functools.partial(_checked_socket, check),
                )
            self._session = session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
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
                refused = _address_refused(exc)
                if refused is not None:
                    raise HttpUnreachable(
                        f"{method} {url} refused: {refused}",
                        timed_out=False,
                        kind=ADDRESS_REFUSED,
                        detail=str(refused),
                    ) from exc
                kind = _kind(exc)
                raise HttpUnreachable(f"{method} {url} failed: {kind}", timed_out=False, kind=kind) from exc
        return HttpResponse(
            status_code=response.status,
            headers={name.lower(): value for name, value in response.headers.items()},
            content=body,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
        )

    async def aclose(self) -> None:
        for client in self._checked:
            await client.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
