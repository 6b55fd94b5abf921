"""The request budget of each API key (api.md §1: rate limited → 429 with `Retry-After`).

Every authenticated request books one request of its key's budget (`OPENMMP_API_RATE__*`) with the same
GCRA as the channels' egress limits: in Redis, shared by every API node, when `OPENMMP_REDIS_URL` is set,
else in-process. Unlike a send, a request over budget does not wait: it is refused and told when to come
back. While Redis cannot be reached requests are not failed; each process applies the whole budget on its
own until Redis answers again.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import structlog

from openmmp.errors import retry_after_response
from openmmp.kit.limits import Limit, Limiter, LimiterUnavailable, LocalLimiter, reserve_within
from openmmp.queue.redis_limiter import RedisLimiter
from openmmp.settings import Settings

log = structlog.get_logger(__name__)

REDIS_PREFIX = "openmmp:api-rate:"
SHARED_RETRY_SECONDS = 5.0
"""After Redis failed, how long the in-process limiter decides before one request asks Redis again."""
ON_TIME_SECONDS = 0.001
"""A request due this soon is admitted: Redis keeps the schedule to 0.1 ms, sums of floats drift."""


class SharedLimiter(Limiter, Protocol):
    """A limiter held outside the process (Redis), with a connection to close."""

    async def aclose(self) -> None: ...


class ApiRateLimiter:
    """Books requests against API keys' budgets; one per process, built by the app's lifespan."""

    def __init__(
        self,
        limit: Limit | None,
        *,
        shared: SharedLimiter | None = None,
        shared_retry_seconds: float = SHARED_RETRY_SECONDS,
    ) -> None:
        self.limit = limit
        self._local = LocalLimiter()
        self._shared = shared
        self._shared_retry_seconds = shared_retry_seconds
        self._shared_down_until = 0.0
        self._degraded = False

    async def admit(self, key: str) -> float:
        """Book one request of `key`'s budget: 0.0 when it may go, else seconds until one would fit.

        A refused request books nothing, so a client that retries too early is not pushed further back.
        Never raises for an unreachable Redis: the in-process limiter decides meanwhile (logged once).
        """
        if self.limit is None:
            return 0.0
        if self._shared is not None and self._shared_is_worth_asking():
            try:
                wait = await self._book(self._shared, key, self.limit)
            except LimiterUnavailable:
                self._shared_failed()
            else:
                if self._degraded:
                    self._degraded, self._shared_down_until = False, 0.0
                    log.info("api_rate_limit_shared_again")
                return wait
        return await self._book(self._local, key, self.limit)

    def _shared_is_worth_asking(self) -> bool:
        now = time.monotonic()
        if now < self._shared_down_until:
            return False
        if self._degraded:
            # This request probes Redis; the ones arriving meanwhile keep deciding locally.
            self._shared_down_until = now + self._shared_retry_seconds
        return True

    def _shared_failed(self) -> None:
        self._shared_down_until = time.monotonic() + self._shared_retry_seconds
        if not self._degraded:
            self._degraded = True
            log.warning(
                "api_rate_limit_shared_unavailable",
                fallback="in-process budget per node",
                retry_seconds=self._shared_retry_seconds,
            )

    @staticmethod
    async def _book(limiter: Limiter, key: str, limit: Limit) -> float:
        # A refused request does not keep its booking, so refusals do not spend the budget.
        wait = await reserve_within(limiter, key, limit, ON_TIME_SECONDS)
        return wait if wait > ON_TIME_SECONDS else 0.0

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()


def build(settings: Settings) -> ApiRateLimiter:
    """The limiter `settings` ask for: off (per_second 0), shared in Redis, or in-process."""
    config = settings.api_rate
    if config.per_second <= 0:
        return ApiRateLimiter(None)
    limit = Limit(rate=config.per_second, burst=float(config.burst))
    shared = RedisLimiter(settings.redis_url, prefix=REDIS_PREFIX) if settings.redis_url else None
    return ApiRateLimiter(limit, shared=shared)


def document(schema: dict[str, Any]) -> None:
    """Declare the 429 on every operation that takes an API key (and on no public one)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security"):
                operation.setdefault("responses", {})["429"] = retry_after_response(
                    "Too many requests for this API key (TOO_MANY_REQUESTS): wait `Retry-After` seconds.",
                    "Whole seconds to wait before the key's next request fits its budget.",
                )
