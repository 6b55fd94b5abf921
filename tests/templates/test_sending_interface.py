"""What a send of a template uses (`sendable`, `variables_of`, `message_for`): only the company's APPROVED
template, on a channel it is for, as the message it goes as."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import Tenant, viber_credentials
from tests.templates.conftest import TEXT, create, form

from openmmp.api_keys.auth import Subject
from openmmp.errors import AppError
from openmmp.models import Channel, Company
from openmmp.templates import service as templates


async def subject_of(app: Any, tenant: Tenant) -> Subject:
    async with app.state.db.read_sessions() as session:
        company = (
            await session.execute(select(Company).where(Company.public_id == tenant.company_id))
        ).scalar_one()
        return Subject(company.id, company.public_id, company.type, api_key_id=0)


async def sendable(app: Any, tenant: Tenant, template_id: str, account_id: str) -> Any:
    """`templates.sendable` on the tenant's channel `account_id`: the template, or the error it raised."""
    subject = await subject_of(app, tenant)
    async with app.state.db.read_sessions() as session:
        channel = (await session.execute(select(Channel).where(Channel.public_id == account_id))).scalar_one()
        try:
            return await templates.sendable(session, subject, public_id=template_id, channel=channel)
        except AppError as exc:
            return (exc.status_code, exc.name)


class TestSendable:
    async def test_an_approved_template_on_its_channel_goes_as_its_first_message_unfilled(
        self, app, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot
    ):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        assert await sendable(app, tenant, created["publicId"], channel["publicId"]) == (400, "templateId")
        approved = await client.post(
            f"/api/v1/template/{created['publicId']}/approve", headers=partner.headers
        )
        assert approved.status_code == 200, approved.text

        template = await sendable(app, tenant, created["publicId"], channel["publicId"])
        assert templates.variables_of(template) == ["code", "name"]
        assert templates.message_for(template, {"code": "1", "name": "Dara"}) == TEXT

    async def test_not_on_a_channel_it_is_not_for(
        self, app, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot, make_channel
    ):
        own, other = await bot(tenant), await bot(tenant)
        created = await create(client, tenant, form(10, own["publicId"]))
        await client.post(f"/api/v1/template/{created['publicId']}/approve", headers=partner.headers)
        assert await sendable(app, tenant, created["publicId"], other["publicId"]) == (400, "templateId")

    async def test_a_template_without_a_channel_serves_its_applications_channels_only(
        self, app, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot, make_channel
    ):
        channel = await bot(tenant)
        viber = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
        created = await create(client, tenant, form(10))
        await client.post(f"/api/v1/template/{created['publicId']}/approve", headers=partner.headers)
        template = await sendable(app, tenant, created["publicId"], channel["publicId"])
        assert template.public_id == created["publicId"]
        assert await sendable(app, tenant, created["publicId"], viber["publicId"]) == (400, "templateId")

    @pytest.mark.parametrize("template_id", ["not-a-uuid", "01a24c84-0000-7000-8000-000000000000"])
    async def test_an_unknown_template_is_404(self, app, tenant: Tenant, bot, template_id: str):
        channel = await bot(tenant)
        assert await sendable(app, tenant, template_id, channel["publicId"]) == (404, "templateId")

    async def test_another_companys_template_is_404(
        self, app, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, new_company, bot
    ):
        owner = await new_company()
        theirs = await bot(owner)
        created = await create(client, owner, form(10))
        await client.post(f"/api/v1/template/{created['publicId']}/approve", headers=partner.headers)
        assert await sendable(app, owner, created["publicId"], theirs["publicId"]) != (404, "templateId")
        mine = await bot(tenant)
        assert await sendable(app, tenant, created["publicId"], mine["publicId"]) == (404, "templateId")
