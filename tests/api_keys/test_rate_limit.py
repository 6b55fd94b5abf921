"""Each API key's request budget (api.md §1: rate limited → 429 with `Retry-After`).

Every test runs its own app over the session's database with a tiny budget and real time; keys come from
the shared app, whose default budget never gets in the way. With OPENMMP_TEST_REDIS_URL set, two apps
(two API nodes) share one budget through Redis.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import TEST_SECRET, Tenant, asgi_client, running_app

from openmmp.api_keys import ratelimit
from openmmp.api_keys.ratelimit import ApiRateLimiter
from openmmp.kit.limits import Limit, LimiterUnavailable, LocalLimiter
from openmmp.models import Channel
from openmmp.settings import ApiRateSettings, Settings

REDIS_URL = os.environ.get("OPENMMP_TEST_REDIS_URL", "")
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
KEYS = "/api/v1/onboard/api-key"
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="OPENMMP_TEST_REDIS_URL is not set")


@dataclass
class Node:
    """One API node: its app (for the database) and a client talking to it."""

    app: Any
    client: httpx.AsyncClient

    async def get(self, tenant: Tenant) -> httpx.Response:
        return await self.client.get(KEYS, headers=tenant.headers)


@asynccontextmanager
async def node(
    settings: Settings, *, per_second: float, burst: int, redis_url: str = ""
) -> AsyncIterator[Node]:
    limited = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        secret_key=TEST_SECRET,
        sandbox=False,
        redis_url=redis_url,
        api_rate=ApiRateSettings(per_second=per_second, burst=burst),
    )
    async with running_app(limited) as app, asgi_client(app) as client:
        yield Node(app, client)


def assert_rate_limited(response: httpx.Response, *, at_most_s: int) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= at_most_s
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["code"] == "TOO_MANY_REQUESTS"
    assert error["name"] == "apiKey"
    assert "retry in" in error["message"]


class TestOverBudget:
    async def test_the_request_past_the_burst_is_429_with_retry_after_and_the_error_body(
        self, settings: Settings, tenant: Tenant
    ):
        async with node(settings, per_second=0.5, burst=2) as api:
            assert (await api.get(tenant)).status_code == 200
            assert (await api.get(tenant)).status_code == 200
            # One request every 2 s after a burst of 2: the next fits in (at most) 2 s.
            assert_rate_limited(await api.get(tenant), at_most_s=2)

    async def test_a_refused_request_changes_nothing(self, settings: Settings, tenant: Tenant):
        name = f"refused-{uuid.uuid4()}"
        body = {"name": name, "applicationId": 10, "credentials": {"authToken": "t", "senderName": "S"}}
        async with node(settings, per_second=0.5, burst=1) as api:
            assert (await api.get(tenant)).status_code == 200
            refused = await api.client.post("/api/v1/channel", json=body, headers=tenant.headers)
            assert_rate_limited(refused, at_most_s=2)
            async with api.app.state.db.read_sessions() as session:
                count = await session.execute(select(func.count()).where(Channel.name == name))
            assert count.scalar_one() == 0

    async def test_other_keys_of_the_same_and_of_another_company_keep_their_budget(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        tenant: Tenant,
        new_company: Callable[..., Awaitable[Tenant]],
    ):
        created = await client.post(KEYS, json={"name": "second"}, headers=tenant.headers)
        assert created.status_code == 201
        same_company = Tenant(tenant.company_id, created.json()["apiKey"])
        other_company = await new_company()
        async with node(settings, per_second=0.5, burst=1) as api:
            assert (await api.get(tenant)).status_code == 200
            assert_rate_limited(await api.get(tenant), at_most_s=2)
            assert (await api.get(same_company)).status_code == 200
            assert (await api.get(other_company)).status_code == 200
            assert_rate_limited(await api.get(same_company), at_most_s=2)

    async def test_requests_without_a_valid_key_stay_401_and_spend_nothing(
        self, settings: Settings, tenant: Tenant
    ):
        async with node(settings, per_second=0.5, burst=1) as api:
            for _ in range(3):
                assert (await api.client.get(KEYS)).status_code == 401
                assert (await api.client.get(KEYS, headers={"apiKey": "mmp_wrong"})).status_code == 401
            assert (await api.get(tenant)).status_code == 200
            assert_rate_limited(await api.get(tenant), at_most_s=2)
            assert (await api.client.get(KEYS)).status_code == 401


class TestRecovery:
    @pytest.mark.parametrize("shared", ["in-process", pytest.param("redis", marks=needs_redis)])
    async def test_a_client_retrying_too_early_gets_through_after_retry_after(
        self, settings: Settings, tenant: Tenant, shared: str
    ):
        redis_url = REDIS_URL if shared == "redis" else ""
        async with node(settings, per_second=1, burst=1, redis_url=redis_url) as api:
            assert (await api.get(tenant)).status_code == 200
            refused = [await api.get(tenant) for _ in range(5)]
            for response in refused:
                assert_rate_limited(response, at_most_s=1)
            # Refusals book nothing: had the five counted, the key would be ~5 s behind now.
            await asyncio.sleep(int(refused[-1].headers["Retry-After"]))
            assert (await api.get(tenant)).status_code == 200
            # The budget refills at the rate; it is not reset.
            assert_rate_limited(await api.get(tenant), at_most_s=1)


class TestOff:
    async def test_a_rate_of_zero_turns_the_limit_off(self, settings: Settings, tenant: Tenant):
        async with node(settings, per_second=0, burst=1) as api:
            assert api.app.state.api_rate_limiter.limit is None
            statuses = [(await api.get(tenant)).status_code for _ in range(30)]
        assert statuses == [200] * 30

    def test_the_budget_is_read_from_the_environment_and_generous_by_default(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        defaults = Settings(_env_file=None).api_rate
        # Benchmarks drive ~2,000 requests/s with one key; the default must leave plenty of room.
        assert defaults.per_second >= 4000
        assert defaults.burst >= 1000
        monkeypatch.setenv("OPENMMP_API_RATE__PER_SECOND", "7.5")
        monkeypatch.setenv("OPENMMP_API_RATE__BURST", "3")
        assert Settings(_env_file=None).api_rate == ApiRateSettings(per_second=7.5, burst=3)


class TestPublicRoutes:
    async def test_health_metrics_and_provider_callbacks_are_never_limited(
        self, settings: Settings, tenant: Tenant
    ):
        async with node(settings, per_second=0.5, burst=1) as api:
            assert (await api.get(tenant)).status_code == 200
            assert_rate_limited(await api.get(tenant), at_most_s=2)
            for _ in range(5):
                assert (await api.client.get("/healthz")).status_code == 200
                assert (await api.client.get("/readyz")).status_code == 200
                assert (await api.client.get("/metrics")).status_code == 200
                # Even when the caller sends its (exhausted) key along: callbacks are proven by signature.
                callback = await api.client.post(
                    f"/callbacks/viber-bot/{uuid.uuid4()}", content=b"{}", headers=tenant.headers
                )
                assert callback.status_code == 404


class TestOpenApi:
    async def test_every_operation_taking_a_key_documents_429_with_retry_after_and_no_public_one_does(
        self, client: httpx.AsyncClient
    ):
        spec = (await client.get("/openapi.json")).json()
        authenticated, public = [], []
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                responses = operation["responses"]
                if operation.get("security"):
                    authenticated.append((method, path))
                    documented = responses["429"]
                    schema = documented["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
                    header = documented["headers"]["Retry-After"]
                    assert header["schema"] == {"type": "integer", "minimum": 1}, (method, path)
                else:
                    public.append((method, path))
                    assert "429" not in responses, (method, path)
        assert ("post", "/api/v1/channel/{accountId}/broadcast") in authenticated
        assert ("get", "/api/v1/onboard/api-key") in authenticated
        assert ("post", "/callbacks/{provider}/{accountId}") in public
        assert ("get", "/healthz") in public
        assert "ErrorBody" in spec["components"]["schemas"]


@needs_redis
class TestSharedAcrossNodes:
    async def test_two_api_nodes_share_one_budget_through_redis(self, settings: Settings, tenant: Tenant):
        async with (
            node(settings, per_second=0.5, burst=2, redis_url=REDIS_URL) as first,
            node(settings, per_second=0.5, burst=2, redis_url=REDIS_URL) as second,
        ):
            assert (await first.get(tenant)).status_code == 200
            assert (await second.get(tenant)).status_code == 200
            assert_rate_limited(await first.get(tenant), at_most_s=2)
            assert_rate_limited(await second.get(tenant), at_most_s=2)

    async def test_without_redis_each_node_holds_its_own_budget(self, settings: Settings, tenant: Tenant):
        """The counterpart of the test above: what Redis changes."""
        async with (
            node(settings, per_second=0.5, burst=2) as first,
            node(settings, per_second=0.5, burst=2) as second,
        ):
            statuses = [(await n.get(tenant)).status_code for n in (first, second, first, second)]
        assert statuses == [200, 200, 200, 200]


class TestUnreachableRedis:
    async def test_requests_are_not_failed_and_the_node_applies_the_budget_itself(
        self, settings: Settings, tenant: Tenant
    ):
        async with node(settings, per_second=0.5, burst=2, redis_url=UNREACHABLE_REDIS) as api:
            assert (await api.get(tenant)).status_code == 200
            assert (await api.get(tenant)).status_code == 200
            assert_rate_limited(await api.get(tenant), at_most_s=2)


class FlakyShared:
    """A shared limiter that can be switched off, standing in for Redis going away and coming back."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0
        self._limiter = LocalLimiter()

    async def reserve(self, key: str, limit: Limit, cost: int = 1) -> float:
        self.calls += 1
        if not self.up:
            raise LimiterUnavailable("down")
        return await self._limiter.reserve(key, limit, cost)

    async def aclose(self) -> None:
        pass


