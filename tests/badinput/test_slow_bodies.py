"""A client that sends the headers and then trickles the body is cut off: 408, and the connection closed."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import running_app
from tests.providers.viber_harness import serve

from openmmp.settings import Settings


async def test_a_body_trickled_a_byte_at_a_time_is_refused_in_time_and_the_connection_closed(
    settings: Settings,
):
    quick = settings.model_copy(update={"body_timeout_seconds": 0.5})
    async with running_app(quick) as app, serve(app) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        writer.write(
            b"POST /api/v1/onboard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\napiKey: mmp_x\r\n\r\n{"
        )
        await writer.drain()

        async def trickle() -> None:
            for _ in range(30):
                await asyncio.sleep(0.1)
                writer.write(b" ")
                await writer.drain()

        trickling = asyncio.create_task(trickle())
        try:
            async with asyncio.timeout(5):
                answer = await reader.read()  # until the server closes the connection
        finally:
            trickling.cancel()
            writer.close()
        elapsed = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:300]
    assert b'"code":"BAD_REQUEST"' in answer and b'"name":"body"' in answer
    assert elapsed < 2.5  # cut off at the deadline, not when the client stopped on its own (3 s)


async def test_a_body_that_arrives_in_pieces_within_the_deadline_is_read_whole(settings: Settings):
    """The deadline is for the whole body, armed once: pieces arriving apart, in time, are all read (and
    answered as the body deserves, here 401 for the key, never 408)."""
    quick = settings.model_copy(update={"body_timeout_seconds": 1.5})
    body = b'{"name": "Pieces", "country": "KH"}'
    async with running_app(quick) as app, serve(app) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /api/v1/onboard HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\napiKey: mmp_x\r\n\r\n"
        )
        for start in range(0, len(body), 8):
            writer.write(body[start : start + 8])
            await writer.drain()
            await asyncio.sleep(0.1)
        try:
            async with asyncio.timeout(5):
                answer = await reader.read()
        finally:
            writer.close()
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 401 Unauthorized", answer[:300]
