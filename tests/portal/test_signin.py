"""Signing in to the portal: set-up links, passwords, sessions, CSRF, and who sees which company."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from openmmp.portal.web import SESSION_COOKIE
from tests.conftest import Tenant
from tests.portal.conftest import PASSWORD, PortalClient, csrf_of, look_at


async def _sign_in(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    page = await http.get("/portal/login")
    form = {"csrf": csrf_of(page.text), "email": email, "password": password, "next": "/portal/keys"}
    return await http.post("/portal/login", data=form)


class TestSignIn:
    async def test_a_page_without_a_session_sends_to_the_sign_in_page(self, client: httpx.AsyncClient):
        response = await client.get("/portal/?range=7d")
        assert response.status_code == 303
        assert response.headers["location"] == "/portal/login?next=/portal/%3Frange%3D7d"

    async def test_the_password_chosen_by_link_signs_in_and_goes_to_next(
        self, admin: PortalClient, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
    ):
        http = await browsers()
        response = await _sign_in(http, admin.email.upper(), PASSWORD)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/portal/keys"
        cookie = response.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie

    async def test_a_wrong_password_is_refused_with_one_message(
        self, admin: PortalClient, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
    ):
        http = await browsers()
        wrong = await _sign_in(http, admin.email, "not the password at all")
        unknown = await _sign_in(http, "nobody@example.com", PASSWORD)
        assert wrong.status_code == unknown.status_code == 400
        assert "Wrong e-mail address or password" in wrong.text
        assert "Wrong e-mail address or password" in unknown.text
        assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")

    async def test_a_wildcard_for_the_address_matches_nobody(
        self, admin: PortalClient, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
    ):
        http = await browsers()
        for pattern in ("%", "_%", admin.email.replace("admin", "%")):
            response = await _sign_in(http, pattern, PASSWORD)
            assert response.status_code == 400, pattern
            assert SESSION_COOKIE not in response.headers.get("set-cookie", "")

    async def test_the_sign_in_form_needs_its_csrf_token(
        self, admin: PortalClient, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
    ):
        http = await browsers()
        response = await http.post(
            "/portal/login", data={"csrf": "forged", "email": admin.email, "password": PASSWORD}
        )
        assert response.status_code == 403

    async def test_a_next_page_elsewhere_is_not_followed(
        self, admin: PortalClient, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
    ):
        http = await browsers()
        page = await http.get("/portal/login")
        form = {"csrf": csrf_of(page.text), "email": admin.email, "password": PASSWORD}
        response = await http.post("/portal/login", data={**form, "next": "//evil.example.com/portal/"})
        assert response.headers["location"] == "/portal/"

    async def test_signing_out_ends_the_session(self, admin: PortalClient):
        assert (await admin.post("/portal/logout")).status_code == 303
        assert (await admin.get("/portal/")).status_code == 303


class TestSetUpLinks:
    async def test_a_link_works_once(self, app: Any, tenant: Tenant, sign_in_admin: Any):
        admin = await sign_in_admin(tenant)
        page = await admin.get("/portal/setup/used-or-unknown-token")
        assert page.status_code == 404
        assert "used or has expired" in page.text

    async def test_a_short_password_is_refused(
        self, app: Any, tenant: Tenant, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
    ):
        from sqlalchemy import select

        from openmmp.companies import repository as companies_repository
        from openmmp.models import User
        from openmmp.portal import accounts

        async with app.state.db.write_sessions() as session, session.begin():
            company = await companies_repository.get_by_public_id(session, tenant.company_id)
            assert company is not None
            user = (await session.scalars(select(User).where(User.company_id == company.id))).one()
            token = await accounts.issue_setup_link(session, user, hours=1)
        http = await browsers()
        page = await http.get(f"/portal/setup/{token}")
        form = {"csrf": csrf_of(page.text), "password": "short", "repeated": "short"}
        response = await http.post(f"/portal/setup/{token}", data=form)
        assert response.status_code == 400
        assert "at least 12 characters" in response.text
        assert (await http.get(f"/portal/setup/{token}")).status_code == 200  # not spent


class TestCsrf:
    async def test_a_change_without_the_token_is_refused(self, admin: PortalClient):
        response = await admin.http.post("/portal/logout", data={"csrf": "wrong"})
        assert response.status_code == 403
        assert (await admin.get("/portal/")).status_code == 200  # still signed in

    async def test_a_change_from_another_site_is_refused(self, admin: PortalClient):
        response = await admin.post("/portal/logout", headers={"Origin": "https://evil.example.com"})
        assert response.status_code == 403


class TestWhoSeesWhat:
    async def test_an_admin_sees_the_own_company_and_not_the_operator_pages(
        self, admin: PortalClient, tenant: Tenant
    ):
        home = await admin.get("/portal/")
        assert home.status_code == 200
        assert "Dashboard" in home.text
        assert (await admin.get("/portal/companies")).status_code == 403
        other = await admin.post(f"/portal/companies/{tenant.company_id}/look")
        assert other.status_code == 403

    async def test_the_operator_chooses_a_company_then_sees_its_pages(
        self, operator: PortalClient, tenant: Tenant
    ):
        first = await operator.get("/portal/")
        assert first.status_code == 303 and first.headers["location"].startswith("/portal/companies")
        listing = await operator.get("/portal/companies")
        assert tenant.company_id in listing.text
        await look_at(operator, tenant)
        assert (await operator.get("/portal/")).status_code == 200

    async def test_pages_carry_secure_headers(self, admin: PortalClient):
        page = await admin.get("/portal/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"


class TestGuessing:
    async def test_after_ten_wrong_passwords_even_the_right_one_waits(
        self, admin: PortalClient, browsers: Callable[[], Awaitable[httpx.AsyncClient]]
    ):
        http = await browsers()
        for _ in range(10):
            assert (await _sign_in(http, admin.email, "a wrong guess of a password")).status_code == 400
        blocked = await _sign_in(http, admin.email, PASSWORD)
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        assert "Too many wrong passwords" in blocked.text


class TestTheDatabaseAway:
    async def test_the_portal_answers_a_503_page_not_json(self, tmp_path: Any):
        from tests.conftest import asgi_client, running_app
        from tests.ops.test_ops_endpoints import unreachable_database

        async with running_app(unreachable_database(tmp_path)) as app, asgi_client(app) as http:
            http.cookies.set(SESSION_COOKIE, "a-session-token", path="/portal")
            response = await http.get("/portal/")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.headers["content-type"].startswith("text/html")
        assert "The database is unavailable" in response.text


class TestTheOperatorsCompany:
    async def test_a_change_from_a_page_of_the_company_looked_at_before_is_refused(
        self, operator: PortalClient, tenant: Tenant, new_company: Any, client: httpx.AsyncClient
    ):
        other = await new_company()
        await look_at(operator, tenant)
        await look_at(operator, other)  # in another tab
        stale = await operator.post(
            "/portal/keys", {"name": "meant for the first", "company": tenant.company_id}
        )
        assert stale.status_code == 409
        assert "reload the page" in stale.text
        keys = await client.get("/api/v1/onboard/api-key", headers=other.headers)
        assert "meant for the first" not in keys.text
        fresh = await operator.post("/portal/keys", {"name": "meant for the second"})
        assert fresh.status_code == 201

    async def test_an_inactive_companys_pages_are_read_only(
        self, app: Any, operator: PortalClient, tenant: Tenant
    ):
        from sqlalchemy import update

        from openmmp.models import Company
        from openmmp.models.company import CompanyStatus

        await look_at(operator, tenant)
        async with app.state.db.write_sessions() as session, session.begin():
            await session.execute(
                update(Company)
                .where(Company.public_id == tenant.company_id)
                .values(status=CompanyStatus.INACTIVE)
            )
        assert (await operator.get("/portal/keys")).status_code == 200
        refused = await operator.post("/portal/keys", {"name": "for a suspended company"})
        assert refused.status_code == 403
        assert "not active" in refused.text


class TestNotices:
    async def test_only_the_sessions_own_redirects_show_a_notice(
        self, operator: PortalClient, admin: PortalClient, tenant: Tenant
    ):
        moved = await operator.post(f"/portal/companies/{tenant.company_id}/look")
        shown = await operator.get(moved.headers["location"])
        assert "You are looking at" in shown.text and 'class="notice"' in shown.text
        forged = await operator.get("/portal/companies", params={"notice": "Your key leaked: call +1 555"})
        assert "Your key leaked" not in forged.text
        elsewhere = await admin.get(moved.headers["location"].replace("/portal/", "/portal/keys", 1))
        assert "You are looking at" not in elsewhere.text  # another session's signature
