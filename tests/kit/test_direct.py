"""kit/direct.py: direct routes skip the middleware stack and the router, and answer as the stack would."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from openmmp.kit.direct import DirectApp, DirectRoute


class Teapot(Exception):
    pass


def _counting(name: str, seen: list[str]) -> Callable[[ASGIApp], ASGIApp]:
    def wrap(app: ASGIApp) -> ASGIApp:
        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                seen.append(name)
            await app(scope, receive, send)

        return counted

    return wrap


def _app(seen: list[str]) -> DirectApp:
    direct = APIRouter(prefix="/direct", route_class=DirectRoute)

    @direct.post("/{name}")
    async def echo(name: str, request: Request) -> Response:
        body = await request.body()
        if body == b"teapot":
            raise Teapot
        if body == b"boom":
            raise RuntimeError("no handler for this one")
        return Response(f"{name}:{body.decode()}:{request.app.title}")

    plain = APIRouter()

    @plain.get("/plain")
    async def plain_endpoint() -> dict[str, str]:
        return {"plain": "yes"}

    app = DirectApp(title="direct-test")
    app.include_router(direct)
    app.include_router(direct, prefix="/prefixed")  # under a prefix: left to the router
    app.include_router(plain)

    @app.exception_handler(Teapot)
    async def teapot(_: Request, __: Exception) -> Response:
        return JSONResponse({"error": "teapot"}, status_code=418)

    stack_middleware = _counting("stack", seen)

    class StackMiddleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = stack_middleware(app)

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    app.add_middleware(StackMiddleware)
    app.serve_direct(_counting("direct", seen))
    return app


def _client(app: DirectApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_direct_route_is_served_inside_the_given_middleware_only() -> None:
    seen: list[str] = []
    async with _client(_app(seen)) as client:
        answer = await client.post("/direct/abc", content=b"hello")
    assert (answer.status_code, answer.text) == (200, "abc:hello:direct-test")
    assert seen == ["direct"]


async def test_other_requests_take_the_stack() -> None:
    seen: list[str] = []
    async with _client(_app(seen)) as client:
        plain = await client.get("/plain")
        wrong_method = await client.get("/direct/abc")
        prefixed = await client.post("/prefixed/direct/abc", content=b"hi")
    assert (plain.status_code, plain.json()) == (200, {"plain": "yes"})
    assert wrong_method.status_code == 405
    assert (prefixed.status_code, prefixed.text) == (200, "abc:hi:direct-test")
    assert seen == ["stack", "stack", "stack"]


async def test_errors_are_answered_by_the_apps_exception_handlers() -> None:
    seen: list[str] = []
    async with _client(_app(seen)) as client:
        answer = await client.post("/direct/abc", content=b"teapot")
        with pytest.raises(RuntimeError, match="no handler"):
            await client.post("/direct/abc", content=b"boom")
    assert (answer.status_code, answer.json()) == (418, {"error": "teapot"})
    assert seen == ["direct", "direct"]
