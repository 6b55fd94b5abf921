"""Scenarios around the outboxes: webhook deliveries/s of one worker, and memory with a long queue.

- webhooks: N status webhooks are queued (in one transaction, as the pipeline queues them) for a channel
  whose endpoint is bench/receiver.py; one `openmmp worker` is started and delivers them. Figures:
  deliveries/s from the first to the last arrival, and the worker's CPU seconds.
- memory: 1,000,000 messages are accepted (batches of 1,000) for a channel limited to 50 sends/s, so
  they stay queued, while one `openmmp worker` runs. Figures: peak RSS of the API, and the worker's RSS
  at the start, with the whole backlog queued, and at its peak (flat means it does not grow with the
  queue).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from common import OPENMMP, cpu_seconds, record, rss_mib, wait_launched
from e2e import Platform, wait_for
from openmmp.kit.db import Database
from openmmp.models import Channel
from openmmp.webhooks.service import webhooks as webhook_service


async def _queue_webhooks(url: str, channel_public_id: str, count: int) -> None:
    db = Database(url)
    try:
        async with db.write_sessions() as session, session.begin():
            statement = select(Channel).where(Channel.public_id == channel_public_id)
            channel = (await session.execute(statement)).scalar_one()
            for n in range(count):
                body = {"type": 1, "messageId": f"bench-{n}", "status": 2, "cause": "SEND"}
                await webhook_service.enqueue(
                    session, channel=channel, event_type=1, body=body, ordering_key=f"bench-{n}"
                )
    finally:
        await db.dispose()


def _only_setup_worker(platform: Platform) -> None:
    """The worker that launched the channels is stopped: the scenario starts its own."""
    for name in [n for n in platform.processes if n.startswith("worker")]:
        process = platform.processes.pop(name)
        process.terminate()
        process.wait()


def webhooks(kind: str, work: Path, count: int) -> dict[str, Any]:
    platform = Platform(kind, work, 1, separate=True)
    try:
        _only_setup_worker(platform)
        asyncio.run(_queue_webhooks(platform.url, platform.viber, count))
        worker = subprocess.Popen([*OPENMMP, "worker"], env=platform.env)
        platform.processes["worker"] = worker

        def delivered() -> int:
            return sum(int(v) for v in platform.counts()["byStatus"].values())

        done = wait_for(lambda: delivered() >= count, 1800)
        cpu = cpu_seconds(worker.pid)
        arrivals = sorted(at for _, _, at in httpx.get(f"{platform.hook}/dump", timeout=120).json())
    finally:
        platform.close()
    seconds = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    figures = {
        "deliveries": len(arrivals),
        "complete": done,
        "deliveries_per_s": round(len(arrivals) / seconds, 0) if seconds else 0,
        "cpu_s_worker": cpu,
        "cpu_ms_per_delivery": round(cpu * 1000 / max(1, len(arrivals)), 2),
    }
    record("webhooks", kind, f"{count} queued status webhooks, 1 worker process, local receiver", figures)
    return figures


def memory(kind: str, work: Path, count: int) -> dict[str, Any]:
    platform = Platform(kind, work, 1, separate=True)
    try:
        created = httpx.post(
            f"{platform.base}/api/v1/channel",
            json={
                "name": "memory",
                "applicationId": 1,
                "credentials": {"serviceId": 4343},
                "settings": {"rateLimitPerSecond": 50},
            },
            headers=platform.headers,
        ).json()
        channel = created["publicId"]
        wait_launched(platform.base, channel, platform.headers)
        worker, api = platform.processes["worker1"], platform.processes["api"]
        time.sleep(5)
        worker_start = rss_mib(worker.pid)[0]
        worker_samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(2):
                worker_samples.append(rss_mib(worker.pid)[0])

        sampler = threading.Thread(target=sample)
        sampler.start()

        def batch(start: int) -> None:
            items = [
                {"phone": f"85512{(start + n) % 1_000_000:06d}0", "message": {"type": "text", "message": "m"}}
                for n in range(min(1000, count - start))
            ]
            response = httpx.post(
                f"{platform.base}/api/v1/channel/{channel}/broadcast/batch",
                json={"messages": items},
                headers=platform.headers,
                timeout=120,
            )
            response.raise_for_status()

        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(batch, range(0, count, 1000)))
        ingest_seconds = time.monotonic() - started
        worker_at_full = rss_mib(worker.pid)[0]
        time.sleep(30)  # the worker keeps claiming from the full queue
        stop.set()
        sampler.join()
        figures = {
            "queued": count,
            "ingest_per_s": round(count / ingest_seconds, 0),
            "api_peak_rss_mib": round(rss_mib(api.pid)[1], 1),
            "worker_rss_start_mib": round(worker_start, 1),
            "worker_rss_full_queue_mib": round(worker_at_full, 1),
            "worker_peak_rss_mib": round(rss_mib(worker.pid)[1], 1),
            "worker_rss_last_mib": round(worker_samples[-1], 1) if worker_samples else 0,
        }
    finally:
        platform.close()
    record("memory", kind, f"{count} messages queued on a 50/s channel, API + 1 worker", figures)
    return figures
