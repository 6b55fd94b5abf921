"""Fixtures for the webhook tests: a real receiver on 127.0.0.1, an API that allows private targets,
and deliverers, over a database of each kind that only these tests use (see `hook_database_url`)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import (
    TEST_SECRET,
    Tenant,
    asgi_client,
    bot_credentials,
    migrated_database,
    running_app,
)

from openmmp.kit.http import HttpClient
from openmmp.models import Channel, WebhookAttempt, WebhookDelivery
from openmmp.settings import Settings, WebhookSettings
from openmmp.webhooks import service as webhooks
from openmmp.webhooks.tasks import WebhookDeliverer

# A compressed schedule gets as many attempts as its seconds allow (the default 11 would last ~1 s).
FAST = {
    "retry_schedule_s": [0.05, 0.1],
    "max_attempts": 100,
    "poll_interval_min_s": 0.01,
    "poll_interval_max_s": 0.05,
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Answer:
    status: int = 204
    body: bytes = b""
    delay_s: float = 0.0


@dataclass
class Receiver:
    """Records every POST by path; answers each path from its script, then with its default answer."""

    base_url: str = ""
    requests: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    defaults: dict[str, Answer] = field(default_factory=dict)

    def endpoint(self) -> str:
        """A fresh path of this receiver, so tests never see each other's requests."""
        return f"/hook/{uuid.uuid4().hex}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def script(self, path: str, *answers: Answer) -> None:
        self.scripts[path] = list(answers)

    def always(self, path: str, answer: Answer) -> None:
        self.defaults[path] = answer

    def of(self, path: str) -> list[Received]:
        return self.requests[path]

    async def _receive(self, request: Request) -> Response:
        path = request.url.path
        self.requests[path].append(
            Received(
                path, {k.lower(): v for k, v in request.headers.items()}, await request.body(), time.time()
            )
        )
        script = self.scripts.get(path)
        answer = script.pop(0) if script else self.defaults.get(path, Answer())
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return Response(answer.body, status_code=answer.status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    target.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(target.app(), log_level="warning", access_log=False, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started, what="the receiver to start")
    yield target
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def hook_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> str:
    """A migrated database of each kind for these tests alone.

    Delivery is claimed database-wide, so deliverers must not share a database with other suites'
    deliverers (the e2e system runs a live worker over the shared test database) or rows.
    """
    return migrated_database(request.param, tmp_path_factory, f"{worker_name}_webhooks")


@pytest.fixture(scope="session")
async def hook_app(hook_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """The API over that database, with private webhook targets allowed (the receiver is local)."""
    settings = Settings(
        database_url=hook_database_url,
        data_dir=tmp_path_factory.mktemp("webhooks-data"),
        secret_key=TEST_SECRET,
        sandbox=False,
        webhooks=WebhookSettings(allow_private=True),
    )
    async with running_app(settings) as application:
        yield application


@pytest.fixture(scope="session")
async def hook_client(hook_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(hook_app) as http_client:
        yield http_client


@pytest.fixture(scope="session")
async def hook_partner(hook_app: Any) -> Tenant:
    from openmmp.companies.service import companies

    async with hook_app.state.db.write_sessions() as session, session.begin():
        company, key = await companies.create_partner(session, hook_app.state.keyring, name="Hook Partner")
        return Tenant(company.public_id, key)


@pytest.fixture
def new_owner(hook_client: httpx.AsyncClient, hook_partner: Tenant) -> Callable[[], Awaitable[Tenant]]:
    """Onboard a fresh company on the webhook tests' database."""

    async def make() -> Tenant:
        number = uuid.uuid4().hex[:12]
        body = {
            "company": {"name": f"Hooked {number}", "country": "KH"},
            "admin": {"name": "Admin", "email": f"admin{number}@example.com"},
        }
        response = await hook_client.post("/api/v1/onboard", json=body, headers=hook_partner.headers)
        assert response.status_code == 201, response.text
        return Tenant(response.json()["companyPublicId"], response.json()["apiKey"])

    return make


@pytest.fixture
async def owner(new_owner: Callable[[], Awaitable[Tenant]]) -> Tenant:
    return await new_owner()


@dataclass
class Hook:
    """A channel whose webhooks go to one path of the receiver."""

    tenant: Tenant
    account_id: str
    secret: str
    path: str
    url: str

    @property
    def base(self) -> str:
        return f"/api/v1/channel/{self.account_id}/webhook"


@pytest.fixture
def make_hook(
    hook_client: httpx.AsyncClient, receiver: Receiver, owner: Tenant
) -> Callable[..., Awaitable[Hook]]:
    async def make(company: Tenant | None = None) -> Hook:
        company = company or owner
        path = receiver.endpoint()
        body = {
            "name": "Hooked bot",
            "applicationId": 10,
            "credentials": bot_credentials(),
            "webhookUrl": receiver.url(path),
        }
        response = await hook_client.post("/api/v1/channel", json=body, headers=company.headers)
        assert response.status_code == 201, response.text
        created = response.json()
        return Hook(company, created["publicId"], created["webhookSecret"], path, receiver.url(path))

    return make


@pytest.fixture
def enqueue(hook_app: Any) -> Callable[..., Awaitable[str]]:
    """Enqueue an event for a hook's channel in its own committed transaction; returns its webhook-id."""

    async def put(
        hook: Hook, body: dict[str, Any], *, ordering_key: str | None = None, event_type: int = 1
    ) -> str:
        async with hook_app.state.db.write_sessions() as session, session.begin():
            channel = (
                await session.execute(select(Channel).where(Channel.public_id == hook.account_id))
            ).scalar_one()
            delivery = await webhooks.enqueue(
                session, channel=channel, event_type=event_type, body=body, ordering_key=ordering_key
            )
            assert delivery is not None
            return delivery.public_id

    return put


@pytest.fixture
async def make_deliverer(hook_app: Any) -> AsyncIterator[Callable[..., WebhookDeliverer]]:
    """Deliverers over the test database with fast schedules (`**overrides` of WebhookSettings)."""
    async with AsyncExitStack() as stack:

        def make(*, allow_private: bool = True, **overrides: Any) -> WebhookDeliverer:
            http = HttpClient(timeout=5.0)
            stack.push_async_callback(http.aclose)
            settings = WebhookSettings(**{**FAST, **overrides})
            return WebhookDeliverer(
                hook_app.state.db, http, hook_app.state.keyring, settings, allow_private=allow_private
            )

        yield make


@pytest.fixture
def read_delivery(hook_app: Any) -> Callable[[str], Awaitable[tuple[WebhookDelivery, list[WebhookAttempt]]]]:
    async def read(webhook_id: str) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
        async with hook_app.state.db.read_sessions() as session:
            delivery = (
                await session.execute(select(WebhookDelivery).where(WebhookDelivery.public_id == webhook_id))
            ).scalar_one()
            attempts = (
                await session.execute(
                    select(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id == delivery.id)
                    .order_by(WebhookAttempt.id)
                )
            ).scalars()
            return delivery, list(attempts)

    return read


@pytest.fixture
def read_channel(hook_app: Any) -> Callable[[str], Awaitable[Channel]]:
    async def read(account_id: str) -> Channel:
        async with hook_app.state.db.read_sessions() as session:
            return (
                await session.execute(select(Channel).where(Channel.public_id == account_id))
            ).scalar_one()

    return read


async def drive(
    deliverer: WebhookDeliverer, until: Callable[[], Awaitable[bool]], *, timeout: float = 5.0
) -> None:
    """Run delivery rounds (as the worker loop would) until `until()` holds."""
    deadline = time.monotonic() + timeout
    while not await until():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        if not await deliverer.deliver_due():
            await asyncio.sleep(0.02)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 5.0, what: str = "the condition"
) -> None:
    """Poll `condition` (plain or async) until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
