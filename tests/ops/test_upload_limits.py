"""Routes that take files (a campaign's contacts) have a body limit of their own; every other route keeps
the API's."""

from __future__ import annotations

import re

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from openmmp.errors import install_error_handlers
from openmmp.ops.middleware import RequestMiddleware, Uploads


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


def client() -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/files/{id}/contacts", echo, methods=["POST"]), Route("/api", echo, methods=["POST"])]
    )
    install_error_handlers(app)  # type: ignore[arg-type]
    uploads = [Uploads(re.compile(r"/files/[^/]+/contacts"), max_bytes=100, timeout_seconds=5.0)]
    wrapped = RequestMiddleware(app, max_body_bytes=10, body_timeout_seconds=5.0, uploads=uploads)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://test")


async def test_an_upload_route_takes_more_than_an_api_body_and_no_more_than_its_own_limit() -> None:
    async with client() as http:
        upload = await http.post("/files/1/contacts", content=b"x" * 50)
        api = await http.post("/api", content=b"x" * 50)
        too_big = await http.post("/files/1/contacts", content=b"x" * 150)
        elsewhere = await http.post("/files/1/contacts/more", content=b"x" * 50)
    assert (upload.status_code, upload.text) == (200, "50")
    assert api.status_code == 413
    assert too_big.status_code == 413
    assert elsewhere.status_code == 413  # not the upload route: the API's limit