class RecordingLog:
    def __init__(self) -> None:
        self.events: list[str] = []

    def warning(self, event: str, **_: Any) -> None:
        self.events.append(event)

    def info(self, event: str, **_: Any) -> None:
        self.events.append(event)


class TestSharedLimiterOutage:
    async def test_an_outage_is_logged_once_decided_locally_and_redis_is_asked_again_later(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        recorded = RecordingLog()
        monkeypatch.setattr(ratelimit, "log", recorded)
        shared = FlakyShared()
        limiter = ApiRateLimiter(Limit(rate=1000, burst=1000), shared=shared, shared_retry_seconds=0.2)
        assert await limiter.admit("k") == 0.0
        shared.up = False
        assert [await limiter.admit("k") for _ in range(20)] == [0.0] * 20
        assert recorded.events == ["api_rate_limit_shared_unavailable"]
        assert shared.calls == 2  # the failed call, then nothing until the retry interval passed
        await asyncio.sleep(0.25)
        assert await limiter.admit("k") == 0.0  # probes Redis, still down: still not failed
        assert shared.calls == 3
        assert recorded.events == ["api_rate_limit_shared_unavailable"]
        shared.up = True
        await asyncio.sleep(0.25)
        assert await limiter.admit("k") == 0.0
        assert await limiter.admit("k") == 0.0
        assert shared.calls == 5  # back on the shared budget for every request
        assert recorded.events == ["api_rate_limit_shared_unavailable", "api_rate_limit_shared_again"]

    async def test_the_local_budget_still_limits_during_an_outage(self):
        shared = FlakyShared()
        shared.up = False
        limiter = ApiRateLimiter(Limit(rate=0.5, burst=2), shared=shared, shared_retry_seconds=60)
        waits = [await limiter.admit("k") for _ in range(3)]
        assert waits[:2] == [0.0, 0.0]
        assert 1.0 < waits[2] <= 2.0
