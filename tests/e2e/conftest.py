"""Fixtures for whole-system tests: one running system per database kind and test worker."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from tests.conftest import TEST_SECRET, Tenant, migrated_database
from tests.e2e.harness import (
    OPENMMP,
    Process,
    System,
    WebhookReceiver,
    free_port,
    system_env,
    wait_http,
    wait_until,
)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def e2e_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> str:
    """A database of its own: the system's workers must not pick up other tests' jobs."""
    return migrated_database(request.param, tmp_path_factory, f"e2e_{worker_name}")


@pytest.fixture(scope="session")
async def system(e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[System]:
    log_dir = tmp_path_factory.mktemp("e2e-logs")
    api_port, sim_port = free_port(), free_port()
    env = system_env(
        database_url=e2e_database_url,
        data_dir=tmp_path_factory.mktemp("e2e-data"),
        api_port=api_port,
        sim_port=sim_port,
        secret=TEST_SECRET,
    )
    receiver = WebhookReceiver()
    await receiver.start()
    simulator = Process("simulator", ["simulate", "--port", str(sim_port), "--latency", "0.02"], env, log_dir)
    running = System(
        api=f"http://127.0.0.1:{api_port}",
        sim=f"http://127.0.0.1:{sim_port}",
        processes={"simulator": simulator.start()},
        receiver=receiver,
        env=env,
        log_dir=log_dir,
        api_port=api_port,
        separate_workers=not e2e_database_url.startswith("sqlite"),
    )
    bootstrap = await asyncio.to_thread(
        subprocess.run,
        [*OPENMMP, "bootstrap", "--name", "E2E partner", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    running.partner_key = json.loads(bootstrap.stdout)["apiKey"]
    running.start_api()
    if running.separate_workers:
        running.start_worker()
    try:
        await wait_http(f"{running.sim}/viber/_sandbox/stats")
        await wait_http(f"{running.api}/readyz")
        yield running
    finally:
        for process in running.processes.values():
            process.stop()
        await receiver.stop()


@pytest.fixture
async def api(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api, timeout=10) as client:
        yield client


@pytest.fixture
async def sim(system: System) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.sim, timeout=10) as client:
        yield client
        await client.post("/viber/_sandbox/faults", json={"kind": "none"})
        await client.post("/viber-bot/_sandbox/faults", json={"kind": "none"})


@pytest.fixture
async def company(api: httpx.AsyncClient, system: System) -> Tenant:
    number = random.randrange(10**9)
    body = {"company": {"name": f"E2E {number}"}, "admin": {"name": "A", "email": f"e2e{number}@example.com"}}
    response = await api.post("/api/v1/onboard", json=body, headers={"apiKey": system.partner_key})
    assert response.status_code == 201, response.text
    return Tenant(response.json()["companyPublicId"], response.json()["apiKey"])


ChannelFactory = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def launched_channel(api: httpx.AsyncClient, system: System, company: Tenant) -> ChannelFactory:
    """Create a channel whose webhooks go to the test receiver, and wait until it is launched."""

    async def make(application_id: int, credentials: dict[str, Any], **settings: Any) -> dict[str, Any]:
        body = {
            "name": f"e2e {application_id}",
            "applicationId": application_id,
            "credentials": credentials,
            "webhookUrl": system.receiver.url,
            "settings": {"defaultCountry": "KH", **settings},
        }
        created = await api.post("/api/v1/channel", json=body, headers=company.headers)
        assert created.status_code == 201, created.text
        channel = created.json()
        system.receiver.secrets[channel["publicId"]] = channel["webhookSecret"]

        async def launched() -> bool:
            status = await api.get(f"/api/v1/channel/{channel['publicId']}/status", headers=company.headers)
            return status.json()["status"] == 3

        await wait_until(launched, timeout=20, what="channel launch")
        return channel

    return make


@pytest.fixture
def viber_channel(launched_channel: ChannelFactory) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def make(**settings: Any) -> dict[str, Any]:
        service_id = random.randrange(1, 10**9)
        channel = await launched_channel(1, {"serviceId": service_id}, **settings)
        return {**channel, "_serviceId": service_id}

    return make


@pytest.fixture
def bot_channel(launched_channel: ChannelFactory) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def make(**settings: Any) -> dict[str, Any]:
        token = f"bot-{random.randrange(10**12)}"
        return await launched_channel(10, {"authToken": token, "senderName": "E2E Bot"}, **settings)

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest):
    """When a whole-system test fails, show what the processes logged."""
    yield
    if request.node.stash.get(_FAILED, False) and "system" in request.fixturenames:
        print(request.getfixturevalue("system").logs())
