"""Egress limits: the schedule a limiter hands out never exceeds `burst + rate × window` in any window.

Checked for the in-process limiter and for the Redis one shared by two clients (two worker processes),
against the real Redis when OPENMMP_TEST_REDIS_URL is set.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import NamedTuple

import pytest

from openmmp.kit.limits import Limit, Limiter, LimiterUnavailable, LocalLimiter
from openmmp.queue.redis_limiter import RedisLimiter

REDIS_URL = os.environ.get("OPENMMP_TEST_REDIS_URL", "")
LIMIT = Limit(rate=50.0, burst=5.0)


class Booked(NamedTuple):
    times: list[float]  # when each send may go, by the caller's clock, sorted
    late: float  # the longest reply: a limiter's clock read the time up to this much after the caller's


async def schedule(limiters: list[Limiter], key: str, count: int) -> Booked:
    """Reserve `count` sends over `limiters`, each booking one at a time as a worker process would.

    A booking's time is when it was asked plus the wait the limiter answered; the limiter measured that
    wait from its own reading of the clock, somewhere between asking and the answer, so a time here may
    be early by up to the reply's round trip, never late.
    """
    times: list[float] = []
    late = 0.0

    async def stream(limiter: Limiter, bookings: int) -> None:
        nonlocal late
        for _ in range(bookings):
            asked = time.monotonic()
            wait = await limiter.reserve(key, LIMIT)
            late = max(late, time.monotonic() - asked)
            times.append(asked + wait)

    share, extra = divmod(count, len(limiters))
    await asyncio.gather(*(stream(limiter, share + (i < extra)) for i, limiter in enumerate(limiters)))
    return Booked(sorted(times), late)


def assert_within_limit(booked: Booked, limit: Limit) -> None:
    """No window holds more than `burst + rate × window` sends (one more for the edge).

    Each time may be early by up to `booked.late`, so the sends counted in a window shortened by that
    much all went inside the full window: a correct limiter always passes, a lax one still fails.
    """
    slack = 0.005 + booked.late
    times = booked.times
    for i, start in enumerate(times):
        for window in (0.1, 0.5, 1.0):
            inside = sum(1 for t in times[i:] if t < start + window - slack)
            assert inside <= limit.burst + limit.rate * window + 1, (window, inside, booked.late)


class TestLocalLimiter:
    async def test_a_burst_then_the_rate(self):
        booked = await schedule([LocalLimiter()], "channel:1", 120)
        assert_within_limit(booked, LIMIT)
        times = booked.times
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
            booked = await schedule([first, second], f"channel:{uuid.uuid4()}", 120)
        finally:
            await first.aclose()
            await second.aclose()
        assert_within_limit(booked, LIMIT)
        assert booked.late < 0.4, "the half-second and one-second windows are still checked"
        assert booked.times[-1] - booked.times[0] >= (120 - LIMIT.burst) / LIMIT.rate * 0.95


class TestUnavailableRedis:
    async def test_an_unreachable_redis_refuses_to_book_rather_than_allowing_everything(self):
        limiter = RedisLimiter("redis://127.0.0.1:1/0")
        try:
            with pytest.raises(LimiterUnavailable):
                await limiter.reserve("channel:x", LIMIT)
        finally:
            await limiter.aclose()
