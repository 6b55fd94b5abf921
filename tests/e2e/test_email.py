"""E-mail end to end: the platform mails through the SMTP simulator (a real SMTP server), delivery reports
and bounces come back as DSNs mailed to the workers' bounce listener, and webhooks follow; a SIGKILL of
the workers loses no bounce."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import ChannelFactory
from tests.e2e.harness import System, all_final, status_webhooks, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def email_channel(launched_channel: ChannelFactory) -> str:
    channel = await launched_channel(24, {"from": "statements@acme.example", "fromName": "ACME Bank"})
    return str(channel["publicId"])


async def send_mail(api: httpx.AsyncClient, company: Tenant, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await api.post("/api/v1/email/send", json=body, headers=company.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def email_statuses(api: httpx.AsyncClient, company: Tenant, ids: list[str]) -> dict[str, Any]:
    response = await api.post("/api/v1/email/status", json={"messageIds": ids}, headers=company.headers)
    assert response.status_code == 200, response.text
    return {item["messageId"]: item for item in response.json()["items"]}


async def test_mail_is_delivered_bounced_or_refused_as_the_address_says(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    account = await email_channel(launched_channel)
    tag = random.randrange(10**6)
    addresses = [
        f"dara{tag}x@bank.example",  # not ending in a digit: 8 and 9 pick outcomes, as for phones
        f"sokha{tag}+bounce@bank.example",
        f"user{tag}8@bank.example",  # ends in 8: refused at RCPT TO, as a phone ending in 8
        f"vanna{tag}+defer@bank.example",  # 451 twice, then taken
    ]
    answers = await send_mail(
        api,
        company,
        {
            "accountId": account,
            "to": [*addresses[:3], {"email": addresses[3], "params": {"name": "Vanna"}}],
            "subject": "Your statement, {{name}}",
            "text": "Dear {{name}}, your statement is ready.",
            "html": "<p>Dear {{name}}, your statement is ready.</p>",
            "params": {"name": "customer"},
        },
    )
    assert [(a["email"], a["status"], a["cause"]) for a in answers] == [(e, 1, "PENDING") for e in addresses]
    ids = [a["messageId"] for a in answers]
    delivered, bounced, refused, deferred = ids
    statuses = await all_final(system, account, 4)
    assert statuses == {delivered: 4, bounced: 3, refused: 3, deferred: 4}

    by_id = await email_statuses(api, company, ids)
    assert {i: (by_id[i]["status"], by_id[i]["cause"]) for i in ids} == {
        delivered: (2, "SUCCESS"),
        bounced: (3, "FAIL"),
        refused: (3, "FAIL"),
        deferred: (2, "SUCCESS"),
    }
    assert by_id[bounced]["error"]["code"] == "SMTP_550"
    assert "5.1.1" in by_id[bounced]["error"]["message"]
    assert by_id[refused]["error"]["code"] == "SMTP_550"

    status = (await api.get(f"/api/v1/message/{bounced}/status", headers=company.headers)).json()
    assert (status["email"], status["phone"]) == (addresses[1], None)
    assert [h["status"] for h in status["history"]] == [1, 2, 3]  # SENT, then the bounce: FAIL

    seen = await status_webhooks(system, account, 7)
    assert {k: sorted(v) for k, v in seen.items()} == {
        delivered: [2, 4],
        bounced: [2, 3],
        refused: [3],
        deferred: [2, 4],
    }
    rendered = await system.sql("SELECT content FROM messages WHERE public_id = :m", m=deferred)
    assert "Vanna" in str(rendered[0][0])  # the address's own params override the shared ones


async def test_broadcast_message_takes_an_email_in_place_of_a_phone(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    account = await email_channel(launched_channel)
    response = await api.post(
        f"/api/v1/channel/{account}/broadcast",
        json={
            "email": "Dara@Bank.Example",
            "subject": "Code {{code}}",
            "message": {"type": "text", "message": "Your code is {{code}}"},
            "params": {"code": "4711"},
        },
        headers=company.headers,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["email"], answer["phone"]) == ("Dara@bank.example", None)
    statuses = await all_final(system, account, 1)
    assert statuses == {answer["messageId"]: 4}


async def test_a_sigkill_of_the_workers_loses_no_bounce(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    account = await email_channel(launched_channel)
    count = 60
    tag = random.randrange(10**6)
    answers = await send_mail(
        api,
        company,
        {
            "accountId": account,
            "to": [f"gone{tag}n{n}+bounce@bank.example" for n in range(count)],
            "subject": "Statement",
            "text": "Your statement is ready.",
        },
    )
    ids = [a["messageId"] for a in answers]
    async with httpx.AsyncClient(base_url=system.sim, timeout=10) as sim:

        async def under_way() -> bool:
            stats = (await sim.get("/smtp/_sandbox/stats", params={"detail": 1})).json()
            return sum(1 for key in stats["acceptedByKey"] if f"gone{tag}n" in key) > 10

        await wait_until(under_way, timeout=60, what="e-mail under way")
        await system.kill_workers()
        await system.restart_workers()
        statuses = await all_final(system, account, count)
        assert set(statuses) == set(ids)
        assert set(statuses.values()) == {3}  # every bounce arrived, none was lost at the kill
        by_id = await email_statuses(api, company, ids)
        assert {item["error"]["code"] for item in by_id.values()} == {"SMTP_550"}
        stats = (await sim.get("/smtp/_sandbox/stats", params={"detail": 1})).json()
        ours = {k: v for k, v in stats["acceptedByKey"].items() if f"gone{tag}n" in k}
        assert len(ours) == count
    assert await system.outbox_breaches() == {
        "pending messages without a job": 0,
        "jobs without a message": 0,
    }
