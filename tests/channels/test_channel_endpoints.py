import base64
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import VIBER_BOT_CREDENTIALS, Tenant, create_channel, viber_credentials

from openmmp.models import Channel
from openmmp.providers.applications import Application
from openmmp.providers.registry import REGISTRY

CHANNELS = "/api/v1/channel"
BOT_APPLICATIONS = {4, 5, 6, 7, 10}


class TestCreateChannel:
    @pytest.mark.parametrize("application", list(Application), ids=lambda a: a.name)
    async def test_every_application_can_be_created_and_read_back_without_credentials(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, application: Application
    ):
        credentials = dict(REGISTRY.sandbox_credentials(application))
        for field, _port in REGISTRY.credentials_model(application).target_fields:
            # Outside sandbox mode a host the server connects to must be public (or allowed).
            credentials[REGISTRY.credentials_model(application).model_fields[field].alias or field] = (
                "smsc.example.com"
            )
        body = {
            "name": f"My {application.name}",
            "applicationId": application.value,
            "credentials": credentials,
        }
        created = await create_channel(client, tenant, partner, body)
        assert created.status_code == 201, created.text
        channel = created.json()
        assert channel["applicationId"] == application.value
        assert channel["type"] == (2 if application.value in BOT_APPLICATIONS else 1)
        # Viber Bot, WhatsApp, Telegram and Messenger wait for their set-up job (PROCESSING); the others
        # are launched at once (Apple's and Zalo's callback URLs are set in their consoles, not by an API).
        expected = {
            Application.VIBER_BOT: 2,
            Application.WHATSAPP: 2,
            Application.TELEGRAM: 2,
            Application.FACEBOOK: 2,
        }.get(application, 3)
        assert channel["status"] == expected
        read = await client.get(f"{CHANNELS}/{channel['publicId']}", headers=tenant.headers)
        assert read.status_code == 200
        assert set(read.json()) == {
            "publicId",
            "name",
            "applicationId",
            "type",
            "status",
            "webhookUrl",
            "settings",
            "createdDate",
        }
        for secret_value in dict(REGISTRY.sandbox_credentials(application)).values():
            if isinstance(secret_value, str) and len(secret_value) > 3:
                assert secret_value not in read.text

    async def test_a_missing_credential_is_named(self, client: httpx.AsyncClient, tenant: Tenant):
        body = {"name": "Bot", "applicationId": 10, "credentials": {"authToken": "x"}}
        response = await client.post(CHANNELS, json=body, headers=tenant.headers)
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {
                "name": "credentials.senderName",
                "code": "INVALID",
                "message": "required for VIBER_BOT channels",
            }
        ]

    @pytest.mark.parametrize(
        ("overrides", "name"),
        [
            ({"applicationId": 99}, "applicationId"),
            ({"applicationId": "viber"}, "applicationId"),
            ({"applicationId": None}, "applicationId"),
            ({"name": ""}, "name"),
            ({"name": ["a"]}, "name"),
            ({"credentials": "token"}, "credentials"),
            ({"credentials": {**VIBER_BOT_CREDENTIALS, "senderName": "x" * 29}}, "credentials.senderName"),
            ({"credentials": {**VIBER_BOT_CREDENTIALS, "extra": 1}}, "credentials.extra"),
            ({"webhookUrl": "not a url"}, "webhookUrl"),
            ({"settings": {"defaultCountry": "XX"}}, "settings.defaultCountry"),
            ({"settings": {"rateLimitPerSecond": 0}}, "settings.rateLimitPerSecond"),
            ({"settings": {"unknown": True}}, "settings.unknown"),
        ],
    )
    async def test_bad_fields_are_400_naming_them(
        self, client: httpx.AsyncClient, tenant: Tenant, overrides: dict[str, Any], name: str
    ):
        body = {"name": "Bot", "applicationId": 10, "credentials": VIBER_BOT_CREDENTIALS, **overrides}
        response = await client.post(CHANNELS, json=body, headers=tenant.headers)
        assert response.status_code == 400
        assert name in [e["name"] for e in response.json()["errors"]]

    async def test_viber_service_id_must_be_a_number(self, client: httpx.AsyncClient, tenant: Tenant):
        body = {"name": "BM", "applicationId": 1, "credentials": {"serviceId": "abc"}}
        response = await client.post(CHANNELS, json=body, headers=tenant.headers)
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "credentials.serviceId"

    async def test_credentials_and_webhook_secret_are_encrypted_at_rest(
        self, client: httpx.AsyncClient, app, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant, webhookUrl="https://hooks.example.com/mmp")
        secret = channel["webhookSecret"]
        assert secret.startswith("whsec_")
        async with app.state.db.read_sessions() as session:
            row = (
                await session.execute(select(Channel).where(Channel.public_id == channel["publicId"]))
            ).scalar_one()
        assert VIBER_BOT_CREDENTIALS["authToken"] not in row.credentials
        assert row.webhook_secret is not None
        assert secret not in row.webhook_secret
        assert app.state.keyring.decrypt(row.webhook_secret) == secret


