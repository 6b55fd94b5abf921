"""Fixtures for the provider tests: a shared callback receiver, an HTTP client, and per-test simulators."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.providers.viber_harness import AppHost, CallbackReceiver, Inbox, Sim, StartSim, serve

from openmmp.kit.http import HttpClient
from openmmp.providers.simulation import SimulatorConfig, create_simulators_app

SHARED_SMSC = Path(__file__).resolve().parents[3] / "shared" / "bench" / "smsc_sim.py"
"""An SMSC simulator someone else wrote (the shared benchmark fixtures beside the checkout)."""

# Small latencies and back-offs keep the whole provider suite fast without sleeping in tests.
FAST: dict[str, Any] = {
    "callback_latency_s": 0.01,
    "callback_retry_base_s": 0.02,
    "callback_retries": 3,
    "callback_timeout_s": 2.0,
}


@pytest.fixture(scope="session")
async def callback_receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    async with serve(receiver.app) as base_url:
        receiver.base_url = base_url
        yield receiver


@pytest.fixture(scope="session")
async def app_host() -> AsyncIterator[AppHost]:
    host = AppHost()
    async with serve(host.app) as base_url:
        host.base_url = base_url
        yield host


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(timeout=5.0)
    yield client
    await client.aclose()


@pytest.fixture
def inbox(callback_receiver: CallbackReceiver) -> Inbox:
    return callback_receiver.inbox()


@pytest.fixture
async def start_sim(app_host: AppHost, http: HttpClient, inbox: Inbox) -> AsyncIterator[StartSim]:
    """Start the simulators app with `SimulatorConfig(**FAST, **overrides)`; stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Sim:
            config = SimulatorConfig(**{**FAST, **overrides})
            app = create_simulators_app(config, http)
            base_url = await stack.enter_async_context(app_host.mounted(app))
            return Sim(base_url=base_url, http=http, inbox=inbox)

        yield start


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    """The simulators with the fast sandbox defaults."""
    return await start_sim()


@pytest.fixture
async def shared_smsc() -> AsyncIterator[int]:
    """The shared benchmark's SMSC simulator on a free port, accepting connections, receipts after
    50 ms; the test is skipped where the fixtures are not beside the checkout (a fresh clone)."""
    if not SHARED_SMSC.exists():
        pytest.skip("the shared benchmark fixtures are not beside the checkout")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    smsc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SHARED_SMSC),
        *("--port", str(port), "--dlr-delay", "0.05", "--log-interval", "0"),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield port
    finally:
        smsc.terminate()
        await smsc.wait()
