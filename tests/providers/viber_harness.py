"""Real-HTTP test bed for the provider simulators: uvicorn servers on 127.0.0.1 and a callback receiver.

`serve(app)` runs any ASGI app under a real uvicorn server on a free loopback port inside the test's event
loop. `CallbackReceiver` is a Starlette app that records every POST it gets, one `Inbox` per test (its own
path), and can be told to fail the first N requests of an inbox.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from openmmp.kit.http import HttpClient, HttpResponse


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` on a free 127.0.0.1 port until the block ends; yields the base URL."""
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and without it every
    # response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Inbox:
    """The callbacks sent to one test's URL."""

    url: str
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    always_fail: bool = False
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, item: Received) -> int:
        async with self._changed:
            self.received.append(item)
            self._changed.notify_all()
        if self.always_fail:
            return 500
        if self.fail_first > 0:
            self.fail_first -= 1
            return 500
        return 200

    def events(self, event: str | None = None) -> list[Received]:
        """Received requests, optionally only those whose JSON `event` is `event`."""
        return [item for item in self.received if event is None or item.json().get("event") == event]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], *, timeout: float = 5.0
    ) -> list[Received]:
        """Wait (bounded) until `predicate(received)` holds; returns what was received."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.received))
        return list(self.received)

    async def wait_events(self, event: str, count: int, *, timeout: float = 5.0) -> list[Received]:
        """Wait until at least `count` requests with JSON `event` == `event` arrived."""
        await self.wait_for(lambda items: len(self.events(event)) >= count, timeout=timeout)
        return self.events(event)


class CallbackReceiver:
    """A callback endpoint recording everything; one `Inbox` per test under `/inbox/<id>`."""

    def __init__(self) -> None:
        self.base_url = ""
        self._inboxes: dict[str, Inbox] = {}
        self.app = Starlette(routes=[Route("/inbox/{inbox}", self._receive, methods=["POST"])])

    def inbox(self) -> Inbox:
        name = uuid.uuid4().hex
        inbox = Inbox(url=f"{self.base_url}/inbox/{name}")
        self._inboxes[name] = inbox
        return inbox

    async def _receive(self, request: Request) -> Response:
        inbox = self._inboxes.get(request.path_params["inbox"])
        if inbox is None:
            return Response(status_code=404)
        item = Received(path=request.url.path, headers=dict(request.headers), body=await request.body())
        return Response("ok" if (status := await inbox.add(item)) == 200 else "nope", status_code=status)


class AppHost:
    """One uvicorn server for many short-lived apps, each mounted under its own prefix.

    Starting a uvicorn server per test costs ~0.2 s on shutdown; mounting per test costs nothing, and it
    serves the apps under a prefix the way the core mounts the simulators at `/sim`.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.app = Starlette()

    @asynccontextmanager
    async def mounted(self, app: Starlette) -> AsyncIterator[str]:
        """Mount `app` (running its lifespan, which Mount does not) and yield its base URL."""
        prefix = f"/app-{uuid.uuid4().hex}"
        async with app.router.lifespan_context(app):
            route = Mount(prefix, app=app)
            self.app.router.routes.append(route)
            try:
                yield f"{self.base_url}{prefix}"
            finally:
                self.app.router.routes.remove(route)


@dataclass
class Sim:
    """A running simulators app (both providers) plus the test's HTTP client and inbox."""

    base_url: str
    http: HttpClient
    inbox: Inbox

    @property
    def bot_url(self) -> str:
        return f"{self.base_url}/viber-bot"

    @property
    def bm_url(self) -> str:
        return f"{self.base_url}/viber"

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """A raw POST to `<base_url><path>` (for upstream protocol checks and sandbox control)."""
        return await self.http.post(f"{self.base_url}{path}", json=body, content=content, headers=headers)

    async def stats(self, provider: str, *, detail: bool = False) -> dict[str, Any]:
        suffix = "?detail=1" if detail else ""
        response = await self.http.get(f"{self.base_url}/{provider}/_sandbox/stats{suffix}")
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    async def settled(self, provider: str) -> dict[str, Any]:
        """`provider`'s stats once no callback is in flight (bounded wait): the deterministic way to assert
        that something did not come."""
        async with asyncio.timeout(5):
            while True:
                stats = await self.stats(provider)
                if stats["callbacksPending"] == 0:
                    return stats
                await asyncio.sleep(0.01)

    async def fault(self, provider: str, **body: Any) -> None:
        response = await self.post(f"/{provider}/_sandbox/faults", body)
        assert response.status_code == 200, response.content

    async def inbound(self, token: str, **body: Any) -> dict[str, Any]:
        """Make a Viber Bot end user write to the bot with `token`; returns the simulator's answer."""
        response = await self.post("/viber-bot/_sandbox/inbound", body, headers={"X-Viber-Auth-Token": token})
        assert response.status_code == 200, response.content
        data: dict[str, Any] = response.json()
        return data

    async def register_service(self, service_id: int, url: str | None = None) -> None:
        """Point a Viber BM service's callbacks at `url` (default: this test's inbox)."""
        response = await self.post(
            f"/viber/_sandbox/services/{service_id}", {"callbackUrl": self.inbox.url if url is None else url}
        )
        assert response.status_code == 200, response.content


StartSim = Callable[..., Awaitable[Sim]]
"""The `start_sim` fixture: start the simulators app with `SimulatorConfig` overrides."""
