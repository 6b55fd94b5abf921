"""Fixtures for whole-system tests: one running system per database kind and test worker."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from tests.conftest import TEST_SECRET, Tenant, migrated_database
from tests.e2e.harness import System, WebhookReceiver, running_system


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def e2e_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> str:
    """A database of its own: the system's workers must not pick up other tests' jobs."""
    return migrated_database(request.param, tmp_path_factory, f"e2e_{worker_name}")


@pytest.fixture(scope="session")
async def system(e2e_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[System]:
    """On SQLite one `openmmp serve` with the workers embedded; on PostgreSQL API and one worker apart."""
    workers = 0 if e2e_database_url.startswith("sqlite") else 1
    async with running_system(
        e2e_database_url, tmp_path_factory.mktemp("e2e"), secret=TEST_SECRET, workers=workers
    ) as running:
        yield running


@dataclass
class Launcher:
    """Starts private systems for one test (their own database, settings, simulator flags)."""

    tmp_path_factory: pytest.TempPathFactory
    worker_name: str
    stack: contextlib.AsyncExitStack
    systems: list[System] = field(default_factory=list)
    extra_logs: dict[str, Callable[[], str]] = field(default_factory=dict)

    def database(self, kind: str, name: str) -> str:
        """A fresh migrated database of `kind`; PostgreSQL-backed tests skip when it is not configured."""
        return migrated_database(kind, self.tmp_path_factory, f"{name}_{self.worker_name}")

    async def __call__(self, database_url: str, **options: Any) -> System:
        work_dir = self.tmp_path_factory.mktemp("e2e-private")
        system = await self.stack.enter_async_context(
            running_system(database_url, work_dir, secret=TEST_SECRET, **options)
        )
        self.systems.append(system)
        return system

    def logs(self) -> str:
        parts = [system.logs() for system in self.systems]
        parts += [f"===== {name}\n{read()[-6000:]}" for name, read in self.extra_logs.items()]
        return "\n".join(parts)


@pytest.fixture
async def launch(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> AsyncIterator[Launcher]:
    """`await launch(database_url, workers=..., env=..., simulator_args=...)` → a private running System."""
    async with contextlib.AsyncExitStack() as stack:
        launcher = Launcher(tmp_path_factory, worker_name, stack)
        request.node.stash[_LAUNCHED] = launcher
        yield launcher


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A business's webhook receiver of the test's own."""
    hooks = WebhookReceiver()
    await hooks.start()
    try:
        yield hooks
    finally:
        await hooks.stop()


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
    return await system.onboard(api)


ChannelFactory = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def launched_channel(api: httpx.AsyncClient, system: System, company: Tenant) -> ChannelFactory:
    """Create a channel whose webhooks go to the test receiver, and wait until it is launched."""

    async def make(application_id: int, credentials: dict[str, Any], **settings: Any) -> dict[str, Any]:
        return await system.channel(api, company, application_id, credentials, **settings)

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
_LAUNCHED = pytest.StashKey[Launcher]()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest):
    """When a whole-system test fails, show what the processes logged."""
    yield
    if not request.node.stash.get(_FAILED, False):
        return
    if "system" in request.fixturenames:
        print(request.getfixturevalue("system").logs())
    launcher = request.node.stash.get(_LAUNCHED, None)
    if launcher is not None:
        print(launcher.logs())
