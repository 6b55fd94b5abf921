"""Fixtures of the bad-input suite: an app on a database of its own, companies, launched channels, and a
recording simulator.

The database is this suite's own (`<base>_badinput_<worker>`): these tests send thousands of odd requests
and must neither see nor disturb other suites' data, nor drop a database another run is using.
Everything is session-scoped so Hypothesis tests (which cannot take function-scoped fixtures) can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import func, select, update
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage
from tests.conftest import (
    TEST_SECRET,
    VIBER_BOT_CREDENTIALS,
    Tenant,
    asgi_client,
    migrated_database,
    running_app,
)

from openmmp.companies.service import companies
from openmmp.kit.http import HttpClient
from openmmp.kit.time import now_ms
from openmmp.models import Channel, Job, Message
from openmmp.models.channel import ChannelStatus
from openmmp.providers.simulation import SimulatorConfig, create_simulators_app
from openmmp.settings import ProviderSettings, Settings

VIBER_SERVICE_ID = 4711
CLOSED_URL = "http://127.0.0.1:9"  # nothing listens (discard port): a call to it fails at once

# api.md §6
API_ERROR_CODES = frozenset(
    {
        "INVALID",
        "BAD_REQUEST",
        "NOT_AUTHENTICATE",
        "API_KEY_NOT_FOUND",
        "FORBIDDEN_ERROR",
        "RESOURCE_NOT_FOUND",
        "EXISTED",
        "COMPANY_IS_NOT_ACTIVE",
        "NOT_ACCEPTABLE",
        "EXPECTATION_FAILED",
        "TOO_MANY_REQUESTS",
        "PAYLOAD_TOO_LARGE",
        "INTERNAL_SERVER_ERROR",
        "SERVICE_UNAVAILABLE",
    }
)


def assert_error_body(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """The api.md §1 error body, with one of `statuses`; returns it."""
    assert response.status_code in statuses, (response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert list(body) == ["errors"], body
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"name", "code", "message"}, error
        assert all(isinstance(error[k], str) and error[k] for k in ("name", "code", "message")), error
        assert error["code"] in API_ERROR_CODES, error
    return body


# ---- a recording simulator, served over real HTTP -----------------------------------------------------


@dataclass
class Recorded:
    path: str
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Recorder:
    """ASGI wrapper keeping every request body the wrapped app (the provider simulators) received."""

    app: ASGIApp
    requests: list[Recorded] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self.requests.append(Recorded(scope["path"], body))
        replayed = False

        async def replay() -> AsgiMessage:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def bound_socket() -> socket.socket:
    """A listening-ready TCP socket on a free 127.0.0.1 port (so the URL is known before serving)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, sock: socket.socket) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on `sock` inside the test's event loop; yields the base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Simulators:
    base_url: str
    recorder: Recorder

    def received(self, path_suffix: str) -> list[Recorded]:
        return [r for r in self.recorder.requests if r.path.endswith(path_suffix)]


@pytest.fixture(scope="session")
async def simulators() -> AsyncIterator[Simulators]:
    """Both Viber simulators (sandbox outcomes, quick callbacks) behind a recorder, on a real port."""
    http = HttpClient(timeout=5.0)
    config = SimulatorConfig(callback_latency_s=0.01, callback_retry_base_s=0.05, callback_retries=2)
    recorder = Recorder(create_simulators_app(config, http))
    try:
        async with serving(recorder, bound_socket()) as base_url:
            yield Simulators(base_url, recorder)
    finally:
        await http.aclose()


def providers_at(sim: Simulators) -> ProviderSettings:
    return ProviderSettings(
        viber_bot_base_url=f"{sim.base_url}/viber-bot", viber_base_url=f"{sim.base_url}/viber"
    )


# ---- the app under test, in-process ---------------------------------------------------------------------


