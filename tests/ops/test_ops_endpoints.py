from pathlib import Path

import httpx
import pytest
from tests.conftest import TEST_SECRET, Tenant, asgi_client, running_app

from openmmp.kit.crypto import generate_api_key
from openmmp.settings import Settings


def unreachable_database(tmp_path: Path) -> Settings:
    return Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none", data_dir=tmp_path, secret_key=TEST_SECRET
    )


class TestHealth:
    async def test_healthz_and_readyz_answer_ok(self, client: httpx.AsyncClient):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}

    async def test_readyz_is_503_when_the_database_is_unreachable(self, tmp_path):
        async with running_app(unreachable_database(tmp_path)) as app, asgi_client(app) as client:
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["errors"][0]["code"] == "SERVICE_UNAVAILABLE"

    async def test_api_requests_are_503_with_retry_after_when_the_database_is_unreachable(self, tmp_path):
        async with running_app(unreachable_database(tmp_path)) as app, asgi_client(app) as client:
            response = await client.get("/api/v1/channel", headers={"apiKey": generate_api_key()})
            alive = await client.get("/healthz")
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "2"
        assert response.json() == {
            "errors": [
                {"name": "database", "code": "SERVICE_UNAVAILABLE", "message": "Database is unavailable"}
            ]
        }
        assert alive.status_code == 200  # liveness does not need the database


class TestRequestIds:
    async def test_a_request_id_is_returned_and_a_given_one_echoed(self, client: httpx.AsyncClient):
        generated = await client.get("/healthz")
        assert len(generated.headers["x-request-id"]) == 32
        given = await client.get("/healthz", headers={"X-Request-ID": "trace-123"})
        assert given.headers["x-request-id"] == "trace-123"
        hostile = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
        assert hostile.headers["x-request-id"] != "bad id\twith junk"


class TestMetrics:
    async def test_counts_requests_by_route_template(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant)
        await client.get(f"/api/v1/channel/{channel['publicId']}", headers=tenant.headers)
        text = (await client.get("/metrics")).text
        assert (
            'openmmp_http_requests_total{method="GET",route="/api/v1/channel/{accountId}",status="200"}'
            in text
        )
        assert "openmmp_http_request_duration_seconds_bucket" in text
        assert channel["publicId"] not in text


class TestOpenApi:
    @pytest.fixture
    async def spec(self, client: httpx.AsyncClient) -> dict:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        return response.json()

    async def test_every_endpoint_is_described_with_its_errors(self, spec: dict):
        expected = {
            ("post", "/api/v1/onboard"): {"201", "400", "401", "403"},
            ("post", "/api/v1/onboard/company-profile"): {"200", "400", "401"},
            ("post", "/api/v1/onboard/api-key"): {"201", "400", "401"},
            ("get", "/api/v1/onboard/api-key"): {"200", "401"},
            ("delete", "/api/v1/onboard/api-key/{publicId}"): {"200", "401", "404"},
            ("post", "/api/v1/channel"): {"201", "400", "401"},
            ("get", "/api/v1/channel"): {"200", "401"},
            ("get", "/api/v1/channel/{accountId}"): {"200", "401", "404"},
            ("post", "/api/v1/channel/{accountId}"): {"200", "400", "401", "404"},
            ("get", "/api/v1/channel/{accountId}/status"): {"200", "401", "404"},
            ("post", "/api/v1/channel/{accountId}/webhook"): {"200", "400", "401", "404"},
        }
        for (method, path), statuses in expected.items():
            operation = spec["paths"][path][method]
            assert statuses <= set(operation["responses"]), (method, path)
            assert operation["security"] == [{"APIKeyHeader": []}]
            for status in statuses - {"200", "201"}:
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}
        assert "422" not in str(
            {p: {m: list(o["responses"]) for m, o in ops.items()} for p, ops in spec["paths"].items()}
        )

    async def test_every_operation_using_the_database_documents_503_with_retry_after(self, spec: dict):
        without_database = {"/healthz", "/metrics"}
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                documented = operation["responses"].get("503")
                if path in without_database:
                    assert documented is None, (method, path)
                    continue
                assert documented is not None, (method, path)
                schema = documented["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
                if path != "/readyz":
                    assert documented["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}

    async def test_request_schemas_use_wire_names_and_credentials_per_application(self, spec: dict):
        schemas = spec["components"]["schemas"]
        assert "applicationId" in schemas["CreateChannelRequest"]["properties"]
        credentials = schemas["CreateChannelRequest"]["properties"]["credentials"]
        titles = [variant["title"] for variant in credentials["anyOf"]]
        assert any("VIBER_BOT" in t for t in titles)
        assert len(titles) == 12

    async def test_the_outbound_webhooks_are_documented(self, spec: dict):
        webhooks = spec["webhooks"]
        assert set(webhooks) == {"message-status", "inbound-message", "template-status", "channel-status"}
        schemas = spec["components"]["schemas"]
        assert set(schemas["StatusWebhook"]["properties"]) == {
            "messageId",
            "cause",
            "clientMessageId",
            "timestamp",
            "type",
            "status",
            "publicId",
            "applicationId",
        }
        assert set(schemas["InboundWebhook"]["properties"]) == {
            "from",
            "contact",
            "messageId",
            "message",
            "timestamp",
            "type",
            "channelId",
            "publicId",
            "applicationId",
        }

    async def test_docs_page_is_served(self, client: httpx.AsyncClient):
        response = await client.get("/docs")
        assert response.status_code == 200
        assert "swagger" in response.text.lower()
