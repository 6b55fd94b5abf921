"""Every failure has the one error body of api.md §1, with the documented status; no input yields a 500."""

import httpx
import pytest

from tests.conftest import Tenant


def assert_error_body(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["errors"]
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"name", "code", "message"}
        assert error["message"]
    assert body["errors"][0]["code"] == code


class TestMalformedRequests:
    async def test_invalid_json_is_400_bad_request(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post(
            "/api/v1/channel",
            content=b'{"name": ',
            headers={**tenant.headers, "content-type": "application/json"},
        )
        assert_error_body(response, 400, "BAD_REQUEST")

    async def test_a_wrong_content_type_is_400_naming_it(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post(
            "/api/v1/channel",
            content=b"name=x",
            headers={**tenant.headers, "content-type": "application/x-www-form-urlencoded"},
        )
        assert_error_body(response, 400, "BAD_REQUEST")
        assert "Content-Type" in response.json()["errors"][0]["message"]

    async def test_a_json_array_body_is_400(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post("/api/v1/channel", json=[1, 2], headers=tenant.headers)
        assert_error_body(response, 400, "BAD_REQUEST")
        assert "JSON object" in response.json()["errors"][0]["message"]

    async def test_a_missing_body_is_400(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post("/api/v1/channel", headers=tenant.headers)
        assert_error_body(response, 400, "INVALID")

    async def test_a_declared_oversized_body_is_413(self, client: httpx.AsyncClient, tenant: Tenant):
        body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
        response = await client.post(
            "/api/v1/channel", content=body, headers={**tenant.headers, "content-type": "application/json"}
        )
        assert_error_body(response, 413, "PAYLOAD_TOO_LARGE")

    async def test_a_streamed_oversized_body_is_413(self, client: httpx.AsyncClient, tenant: Tenant):
        async def chunks():
            for _ in range(20):
                yield b"x" * 65536

        response = await client.post(
            "/api/v1/channel",
            content=chunks(),
            headers={**tenant.headers, "content-type": "application/json"},
        )
        assert_error_body(response, 413, "PAYLOAD_TOO_LARGE")

    async def test_deeply_nested_json_is_a_clean_400(self, client: httpx.AsyncClient, tenant: Tenant):
        deep = b"[" * 5000 + b"]" * 5000
        response = await client.post(
            "/api/v1/channel", content=deep, headers={**tenant.headers, "content-type": "application/json"}
        )
        assert response.status_code == 400

    async def test_wrong_types_everywhere_are_400(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post(
            "/api/v1/channel",
            json={"name": {}, "applicationId": [], "credentials": 3, "settings": "x"},
            headers=tenant.headers,
        )
        assert_error_body(response, 400, "INVALID")
        assert {e["name"] for e in response.json()["errors"]} >= {
            "name",
            "applicationId",
            "credentials",
            "settings",
        }


class TestRouting:
    async def test_an_unknown_route_is_404_with_the_error_body(self, client: httpx.AsyncClient):
        assert_error_body(await client.get("/api/v1/nothing-here"), 404, "RESOURCE_NOT_FOUND")

    async def test_a_wrong_method_is_405_with_the_error_body(self, client: httpx.AsyncClient, tenant: Tenant):
        assert_error_body(await client.put("/api/v1/channel", headers=tenant.headers), 405, "BAD_REQUEST")

    @pytest.mark.parametrize("account_id", ["x", "' OR 1=1 --", "%00", "a" * 300])
    async def test_odd_ids_are_404_not_500(self, client: httpx.AsyncClient, tenant: Tenant, account_id: str):
        response = await client.get(f"/api/v1/channel/{account_id}", headers=tenant.headers)
        assert_error_body(response, 404, "RESOURCE_NOT_FOUND")


class TestNulCharacters:
    """PostgreSQL cannot store NUL in text; such input must be a clean 400, never a database error."""

    async def test_a_nul_in_a_body_string_is_400(self, client: httpx.AsyncClient, tenant: Tenant):
        body = {
            "name": "bad\u0000name",
            "applicationId": 10,
            "credentials": {"authToken": "t", "senderName": "B"},
        }
        response = await client.post("/api/v1/channel", json=body, headers=tenant.headers)
        assert_error_body(response, 400, "INVALID")
        assert "name" in response.json()["errors"][0]["message"]

    async def test_a_nul_inside_credentials_is_400(self, client: httpx.AsyncClient, tenant: Tenant):
        body = {"name": "ok", "applicationId": 10, "credentials": {"authToken": "t\u0000", "senderName": "B"}}
        response = await client.post("/api/v1/channel", json=body, headers=tenant.headers)
        assert_error_body(response, 400, "INVALID")
        assert "credentials.authToken" in response.json()["errors"][0]["message"]
