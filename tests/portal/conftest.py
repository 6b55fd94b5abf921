"""Portal test helpers: a browser-like HTTP client signed in as a company's admin or as the operator.

Each `PortalClient` has its own cookie jar over the session's app (in-process), so tests never share a
sign-in. Passwords are set as a person would: through a one-time set-up link.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openmmp.companies import repository as companies_repository
from openmmp.models import User
from openmmp.portal import accounts
from tests.conftest import Tenant

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class PortalClient:
    """A signed-in browser: `get` pages, `post` forms (the CSRF field, and the company the pages show,
    are added unless given)."""

    http: httpx.AsyncClient
    csrf: str
    email: str
    company: str | None = None

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(url, **kwargs)

    async def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        shown = {"company": self.company} if self.company else {}
        form = {"csrf": self.csrf, **shown, **(data or {})}
        return await self.http.post(url, data=form, **kwargs)

    async def htmx(self, method: str, url: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """As htmx sends it: the HX-Request and X-CSRF-Token headers, the form in the body."""
        headers = {"HX-Request": "true", "X-CSRF-Token": self.csrf}
        if self.company:
            headers["X-Portal-Company"] = self.company
        return await self.http.request(method, url, data=data, headers=headers)


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def set_up_and_sign_in(http: httpx.AsyncClient, app: Any, user_id: int, email: str) -> PortalClient:
    """Follow a fresh set-up link for the user as a browser would; the client ends signed in."""
    async with app.state.db.write_sessions() as session, session.begin():
        user = await session.get(User, user_id)
        assert user is not None
        token = await accounts.issue_setup_link(session, user, hours=1)
    page = await http.get(f"/portal/setup/{token}")
    assert page.status_code == 200, page.text
    form = {"csrf": csrf_of(page.text), "password": PASSWORD, "repeated": PASSWORD}
    done = await http.post(f"/portal/setup/{token}", data=form)
    assert done.status_code == 303, done.text
    home = await http.get("/portal/companies" if "operator" in email else "/portal/")
    assert home.status_code == 200, home.text
    return PortalClient(http=http, csrf=csrf_of(home.text), email=email)


@pytest.fixture
async def browsers(app: Any) -> AsyncIterator[Callable[[], Awaitable[httpx.AsyncClient]]]:
    """New cookie jars over the app, closed after the test."""
    async with AsyncExitStack() as stack:

        async def new() -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver")
            )

        yield new


@pytest.fixture
def sign_in_admin(
    app: Any, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
) -> Callable[[Tenant], Awaitable[PortalClient]]:
    """The portal as the admin of `tenant` (the user onboarding created) sees it."""

    async def make(tenant: Tenant) -> PortalClient:
        async with app.state.db.read_sessions() as session:
            company = await companies_repository.get_by_public_id(session, tenant.company_id)
            assert company is not None
            admin = (await session.scalars(select(User).where(User.company_id == company.id))).first()
            assert admin is not None
        signed_in = await set_up_and_sign_in(await browsers(), app, admin.id, admin.email)
        signed_in.company = tenant.company_id
        return signed_in

    return make


@pytest.fixture
async def admin(tenant: Tenant, sign_in_admin: Callable[[Tenant], Awaitable[PortalClient]]) -> PortalClient:
    return await sign_in_admin(tenant)


@pytest.fixture
async def operator(
    app: Any, partner: Tenant, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
) -> PortalClient:
    """A new operator of the test partner, signed in (no company chosen yet)."""
    email = f"operator-{uuid.uuid4().hex[:8]}@example.com"
    async with app.state.db.write_sessions() as session, session.begin():
        company = await companies_repository.get_by_public_id(session, partner.company_id)
        assert company is not None
        user = await accounts.add_operator(session, company, name="Operator", email=email)
        user_id = user.id
    return await set_up_and_sign_in(await browsers(), app, user_id, email)


async def look_at(operator: PortalClient, tenant: Tenant) -> None:
    """The operator chooses the company whose pages to see."""
    response = await operator.post(f"/portal/companies/{tenant.company_id}/look")
    assert response.status_code == 303, response.text
    operator.company = tenant.company_id
