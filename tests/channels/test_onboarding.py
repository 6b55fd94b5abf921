"""Onboarding a channel through its upstream's sign-up: `POST /api/v1/channel/onboard/token`, then the
sign-up (the WhatsApp simulator's page, over real HTTP), then `GET /onboard/{provider}/callback`.

The platform runs in sandbox mode with its WhatsApp base URL at a simulator served on a port of its own,
so the platform's code exchange and registrations are real HTTP too; its public URL is the test client's
(`http://testserver`), so the simulator's redirect comes back to the app in process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import time_machine
from sqlalchemy import select
from tests.conftest import TEST_SECRET, Tenant, asgi_client, running_app
from tests.providers.viber_harness import serve

from openmmp.channels.service import open_credentials
from openmmp.kit.http import HttpClient
from openmmp.kit.time import now_ms
from openmmp.models import Channel
from openmmp.providers.base import Outgoing, ProviderContext, SendOk
from openmmp.providers.simulation import SimulatorConfig
from openmmp.providers.whatsapp.onboarding import SANDBOX_APP_SECRET
from openmmp.providers.whatsapp.provider import WhatsappProvider
from openmmp.settings import Settings

TOKEN = "/api/v1/channel/onboard/token"
CALLBACK = "/onboard/whatsapp/callback"
WHATSAPP = 11
PROVIDER = WhatsappProvider()


class Platform:
    """The sandbox-mode app (in process) and the WhatsApp simulator it talks to (on a real port)."""

    def __init__(self, app: Any, api: httpx.AsyncClient, sim_url: str, http: HttpClient) -> None:
        self.app = app
        self.api = api
        self.sim_url = sim_url
        self.http = http

    async def token(self, tenant: Tenant, **body: Any) -> dict[str, Any]:
        response = await self.api.post(
            TOKEN, json={"applicationId": WHATSAPP, **body}, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        issued: dict[str, Any] = response.json()
        return issued

    async def sign_up(self, url: str) -> httpx.Response:
        """Follow `url` as the admin's browser would: the simulator's page, then its redirect to us."""
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(
            mounts={"http://testserver": transport}, follow_redirects=True, timeout=10
        ) as browser:
            response = await browser.get(url)
        assert [r.status_code for r in response.history] == [302]
        assert response.url.path == CALLBACK
        return response

    async def signup_answer(self, url: str) -> dict[str, str]:
        """Only the simulator's page: the query it sends the browser back with."""
        async with httpx.AsyncClient(timeout=10) as browser:
            page = await browser.get(url)
        assert page.status_code == 302, page.text
        return dict(parse_qsl(urlsplit(page.headers["location"]).query))

    async def channels(self, tenant: Tenant) -> list[dict[str, Any]]:
        listed = await self.api.get("/api/v1/channel", params={"size": 100}, headers=tenant.headers)
        assert listed.status_code == 200
        items: list[dict[str, Any]] = listed.json()["items"]
        return items

    async def credentials(self, public_id: str) -> dict[str, Any]:
        async with self.app.state.db.read_sessions() as session:
            channel = (
                await session.execute(select(Channel).where(Channel.public_id == public_id))
            ).scalar_one()
        return open_credentials(self.app.state.keyring, channel)

    async def exchanges(self) -> int:
        """Requests the simulator's Graph API got so far (the sign-up page is not one)."""
        stats = await self.http.get(f"{self.sim_url}/_sandbox/stats")
        return int(stats.json()["requests"])


@pytest.fixture(scope="module")
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    http = HttpClient(timeout=5.0)
    simulator = PROVIDER.simulator(SimulatorConfig(callback_latency_s=0.01), http)
    async with serve(simulator) as sim_url:
        sandbox = Settings(
            database_url=settings.database_url,
            data_dir=settings.data_dir,
            secret_key=TEST_SECRET,
            sandbox=True,
            public_url="http://testserver",
            providers={"whatsapp_base_url": sim_url},
        )
        async with running_app(sandbox) as app, asgi_client(app) as api:
            yield Platform(app, api, sim_url, http)
    await http.aclose()


