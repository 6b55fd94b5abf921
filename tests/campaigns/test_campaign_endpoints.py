"""Create, list and read bulk campaigns through the API: validation, tenant scope, filters, progress."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from openmmp.campaigns import repository
from openmmp.models import Campaign
from tests.conftest import Tenant
from tests.templates.conftest import create, form

API = "/api/v1/bulk-campaign"


async def approved(
    client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, account: str, **overrides: Any
) -> str:
    created = await create(client, tenant, form(10, account, **overrides))
    response = await client.post(f"/api/v1/template/{created['publicId']}/approve", headers=partner.headers)
    assert response.status_code == 200, response.text
    return str(created["publicId"])


def campaign(account: str, template: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "November card promo",
        "type": 1,
        "category": "MASS",
        "channels": [{"accountId": account, "templateId": template}],
    }
    return body | overrides


async def made(client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(API, json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def error(response: httpx.Response) -> tuple[int, str, str]:
    [first] = response.json()["errors"]
    return response.status_code, first["name"], first["code"]


class TestCreating:
    async def test_a_campaign_starts_pending_with_its_channel_and_template(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, make_channel
    ):
        account = (await make_channel(tenant))["publicId"]
        template = await approved(client, tenant, partner, account)
        created = await made(client, tenant, campaign(account, template, expiredDate=4_102_444_800_000))
        assert created["status"] == 1 and created["cause"] == "PENDING"
        assert created["channels"] == [{"accountId": account, "templateId": template}]
        assert (created["type"], created["category"], created["totalContact"]) == (1, "MASS", 0)
        assert created["expiredDate"] == 4_102_444_800_000
        read = await client.get(f"{API}/{created['publicId']}", headers=tenant.headers)
        assert read.status_code == 200
        assert read.json()["progress"]["total"] == 0
        assert {k: v for k, v in read.json().items() if k != "progress"} == {
            k: v for k, v in created.items() if k != "progress"
        }

    async def test_the_template_must_be_approved_for_the_channel_and_of_the_campaigns_type(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, make_channel
    ):
        account = (await make_channel(tenant))["publicId"]
        other = (await make_channel(tenant))["publicId"]
        waiting = (await create(client, tenant, form(10, account)))["publicId"]
        template = await approved(client, tenant, partner, account)
        for body, expected in (
            (campaign(account, waiting), (400, "channels[0].templateId", "INVALID")),
            (campaign(other, template), (400, "channels[0].templateId", "INVALID")),
            (campaign(account, template, type=2), (400, "channels[0].templateId", "INVALID")),
            (campaign(account, str(uuid.uuid4())), (404, "channels[0].templateId", "RESOURCE_NOT_FOUND")),
            (campaign(str(uuid.uuid4()), template), (404, "channels[0].accountId", "RESOURCE_NOT_FOUND")),
            (campaign(account, template, expiredDate=1), (400, "expiredDate", "INVALID")),
            (campaign(account, template, category="SPAM"), (400, "category", "INVALID")),
            ({**campaign(account, template), "channels": []}, (400, "channels", "INVALID")),
        ):
            response = await client.post(API, json=body, headers=tenant.headers)
            assert error(response) == expected, (body, response.text)

    async def test_another_companys_channel_template_and_campaign_are_404(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, new_company, make_channel
    ):
        account = (await make_channel(tenant))["publicId"]
        template = await approved(client, tenant, partner, account)
        mine = await made(client, tenant, campaign(account, template))
        other = await new_company("Other")
        response = await client.post(API, json=campaign(account, template), headers=other.headers)
        assert error(response) == (404, "channels[0].accountId", "RESOURCE_NOT_FOUND")
        read = await client.get(f"{API}/{mine['publicId']}", headers=other.headers)
        assert error(read) == (404, "campaignId", "RESOURCE_NOT_FOUND")
        listed = await client.get(API, headers=other.headers)
        assert listed.json()["total"] == 0


class TestListing:
    async def test_filters_and_pages(
        self, app, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, make_channel
    ):
        account = (await make_channel(tenant))["publicId"]
        template = await approved(client, tenant, partner, account)
        names = ["Promo November", "Promo December", "Card notice"]
        ids = [(await made(client, tenant, campaign(account, template, name=n)))["publicId"] for n in names]
        async with app.state.db.write_sessions() as session, session.begin():
            stopped = (
                await session.execute(select(Campaign).where(Campaign.public_id == ids[1]))
            ).scalar_one()
            stopped.status = 9

        everything = (await client.get(API, headers=tenant.headers)).json()
        assert (everything["total"], [c["publicId"] for c in everything["items"]]) == (3, ids[::-1])
        promos = (await client.get(API, params={"name": "promo"}, headers=tenant.headers)).json()
        assert [c["name"] for c in promos["items"]] == ["Promo December", "Promo November"]
        cancelled = (await client.get(API, params={"status": 9}, headers=tenant.headers)).json()
        assert [c["publicId"] for c in cancelled["items"]] == [ids[1]]
        second = (await client.get(API, params={"page": 2, "size": 2}, headers=tenant.headers)).json()
        assert (
            second["total"],
            second["page"],
            second["size"],
            [c["publicId"] for c in second["items"]],
        ) == (3, 2, 2, [ids[0]])
        none = (await client.get(API, params={"type": 2}, headers=tenant.headers)).json()
        assert none["total"] == 0
        bad = await client.get(API, params={"status": 5}, headers=tenant.headers)
        assert error(bad) == (400, "status", "INVALID")


class TestProgress:
    async def test_contacts_are_counted_per_status_and_a_phone_once(
        self, app, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, make_channel
    ):
        account = (await make_channel(tenant))["publicId"]
        template = await approved(client, tenant, partner, account)
        created = await made(client, tenant, campaign(account, template))
        async with app.state.db.write_sessions() as session, session.begin():
            row = (
                await session.execute(select(Campaign).where(Campaign.public_id == created["publicId"]))
            ).scalar_one()
            first = await repository.add_contacts(
                session, row.id, [{"phone": f"8551234567{n}", "params": {}} for n in range(3)]
            )
            again = await repository.add_contacts(
                session,
                row.id,
                [{"phone": "85512345670", "params": {}}, {"phone": "85512345679", "params": {}, "status": 3}],
            )
        assert (first, again) == (3, 1)
        progress = (await client.get(f"{API}/{created['publicId']}", headers=tenant.headers)).json()[
            "progress"
        ]
        counts = {k: v for k, v in progress.items() if k not in ("ratePerSecond", "etaSeconds")}
        assert counts == {**dict.fromkeys(counts, 0), "total": 4, "notSend": 3, "fail": 1}
        # The channel's limit (Viber Bot: 500 per 10 s, 95 % of it); no ETA before it is broadcast.
        assert (progress["ratePerSecond"], progress["etaSeconds"]) == (47.5, None)
