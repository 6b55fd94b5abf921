"""The simulators' control routes (`/sim/...`, no API key) and the sandbox routes exist in sandbox mode only."""

from __future__ import annotations

import uuid

import httpx
import pytest

from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings
from tests.conftest import asgi_client, running_app


@pytest.mark.parametrize("provider", [p.name for p in REGISTRY.providers])
async def test_outside_sandbox_mode_no_simulator_route_is_served(client: httpx.AsyncClient, provider: str):
    for method, path in [
        ("GET", f"/sim/{provider}/_sandbox/stats"),
        ("POST", f"/sim/{provider}/_sandbox/faults"),
        ("POST", f"/sim/{provider}/_sandbox/inbound"),
        ("POST", f"/sandbox/{uuid.uuid4()}/inbound"),
    ]:
        response = await client.request(method, path, json={})
        assert response.status_code == 404, (method, path, response.text)


async def test_in_sandbox_mode_they_are(settings: Settings):
    sandbox = settings.model_copy(update={"sandbox": True})
    async with running_app(sandbox) as app, asgi_client(app) as client:
        for provider in REGISTRY.providers:
            assert (await client.get(f"/sim/{provider.name}/_sandbox/stats")).status_code == 200