class TestGeneratingAToken:
    async def test_it_answers_an_opaque_token_the_signup_page_and_when_it_expires(
        self, platform: Platform, tenant: Tenant
    ):
        before = now_ms()
        issued = await platform.token(tenant, name="Support line")
        assert set(issued) == {"token", "url", "expiredAt"}
        assert before + 29 * 60_000 <= issued["expiredAt"] <= now_ms() + 30 * 60_000
        url = urlsplit(issued["url"])
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{platform.sim_url}/_sandbox/signup"
        query = dict(parse_qsl(url.query))
        assert query["state"] == issued["token"]
        assert query["redirect_uri"] == f"http://testserver{CALLBACK}"
        assert "Support line" not in issued["token"]
        assert tenant.company_id not in issued["token"]

    @pytest.mark.parametrize("application", [1, 5, 10, 24])
    async def test_an_application_without_a_signup_is_400_naming_it(
        self, platform: Platform, tenant: Tenant, application: int
    ):
        response = await platform.api.post(TOKEN, json={"applicationId": application}, headers=tenant.headers)
        assert response.status_code == 400, response.text
        [error] = response.json()["errors"]
        assert (error["name"], error["code"]) == ("applicationId", "INVALID")

    async def test_outside_sandbox_mode_a_signup_the_operator_has_not_set_up_is_400(
        self, client: httpx.AsyncClient, tenant: Tenant
    ):
        response = await client.post(TOKEN, json={"applicationId": WHATSAPP}, headers=tenant.headers)
        assert response.status_code == 400, response.text
        [error] = response.json()["errors"]
        assert error["name"] == "applicationId"
        assert "not set up" in error["message"]

    @pytest.mark.parametrize(
        ("body", "name"),
        [
            ({"applicationId": 99}, "applicationId"),
            ({}, "applicationId"),
            ({"applicationId": WHATSAPP, "name": ""}, "name"),
            ({"applicationId": WHATSAPP, "webhookUrl": "ftp://hooks.example.com"}, "webhookUrl"),
            ({"applicationId": WHATSAPP, "unknown": 1}, "unknown"),
        ],
    )
    async def test_bad_fields_are_400_naming_them(
        self, platform: Platform, tenant: Tenant, body: dict[str, Any], name: str
    ):
        response = await platform.api.post(TOKEN, json=body, headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert name in [e["name"] for e in response.json()["errors"]]

    async def test_it_needs_an_api_key(self, platform: Platform):
        response = await platform.api.post(TOKEN, json={"applicationId": WHATSAPP})
        assert response.status_code == 401


class TestTheSignupEnds:
    async def test_in_a_channel_of_the_company_with_the_signed_up_number(
        self, platform: Platform, tenant: Tenant
    ):
        issued = await platform.token(tenant, name="Support line", webhookUrl="https://hooks.example.com/mmp")
        response = await platform.sign_up(issued["url"])
        assert response.status_code == 201, response.text
        answer = dict(parse_qsl(urlsplit(response.history[0].headers["location"]).query))
        channel = response.json()
        assert channel["applicationId"] == WHATSAPP
        assert channel["name"] == "Support line"
        assert channel["webhookUrl"] == "https://hooks.example.com/mmp"
        assert channel["webhookSecret"].startswith("whsec_")
        assert channel["status"] == 2  # PROCESSING: the sandbox's set-up registers its callback URL
        assert [c["publicId"] for c in await platform.channels(tenant)] == [channel["publicId"]]
        read = await platform.api.get(f"/api/v1/channel/{channel['publicId']}", headers=tenant.headers)
        assert read.status_code == 200

        credentials = await platform.credentials(channel["publicId"])
        assert set(credentials) == {"phoneNumberId", "wabaId", "accessToken", "appSecret", "webhookOverride"}
        assert credentials["appSecret"] == SANDBOX_APP_SECRET
        assert credentials["webhookOverride"] is True  # its set-up points the number's webhooks at it
        assert (credentials["phoneNumberId"], credentials["wabaId"]) == (
            answer["phone_number_id"],
            answer["waba_id"],
        )
        for secret in (credentials["accessToken"], credentials["appSecret"]):
            assert secret not in response.text
        ctx = ProviderContext(platform.http, platform.sim_url, "http://testserver", True)
        [unit] = PROVIDER.plan(ctx, credentials, [Outgoing(1, "85512345670", PROVIDER.example_message)])
        assert isinstance((await unit.call())[1], SendOk)

    async def test_without_a_name_the_channel_is_named_after_its_upstream(
        self, platform: Platform, tenant: Tenant
    ):
        issued = await platform.token(tenant)
        response = await platform.sign_up(issued["url"])
        assert response.status_code == 201, response.text
        assert response.json()["name"] == PROVIDER.title
        assert response.json()["webhookUrl"] is None
        assert response.json()["webhookSecret"] is None


class TestATokenIsRefused:
    async def _nothing_made(self, platform: Platform, tenant: Tenant) -> None:
        assert await platform.channels(tenant) == []

    async def test_when_used_a_second_time_and_nothing_is_asked_upstream(
        self, platform: Platform, tenant: Tenant
    ):
        issued = await platform.token(tenant)
        first = await platform.sign_up(issued["url"])
        assert first.status_code == 201, first.text
        exchanges = await platform.exchanges()
        for _ in range(2):  # the same callback again (a reload), and a whole second sign-up
            again = await platform.api.get(str(first.url))
            assert again.status_code == 409, again.text
            [error] = again.json()["errors"]
            assert (error["name"], error["code"]) == ("state", "EXISTED")
            assert first.json()["publicId"] in error["message"]
            second = await platform.sign_up(issued["url"])
            assert second.status_code == 409
        assert await platform.exchanges() == exchanges
        assert len(await platform.channels(tenant)) == 1

    async def test_when_two_signups_with_it_end_at_once_one_makes_the_channel(
        self, platform: Platform, tenant: Tenant
    ):
        issued = await platform.token(tenant)
        both = await asyncio.gather(platform.sign_up(issued["url"]), platform.sign_up(issued["url"]))
        assert sorted(r.status_code for r in both) == [201, 409], [r.text for r in both]
        assert len(await platform.channels(tenant)) == 1

    @pytest.mark.parametrize("where", [0, 20, 60, 120])
    async def test_when_changed_anywhere(self, platform: Platform, tenant: Tenant, where: int):
        issued = await platform.token(tenant)
        answer = await platform.signup_answer(issued["url"])
        changed = list(answer["state"])
        changed[where] = "A" if changed[where] != "A" else "B"
        answer["state"] = "".join(changed)
        response = await platform.api.get(CALLBACK, params=answer)
        assert response.status_code == 401, response.text
        [error] = response.json()["errors"]
        assert (error["name"], error["code"]) == ("state", "NOT_AUTHENTICATE")
        await self._nothing_made(platform, tenant)

    @pytest.mark.parametrize("state", ["x", "gAAAAA" + "A" * 200, "not base64 at all ☃", "a" * 8192])
    async def test_when_it_is_no_token_at_all(self, platform: Platform, state: str):
        response = await platform.api.get(CALLBACK, params={"state": state, "code": "c"})
        assert response.status_code == 401, response.text
        assert response.json()["errors"][0]["name"] == "state"

    async def test_when_expired(self, platform: Platform, tenant: Tenant):
        issued = await platform.token(tenant)
        answer = await platform.signup_answer(issued["url"])
        with time_machine.travel(issued["expiredAt"] / 1000 + 1, tick=False):
            response = await platform.api.get(CALLBACK, params=answer)
        assert response.status_code == 401, response.text
        assert "expired" in response.json()["errors"][0]["message"]
        await self._nothing_made(platform, tenant)

    async def test_when_the_key_that_asked_for_it_is_revoked(self, platform: Platform, tenant: Tenant):
        created = await platform.api.post(
            "/api/v1/onboard/api-key", json={"name": "ops"}, headers=tenant.headers
        )
        assert created.status_code in (200, 201), created.text
        ops = Tenant(tenant.company_id, created.json()["apiKey"])
        issued = await platform.token(ops)
        revoked = await platform.api.delete(
            f"/api/v1/onboard/api-key/{created.json()['publicId']}", headers=tenant.headers
        )
        assert revoked.status_code == 200
        response = await platform.sign_up(issued["url"])
        assert response.status_code == 401, response.text
        await self._nothing_made(platform, tenant)

    async def test_on_another_providers_callback(self, platform: Platform, tenant: Tenant):
        issued = await platform.token(tenant)
        answer = await platform.signup_answer(issued["url"])
        for provider in ("viber", "no-such-provider"):
            response = await platform.api.get(f"/onboard/{provider}/callback", params=answer)
            assert response.status_code == 404, response.text
            assert response.json()["errors"][0]["name"] == "provider"
        await self._nothing_made(platform, tenant)

    async def test_without_one(self, platform: Platform):
        response = await platform.api.get(CALLBACK, params={"code": "c"})
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "state"


class TestASignupThatFails:
    async def test_a_cancelled_signup_is_400_naming_it_and_makes_nothing(
        self, platform: Platform, tenant: Tenant
    ):
        issued = await platform.token(tenant)
        params = {"state": issued["token"], "error": "access_denied", "error_description": "User denied"}
        response = await platform.api.get(CALLBACK, params=params)
        assert response.status_code == 400, response.text
        [error] = response.json()["errors"]
        assert error["name"] == "error"
        assert "User denied" in error["message"]
        assert await platform.channels(tenant) == []

    async def test_an_upstream_refusal_is_400_and_an_outage_502_and_the_token_still_works(
        self, platform: Platform, tenant: Tenant
    ):
        issued = await platform.token(tenant)
        answer = await platform.signup_answer(issued["url"])
        await platform.http.post(f"{platform.sim_url}/_sandbox/faults", json={"kind": "http_503"})
        down = await platform.api.get(CALLBACK, params=answer)
        assert down.status_code == 502, down.text
        [error] = down.json()["errors"]
        assert (error["name"], error["code"]) == ("upstream", "SERVICE_UNAVAILABLE")

        reused = await platform.api.get(CALLBACK, params={**answer, "code": "AQ-not-a-code"})
        assert reused.status_code == 400, reused.text
        [error] = reused.json()["errors"]
        assert (error["name"], error["code"]) == ("upstream", "BAD_REQUEST")
        assert "WHATSAPP_100" in error["message"]
        assert await platform.channels(tenant) == []

        made = await platform.sign_up(issued["url"])
        assert made.status_code == 201, made.text
        assert [c["publicId"] for c in await platform.channels(tenant)] == [made.json()["publicId"]]


class TestTheDocument:
    async def test_both_routes_are_described_and_only_the_token_needs_a_key(self, platform: Platform):
        spec = (await platform.api.get("/openapi.json")).json()
        token = spec["paths"][TOKEN]["post"]
        callback = spec["paths"]["/onboard/{provider}/callback"]["get"]
        for operation in (token, callback):
            assert operation["tags"] == ["Channel"]
            assert operation["summary"]
        assert token["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ChanelOnboardGenerateTokenRequest"
        )
        assert "security" in token
        assert "security" not in callback
        assert {"201", "400", "401", "404", "409", "502"} <= set(callback["responses"])
