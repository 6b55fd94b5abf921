"""Tenant isolation: a company can neither see nor touch another company's objects, whatever the route."""

import httpx
import pytest

from tests.conftest import Tenant


@pytest.fixture
async def victim(new_company, make_channel, client: httpx.AsyncClient):
    company = await new_company("Victim")
    channel = await make_channel(company, webhookUrl="https://victim.example/h")
    key = (
        await client.post("/api/v1/onboard/api-key", json={"name": "victim-key"}, headers=company.headers)
    ).json()
    return company, channel["publicId"], key["publicId"]


class TestIsolation:
    async def test_another_companys_objects_are_404_on_every_route(
        self, client: httpx.AsyncClient, tenant: Tenant, victim
    ):
        company, account_id, key_id = victim
        calls = [
            ("GET", f"/api/v1/channel/{account_id}", None),
            ("GET", f"/api/v1/channel/{account_id}/status", None),
            ("POST", f"/api/v1/channel/{account_id}", {"name": "pwned"}),
            ("POST", f"/api/v1/channel/{account_id}/webhook", {"url": "https://evil.example/h"}),
            ("DELETE", f"/api/v1/onboard/api-key/{key_id}", None),
        ]
        for method, url, body in calls:
            response = await client.request(method, url, json=body, headers=tenant.headers)
            assert response.status_code == 404, (method, url, response.text)
            assert response.json()["errors"][0]["code"] == "RESOURCE_NOT_FOUND"
        # Nothing changed for the owner.
        owner_view = (await client.get(f"/api/v1/channel/{account_id}", headers=company.headers)).json()
        assert owner_view["name"] == "Bot"
        assert owner_view["webhookUrl"] == "https://victim.example/h"
        keys = (await client.get("/api/v1/onboard/api-key", headers=company.headers)).json()
        assert key_id in [k["publicId"] for k in keys["items"]]

    async def test_lists_show_only_the_callers_objects(
        self, client: httpx.AsyncClient, tenant: Tenant, victim
    ):
        _, account_id, key_id = victim
        channels = await client.get("/api/v1/channel?size=100", headers=tenant.headers)
        keys = await client.get("/api/v1/onboard/api-key?size=100", headers=tenant.headers)
        assert channels.json()["total"] == 0
        assert account_id not in channels.text
        assert key_id not in keys.text
        assert keys.json()["total"] == 1

    async def test_a_partner_cannot_reach_a_company_it_onboarded(
        self, client: httpx.AsyncClient, partner: Tenant, victim
    ):
        _, account_id, _ = victim
        response = await client.get(f"/api/v1/channel/{account_id}", headers=partner.headers)
        assert response.status_code == 404
