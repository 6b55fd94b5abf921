"""Fixtures of the background task tests: an API over a database of their own, companies, and runners.

The database is these tests' own: a runner claims task jobs database-wide, and a runner of another suite
(an app started with its workers) has no handler for the tests' task type.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from tests.conftest import TEST_SECRET, Tenant, asgi_client, migrated_database, running_app
from tests.tasks.counting import TYPE, Counting

from openmmp.models import BackgroundTask, Company, Job
from openmmp.settings import Settings, TaskSettings
from openmmp.tasks import service as tasks
from openmmp.tasks.runner import TaskHandler, TaskRunner


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def task_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> str:
    return migrated_database(request.param, tmp_path_factory, f"{worker_name}_tasks")


@pytest.fixture(scope="session")
async def task_app(task_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    settings = Settings(
        database_url=task_database_url,
        data_dir=tmp_path_factory.mktemp("tasks-data"),
        secret_key=TEST_SECRET,
        sandbox=False,
    )
    async with running_app(settings) as application:
        yield application


@pytest.fixture(scope="session")
async def task_client(task_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(task_app) as http_client:
        yield http_client


@pytest.fixture(scope="session")
async def task_partner(task_app: Any) -> Tenant:
    from openmmp.companies.service import companies

    async with task_app.state.db.write_sessions() as session, session.begin():
        company, key = await companies.create_partner(session, task_app.state.keyring, name="Task Partner")
        return Tenant(company.public_id, key)


@dataclass(frozen=True)
class Owner:
    """A company as its API client sees it, with its internal id (what other domains create tasks with)."""

    tenant: Tenant
    company_id: int

    @property
    def headers(self) -> dict[str, str]:
        return self.tenant.headers


@pytest.fixture
def new_owner(
    task_app: Any, task_client: httpx.AsyncClient, task_partner: Tenant
) -> Callable[[], Awaitable[Owner]]:
    async def make() -> Owner:
        number = uuid.uuid4().hex[:12]
        body = {
            "company": {"name": f"Tasks {number}", "country": "KH"},
            "admin": {"name": "Admin", "email": f"admin{number}@example.com"},
        }
        response = await task_client.post("/api/v1/onboard", json=body, headers=task_partner.headers)
        assert response.status_code == 201, response.text
        tenant = Tenant(response.json()["companyPublicId"], response.json()["apiKey"])
        async with task_app.state.db.read_sessions() as session:
            company_id = (
                await session.execute(select(Company.id).where(Company.public_id == tenant.company_id))
            ).scalar_one()
        return Owner(tenant, company_id)

    return make


@pytest.fixture
async def owner(new_owner: Callable[[], Awaitable[Owner]]) -> Owner:
    return await new_owner()


@pytest.fixture
def create_task(task_app: Any) -> Callable[..., Awaitable[str]]:
    """Start a task as another domain would (`tasks.create` in its own transaction); returns its id."""

    async def create(
        owner: Owner, params: dict[str, Any], *, type: str = TYPE, total: int | None = None
    ) -> str:
        async with task_app.state.db.write_sessions() as session, session.begin():
            task = await tasks.create(
                session, company_id=owner.company_id, type=type, params=params, total=total
            )
            return task.public_id

    return create


FAST = {"time_slice_seconds": 30.0, "retry_max_seconds": 0.5}


@pytest.fixture
def make_runner(task_app: Any) -> Callable[..., TaskRunner]:
    """A runner over the tests' database with the counting handler (or `handlers`) and `**overrides` of
    TaskSettings."""

    def make(*handlers: TaskHandler, **overrides: Any) -> TaskRunner:
        chosen = {handler.type: handler for handler in handlers or (Counting(),)}
        return TaskRunner(task_app.state.db, chosen, TaskSettings(**{**FAST, **overrides}))

    return make


@pytest.fixture(autouse=True)
async def no_task_left_due(task_app: Any) -> AsyncIterator[None]:
    """Each test's runners claim task jobs database-wide: none of an earlier test may still be due."""
    yield
    async with task_app.state.db.write_sessions() as session, session.begin():
        await session.execute(delete(Job).where(Job.kind == tasks.KIND))


@pytest.fixture
def task_row(task_app: Any) -> Callable[[str], Awaitable[BackgroundTask]]:
    async def read(public_id: str) -> BackgroundTask:
        async with task_app.state.db.read_sessions() as session:
            statement = select(BackgroundTask).where(BackgroundTask.public_id == public_id)
            return (await session.execute(statement)).scalar_one()

    return read


@pytest.fixture
def jobs_of(task_app: Any) -> Callable[[Owner], Awaitable[list[Job]]]:
    """The company's task jobs still in the outbox."""

    async def read(owner: Owner) -> list[Job]:
        async with task_app.state.db.read_sessions() as session:
            statement = select(Job).where(Job.kind == tasks.KIND, Job.company_id == owner.company_id)
            return list((await session.execute(statement)).scalars())

    return read


@pytest.fixture
def make_due(task_app: Any) -> Callable[[Owner], Awaitable[None]]:
    """Make the company's task jobs due now, as when their back-off, or the lease of the runner holding
    them, has run out (without waiting for it)."""

    async def due(owner: Owner) -> None:
        async with task_app.state.db.write_sessions() as session, session.begin():
            await session.execute(
                update(Job).where(Job.kind == tasks.KIND, Job.company_id == owner.company_id).values(run_at=0)
            )

    return due
