"""The portal's channel pages: the list, a new channel from its application's credentials model, editing,
the webhook secret, a test send followed live, and one company never reaching another's channels."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openmmp.companies import repository as companies_repository
from openmmp.kit.time import now_ms
from openmmp.messages.schemas import ResponseStatusMessage
from openmmp.models import User
from openmmp.models.message import MessageStatus
from openmmp.portal.pages.channels import _settled
from openmmp.providers.applications import Application
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings
from tests.conftest import (
    Tenant,
    asgi_client,
    bot_credentials,
    create_channel,
    running_app,
    viber_credentials,
)
from tests.portal.conftest import PortalClient, look_at, set_up_and_sign_in

CHANNELS = "/portal/channels"
API = "/api/v1/channel"
_CREDENTIAL_INPUT = re.compile(r'name="credentials\.(\w+)" type="([^"]*)" value="([^"]*)"')


def _bot_form(name: str = "Support bot", **extra: str) -> dict[str, str]:
    credentials = bot_credentials()
    return {
        "applicationId": "10",
        "name": name,
        "credentials.authToken": credentials["authToken"],
        "credentials.senderName": credentials["senderName"],
        **extra,
    }


def _created_id(response: httpx.Response) -> str:
    if response.status_code == 303:
        return response.headers["location"].split("?")[0].rsplit("/", 1)[1]
    found = re.search(r'id="channel-id">([^<]+)<', response.text)
    assert found, response.text
    return found.group(1)


async def _api_channel(client: httpx.AsyncClient, tenant: Tenant, public_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/{public_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    channel: dict[str, Any] = response.json()
    return channel


class TestList:
    async def test_it_lists_the_company_s_channels_and_whether_each_has_a_webhook(
        self, admin: PortalClient, tenant: Tenant, make_channel: Callable[..., Awaitable[dict[str, Any]]]
    ):
        hooked = await make_channel(tenant, name="Hooked bot", webhookUrl="https://hooks.example.com/a")
        quiet = await make_channel(tenant, name="Quiet bot")
        page = await admin.get(CHANNELS)
        assert page.status_code == 200
        for channel in (hooked, quiet):
            assert channel["publicId"] in page.text
            assert channel["name"] in page.text
        assert "Viber Bot" in page.text
        hooked_row = page.text.split(f'data-channel="{hooked["publicId"]}"')[1].split("</tr>")[0]
        quiet_row = page.text.split(f'data-channel="{quiet["publicId"]}"')[1].split("</tr>")[0]
        assert "Set" in hooked_row and "Not set" in quiet_row
        assert "status-processing" in hooked_row  # a bot waits for its set-up job

    async def test_another_company_s_channels_are_not_listed(
        self,
        admin: PortalClient,
        new_company: Callable[..., Awaitable[Tenant]],
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        other = await make_channel(await new_company(), name="Not yours")
        page = await admin.get(CHANNELS)
        assert other["publicId"] not in page.text


class TestTheForm:
    async def test_each_application_has_its_own_credential_fields(self, admin: PortalClient):
        sms = await admin.get(f"{CHANNELS}/new?applicationId=3")
        bot = await admin.get(f"{CHANNELS}/new?applicationId=10")
        assert sms.status_code == bot.status_code == 200
        sms_fields = {name: kind for name, kind, _ in _CREDENTIAL_INPUT.findall(sms.text)}
        bot_fields = {name: kind for name, kind, _ in _CREDENTIAL_INPUT.findall(bot.text)}
        assert sms_fields["host"] == "text" and sms_fields["port"] == "number"
        assert sms_fields["password"] == "password"  # a secret is typed unseen
        assert sms_fields["binds"] == "number"
        assert 'name="credentials.bindMode"' in sms.text  # a choice of the model's values
        assert bot_fields == {"authToken": "password", "senderName": "text", "senderAvatar": "text"}
        assert "systemId" not in bot.text
        # Required fields are marked; a field's description is its hint.
        assert re.search(r'id="cred-senderName"[^>]* required', bot.text)
        assert not re.search(r'id="cred-senderAvatar"[^>]* required', bot.text)
        assert "Sender id or number" in sms.text

    async def test_without_an_application_it_asks_for_one(self, admin: PortalClient):
        page = await admin.get(f"{CHANNELS}/new")
        assert page.status_code == 200
        assert 'id="f-applicationId"' in page.text
        assert 'id="channel-form"' not in page.text
        for provider in REGISTRY.providers:
            assert provider.title in page.text

    async def test_an_unknown_application_is_400_naming_it(self, admin: PortalClient):
        page = await admin.get(f"{CHANNELS}/new?applicationId=99")
        assert page.status_code == 400
        assert "applicationId" in page.text

    async def test_outside_sandbox_mode_there_is_no_sandbox_fill(self, admin: PortalClient):
        page = await admin.get(f"{CHANNELS}/new?applicationId=10&fill=sandbox")
        assert 'id="fill-sandbox"' not in page.text
        assert all(value == "" for _, _, value in _CREDENTIAL_INPUT.findall(page.text))

    async def test_an_operator_assigned_application_warns_the_company(self, admin: PortalClient):
        page = await admin.get(f"{CHANNELS}/new?applicationId=1")
        assert 'id="partner-only"' in page.text


class TestCreate:
    async def test_a_viber_bot_channel_made_in_the_portal_is_the_api_s(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        form = _bot_form(defaultCountry="kh")
        response = await admin.post(CHANNELS, form)
        assert response.status_code == 303, response.text
        public_id = _created_id(response)
        channel = await _api_channel(client, tenant, public_id)
        assert channel["name"] == "Support bot"
        assert channel["applicationId"] == 10
        assert channel["settings"] == {"defaultCountry": "KH"}
        assert channel["webhookUrl"] is None
        page = await admin.get(response.headers["location"])
        assert "Channel Support bot created" in page.text
        assert form["credentials.authToken"] not in page.text  # credentials are never shown back

    async def test_with_a_webhook_url_its_secret_is_shown_once(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        response = await admin.post(CHANNELS, _bot_form(webhookUrl="https://hooks.example.com/new"))
        assert response.status_code == 201, response.text
        secret = re.search(r'id="webhook-secret">(whsec_[^<]+)<', response.text)
        assert secret, response.text
        public_id = _created_id(response)
        assert (await _api_channel(client, tenant, public_id))[
            "webhookUrl"
        ] == "https://hooks.example.com/new"
        again = await admin.get(f"{CHANNELS}/{public_id}")
        assert secret.group(1) not in again.text
        assert 'id="webhook-secret"' not in again.text

    async def test_a_missing_credential_is_400_naming_it_and_the_form_is_shown_again(
        self, admin: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        form = _bot_form(name="Half a bot")
        del form["credentials.senderName"]
        before = (await client.get(API, headers=tenant.headers)).json()["total"]
        response = await admin.post(CHANNELS, form)
        assert response.status_code == 400
        assert "credentials.senderName" in response.text
        assert "required for VIBER_BOT channels" in response.text
        assert 'id="channel-form"' in response.text and 'value="Half a bot"' in response.text
        assert form["credentials.authToken"] not in response.text  # a secret is not echoed back
        assert (await client.get(API, headers=tenant.headers)).json()["total"] == before

    async def test_no_typed_credential_comes_back_whatever_its_name(self, admin: PortalClient):
        smtp_url = "smtp://mailer:hunter2-secret@smtp.example.com:587"
        form = {
            "applicationId": "24",
            "name": "Mail",
            "credentials.from": "not an address",
            "credentials.smtpUrl": smtp_url,
        }
        response = await admin.post(CHANNELS, form)
        assert response.status_code == 400
        assert "credentials.from" in response.text
        assert "hunter2" not in response.text and "not an address" not in response.text

    async def test_a_bad_credential_value_is_named(self, admin: PortalClient):
        response = await admin.post(CHANNELS, _bot_form(**{"credentials.senderName": "x" * 29}))
        assert response.status_code == 400
        assert "credentials.senderName" in response.text

    async def test_a_bad_webhook_url_is_named(self, admin: PortalClient):
        response = await admin.post(CHANNELS, _bot_form(webhookUrl="not a url"))
        assert response.status_code == 400
        assert "webhookUrl" in response.text

    async def test_a_bot_another_channel_has_is_409_naming_the_credential(
        self, admin: PortalClient, tenant: Tenant, make_channel: Callable[..., Awaitable[dict[str, Any]]]
    ):
        taken = bot_credentials()
        await make_channel(tenant, credentials=taken)
        response = await admin.post(CHANNELS, _bot_form(**{"credentials.authToken": taken["authToken"]}))
        assert response.status_code == 409
        assert "credentials.authToken" in response.text

    async def test_a_company_cannot_take_an_operator_assigned_account(self, admin: PortalClient):
        form = {
            "applicationId": "1",
            "name": "BM",
            "credentials.serviceId": str(viber_credentials()["serviceId"]),
        }
        response = await admin.post(CHANNELS, form)
        assert response.status_code == 403
        assert "credentials.serviceId" in response.text
        assert "partner" in response.text

    async def test_the_operator_acting_for_the_company_may_bind_it(
        self, operator: PortalClient, tenant: Tenant, client: httpx.AsyncClient
    ):
        await look_at(operator, tenant)
        service = str(viber_credentials()["serviceId"])
        form = {"applicationId": "1", "name": "BM", "credentials.serviceId": service, "credentials.label": ""}
        response = await operator.post(CHANNELS, form)
        assert response.status_code == 303, response.text
        channel = await _api_channel(client, tenant, _created_id(response))
        assert channel["applicationId"] == 1 and channel["name"] == "BM"

    async def test_creating_needs_the_csrf_token(self, admin: PortalClient, tenant: Tenant, client):
        before = (await client.get(API, headers=tenant.headers)).json()["total"]
        response = await admin.http.post(CHANNELS, data=_bot_form())
        assert response.status_code == 403
        assert (await client.get(API, headers=tenant.headers)).json()["total"] == before


class TestEdit:
    async def test_a_new_webhook_url_is_saved_and_its_first_secret_shown(
        self,
        admin: PortalClient,
        tenant: Tenant,
        client: httpx.AsyncClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        channel = await make_channel(tenant, name="Old name")
        url = f"{CHANNELS}/{channel['publicId']}"
        form = {"name": "New name", "webhookUrl": "https://hooks.example.com/edited", "defaultCountry": ""}
        response = await admin.post(url, form)
        assert response.status_code == 200, response.text
        assert re.search(r'id="webhook-secret">whsec_', response.text)
        read = await _api_channel(client, tenant, channel["publicId"])
        assert read["name"] == "New name"
        assert read["webhookUrl"] == "https://hooks.example.com/edited"
        # A rename keeps the secret: nothing secret is shown then.
        renamed = await admin.post(url, {**form, "name": "Newer name"})
        assert renamed.status_code == 303
        assert (await _api_channel(client, tenant, channel["publicId"]))["name"] == "Newer name"

    async def test_a_bad_webhook_url_is_400_naming_it(
        self, admin: PortalClient, tenant: Tenant, make_channel: Callable[..., Awaitable[dict[str, Any]]]
    ):
        channel = await make_channel(tenant)
        response = await admin.post(
            f"{CHANNELS}/{channel['publicId']}", {"name": "Bot", "webhookUrl": "ftp://example.com/x"}
        )
        assert response.status_code == 400
        assert "webhookUrl" in response.text

    async def test_the_secret_can_be_made_anew_or_chosen(
        self,
        admin: PortalClient,
        tenant: Tenant,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        channel = await make_channel(tenant, webhookUrl="https://hooks.example.com/s")
        url = f"{CHANNELS}/{channel['publicId']}/webhook-secret"
        first = await admin.post(url)
        second = await admin.post(url)
        made = [re.search(r'id="webhook-secret">(whsec_[^<]+)<', r.text) for r in (first, second)]
        assert all(made), first.text
        assert made[0] and made[1] and made[0].group(1) != made[1].group(1)
        own = "whsec_" + "A" * 32
        chosen = await admin.post(url, {"secret": own})
        assert own in chosen.text
        bad = await admin.post(url, {"secret": "not-a-secret"})
        assert bad.status_code == 400
        assert "secret" in bad.text

    async def test_without_a_webhook_url_there_is_no_secret_to_make(
        self, admin: PortalClient, tenant: Tenant, make_channel: Callable[..., Awaitable[dict[str, Any]]]
    ):
        channel = await make_channel(tenant)
        response = await admin.post(f"{CHANNELS}/{channel['publicId']}/webhook-secret")
        assert response.status_code == 400
        assert "webhookUrl" in response.text

    async def test_editing_needs_the_csrf_token(
        self,
        admin: PortalClient,
        tenant: Tenant,
        client: httpx.AsyncClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        channel = await make_channel(tenant, name="Kept")
        response = await admin.http.post(f"{CHANNELS}/{channel['publicId']}", data={"name": "Forged"})
        assert response.status_code == 403
        assert (await _api_channel(client, tenant, channel["publicId"]))["name"] == "Kept"


async def _viber(client: httpx.AsyncClient, tenant: Tenant, partner: Tenant) -> dict[str, Any]:
    body = {"name": "BM", "applicationId": 1, "credentials": viber_credentials()}
    response = await create_channel(client, tenant, partner, body)
    assert response.status_code == 201, response.text
    channel: dict[str, Any] = response.json()
    return channel


class TestTestSend:
    async def test_a_test_message_is_the_api_s_and_its_status_is_followed(
        self, admin: PortalClient, tenant: Tenant, partner: Tenant, client: httpx.AsyncClient
    ):
        channel = await _viber(client, tenant, partner)
        base = f"{CHANNELS}/{channel['publicId']}"
        response = await admin.htmx("POST", f"{base}/test", {"phone": "+855 12 345 678", "text": "Hello"})
        assert response.status_code == 200, response.text
        message_id = re.search(r'id="test-message-id">([^<]+)<', response.text)
        assert message_id, response.text
        status_url = f"{base}/messages/{message_id.group(1)}/status"
        assert re.search(r'id="test-status" role="status" hx-get="' + re.escape(status_url), response.text)
        assert 'hx-trigger="every 1s"' in response.text
        assert "PENDING" in response.text
        api = await client.get(f"/api/v1/message/{message_id.group(1)}/status", headers=tenant.headers)
        assert api.status_code == 200
        assert api.json()["phone"] == "85512345678"
        assert api.json()["publicId"] == channel["publicId"]
        assert api.json()["status"] == 1
        poll = await admin.htmx("GET", status_url)
        assert poll.status_code == 200  # not final: htmx goes on asking
        assert "PENDING" in poll.text
        assert 'id="test-detail" hx-swap-oob="true"' in poll.text

    async def test_without_htmx_the_page_shows_the_message_after_the_send(
        self, admin: PortalClient, tenant: Tenant, partner: Tenant, client: httpx.AsyncClient
    ):
        channel = await _viber(client, tenant, partner)
        base = f"{CHANNELS}/{channel['publicId']}"
        response = await admin.post(f"{base}/test", {"phone": "+85512345670", "text": "Hi"})
        assert response.status_code == 303
        assert response.headers["location"].startswith(f"{base}?message=")
        page = await admin.get(response.headers["location"])
        assert 'id="test-status"' in page.text and "PENDING" in page.text

    async def test_at_a_final_status_the_poll_says_stop(
        self,
        admin: PortalClient,
        tenant: Tenant,
        partner: Tenant,
        client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ):
        channel = await _viber(client, tenant, partner)
        base = f"{CHANNELS}/{channel['publicId']}"
        sent = await admin.htmx("POST", f"{base}/test", {"phone": "+85512345678", "text": "Hello"})
        message_id = re.search(r'id="test-message-id">([^<]+)<', sent.text)
        assert message_id
        monkeypatch.setattr("openmmp.portal.pages.channels._settled", lambda found, provider: True)
        poll = await admin.htmx("GET", f"{base}/messages/{message_id.group(1)}/status")
        assert poll.status_code == 286  # htmx's "stop polling"
        page = await admin.get(f"{base}?message={message_id.group(1)}")
        assert page.status_code == 200
        assert re.search(r'id="test-status" role="status">', page.text)  # no hx-get: nothing to ask

    async def test_a_bad_phone_is_400_naming_it(
        self, admin: PortalClient, tenant: Tenant, partner: Tenant, client: httpx.AsyncClient
    ):
        channel = await _viber(client, tenant, partner)
        base = f"{CHANNELS}/{channel['publicId']}"
        response = await admin.htmx("POST", f"{base}/test", {"phone": "12", "text": "Hello"})
        assert response.status_code == 400
        assert "phone" in response.text
        empty = await admin.htmx("POST", f"{base}/test", {"phone": "+85512345678", "text": ""})
        assert empty.status_code == 400
        assert "text" in empty.text

    async def test_sending_needs_the_csrf_token(
        self, admin: PortalClient, tenant: Tenant, partner: Tenant, client: httpx.AsyncClient
    ):
        channel = await _viber(client, tenant, partner)
        response = await admin.http.post(
            f"{CHANNELS}/{channel['publicId']}/test", data={"phone": "+85512345678", "text": "Hi"}
        )
        assert response.status_code == 403

    def test_polling_stops_at_a_final_status(self):
        def message(status: MessageStatus, created: int | None = None) -> ResponseStatusMessage:
            return ResponseStatusMessage(
                message_id="m",
                client_message_id="c",
                phone="85512345678",
                status=status,
                cause=status.name,
                application_id=1,
                public_id="p",
                created_date=created or now_ms(),
                timestamp=now_ms(),
                history=[],
            )

        viber, sms, telegram = (
            REGISTRY.of(a) for a in (Application.VIBER, Application.SMS, Application.TELEGRAM)
        )
        assert _settled(message(MessageStatus.READ), viber)
        assert _settled(message(MessageStatus.FAIL), viber)
        assert not _settled(message(MessageStatus.DELIVERED), viber)
        assert _settled(message(MessageStatus.DELIVERED), sms)  # SMS reports no reading
        assert _settled(message(MessageStatus.SENT), telegram)  # nor Telegram a delivery
        assert not _settled(message(MessageStatus.PENDING), viber)
        assert _settled(message(MessageStatus.DELIVERED, now_ms() - 11 * 60_000), viber)


class TestIsolation:
    async def test_another_company_s_channel_is_404_everywhere(
        self,
        admin: PortalClient,
        new_company: Callable[..., Awaitable[Tenant]],
        partner: Tenant,
        client: httpx.AsyncClient,
    ):
        other = await new_company()
        channel = await _viber(client, other, partner)
        sent = await client.post(
            f"{API}/{channel['publicId']}/broadcast",
            json={"phone": "+85512345678", "message": {"type": "text", "message": "Hi"}},
            headers=other.headers,
        )
        assert sent.status_code == 200, sent.text
        base = f"{CHANNELS}/{channel['publicId']}"
        assert (await admin.get(base)).status_code == 404
        assert (await admin.post(base, {"name": "Mine now"})).status_code == 404
        assert (await admin.post(f"{base}/webhook-secret")).status_code == 404
        test = await admin.post(f"{base}/test", {"phone": "+85512345678", "text": "Hi"})
        assert test.status_code == 404
        status = await admin.get(f"{base}/messages/{sent.json()['messageId']}/status")
        assert status.status_code == 404
        assert (await _api_channel(client, other, channel["publicId"]))["name"] == "BM"

    async def test_another_company_s_message_is_404_on_one_s_own_channel(
        self,
        admin: PortalClient,
        tenant: Tenant,
        new_company: Callable[..., Awaitable[Tenant]],
        partner: Tenant,
        client: httpx.AsyncClient,
    ):
        mine = await _viber(client, tenant, partner)
        other = await new_company()
        theirs = await _viber(client, other, partner)
        sent = await client.post(
            f"{API}/{theirs['publicId']}/broadcast",
            json={"phone": "+85512345678", "message": {"type": "text", "message": "Hi"}},
            headers=other.headers,
        )
        response = await admin.get(
            f"{CHANNELS}/{mine['publicId']}/messages/{sent.json()['messageId']}/status"
        )
        assert response.status_code == 404


@pytest.fixture
async def sandbox_app(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(settings.model_copy(update={"sandbox": True})) as application:
        yield application


@asynccontextmanager
async def _signed_in_on(app: Any, tenant: Tenant) -> AsyncIterator[PortalClient]:
    """The tenant's admin signed in to `app` (the sandbox app: another app over the same database)."""
    async with app.state.db.read_sessions() as session:
        company = await companies_repository.get_by_public_id(session, tenant.company_id)
        assert company is not None
        admin = (await session.scalars(select(User).where(User.company_id == company.id))).first()
        assert admin is not None
    async with asgi_client(app) as http:
        yield await set_up_and_sign_in(http, app, admin.id, admin.email)


