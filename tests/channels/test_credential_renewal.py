"""Renewing credentials that expire (channels/renewal.py), against Zalo's simulator over real HTTP.

Zalo's refresh tokens work once. Two workers that find the access token stale at the same moment must not
both spend the refresh token: the second would be refused and the channel left with nothing that works.
Each "worker" here has a database engine of its own, as two processes do; the simulator refuses a refresh
token spent twice, so a renewal that is not one at a time fails these tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import Tenant
from tests.providers.viber_harness import serve

from openmmp.channels.renewal import Renewal
from openmmp.channels.service import open_credentials
from openmmp.kit.db import Database
from openmmp.kit.http import HttpClient
from openmmp.models import Channel
from openmmp.providers.applications import Application
from openmmp.providers.base import Provider, ProviderContext, ProviderError
from openmmp.providers.registry import REGISTRY
from openmmp.providers.simulation import SimulatorConfig
from openmmp.settings import Settings


@dataclass
class Upstream:
    provider: Provider
    ctx: ProviderContext
    base_url: str
    http: HttpClient

    async def refreshes(self) -> int:
        answer = await self.http.get(f"{self.base_url}/_sandbox/zalo/tokens")
        return int(answer.json()["refreshes"])

    async def expire(self, access_token: str) -> None:
        answer = await self.http.post(
            f"{self.base_url}/_sandbox/zalo/expire", json={"accessToken": access_token}
        )
        assert answer.status_code == 200


@pytest.fixture
async def zalo() -> AsyncIterator[Upstream]:
    provider = REGISTRY.for_application(Application.ZALO)
    assert provider is not None
    http = HttpClient(timeout=5.0)
    async with serve(provider.simulator(SimulatorConfig(callback_latency_s=0.01), http)) as base_url:
        ctx = ProviderContext(http, base_url, "http://127.0.0.1:9", sandbox=True)
        yield Upstream(provider, ctx, base_url, http)
    await http.aclose()


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[list[Database]]:
    """Two engines on the test database, as two worker processes have."""
    engines = [Database(settings.resolved_database_url, pool_size=2) for _ in range(2)]
    yield engines
    for engine in engines:
        await engine.dispose()


async def _zalo_channel(app: Any, make_channel: Any, tenant: Tenant) -> Channel:
    oa = f"oa-{uuid.uuid4().hex[:12]}"
    credentials = {
        "oaId": oa,
        "appId": f"app-{oa}",
        "accessToken": f"access-{oa}",
        "refreshToken": f"refresh-{oa}",
        "secretKey": "app-secret",
    }
    created = await make_channel(tenant, applicationId=int(Application.ZALO), credentials=credentials)
    return await _read(app, created["publicId"])


async def _read(app: Any, account: str) -> Channel:
    async with app.state.db.read_sessions() as session:
        found = (await session.execute(select(Channel).where(Channel.public_id == account))).scalar_one()
        return found


async def test_two_workers_renewing_at_once_spend_the_refresh_token_once(
    app: Any, make_channel: Any, tenant: Tenant, zalo: Upstream, workers: list[Database]
) -> None:
    channel = await _zalo_channel(app, make_channel, tenant)
    before = open_credentials(app.state.keyring, channel)
    renewals = [Renewal(db, app.state.keyring) for db in workers]

    answers = await asyncio.gather(*(r.renew(channel, zalo.provider, zalo.ctx) for r in renewals))

    assert await zalo.refreshes() == 1
    (first, first_sealed), (second, second_sealed) = answers
    assert first == second
    assert first_sealed == second_sealed
    assert first["accessToken"] != before["accessToken"]
    assert first["refreshToken"] != before["refreshToken"]
    assert {k: v for k, v in first.items() if not k.endswith("Token")} == {
        k: v for k, v in before.items() if not k.endswith("Token")
    }
    stored = await _read(app, channel.public_id)
    assert stored.credentials == first_sealed
    assert open_credentials(app.state.keyring, stored) == first


async def test_a_worker_that_comes_late_takes_the_stored_credentials_without_asking(
    app: Any, make_channel: Any, tenant: Tenant, zalo: Upstream, workers: list[Database]
) -> None:
    channel = await _zalo_channel(app, make_channel, tenant)
    early, late = (Renewal(db, app.state.keyring) for db in workers)
    renewed, _ = await early.renew(channel, zalo.provider, zalo.ctx)

    # `channel` is what the late worker read before the renewal: the old, stale credentials.
    again, _ = await late.renew(channel, zalo.provider, zalo.ctx)

    assert again == renewed
    assert await zalo.refreshes() == 1


async def test_a_call_refused_for_a_stale_token_is_made_again_once_renewed(
    app: Any, make_channel: Any, tenant: Tenant, zalo: Upstream, workers: list[Database]
) -> None:
    channel = await _zalo_channel(app, make_channel, tenant)
    stale = open_credentials(app.state.keyring, channel)["accessToken"]
    await zalo.expire(stale)
    used: list[str] = []

    async def call(credentials: dict[str, Any]) -> str:
        used.append(credentials["accessToken"])
        if credentials["accessToken"] == stale:
            raise ProviderError(
                "ZALO_-216", "Access token is invalid", retryable=False, stale_credentials=True
            )
        return "done"

    assert await Renewal(workers[0], app.state.keyring).call(channel, zalo.provider, zalo.ctx, call) == "done"
    assert used[0] == stale
    assert len(used) == 2
    assert used[1] != stale
    assert await zalo.refreshes() == 1


async def test_a_refresh_token_the_upstream_refuses_is_a_final_error_and_changes_nothing(
    app: Any, make_channel: Any, tenant: Tenant, zalo: Upstream, workers: list[Database]
) -> None:
    channel = await _zalo_channel(app, make_channel, tenant)
    spent = open_credentials(app.state.keyring, channel)
    await zalo.provider.refresh_credentials(zalo.ctx, spent)  # spent elsewhere (another platform)

    with pytest.raises(ProviderError) as refused:
        await Renewal(workers[0], app.state.keyring).renew(channel, zalo.provider, zalo.ctx)

    assert refused.value.retryable is False
    assert "refreshToken" in refused.value.message
    assert (await _read(app, channel.public_id)).credentials == channel.credentials
