"""A fast local webhook receiver for the benchmarks: a bare ASGI app under uvicorn, its own process.

POST /hook records (messageId, status, arrival time) of every status webhook (type 1) and answers 204;
signatures are not checked (the tests do that). GET /count gives how many events of each status
arrived; GET /dump gives every record as [messageId, status, epoch seconds].

Usage: python bench/receiver.py --port 9200
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import orjson
import uvicorn

records: list[tuple[str, int, float]] = []
counts: Counter[int] = Counter()
inbound = 0


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes = b"") -> None:
    headers = [(b"content-type", b"application/json")] if body else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global inbound
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        event = orjson.loads(await _body(receive))
        if event.get("type") == 1:
            records.append((event["messageId"], event["status"], time.time()))
            counts[event["status"]] += 1
        else:
            inbound += 1
        await _answer(send, 204)
    elif scope["path"] == "/count":
        await _answer(
            send, 200, orjson.dumps({"byStatus": {str(k): v for k, v in counts.items()}, "inbound": inbound})
        )
    else:
        await _answer(send, 200, orjson.dumps(records))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
