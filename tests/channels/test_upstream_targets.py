"""An SMS channel's SMSC `host` is tenant input the server connects to: refused when it is local or
private, like a webhook URL, unless the operator allows that host (`OPENMMP_PROVIDERS__ALLOWED_HOSTS`)."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, asgi_client, running_app

from openmmp.settings import Settings
from openmmp.webhooks.guard import upstream_target_check

CHANNELS = "/api/v1/channel"


def sms(host: str) -> dict[str, Any]:
    return {
        "name": "SMS",
        "applicationId": 3,
        "credentials": {
            "host": host,
            "port": 2775,
            "systemId": f"s{uuid.uuid4().hex[:12]}",
            "password": "secret",
            "sourceAddr": "ACME",
        },
    }


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.0.0.5", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("localhost", "a local name"),
        ("smsc.internal", "a local name"),
    ],
)
async def test_a_private_smsc_host_is_refused_when_the_channel_is_saved(
    client: httpx.AsyncClient, tenant: Tenant, host: str, problem: str
):
    response = await client.post(CHANNELS, json=sms(host), headers=tenant.headers)
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["name"] == "credentials.host"
    assert problem in error["message"]
    assert "the server connects to public" in error["message"]


async def test_new_credentials_are_checked_as_well(client: httpx.AsyncClient, tenant: Tenant):
    created = await client.post(CHANNELS, json=sms("smsc.example.com"), headers=tenant.headers)
    assert created.status_code == 201, created.text
    edited = await client.post(
        f"{CHANNELS}/{created.json()['publicId']}",
        json={"credentials": sms("192.168.1.20")["credentials"]},
        headers=tenant.headers,
    )
    assert edited.status_code == 400
    assert edited.json()["errors"][0]["name"] == "credentials.host"


async def test_the_operator_can_allow_its_own_smsc(settings: Settings, partner: Tenant):
    allowing = settings.model_copy(
        update={"providers": settings.providers.model_copy(update={"allowed_hosts": "10.0.0.5, smsc.lan"})}
    )
    async with running_app(allowing) as app, asgi_client(app) as client:
        body = {
            "company": {"name": "Telco customer", "country": "KH"},
            "admin": {"name": "Admin", "email": f"{uuid.uuid4().hex}@example.com"},
        }
        onboarded = await client.post("/api/v1/onboard", json=body, headers=partner.headers)
        tenant = Tenant(onboarded.json()["companyPublicId"], onboarded.json()["apiKey"])
        for host in ("10.0.0.5", "SMSC.LAN."):
            response = await client.post(CHANNELS, json=sms(host), headers=tenant.headers)
            assert response.status_code == 201, response.text
        refused = await client.post(CHANNELS, json=sms("10.0.0.6"), headers=tenant.headers)
        assert refused.status_code == 400


def test_connections_are_checked_by_address_with_the_operators_hosts_let_through():
    check = upstream_target_check(["smsc.lan", "10.0.0.5"])
    assert check("smsc.lan", ipaddress.ip_address("10.9.9.9")) is None
    assert check("other.example", ipaddress.ip_address("10.0.0.5")) is None
    assert check("rebound.example", ipaddress.ip_address("127.0.0.1")) == "a loopback address"
    assert check("public.example", ipaddress.ip_address("93.184.216.34")) is None