def fuzz_settings(database_url: str, data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Sandbox on, so the sandbox routes are served (and fuzzed). Callbacks could not reach this app."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir or Path("data"),
        "secret_key": TEST_SECRET,
        "sandbox": True,
        "public_url": CLOSED_URL,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def bad_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> str:
    return migrated_database(request.param, tmp_path_factory, f"badinput_{worker_name}")


@pytest.fixture(scope="session")
def bad_settings(
    bad_database_url: str, tmp_path_factory: pytest.TempPathFactory, simulators: Simulators
) -> Settings:
    return fuzz_settings(
        bad_database_url, tmp_path_factory.mktemp("badinput-data"), providers=providers_at(simulators)
    )


@pytest.fixture(scope="session")
async def bad_app(bad_settings: Settings) -> AsyncIterator[Any]:
    async with running_app(bad_settings) as application:
        yield application


@pytest.fixture(scope="session")
async def bad_client(bad_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(bad_app) as http_client:
        yield http_client


async def create_partner(app: Any, name: str) -> Tenant:
    async with app.state.db.write_sessions() as session, session.begin():
        company, key = await companies.create_partner(session, app.state.keyring, name=name)
        return Tenant(company.public_id, key)


@pytest.fixture(scope="session")
async def bad_partner(bad_app: Any) -> Tenant:
    return await create_partner(bad_app, "Bad input partner")


async def onboard(client: httpx.AsyncClient, partner: Tenant, name: str) -> Tenant:
    body = {
        "company": {"name": name, "country": "KH"},
        "admin": {"name": "Admin", "email": f"{name.replace(' ', '.').lower()}@example.com"},
    }
    response = await client.post("/api/v1/onboard", json=body, headers=partner.headers)
    assert response.status_code == 201, response.text
    data = response.json()
    return Tenant(data["companyPublicId"], data["apiKey"])


@pytest.fixture(scope="session")
async def bad_tenant(bad_client: httpx.AsyncClient, bad_partner: Tenant) -> Tenant:
    return await onboard(bad_client, bad_partner, "Bad input company")


async def launched_channel(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
) -> dict[str, Any]:
    """Create a channel through the API and mark it LAUNCH as the set-up job would (no workers here)."""
    response = await client.post("/api/v1/channel", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    channel: dict[str, Any] = response.json()
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(
            update(Channel)
            .where(Channel.public_id == channel["publicId"])
            .values(status=ChannelStatus.LAUNCH)
        )
    return channel


@pytest.fixture(scope="session")
async def viber_channel(bad_app: Any, bad_client: httpx.AsyncClient, bad_tenant: Tenant) -> dict[str, Any]:
    body = {
        "name": "Viber BM",
        "applicationId": 1,
        "credentials": {"serviceId": VIBER_SERVICE_ID},
        "settings": {"defaultCountry": "KH"},
    }
    return await launched_channel(bad_app, bad_client, bad_tenant, body)


@pytest.fixture(scope="session")
async def bot_channel(bad_app: Any, bad_client: httpx.AsyncClient, bad_tenant: Tenant) -> dict[str, Any]:
    body = {"name": "Viber Bot", "applicationId": 10, "credentials": VIBER_BOT_CREDENTIALS}
    return await launched_channel(bad_app, bad_client, bad_tenant, body)


@pytest.fixture(scope="session")
async def fuzz_tenant(bad_client: httpx.AsyncClient, bad_partner: Tenant) -> Tenant:
    """The fuzzer's own company: the fuzzer edits and revokes things, other tests must not see that."""
    return await onboard(bad_client, bad_partner, "Fuzzed company")


def signed_bot_callback(body: dict[str, Any], token: str) -> tuple[bytes, dict[str, str]]:
    """A Viber Bot callback body with its `X-Viber-Content-Signature`, as the upstream sends it."""
    raw = orjson.dumps(body)
    signature = hmac.new(token.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Viber-Content-Signature": signature, "content-type": "application/json"}


@pytest.fixture(scope="session")
async def fuzz_ids(bad_app: Any, bad_client: httpx.AsyncClient, fuzz_tenant: Tenant) -> dict[str, list[str]]:
    """Real ids of the fuzzed company by path parameter name: channels, a message, a webhook delivery and
    a spare API key (the fuzzer may revoke it)."""
    headers = fuzz_tenant.headers
    viber = await launched_channel(
        bad_app,
        bad_client,
        fuzz_tenant,
        {"name": "Fuzz Viber", "applicationId": 1, "credentials": {"serviceId": VIBER_SERVICE_ID + 1}},
    )
    token = "fuzz-bot-token"
    bot = await launched_channel(
        bad_app,
        bad_client,
        fuzz_tenant,
        {
            "name": "Fuzz bot",
            "applicationId": 10,
            "credentials": {"authToken": token, "senderName": "F"},
            "webhookUrl": f"{CLOSED_URL}/webhooks",
        },
    )
    sent = await bad_client.post(
        f"/api/v1/channel/{viber['publicId']}/broadcast",
        json={"phone": "85512345670", "message": {"type": "text", "message": "fuzz"}},
        headers=headers,
    )
    assert sent.status_code == 200, sent.text
    # An end user writes to the bot: a type 2 webhook delivery is queued (no worker sends it here).
    user = {"id": "fuzz-user", "name": "Fuzz", "avatar": "", "country": "KH", "language": "km"}
    raw, signature = signed_bot_callback(
        {
            "event": "message",
            "timestamp": now_ms(),
            "message_token": 1,
            "sender": user,
            "message": {"type": "text", "text": "hi"},
        },
        token,
    )
    written = await bad_client.post(f"/callbacks/viber-bot/{bot['publicId']}", content=raw, headers=signature)
    assert written.status_code == 200, written.text
    deliveries = await bad_client.get(
        f"/api/v1/channel/{bot['publicId']}/webhook/deliveries", headers=headers
    )
    assert deliveries.status_code == 200, deliveries.text
    assert deliveries.json()["items"], "the inbound message queued no webhook"
    spare = await bad_client.post("/api/v1/onboard/api-key", json={"name": "spare"}, headers=headers)
    assert spare.status_code == 201, spare.text
    return {
        "account_id": [viber["publicId"], bot["publicId"]],
        "message_id": [sent.json()["messageId"]],
        "webhook_id": [item["webhookId"] for item in deliveries.json()["items"]],
        "public_id": [spare.json()["publicId"]],
    }


async def state_counts(app: Any) -> dict[str, int]:
    """Rows a refused request must not add, counted over the whole database."""
    async with app.state.db.read_sessions() as session:
        counts = {}
        for name, model in (("messages", Message), ("jobs", Job), ("channels", Channel)):
            counts[name] = (await session.execute(select(func.count()).select_from(model))).scalar_one()
    return counts
