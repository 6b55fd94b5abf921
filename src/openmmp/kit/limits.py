"""Egress rate limits per channel (architecture.md invariant 5): a limited send waits, it never fails.

GCRA (a token bucket kept as one "theoretical arrival time" per key): `reserve` books capacity and says
how long to wait for it. Over any window of t seconds a key emits at most `burst + rate * t` requests, so
choosing `rate` and `burst` below an upstream's published limit guarantees it never answers "too many".
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Limit:
    rate: float
    """Requests per second."""
    burst: float
    """Requests that may go at once after a quiet period."""


class LimiterUnavailable(Exception):
    """The shared limit cannot be consulted: do not send, try again later."""


class Limiter(Protocol):
    async def reserve(self, key: str, limit: Limit, cost: int = 1) -> float:
        """Book `cost` requests for `key`; returns seconds to wait before sending them.

        A negative `cost` hands back requests booked before and not sent.

        Raises `LimiterUnavailable` when the booking cannot be made; the caller must not send then.
        """
        ...


class LocalLimiter:
    """In-process limiter: exact for one process (one node or the embedded worker).

    Keys can be many (one per end user, for limits to a recipient): beyond `max_keys` those whose time
    has passed are forgotten, which changes nothing (a key met again starts from now, as it would).
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys

    async def reserve(self, key: str, limit: Limit, cost: int = 1) -> float:
        now = time.monotonic()
        interval = 1.0 / limit.rate
        tolerance = max(0.0, limit.burst - 1) * interval
        tat = max(self._tat.get(key, now), now)
        wait = max(0.0, tat - tolerance - now)
        self._tat[key] = tat + cost * interval
        if len(self._tat) > self._max_keys:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return wait


async def reserve_within(limiter: Limiter, key: str, limit: Limit, max_wait: float) -> float:
    """Book one request unless it would wait more than `max_wait`; returns the wait either way.

    A request that would wait longer does not keep its slot (it is handed back): a slot kept for a
    request that is not sent pushes every later booking out. Raises `LimiterUnavailable` like `reserve`.
    """
    wait = await limiter.reserve(key, limit)
    if wait > max_wait:
        with contextlib.suppress(LimiterUnavailable):
            await limiter.reserve(key, limit, cost=-1)
    return wait