class TestListChannels:
    async def test_pages_and_filters_by_application(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        for _ in range(3):
            await make_channel(tenant)
        await make_channel(tenant, applicationId=1, credentials=viber_credentials())
        first = (await client.get(f"{CHANNELS}?size=2&page=1", headers=tenant.headers)).json()
        second = (await client.get(f"{CHANNELS}?size=2&page=2", headers=tenant.headers)).json()
        assert first["total"] == second["total"] == 4
        assert len(first["items"]) == len(second["items"]) == 2
        assert {c["publicId"] for c in first["items"]}.isdisjoint({c["publicId"] for c in second["items"]})
        viber = (await client.get(f"{CHANNELS}?applicationId=1", headers=tenant.headers)).json()
        assert [c["applicationId"] for c in viber["items"]] == [1]

    @pytest.mark.parametrize("query", ["size=0", "size=101", "page=0", "page=x", "applicationId=9"])
    async def test_bad_paging_is_400(self, client: httpx.AsyncClient, tenant: Tenant, query: str):
        response = await client.get(f"{CHANNELS}?{query}", headers=tenant.headers)
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == query.split("=")[0]


class TestEditChannel:
    async def test_name_settings_and_credentials_change(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant, settings={"defaultCountry": "KH"})
        url = f"{CHANNELS}/{channel['publicId']}"
        edited = await client.post(
            url,
            json={
                "name": "Renamed",
                "settings": {"rateLimitPerSecond": 5},
                "credentials": {"authToken": "new-token", "senderName": "New"},
            },
            headers=tenant.headers,
        )
        assert edited.status_code == 200
        body = edited.json()
        assert body["name"] == "Renamed"
        assert body["settings"] == {"defaultCountry": "KH", "rateLimitPerSecond": 5.0}
        assert body["webhookSecret"] is None

    async def test_setting_a_first_webhook_url_reveals_its_new_secret(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant)
        edited = await client.post(
            f"{CHANNELS}/{channel['publicId']}",
            json={"webhookUrl": "https://x.example/h"},
            headers=tenant.headers,
        )
        assert edited.json()["webhookSecret"].startswith("whsec_")

    async def test_invalid_credentials_are_refused_and_nothing_changes(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant)
        url = f"{CHANNELS}/{channel['publicId']}"
        response = await client.post(
            url, json={"name": "X", "credentials": {"senderName": "A"}}, headers=tenant.headers
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "credentials.authToken"
        assert (await client.get(url, headers=tenant.headers)).json()["name"] == "Bot"

    async def test_an_empty_edit_is_refused(self, client: httpx.AsyncClient, tenant: Tenant, make_channel):
        channel = await make_channel(tenant)
        response = await client.post(f"{CHANNELS}/{channel['publicId']}", json={}, headers=tenant.headers)
        assert response.status_code == 400


class TestChannelStatus:
    async def test_reports_status_of_the_channel(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant)
        response = await client.get(f"{CHANNELS}/{channel['publicId']}/status", headers=tenant.headers)
        assert response.status_code == 200
        assert response.json() == {
            "publicId": channel["publicId"],
            "applicationId": 10,
            "status": 2,
            "cause": None,
        }

    async def test_an_unknown_channel_is_404(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.get(
            f"{CHANNELS}/00000000-0000-4000-8000-000000000000/status", headers=tenant.headers
        )
        assert response.status_code == 404
        assert response.json()["errors"][0] == {
            "name": "accountId",
            "code": "RESOURCE_NOT_FOUND",
            "message": "No such channel",
        }


class TestSetWebhook:
    async def test_a_secret_is_generated_when_none_is_given_and_kept_until_rotation_is_asked_for(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        channel = await make_channel(tenant)
        url = f"{CHANNELS}/{channel['publicId']}/webhook"
        first = await client.post(url, json={"url": "https://hooks.example.com/a"}, headers=tenant.headers)
        second = await client.post(url, json={"url": "https://hooks.example.com/b"}, headers=tenant.headers)
        rotated = await client.post(
            url, json={"url": "https://hooks.example.com/b", "rotateSecret": True}, headers=tenant.headers
        )
        assert first.status_code == second.status_code == rotated.status_code == 200
        a, b, c = first.json(), second.json(), rotated.json()
        assert a["status"] == 1
        assert a["secret"].startswith("whsec_") and len(base64.b64decode(a["secret"][6:])) == 24
        assert a["secret"] == b["secret"]  # moving the endpoint does not change how it is signed
        assert c["secret"] != b["secret"] and c["secret"].startswith("whsec_")
        info = await client.get(f"{CHANNELS}/{channel['publicId']}", headers=tenant.headers)
        assert info.json()["webhookUrl"] == "https://hooks.example.com/b"
        assert c["secret"] not in info.text

    async def test_a_given_secret_is_kept(self, client: httpx.AsyncClient, tenant: Tenant, make_channel):
        channel = await make_channel(tenant)
        secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
        response = await client.post(
            f"{CHANNELS}/{channel['publicId']}/webhook",
            json={"url": "https://hooks.example.com/a", "secret": secret},
            headers=tenant.headers,
        )
        assert response.json()["secret"] == secret

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"url": "hooks"},
            {"url": "https://h.example", "secret": "plain"},
            {"url": "https://h.example", "secret": "whsec_!!!"},
            {"url": "https://h.example", "secret": "whsec_YQ=="},
        ],
    )
    async def test_bad_url_or_secret_is_400(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel, body
    ):
        channel = await make_channel(tenant)
        response = await client.post(
            f"{CHANNELS}/{channel['publicId']}/webhook", json=body, headers=tenant.headers
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "INVALID"
