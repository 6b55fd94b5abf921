"""A message sent in parts (a long SMS) is final once every part is: DELIVERED when all were, FAIL with the
first failed part's cause as soon as one fails. Reports come through the callback receiver as a link
hands them over (trusted: they arrived on our own SMPP bind), in any order, even before the commit that
records the parts."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
from tests.callbacks.test_callback_endpoints import record_sent, status_of
from tests.conftest import Tenant

from openmmp.callbacks.service import reconcile
from openmmp.kit.time import now_ms
from openmmp.models.message import MessageStatus
from openmmp.providers.base import CallbackRequest


async def sms_channel(client: httpx.AsyncClient, tenant: Tenant) -> str:
    credentials = {
        "host": "smsc.example.com",
        "port": 2775,
        "systemId": f"p{uuid.uuid4().hex[:12]}",
        "password": "secret",
        "sourceAddr": "ACME",
    }
    body = {"name": "SMS", "applicationId": 3, "credentials": credentials}
    created = await client.post("/api/v1/channel", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    return str(created.json()["publicId"])


async def sent_in_parts(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, account: str, parts: list[str]
) -> str:
    """A message recorded SENT in `parts` (upstream ids), as the dispatcher records it."""
    response = await client.post(
        f"/api/v1/channel/{account}/broadcast",
        json={"phone": "85512345670", "message": {"type": "text", "message": "long " * 100}},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    message_id = str(response.json()["messageId"])
    await record_sent(app, message_id, tuple(parts))
    return message_id


async def receipt(app: Any, account: str, token: str, stat: str) -> str:
    body = orjson.dumps(
        {"kind": "receipt", "id": token, "stat": stat, "err": "001", "done": "", "at": now_ms()}
    )
    request = CallbackRequest(method="LINK", headers={}, query={}, body=body)
    return str(await app.state.callbacks.receive("smpp", account, request, trusted=True))


async def test_delivered_once_every_part_is(app, client: httpx.AsyncClient, tenant: Tenant):
    account = await sms_channel(client, tenant)
    tokens = [f"part-{uuid.uuid4().hex}" for _ in range(3)]
    message_id = await sent_in_parts(app, client, tenant, account, tokens)
    for token in (tokens[2], tokens[0]):  # in any order
        assert await receipt(app, account, token, "DELIVRD") == "applied"
        assert (await status_of(client, tenant, message_id))["status"] == MessageStatus.SENT
    assert await receipt(app, account, tokens[1], "DELIVRD") == "applied"
    assert await receipt(app, account, tokens[1], "DELIVRD") == "duplicate"
    status = await status_of(client, tenant, message_id)
    assert [h["status"] for h in status["history"]] == [1, 2, 4]


async def test_one_failed_part_fails_the_message_with_its_cause(
    app, client: httpx.AsyncClient, tenant: Tenant
):
    account = await sms_channel(client, tenant)
    tokens = [f"part-{uuid.uuid4().hex}" for _ in range(3)]
    message_id = await sent_in_parts(app, client, tenant, account, tokens)
    await receipt(app, account, tokens[0], "DELIVRD")
    await receipt(app, account, tokens[1], "UNDELIV")
    status = await status_of(client, tenant, message_id)
    assert status["status"] == MessageStatus.FAIL
    assert status["error"] == {
        "code": "SMPP_UNDELIV",
        "message": "Part 2 of 3: The SMSC could not deliver it (err:001)",
    }
    await receipt(app, account, tokens[2], "DELIVRD")  # a later part's delivery changes nothing
    assert [h["status"] for h in (await status_of(client, tenant, message_id))["history"]] == [1, 2, 3]


async def test_a_report_that_overtakes_the_commit_of_its_parts_is_applied_after_it(
    app, client: httpx.AsyncClient, tenant: Tenant
):
    account = await sms_channel(client, tenant)
    tokens = [f"part-{uuid.uuid4().hex}" for _ in range(2)]
    early = await receipt(app, account, tokens[1], "DELIVRD")
    assert early == "unmatched"
    message_id = await sent_in_parts(app, client, tenant, account, tokens)
    async with app.state.db.write_sessions() as session, session.begin():
        await reconcile(session, tokens=tokens)
    await receipt(app, account, tokens[0], "DELIVRD")
    assert (await status_of(client, tenant, message_id))["status"] == MessageStatus.DELIVERED


async def test_an_http_callback_for_an_sms_channel_is_refused(client: httpx.AsyncClient, tenant: Tenant):
    account = await sms_channel(client, tenant)
    body = orjson.dumps({"kind": "receipt", "id": "x", "stat": "DELIVRD", "at": 1})
    response = await client.post(f"/callbacks/smpp/{account}", content=body)
    assert response.status_code == 401
