"""Fixtures for the security tests: the app's routes as data, and the API in sandbox mode.

The sandbox app runs over the same database and server secret as `app`, so one company's keys work on
both; it adds the sandbox-only routes (`/sandbox/...`), which must be as isolated as the others.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from tests.conftest import TEST_SECRET, asgi_client, running_app

from openmmp.api_keys.auth import CompanyKey
from openmmp.app import create_app
from openmmp.portal.web import PORTAL
from openmmp.settings import Settings

# Routes that are not API operations: FastAPI's documentation and, in sandbox mode, the simulators
# (stand-ins for the upstream providers, with no tenant data).
NOT_OPERATIONS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/sim"})

_AUTHENTICATE: Callable[..., Any] = typing.get_args(CompanyKey)[1].dependency


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the full template, e.g. /api/v1/channel/{accountId}
    dependant: Dependant  # as included (with any router-level dependencies)
    sandbox_only: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def path_params(self) -> list[str]:
        return [p.name for p in self.dependant.path_params]

    @property
    def authenticated(self) -> bool:
        return _depends_on(self.dependant, _AUTHENTICATE)


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


def _routes(app: Any) -> Iterator[tuple[str, str, Dependant]]:
    for context in iter_route_contexts(app.routes):
        if str(context.path).startswith(PORTAL):
            continue  # pages signed in to with a session, not an API key: tests/portal/test_every_route.py
        if isinstance(context.original_route, APIRoute):
            for method in sorted(context.methods or ()):
                yield method, str(context.path), context.dependant
        else:
            assert context.path in NOT_OPERATIONS, (
                f"{type(context.original_route).__name__} {context.path} is neither an API operation nor a "
                "known non-operation: make it an APIRoute (with an auth alias) or add it to NOT_OPERATIONS"
            )


def operations(database_url: str = "sqlite+aiosqlite:///:memory:") -> list[Operation]:
    """Every operation of the app, in normal and in sandbox mode (built, not started)."""
    normal = {(m, p): d for m, p, d in _routes(create_app(_settings(database_url, sandbox=False)))}
    sandbox = {(m, p): d for m, p, d in _routes(create_app(_settings(database_url, sandbox=True)))}
    assert normal.keys() <= sandbox.keys()
    return [Operation(m, p, d, (m, p) not in normal) for (m, p), d in sorted(sandbox.items())]


def _settings(database_url: str, *, sandbox: bool, data_dir: Any = None) -> Settings:
    extra = {"data_dir": data_dir} if data_dir is not None else {}
    return Settings(database_url=database_url, secret_key=TEST_SECRET, sandbox=sandbox, **extra)


@pytest.fixture(scope="session")
async def sandbox_app(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(
        _settings(settings.database_url, sandbox=True, data_dir=settings.data_dir)
    ) as application:
        yield application


@pytest.fixture(scope="session")
async def sandbox_client(sandbox_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(sandbox_app) as http_client:
        yield http_client
