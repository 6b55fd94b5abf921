"""Egress limits: the schedule a limiter hands out never exceeds `burst + rate × window` in any window.

Checked for the in-process limiter and for the Redis one shared by two clients (two worker processes),
against the real Redis when OPENMMP_TEST_REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from openmmp.dispatch.limits import Limit, Limiter, LimiterUnavailable, LocalLimiter
from openmmp.queue.redis_limiter import RedisLimiter

REDIS_URL = os.environ.get("OPENMMP_TEST_REDIS_URL", "")
LIMIT = Limit(rate=50.0, burst=5.0)


async def schedule(limiters: list[Limiter], key: str, count: int) -> list[float]:
    """Reserve `count` sends round-robin over `limiters`; the times they may go, in seconds."""

    async def one(limiter: Limiter) -> float:
        asked = time.monotonic()
        return asked + await limiter.reserve(key, LIMIT)

    return sorted(await asyncio.gather(*(one(limiters[i % len(limiters)]) for i in range(count))))


def assert_within_limit(times: list[float], limit: Limit) -> None:
    slack = 0.005  # the clocks of the caller and of Redis are read a little apart
    for i, start in enumerate(times):
        for window in (0.1, 0.5, 1.0):
            inside = sum(1 for t in times[i:] if t < start + window - slack)
            assert inside <= limit.burst + limit.rate * window + 1, (window, inside)


class TestLocalLimiter:
    async def test_a_burst_then_the_rate(self):
        times = await schedule([LocalLimiter()], "channel:1", 120)
        assert_within_limit(times, LIMIT)
        span = times[-1] - times[0]
        assert (120 - LIMIT.burst) / LIMIT.rate * 0.95 <= span <= (120 - LIMIT.burst) / LIMIT.rate * 1.1

    async def test_keys_are_independent(self):
        limiter = LocalLimiter()
        await schedule([limiter], "channel:a", 100)
        assert await limiter.reserve("channel:b", LIMIT) == 0.0


@pytest.mark.skipif(not REDIS_URL, reason="OPENMMP_TEST_REDIS_URL is not set")
class TestRedisLimiter:
    async def test_two_processes_share_one_limit(self):
        first, second = RedisLimiter(REDIS_URL), RedisLimiter(REDIS_URL)
        try:
            times = await schedule([first, second], f"channel:{uuid.uuid4()}", 120)
        finally:
            await first.aclose()
            await second.aclose()
        assert_within_limit(times, LIMIT)
        assert times[-1] - times[0] >= (120 - LIMIT.burst) / LIMIT.rate * 0.95


class TestUnavailableRedis:
    async def test_an_unreachable_redis_refuses_to_book_rather_than_allowing_everything(self):
        limiter = RedisLimiter("redis://127.0.0.1:1/0")
        try:
            with pytest.raises(LimiterUnavailable):
                await limiter.reserve("channel:x", LIMIT)
        finally:
            await limiter.aclose()
