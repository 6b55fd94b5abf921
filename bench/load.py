"""Load generator: N concurrent clients POSTing one body for D seconds. Runs as its own process.

Prints one JSON line: {"requests", "errors", "seconds", "rps", "p50_ms", "p99_ms"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx

from common import percentile


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="JSON file")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--unique", default="", help="JSON field made unique per request (clientMessageId)")
    args = parser.parse_args()
    body = json.loads(open(args.body).read())  # noqa: ASYNC230, SIM115 - read once before the clock starts
    headers = dict(h.split(": ", 1) for h in args.header)
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + args.seconds
    counter = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, counter
        while time.monotonic() < deadline:
            counter += 1
            if args.unique:
                body[args.unique] = f"bench-{time.time_ns()}-{counter}"
            started = time.perf_counter()
            try:
                response = await http.post(args.url, json=body, headers=headers)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        started = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(args.clients)))
        elapsed = time.monotonic() - started
    milliseconds = [latency * 1000 for latency in latencies]

    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": errors,
                "seconds": round(elapsed, 2),
                "rps": round(len(latencies) / elapsed, 1),
                "p50_ms": percentile(milliseconds, 0.5),
                "p99_ms": percentile(milliseconds, 0.99),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
