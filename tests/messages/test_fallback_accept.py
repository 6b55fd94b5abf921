"""A send's fallback is checked when it is accepted: every channel named is the company's, sends to a
phone, and takes the message; the plan rides on the message, with a timer job when it has a timer."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import Tenant, bot_credentials, viber_credentials
from tests.messages.test_message_endpoints import TEXT, launch, send

from openmmp.models import Job, Message


@pytest.fixture
async def channels(app, make_channel, tenant: Tenant) -> dict[str, dict[str, Any]]:
    sms_credentials = {
        "host": "smsc.example.com",
        "port": 2775,
        "systemId": f"f{uuid.uuid4().hex[:12]}",
        "password": "secret",
        "sourceAddr": "ACME",
    }
    made = {
        "viber": await make_channel(tenant, applicationId=1, credentials=viber_credentials()),
        "sms": await make_channel(tenant, applicationId=3, credentials=sms_credentials),
        "bot": await make_channel(tenant, applicationId=10, credentials=bot_credentials()),
    }
    for channel in made.values():
        await launch(app, channel)
    return made


async def test_the_plan_rides_on_the_message_with_a_timer(
    app, client: httpx.AsyncClient, tenant: Tenant, channels
):
    body = {
        "phone": "85512345670",
        "message": TEXT,
        "fallback": {"channels": [{"accountId": channels["sms"]["publicId"]}]},
        "fallbackAfterSeconds": 30,
    }
    response = await send(client, tenant, channels["viber"], body)
    assert response.status_code == 200, response.text
    async with app.state.db.read_sessions() as session:
        message = (
            await session.execute(select(Message).where(Message.public_id == response.json()["messageId"]))
        ).scalar_one()
        timers = (
            await session.execute(select(Job).where(Job.message_id == message.id, Job.kind == "fallback"))
        ).scalars()
        [timer] = list(timers)
    assert message.fallback == {
        "leg": 0,
        "root": message.public_id,
        "rest": [{"accountId": channels["sms"]["publicId"], "message": TEXT}],
        "afterSeconds": 30,
    }
    assert timer.run_at == message.created_at + 30_000


@pytest.mark.parametrize(
    ("target", "override", "name", "words"),
    [
        ("nope", None, "fallback.channels[0].accountId", "no such channel"),
        ("viber", None, "fallback.channels[0].accountId", "the channel of the send itself"),
        ("bot", None, "fallback.channels[0].accountId", "send to conversations"),
        (
            "sms",
            {"type": "picture", "fileUrl": "https://example.com/a.png"},
            "fallback.channels[0].message.type",
            "not allowed",
        ),
    ],
)
async def test_a_fallback_that_cannot_work_is_a_400_naming_it(
    client: httpx.AsyncClient, tenant: Tenant, channels, target: str, override, name: str, words: str
):
    account = channels[target]["publicId"] if target in channels else target
    entry: dict[str, Any] = {"accountId": account}
    if override:
        entry["message"] = override
    body = {"phone": "85512345670", "message": TEXT, "fallback": {"channels": [entry]}}
    response = await send(client, tenant, channels["viber"], body)
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["name"] == name and words in error["message"]


async def test_another_companys_channel_is_no_such_channel(
    client: httpx.AsyncClient, tenant: Tenant, new_company, make_channel, channels
):
    other = await new_company()
    theirs = await make_channel(other, applicationId=10, credentials=bot_credentials())
    body = {
        "phone": "85512345670",
        "message": TEXT,
        "fallback": {"channels": [{"accountId": theirs["publicId"]}]},
    }
    response = await send(client, tenant, channels["viber"], body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "no such channel"
