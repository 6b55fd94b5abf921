"""Shared fixtures: every database-backed test runs on SQLite and, when configured, on PostgreSQL.

PostgreSQL runs when OPENMMP_TEST_DATABASE_URL is set (CI always sets it). Each xdist worker gets its own
database, created fresh from that URL's server and migrated with the real Alembic migrations.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

from openmmp import migrate
from openmmp.app import create_app
from openmmp.kit.db import normalise_url
from openmmp.providers.applications import Application
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings

pytest_plugins = ["tests.secret_scan"]  # fails the run when a secret reaches the logs
POSTGRES_URL = os.environ.get("OPENMMP_TEST_DATABASE_URL", "")
TEST_SECRET = "test-server-secret-not-for-production"
_SKIP_NOTICE = (
    "OPENMMP_TEST_DATABASE_URL is not set: every PostgreSQL-backed test is SKIPPED "
    "(set it, e.g. postgresql://postgres@127.0.0.1:5432/openmmp_test, as .ci/run does)"
)

T = TypeVar("T")


def run_sync(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in a thread (safe inside pytest-asyncio)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro_factory())  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def pytest_report_header(config: pytest.Config) -> str:
    return f"PostgreSQL tests: {'ON' if POSTGRES_URL else 'OFF'}" + (
        "" if POSTGRES_URL else f" -- {_SKIP_NOTICE}"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not POSTGRES_URL:
        terminalreporter.write_sep("!", _SKIP_NOTICE, yellow=True, bold=True)


def recreate_postgres_database(suffix: str) -> str:
    """A fresh, empty database on the test server named `<base>_<suffix>`; returns its URL."""
    url = make_url(normalise_url(POSTGRES_URL))
    name = f"{url.database}_{suffix}".replace("-", "_")
    dsn = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)

    async def create() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    run_sync(create)
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def worker_name(request: pytest.FixtureRequest) -> str:
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))


def migrated_database(kind: str, tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    """A fresh database of `kind` (sqlite or postgresql) named after `name`, migrated to head.

    Skips the test (loudly, see the summary) when PostgreSQL is asked for and not configured.
    """
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp(f'sqlite-{name}') / 'openmmp.db'}"
    else:
        if not POSTGRES_URL:
            pytest.skip(_SKIP_NOTICE)
        url = recreate_postgres_database(name)
    run_sync(lambda: asyncio.to_thread(migrate.upgrade, url))
    return url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> str:
    """A migrated database of each kind, shared by the session's tests (they never assume it is empty)."""
    return migrated_database(request.param, tmp_path_factory, worker_name)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        secret_key=TEST_SECRET,
        sandbox=False,
    )


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[Any]:
    """The API app with its lifespan (engine, HTTP clients, workers if asked) under way."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def asgi_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to `app` in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http_client:
        yield http_client


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(settings) as application:
        yield application


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http_client:
        yield http_client


@dataclass(frozen=True)
class Tenant:
    """A company as its API client sees it."""

    company_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"apiKey": self.api_key}


@pytest.fixture(scope="session")
async def partner(app: Any) -> Tenant:
    from openmmp.companies.service import companies

    db = app.state.db
    async with db.write_sessions() as session, session.begin():
        company, key = await companies.create_partner(session, app.state.keyring, name="Test Partner")
        return Tenant(company.public_id, key)


_counter = iter(range(1, 1_000_000))


@pytest.fixture
def new_company(client: httpx.AsyncClient, partner: Tenant) -> Callable[..., Awaitable[Tenant]]:
    """Onboard a fresh company through the API; each test gets companies no other test touches."""

    async def make(name: str | None = None) -> Tenant:
        number = next(_counter)
        body = {
            "company": {"name": name or f"Company {number}", "country": "KH"},
            "admin": {"name": "Admin", "email": f"admin{number}@example.com"},
        }
        response = await client.post("/api/v1/onboard", json=body, headers=partner.headers)
        assert response.status_code == 201, response.text
        data = response.json()
        return Tenant(data["companyPublicId"], data["apiKey"])

    return make


@pytest.fixture
async def tenant(new_company: Callable[..., Awaitable[Tenant]]) -> Tenant:
    return await new_company()


VIBER_BOT_CREDENTIALS = {"authToken": "bot-token-123", "senderName": "Test Bot"}
"""The shape of a bot's credentials; a channel needs a token of its own (`bot_credentials()`)."""
BOT_TOKENS: dict[str, str] = {}
"""The bot token of each Viber Bot channel the tests made, by its publicId (to sign its callbacks)."""


def bot_credentials() -> dict[str, str]:
    """Viber Bot credentials with a token no other channel has: a bot belongs to one channel."""
    return {**VIBER_BOT_CREDENTIALS, "authToken": f"bot-token-{uuid.uuid4().hex}"}


def viber_credentials() -> dict[str, int]:
    """Viber BM credentials with a service id no other channel has: a service belongs to one channel."""
    return {"serviceId": 1 + uuid.uuid4().int % 2**31}


async def create_channel(
    client: httpx.AsyncClient, tenant: Tenant, partner: Tenant | None, body: dict[str, Any]
) -> httpx.Response:
    """POST /api/v1/channel as the API expects it: with the partner's key for a company when the
    application's upstream identity is the operator's to assign (Viber BM service ids)."""
    model = REGISTRY.credentials_model(Application(body["applicationId"]))
    if model.operator_assigned and partner is not None:
        body = {**body, "companyId": tenant.company_id}
        return await client.post("/api/v1/channel", json=body, headers=partner.headers)
    return await client.post("/api/v1/channel", json=body, headers=tenant.headers)


@pytest.fixture
def make_channel(client: httpx.AsyncClient, partner: Tenant) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A channel of the tenant (default: a Viber Bot with its own token, in BOT_TOKENS)."""

    async def make(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
        body = {"name": "Bot", "applicationId": 10, "credentials": bot_credentials(), **overrides}
        response = await create_channel(client, tenant, partner, body)
        assert response.status_code == 201, response.text
        channel: dict[str, Any] = response.json()
        token = body["credentials"].get("authToken")
        if token:
            BOT_TOKENS[channel["publicId"]] = token
        return channel

    return make
