"""Open-loop load of Get Message Status: R requests/s for D seconds over given message ids, own process.

Requests start on a fixed schedule whether or not earlier ones have answered (so a slow server shows
as latency, not as a lower rate). Prints one JSON line: requests, errors, achieved rps, p50/p99/max ms.

Usage: python bench/status_load.py --base URL --key KEY --ids FILE --rate 500 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from common import percentile


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ids", required=True, help="file with one message id per line")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with open(args.ids) as handle:  # noqa: ASYNC230 - read once before the clock starts
        ids = handle.read().split()
    latencies: list[float] = []
    errors = 0

    async def one(http: aiohttp.ClientSession, message_id: str) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            async with http.get(f"{args.base}/api/v1/message/{message_id}/status") as response:
                await response.read()
                ok = response.status == 200
        except aiohttp.ClientError:
            ok = False
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors += 1

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, headers={"apiKey": args.key}) as http:
        tasks = []
        start = time.perf_counter()
        total = int(args.rate * args.seconds)
        for n in range(total):
            delay = start + n / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, ids[n % len(ids)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    milliseconds = [latency * 1000 for latency in latencies]

    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": errors,
                "rps": round(len(latencies) / elapsed, 1),
                "p50_ms": percentile(milliseconds, 0.5),
                "p99_ms": percentile(milliseconds, 0.99),
                "max_ms": percentile(milliseconds, 1.0),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
