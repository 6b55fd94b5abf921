import httpx
import pytest
import time_machine
from tests.conftest import Tenant

from openmmp.kit.time import now_ms

KEYS = "/api/v1/onboard/api-key"


class TestCreateApiKey:
    async def test_a_new_key_is_shown_once_and_authenticates(self, client: httpx.AsyncClient, tenant: Tenant):
        created = await client.post(KEYS, json={"name": "backend"}, headers=tenant.headers)
        assert created.status_code == 201
        body = created.json()
        assert body["name"] == "backend"
        assert body["expiredDate"] is None
        new_key = body["apiKey"]
        listed = await client.get(KEYS, headers={"apiKey": new_key})
        assert listed.status_code == 200
        page = listed.json()
        assert page["total"] == 2
        assert new_key not in listed.text
        assert {item["name"] for item in page["items"]} == {"default", "backend"}
        assert all(
            set(item) == {"publicId", "name", "hint", "expiredDate", "createdDate"} for item in page["items"]
        )

    async def test_an_expiry_in_the_past_is_refused(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post(
            KEYS, json={"name": "old", "expiredDate": now_ms() - 1000}, headers=tenant.headers
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "expiredDate"

    async def test_an_expired_key_gets_401(self, client: httpx.AsyncClient, tenant: Tenant):
        expiry = now_ms() + 60_000
        created = await client.post(
            KEYS, json={"name": "short", "expiredDate": expiry}, headers=tenant.headers
        )
        key = created.json()["apiKey"]
        assert (await client.get(KEYS, headers={"apiKey": key})).status_code == 200
        with time_machine.travel(expiry / 1000 + 1, tick=False):
            response = await client.get(KEYS, headers={"apiKey": key})
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "NOT_AUTHENTICATE"


class TestRevokeApiKey:
    async def test_a_revoked_key_gets_401_and_leaves_the_list(
        self, client: httpx.AsyncClient, tenant: Tenant
    ):
        created = (await client.post(KEYS, json={"name": "temp"}, headers=tenant.headers)).json()
        revoked = await client.delete(f"{KEYS}/{created['publicId']}", headers=tenant.headers)
        assert revoked.status_code == 200
        assert revoked.json()["publicId"] == created["publicId"]
        assert (await client.get(KEYS, headers={"apiKey": created["apiKey"]})).status_code == 401
        names = [k["name"] for k in (await client.get(KEYS, headers=tenant.headers)).json()["items"]]
        assert names == ["default"]
        again = await client.delete(f"{KEYS}/{created['publicId']}", headers=tenant.headers)
        assert again.status_code == 404


class TestAuthentication:
    @pytest.mark.parametrize("scheme", ["apiKey", "X-API-Key", "Bearer"])
    async def test_every_documented_header_works(
        self, client: httpx.AsyncClient, tenant: Tenant, scheme: str
    ):
        headers = (
            {"Authorization": f"Bearer {tenant.api_key}"} if scheme == "Bearer" else {scheme: tenant.api_key}
        )
        assert (await client.get(KEYS, headers=headers)).status_code == 200

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "nope",
            "mmp_" + "A" * 38,
            "mmp_shR0GOTz9jeiabWvpnqLgtOIceq4LM5kaXbEEV",
            "mmp_" + "A" * 37 + "!",
        ],
    )
    async def test_malformed_or_unknown_keys_get_401(self, client: httpx.AsyncClient, key: str):
        response = await client.get(KEYS, headers={"apiKey": key})
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "NOT_AUTHENTICATE"

    async def test_an_inactive_company_is_refused(self, client: httpx.AsyncClient, app, tenant: Tenant):
        from sqlalchemy import update

        from openmmp.models import Company

        async with app.state.db.write_sessions() as session, session.begin():
            await session.execute(
                update(Company).where(Company.public_id == tenant.company_id).values(status=2)
            )
        response = await client.get(KEYS, headers=tenant.headers)
        assert response.status_code == 403
        assert response.json()["errors"][0]["code"] == "COMPANY_IS_NOT_ACTIVE"
