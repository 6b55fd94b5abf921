"""Channel rate limits held in Redis, shared by every worker process on every host.

The same GCRA as `kit.limits.LocalLimiter`, run atomically in Redis with Redis's own clock, so
processes on hosts with skewed clocks still share one schedule per channel. When Redis cannot be reached
the limiter raises `LimiterUnavailable`: the dispatcher hands the jobs back and sending on that channel
pauses until Redis answers again. It never sends without a reservation.
"""

from __future__ import annotations

from typing import Any

import structlog
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from openmmp.kit.limits import Limit, LimiterUnavailable

log = structlog.get_logger(__name__)

# KEYS[1] = the channel's key; ARGV = interval ms, tolerance ms, cost. Returns the wait in ms.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new_tat = tat + tonumber(ARGV[3]) * interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now + tolerance) + 1000)
return tostring(wait)
"""


class RedisLimiter:
    def __init__(self, url: str, *, prefix: str = "openmmp:limit:") -> None:
        # A blocking pool: a dispatch round books up to its batch size at once, and redis-py's default
        # pool refuses connection 101 (MaxConnectionsError), which would look like an outage.
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=2.0, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._redis: Any = aioredis.Redis(connection_pool=self._pool)
        self._script = self._redis.register_script(_GCRA)
        self._prefix = prefix

    async def reserve(self, key: str, limit: Limit, cost: int = 1) -> float:
        interval_ms = 1000.0 / limit.rate
        tolerance_ms = max(0.0, limit.burst - 1) * interval_ms
        try:
            wait_ms = await self._script(keys=[self._prefix + key], args=[interval_ms, tolerance_ms, cost])
        except (RedisError, OSError) as exc:
            log.warning("rate_limiter_unavailable", error=type(exc).__name__)
            raise LimiterUnavailable("Redis is unreachable") from exc
        return float(wait_ms) / 1000.0

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()