class TestSandbox:
    async def test_the_sandbox_credentials_fill_the_form_and_make_a_working_channel(
        self, sandbox_app: Any, tenant: Tenant
    ):
        async with asgi_client(sandbox_app) as api:
            # The sandbox's demo channel holds the sandbox credentials themselves.
            demo = {
                "name": "Demo",
                "applicationId": 10,
                "credentials": dict(REGISTRY.sandbox_credentials(Application.VIBER_BOT)),
            }
            held = await api.post(API, json=demo, headers=tenant.headers)
            assert held.status_code in (201, 409), held.text
            async with _signed_in_on(sandbox_app, tenant) as admin:
                blank = await admin.get(f"{CHANNELS}/new?applicationId=10")
                assert 'id="fill-sandbox"' in blank.text
                filled = await admin.get(f"{CHANNELS}/new?applicationId=10&fill=sandbox")
                values = {name: value for name, _, value in _CREDENTIAL_INPUT.findall(filled.text)}
                assert values["senderName"] == "OpenMMP Demo"
                assert values["authToken"].startswith("demo-viber-bot-token-")
                form = {f"credentials.{name}": value for name, value in values.items()}
                response = await admin.post(CHANNELS, {"applicationId": "10", "name": "Tester", **form})
                assert response.status_code == 303, response.text
                read = await api.get(f"{API}/{_created_id(response)}", headers=tenant.headers)
                assert read.json()["name"] == "Tester"

    async def test_a_company_may_bind_a_sandbox_viber_service(self, sandbox_app: Any, tenant: Tenant):
        async with _signed_in_on(sandbox_app, tenant) as admin:
            page = await admin.get(f"{CHANNELS}/new?applicationId=1&fill=sandbox")
            assert 'id="partner-only"' not in page.text
            values = {name: value for name, _, value in _CREDENTIAL_INPUT.findall(page.text)}
            form = {"applicationId": "1", "name": "BM", "credentials.serviceId": values["serviceId"]}
            response = await admin.post(CHANNELS, form)
            assert response.status_code == 303, response.text


class TestSetUpStatus:
    async def test_the_status_fragment_follows_the_set_up_and_stops_when_launched(
        self, admin: Any, tenant: Any, make_channel: Any
    ):
        channel = await make_channel(tenant)
        fragment = await admin.htmx("GET", f"/portal/channels/{channel['publicId']}/setup")
        assert fragment.status_code == 200
        assert 'id="channel-status"' in fragment.text
        launched = "LAUNCH" in fragment.text
        assert ("hx-trigger" in fragment.text) is not launched

    async def test_another_companys_channel_is_404(self, admin: Any, new_company: Any, make_channel: Any):
        other = await make_channel(await new_company())
        response = await admin.htmx("GET", f"/portal/channels/{other['publicId']}/setup")
        assert response.status_code == 404
