"""The portal's API keys page: the list never shows a key, a new key is shown once and works on the API,
a revoked one stops working, and one company never reaches another's keys."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import Tenant
from tests.portal.conftest import PortalClient, look_at

KEYS = "/portal/keys"
API_KEYS = "/api/v1/onboard/api-key"
_NEW_KEY = re.compile(r'<div class="secret[^"]*" id="new-key-box">.*?<code id="new-key">([^<]+)</code>', re.S)


async def _create(admin: PortalClient, name: str, **extra: str) -> tuple[str, httpx.Response]:
    response = await admin.post(KEYS, {"name": name, **extra})
    assert response.status_code == 201, response.text
    found = _NEW_KEY.search(response.text)
    assert found, response.text
    return found.group(1), response


async def _public_id(client: httpx.AsyncClient, tenant: Tenant, name: str) -> str:
    listed = (await client.get(f"{API_KEYS}?size=100", headers=tenant.headers)).json()["items"]
    return str(next(key["publicId"] for key in listed if key["name"] == name))


class TestList:
    async def test_it_lists_names_and_hints_never_a_key(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        made = await client.post(API_KEYS, json={"name": "Billing system"}, headers=tenant.headers)
        assert made.status_code == 201
        page = await admin.get(KEYS)
        assert page.status_code == 200
        assert "Billing system" in page.text
        assert made.json()["apiKey"][:8] in page.text  # its hint
        assert made.json()["apiKey"] not in page.text
        assert tenant.api_key not in page.text
        assert 'id="new-key"' not in page.text
        assert "Never" in page.text


class TestCreate:
    async def test_a_new_key_is_shown_once_and_works_on_the_api(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        key, response = await _create(admin, "Portal key")
        assert "shown only this once" in response.text
        works = await client.get("/api/v1/channel", headers={"apiKey": key})
        assert works.status_code == 200
        own = await client.get(API_KEYS, headers={"apiKey": key})
        assert "Portal key" in {k["name"] for k in own.json()["items"]}
        again = await admin.get(KEYS)
        assert key not in again.text
        assert "Portal key" in again.text

    async def test_an_expiry_date_is_kept_to_the_end_of_that_day(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        day = (datetime.now(UTC) + timedelta(days=30)).date()
        await _create(admin, "Expiring key", expiredDate=day.isoformat())
        listed = (await client.get(f"{API_KEYS}?size=100", headers=tenant.headers)).json()["items"]
        expiring = next(k for k in listed if k["name"] == "Expiring key")
        end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        assert expiring["expiredDate"] == int(end.timestamp() * 1000)

    async def test_bad_input_is_400_naming_the_field(self, admin: PortalClient):
        past = await admin.post(KEYS, {"name": "Late", "expiredDate": "2001-01-01"})
        assert past.status_code == 400
        assert "expiredDate" in past.text
        garbled = await admin.post(KEYS, {"name": "Late", "expiredDate": "next week"})
        assert garbled.status_code == 400
        assert "expiredDate" in garbled.text
        nameless = await admin.post(KEYS, {"name": " "})
        assert nameless.status_code == 400
        assert "name" in nameless.text

    async def test_creating_needs_the_csrf_token(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        response = await admin.http.post(KEYS, data={"name": "Forged key"})
        assert response.status_code == 403
        assert "new-key" not in response.text
        listed = (await client.get(f"{API_KEYS}?size=100", headers=tenant.headers)).json()["items"]
        assert "Forged key" not in {k["name"] for k in listed}

    async def test_the_operator_may_make_one_for_the_company_it_looks_at(
        self, operator: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        await look_at(operator, tenant)
        key, _ = await _create(operator, "Made by the operator")
        own = await client.get(API_KEYS, headers={"apiKey": key})
        assert own.status_code == 200
        tenant_keys = (await client.get(f"{API_KEYS}?size=100", headers=tenant.headers)).json()["items"]
        assert "Made by the operator" in {k["name"] for k in tenant_keys}


class TestRevoke:
    async def test_a_revoked_key_gets_401_on_the_api(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        key, _ = await _create(admin, "Short-lived")
        assert (await client.get("/api/v1/channel", headers={"apiKey": key})).status_code == 200
        public_id = await _public_id(client, tenant, "Short-lived")
        page = await admin.get(KEYS)
        assert f'hx-post="/portal/keys/{public_id}/revoke" hx-confirm=' in page.text
        response = await admin.post(f"{KEYS}/{public_id}/revoke")
        assert response.status_code == 303
        assert (await client.get("/api/v1/channel", headers={"apiKey": key})).status_code == 401
        after = await admin.get(response.headers["location"])
        assert "Short-lived revoked" in after.text
        assert f'data-key="{public_id}"' not in after.text
        assert (await admin.post(f"{KEYS}/{public_id}/revoke")).status_code == 404  # once only

    async def test_htmx_is_sent_to_the_list_again(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        await _create(admin, "Revoked by htmx")
        public_id = await _public_id(client, tenant, "Revoked by htmx")
        response = await admin.htmx("POST", f"{KEYS}/{public_id}/revoke")
        assert response.status_code == 204
        assert response.headers["hx-redirect"].startswith(f"{KEYS}?notice=")

    async def test_revoking_needs_the_csrf_token(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        key, _ = await _create(admin, "Kept key")
        public_id = await _public_id(client, tenant, "Kept key")
        response = await admin.http.post(f"{KEYS}/{public_id}/revoke", data={"csrf": "forged"})
        assert response.status_code == 403
        assert (await client.get("/api/v1/channel", headers={"apiKey": key})).status_code == 200


class TestIsolation:
    async def test_another_company_s_key_is_404_and_keeps_working(
        self,
        admin: PortalClient,
        new_company: Callable[..., Awaitable[Tenant]],
        client: httpx.AsyncClient,
    ):
        other = await new_company()
        theirs = await client.post(API_KEYS, json={"name": "Theirs"}, headers=other.headers)
        public_id = theirs.json()["publicId"]
        page = await admin.get(KEYS)
        assert public_id not in page.text and "Theirs" not in page.text
        response = await admin.post(f"{KEYS}/{public_id}/revoke")
        assert response.status_code == 404
        still = await client.get("/api/v1/channel", headers={"apiKey": theirs.json()["apiKey"]})
        assert still.status_code == 200
