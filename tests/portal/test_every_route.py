"""Every portal route, found by walking the app: a page needs a session, a change needs the session's CSRF
token, and the operator's pages need the operator. New pages are covered as they are added."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from openmmp.portal.web import PORTAL, PortalRoute
from tests.portal.conftest import PortalClient

# Reached before signing in: the sign-in form and the one-time set-up link.
SIGNED_OUT = {
    ("GET", PORTAL),
    ("GET", f"{PORTAL}/login"),
    ("POST", f"{PORTAL}/login"),
    ("GET", f"{PORTAL}/setup/{{token}}"),
    ("POST", f"{PORTAL}/setup/{{token}}"),
}


def _portal_routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, str(context.path)
        if isinstance(route, APIRoute) and path.startswith(PORTAL):
            assert isinstance(route, PortalRoute), f"{path} is not a PortalRoute (errors would be JSON)"
            found += [(method, path) for method in sorted(context.methods or ())]
    return found


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)


class TestEveryRoute:
    async def test_the_routes_are_found(self, app: Any):
        routes = _portal_routes(app)
        assert len(routes) > 40
        assert ("POST", f"{PORTAL}/review/{{public_id}}/approve") in routes

    async def test_without_a_session_every_page_sends_to_the_sign_in_page(
        self, app: Any, client: httpx.AsyncClient
    ):
        for method, path in _portal_routes(app):
            if (method, path) in SIGNED_OUT:
                continue
            response = await client.request(method, _url(path))
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith(f"{PORTAL}/login"), (method, path)

    async def test_every_change_without_the_csrf_token_is_refused(self, app: Any, admin: PortalClient):
        for method, path in _portal_routes(app):
            if method != "POST" or (method, path) in SIGNED_OUT:
                continue
            response = await admin.http.post(_url(path), data={"csrf": "not the token"})
            assert response.status_code == 403, (path, response.status_code, response.text[:300])
            assert "csrf" in response.text

    @pytest.mark.parametrize("method", ["GET", "POST"])
    async def test_the_operators_pages_refuse_a_company_admin(
        self, app: Any, admin: PortalClient, method: str
    ):
        operator_only = [
            path
            for m, path in _portal_routes(app)
            if m == method and path.startswith((f"{PORTAL}/review", f"{PORTAL}/companies"))
        ]
        assert operator_only
        for path in operator_only:
            response = await (admin.post(_url(path)) if method == "POST" else admin.get(_url(path)))
            assert response.status_code == 403, (path, response.status_code)


class TestQueryValues:
    @pytest.mark.parametrize(
        "path", ["/portal/keys", "/portal/channels", "/portal/webhooks", "/portal/templates"]
    )
    async def test_a_page_number_past_any_bound_is_a_400_page(self, admin: PortalClient, path: str):
        response = await admin.get(path, params={"page": str(10**20)})
        assert response.status_code == 400, response.text[:300]
        assert "page" in response.text

    async def test_the_webhooks_filter_any_is_empty_and_a_bad_state_is_named(
        self, admin: PortalClient, tenant: Any, make_channel: Any
    ):
        await make_channel(tenant, webhookUrl="https://hooks.example.com/portal")
        assert (await admin.get("/portal/webhooks", params={"state": ""})).status_code == 200
        refused = await admin.get("/portal/webhooks", params={"state": "SOMETIMES"})
        assert refused.status_code == 400 and "state" in refused.text

    async def test_a_csrf_token_that_is_not_ascii_is_a_403_not_a_500(
        self, admin: PortalClient, browsers: Any
    ):
        refused = await admin.http.post("/portal/logout", data={"csrf": "é" * 10})
        assert refused.status_code == 403
        http = await browsers()
        await http.get("/portal/login")
        login = await http.post("/portal/login", data={"csrf": "é", "email": "a@b.c", "password": "x"})
        assert login.status_code == 403
