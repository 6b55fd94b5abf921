"""A system of the campaign tests' own (its own database), so that their task runner meets their tasks only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from openmmp.settings import Settings
from tests.conftest import TEST_SECRET, Tenant, asgi_client, bot_credentials, migrated_database, running_app
from tests.templates.conftest import create, form

API = "/api/v1/bulk-campaign"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def campaign_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> str:
    return migrated_database(request.param, tmp_path_factory, f"{worker_name}_campaigns")


@pytest.fixture(scope="session")
async def campaign_app(
    campaign_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    settings = Settings(
        database_url=campaign_database_url,
        data_dir=tmp_path_factory.mktemp("campaign-data"),
        secret_key=TEST_SECRET,
        sandbox=False,
    )
    async with running_app(settings) as application:
        yield application


@pytest.fixture(scope="session")
async def campaign_client(campaign_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(campaign_app) as http_client:
        yield http_client


@pytest.fixture(scope="session")
async def campaign_partner(campaign_app: Any) -> Tenant:
    from openmmp.companies.service import companies

    async with campaign_app.state.db.write_sessions() as session, session.begin():
        company, key = await companies.create_partner(session, campaign_app.state.keyring, name="Campaigns")
        return Tenant(company.public_id, key)


@pytest.fixture
async def company(campaign_client: httpx.AsyncClient, campaign_partner: Tenant) -> Tenant:
    return await onboard(campaign_client, campaign_partner)


async def onboard(campaign_client: httpx.AsyncClient, campaign_partner: Tenant) -> Tenant:
    """A new company of the partner, with its API key."""
    number = uuid.uuid4().hex[:12]
    body = {
        "company": {"name": f"Campaigns {number}", "country": "KH"},
        "admin": {"name": "Admin", "email": f"admin{number}@example.com"},
    }
    response = await campaign_client.post("/api/v1/onboard", json=body, headers=campaign_partner.headers)
    assert response.status_code == 201, response.text
    return Tenant(response.json()["companyPublicId"], response.json()["apiKey"])


async def make_campaign(
    client: httpx.AsyncClient,
    partner: Tenant,
    tenant: Tenant,
    *,
    application_id: int = 10,
    credentials: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    campaign: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A PENDING campaign of a new channel of `application_id` (default: Viber Bot; country KH) and an
    APPROVED template of `name` and `code`."""
    channel = await client.post(
        "/api/v1/channel",
        json={
            "name": "Campaign channel",
            "applicationId": application_id,
            "credentials": credentials or bot_credentials(),
            "settings": {"defaultCountry": "KH"} | (settings or {}),
        },
        headers=tenant.headers,
    )
    assert channel.status_code == 201, channel.text
    account = channel.json()["publicId"]
    template = await create(client, tenant, form(application_id, account))
    approved = await client.post(f"/api/v1/template/{template['publicId']}/approve", headers=partner.headers)
    assert approved.status_code == 200, approved.text
    body = {
        "name": "Promo",
        "type": 1,
        "channels": [{"accountId": account, "templateId": template["publicId"]}],
    } | (campaign or {})
    created = await client.post(API, json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


@pytest.fixture
async def pending_campaign(
    campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> dict[str, Any]:
    """A PENDING campaign of a Viber Bot channel (default country KH) and a template of `name` and `code`."""
    return await make_campaign(campaign_client, campaign_partner, company)
