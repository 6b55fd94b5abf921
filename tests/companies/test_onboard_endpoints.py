from collections.abc import Awaitable, Callable

import httpx
import pytest
from tests.conftest import Tenant

ONBOARD = {
    "company": {
        "name": "Angkor Bank",
        "country": "kh",
        "phone": "+855 12 345 678",
        "website": "https://bank.kh",
    },
    "admin": {"name": "Sokha", "email": "sokha@bank.kh", "phone": "+855-12-345-679"},
}


class TestOnboard:
    async def test_a_partner_creates_a_company_whose_key_works(
        self, client: httpx.AsyncClient, partner: Tenant
    ):
        response = await client.post("/api/v1/onboard", json=ONBOARD, headers=partner.headers)
        assert response.status_code == 201
        data = response.json()
        assert set(data) == {"companyId", "companyPublicId", "adminUserId", "apiKey"}
        assert data["companyId"] == data["companyPublicId"]
        assert data["apiKey"].startswith("mmp_")
        profile = await client.post(
            "/api/v1/onboard/company-profile",
            json={"industry": "banking"},
            headers={"apiKey": data["apiKey"]},
        )
        assert profile.status_code == 200
        body = profile.json()
        assert body["publicId"] == data["companyPublicId"]
        assert body["country"] == "KH"
        assert body["phone"] == "85512345678"
        assert body["industry"] == "banking"

    async def test_a_company_key_cannot_onboard(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post("/api/v1/onboard", json=ONBOARD, headers=tenant.headers)
        assert response.status_code == 403
        assert response.json()["errors"][0]["code"] == "FORBIDDEN_ERROR"

    async def test_without_a_key_it_is_401(self, client: httpx.AsyncClient):
        response = await client.post("/api/v1/onboard", json=ONBOARD)
        assert response.status_code == 401
        assert response.json() == {
            "errors": [
                {
                    "name": "apiKey",
                    "code": "NOT_AUTHENTICATE",
                    "message": "API key required in the apiKey header",
                }
            ]
        }

    @pytest.mark.parametrize(
        ("body", "name"),
        [
            ({"company": {"name": "X"}}, "admin"),
            ({"company": {"name": "X"}, "admin": {"name": "A"}}, "admin.email"),
            ({"company": {"name": "X"}, "admin": {"name": "A", "email": "not-an-email"}}, "admin.email"),
            (
                {"company": {"name": "X", "country": "ZZ"}, "admin": {"name": "A", "email": "a@b.co"}},
                "company.country",
            ),
            (
                {"company": {"name": "X", "phone": "12"}, "admin": {"name": "A", "email": "a@b.co"}},
                "company.phone",
            ),
            ({"company": {"name": ""}, "admin": {"name": "A", "email": "a@b.co"}}, "company.name"),
            ({"company": {"name": 5}, "admin": {"name": "A", "email": "a@b.co"}}, "company.name"),
            (
                {"company": {"name": "X", "website": "ftp://x"}, "admin": {"name": "A", "email": "a@b.co"}},
                "company.website",
            ),
            (
                {"company": {"name": "X", "color": "red"}, "admin": {"name": "A", "email": "a@b.co"}},
                "company.color",
            ),
        ],
    )
    async def test_bad_input_is_a_400_naming_the_field(
        self, client: httpx.AsyncClient, partner: Tenant, body: dict, name: str
    ):
        response = await client.post("/api/v1/onboard", json=body, headers=partner.headers)
        assert response.status_code == 400
        errors = response.json()["errors"]
        assert name in [e["name"] for e in errors]
        assert all(e["code"] == "INVALID" for e in errors)


class TestCompanyProfile:
    async def test_only_given_fields_change(
        self, client: httpx.AsyncClient, new_company: Callable[..., Awaitable[Tenant]]
    ):
        company = await new_company("Before")
        first = await client.post(
            "/api/v1/onboard/company-profile", json={"address": "Phnom Penh"}, headers=company.headers
        )
        second = await client.post(
            "/api/v1/onboard/company-profile", json={"name": "After"}, headers=company.headers
        )
        assert first.status_code == second.status_code == 200
        body = second.json()
        assert body["name"] == "After"
        assert body["address"] == "Phnom Penh"
        assert body["status"] == 1
        assert body["kycStatus"] == 0
        assert body["updatedDate"] >= body["createdDate"]

    async def test_an_empty_change_is_refused(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post("/api/v1/onboard/company-profile", json={}, headers=tenant.headers)
        assert response.status_code == 400
        assert "at least one" in response.json()["errors"][0]["message"]
