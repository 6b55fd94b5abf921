"""`openmmp portal link|operator`: one-time set-up links printed on the machine, as a real process."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import select
from tests.cli.test_cli import env, run
from tests.conftest import Tenant
from tests.portal.conftest import PASSWORD, csrf_of

from openmmp.companies import repository as companies_repository
from openmmp.models import User

__all__ = ["env"]
_URL = re.compile(r"http://\S+/portal/setup/(\S+)")


async def _admin_email(app: Any, tenant: Tenant) -> str:
    async with app.state.db.read_sessions() as session:
        company = await companies_repository.get_by_public_id(session, tenant.company_id)
        assert company is not None
        return str(await session.scalar(select(User.email).where(User.company_id == company.id)))


def _token(printed: str) -> str:
    found = _URL.search(printed)
    assert found, printed
    return found.group(1)


class TestLink:
    async def test_the_link_lets_the_admin_choose_a_password_and_a_new_one_replaces_it(
        self, app: Any, env: dict[str, str], tenant: Tenant
    ):
        email = await _admin_email(app, tenant)
        first = run(["portal", "link", email], env)
        assert first.returncode == 0, first.stderr
        second = run(["portal", "link", email.upper()], env)
        old, new = _token(first.stdout), _token(second.stdout)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            assert (await browser.get(f"/portal/setup/{old}")).status_code == 404
            page = await browser.get(f"/portal/setup/{new}")
            assert page.status_code == 200 and email in page.text
            form = {"csrf": csrf_of(page.text), "password": PASSWORD, "repeated": PASSWORD}
            assert (await browser.post(f"/portal/setup/{new}", data=form)).status_code == 303
            assert (await browser.get(f"/portal/setup/{new}")).status_code == 404  # spent

    def test_an_unknown_address_exits_1(self, env: dict[str, str]):
        done = run(["portal", "link", "nobody@nowhere.example"], env)
        assert done.returncode == 1
        assert "No portal user" in done.stderr


class TestOperator:
    async def test_the_operator_is_made_and_signs_in_to_the_companies_list(
        self, app: Any, env: dict[str, str], partner: Tenant, tenant: Tenant
    ):
        email = "ops-cli@example.com"
        done = run(["portal", "operator", "--email", email, "--company", partner.company_id], env)
        assert done.returncode == 0, done.stderr
        token = _token(done.stdout)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            page = await browser.get(f"/portal/setup/{token}")
            form = {"csrf": csrf_of(page.text), "password": PASSWORD, "repeated": PASSWORD}
            assert (await browser.post(f"/portal/setup/{token}", data=form)).status_code == 303
            companies = await browser.get("/portal/companies")
        assert companies.status_code == 200
        assert tenant.company_id in companies.text

    def test_a_bad_address_is_refused(self, env: dict[str, str]):
        done = run(["portal", "operator", "--email", "not-an-address"], env)
        assert done.returncode == 2
