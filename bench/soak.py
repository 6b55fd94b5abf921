"""Soak: a steady load for a long time (default 10 minutes), watching for growth and errors.

Messages are accepted at a fixed rate (ten batches per second; half the measured end-to-end capacity
is the intended rate) through the Viber simulator, with callbacks and webhooks on. Every minute the
scenario reports the accept → READ-webhook latency percentiles of the messages accepted in that minute,
and the RSS of each process is sampled every 10 s. Figures: per-minute p50/p99, first/last/peak RSS
per process, accept errors, and how many messages did not finish.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from common import percentile, record, rss_mib
from e2e import READ, Platform, wait_for

TICKS_PER_S = 10


def soak(kind: str, work: Path, rate: float, seconds: float, workers: int = 1) -> dict[str, Any]:
    platform = Platform(kind, work, workers)
    accepted: dict[str, float] = {}
    errors = 0
    rss: dict[str, list[float]] = {name: [] for name in platform.processes}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(10):
            for name, process in platform.processes.items():
                if process.poll() is None:
                    rss[name].append(rss_mib(process.pid)[0])

    sampler = threading.Thread(target=sample)
    try:
        sampler.start()
        per_tick = max(1, round(rate / TICKS_PER_S))
        started = time.monotonic()
        tick = 0
        path = f"/api/v1/channel/{platform.viber}/broadcast/batch"
        with httpx.Client(base_url=platform.base, headers=platform.headers, timeout=30) as http:
            while time.monotonic() - started < seconds:
                items = [
                    {
                        "phone": f"85512{(tick * per_tick + n) % 1_000_000:06d}{n % 7}",
                        "message": {"type": "text", "message": "soak"},
                    }
                    for n in range(per_tick)
                ]
                try:
                    response = http.post(path, json={"messages": items})
                    response.raise_for_status()
                    now = time.time()
                    for item in response.json()["messages"]:
                        accepted[item["messageId"]] = now
                except httpx.HTTPError:
                    errors += 1
                tick += 1
                delay = started + tick / TICKS_PER_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        wait_for(lambda: int(platform.counts()["byStatus"].get(str(READ), 0)) >= len(accepted), 120)
        events = httpx.get(f"{platform.hook}/dump", timeout=120).json()
    finally:
        stop.set()
        sampler.join()
        platform.close()
    read_at = {m: at for m, status, at in events if status == READ}
    first = min(accepted.values()) if accepted else 0.0
    minutes: dict[int, list[float]] = {}
    for message_id, at in accepted.items():
        if message_id in read_at:
            minutes.setdefault(int((at - first) // 60), []).append(read_at[message_id] - at)
    figures: dict[str, Any] = {
        "accepted": len(accepted),
        "accepted_per_s": round(len(accepted) / seconds, 1),
        "unfinished": len(accepted) - len(read_at.keys() & accepted.keys()),
        "accept_errors": errors,
        "p50_s_by_minute": [percentile(v, 0.5) for _, v in sorted(minutes.items())],
        "p99_s_by_minute": [percentile(v, 0.99) for _, v in sorted(minutes.items())],
    }
    for name, values in rss.items():
        if values:
            figures[f"rss_mib_{name}"] = f"{values[0]:.0f}→{values[-1]:.0f} (peak {max(values):.0f})"
    record("soak", kind, f"{rate:g} msg/s for {seconds:g} s, Viber, callbacks + webhooks", figures)
    return figures
