"""RCS official accounts run by the platform, end to end: the agent is created at the RBM simulator's
Business Communications API, reaches its test devices only until launched, its phones are checked one by
one and in bulk (a background task), and its verification and launch verdicts come back as signed
`type: 4` webhooks."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import READ_OR_FAIL, System, final_status, send_one, wait_until

from openmmp.webhooks.schemas import ChannelWebhook

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

QUESTIONNAIRE = {
    "contacts": [{"name": "Sok Dara", "title": "Head of digital", "email": "dara@bank.example"}],
    "optinDescription": "Customers opt in in the bank's app.",
    "triggerDescription": "Card and account notifications.",
    "interactionsDescription": "Notifications with replies to reach an agent.",
    "optoutDescription": "Reply STOP.",
    "agentAccessInstructions": "Send any message to the agent.",
}


def profile(name: str, **changes: Any) -> dict[str, Any]:
    return {
        "displayName": name,
        "description": "Notifications of the bank",
        "logoUri": "https://cdn.bank.example/logo.png",
        "heroUri": "https://cdn.bank.example/hero.png",
        "color": "#0B5FFF",
        "phoneNumbers": [{"number": "+85523430999", "label": "Call us"}],
        "emails": [{"address": "help@bank.example", "label": "Write to us"}],
        "websites": [{"uri": "https://bank.example", "label": "Website"}],
        "privacyUri": "https://bank.example/privacy",
        "termsConditionsUri": "https://bank.example/terms",
        "billingCategory": "CONVERSATIONAL",
        "agentUseCase": "TRANSACTIONAL",
        "hostingRegion": "ASIA_PACIFIC",
        **changes,
    }


async def create_agent(api: httpx.AsyncClient, system: System, company: Tenant, name: str) -> dict[str, Any]:
    body = {
        "name": name,
        "agent": profile(f"{name} {random.randrange(10**6)}"),
        "webhookUrl": system.receiver.url,
        "settings": {"defaultCountry": "KH"},
    }
    created = await api.post("/api/v1/rcs", json=body, headers=company.headers)
    assert created.status_code == 201, created.text
    channel: dict[str, Any] = created.json()
    system.receiver.secrets[channel["publicId"]] = channel["webhookSecret"]
    return channel


def channel_events(system: System, account: str) -> list[dict[str, Any]]:
    """The `type: 4` webhooks of a channel, each signed and exactly as the OpenAPI document describes."""
    found = [
        d for d in system.receiver.deliveries if d.body.get("type") == 4 and d.body["publicId"] == account
    ]
    assert all(d.signature_ok for d in found)
    for delivery in found:
        ChannelWebhook.model_validate(delivery.body)
    return [d.body for d in found]


async def test_a_new_agent_reaches_its_testers_only_until_it_is_launched(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    channel = await create_agent(api, system, company, "Bank notices")
    account = channel["publicId"]
    assert channel["applicationId"] == 2
    assert channel["status"] == 6  # ACCEPT: made, not launched

    status = await api.get(f"/api/v1/rcs/{account}/status", headers=company.headers)
    assert status.status_code == 200, status.text
    assert status.json()["status"] == 6
    assert status.json()["verification"] == "UNVERIFIED"

    invited = await api.post(
        f"/api/v1/rcs/{account}/test",
        json={"phones": ["012 345 671", "+85512345672"]},
        headers=company.headers,
    )
    assert invited.status_code == 200, invited.text
    assert [(p["phone"], p["status"]) for p in invited.json()["phones"]] == [
        ("85512345671", "INVITED"),
        ("85512345672", "INVITED"),
    ]
    again = await api.post(
        f"/api/v1/rcs/{account}/test", json={"phones": ["85512345671"]}, headers=company.headers
    )
    assert [p["status"] for p in again.json()["phones"]] == ["EXISTED"]

    # Wait for the set-up (the simulator learns the agent's callback URL), then send.
    await wait_until(
        lambda: _setup_done(system, account), timeout=60, what="channel set-up registered the callback URL"
    )
    to_tester = await send_one(
        api, company, account, {"phone": "85512345671", "message": {"type": "text", "message": "hi"}}
    )
    to_stranger = await send_one(
        api, company, account, {"phone": "85512345673", "message": {"type": "text", "message": "hi"}}
    )
    assert (await final_status(api, company, to_tester, READ_OR_FAIL))["status"] == 5
    refused = await final_status(api, company, to_stranger)
    assert refused["status"] == 3  # FAIL
    assert refused["error"]["code"] == "RBM_403"
    assert "PERMISSION_DENIED" in refused["error"]["message"]


async def _setup_done(system: System, account: str) -> bool:
    [[jobs]] = await system.sql(
        "SELECT count(*) FROM jobs j JOIN channels c ON c.id = j.channel_id "
        "WHERE c.public_id = :p AND j.kind = 'channel_setup'",
        p=account,
    )
    return int(jobs) == 0


async def test_phones_are_checked_one_by_one_and_in_bulk(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    account = (await create_agent(api, system, company, "Bank reach"))["publicId"]
    headers = company.headers
    one = await api.get(f"/api/v1/rcs/{account}/capabilities", params={"phone": "012345671"}, headers=headers)
    assert one.status_code == 200, one.text
    assert one.json()["phone"] == "85512345671"
    assert one.json()["isRcsEnabled"] is True
    assert one.json()["features"]
    unreachable = await api.get(
        f"/api/v1/rcs/{account}/capabilities", params={"phone": "85512345678"}, headers=headers
    )
    assert (unreachable.json()["isRcsEnabled"], unreachable.json()["features"]) == (False, [])
    bad = await api.get(f"/api/v1/rcs/{account}/capabilities", params={"phone": "12"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["name"] == "phone"

    phones = [f"8551234{n:04d}" for n in range(2500)] + ["not a phone"]
    started = await api.post(f"/api/v1/rcs/{account}/capabilities", json={"phones": phones}, headers=headers)
    assert started.status_code == 202, started.text
    task_id = started.json()["id"]
    assert started.json()["status"] in (1, 2)  # PENDING, PROCESSING

    async def done() -> dict[str, Any] | None:
        task = (await api.get(f"/api/v1/background-task/{task_id}", headers=headers)).json()
        return task if task["status"] in (3, 4) else None

    task = await wait_until(done, timeout=60, interval=0.2, what="bulk phone check done")
    assert (task["status"], task["cause"]) == (3, "DONE"), task
    assert task["progress"] == 100
    assert task["summary"] == {"total": 2501, "enabled": 2250, "disabled": 250, "invalid": 1}
    download = await api.get(f"/api/v1/background-task/{task_id}/download", headers=headers)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["phone", "isRcsEnabled", "error"]
    assert [r[0] for r in rows[1:]] == phones
    assert rows[1] == ["85512340000", "true", ""]
    assert rows[9] == ["85512340008", "false", ""]
    assert rows[-1][0:2] == ["not a phone", ""]
    assert rows[-1][2]

    other = await system.onboard(api)
    assert (await api.get(f"/api/v1/background-task/{task_id}", headers=other.headers)).status_code == 404
    assert (await api.get(f"/api/v1/rcs/{account}/status", headers=other.headers)).status_code == 404


async def test_verification_and_launch_verdicts_arrive_as_channel_webhooks(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    headers = company.headers
    account = (await create_agent(api, system, company, "Bank launch"))["publicId"]
    verification = {
        "partnerName": "OpenMMP Telco",
        "partnerEmailAddress": "rcs@telco.example",
        "brandContactName": "Sok Dara",
        "brandContactEmailAddress": "dara@bank.example",
        "brandWebsiteUrl": "https://bank.example",
    }
    asked = await api.post(f"/api/v1/rcs/{account}/verification", json=verification, headers=headers)
    assert asked.status_code == 200, asked.text
    assert asked.json()["verification"] == "PENDING"

    async def verified() -> bool:
        state = (await api.get(f"/api/v1/rcs/{account}/status", headers=headers)).json()
        return bool(state["verification"] == "VERIFIED")

    await wait_until(verified, timeout=30, what="brand verified")

    regions = await api.post(
        f"/api/v1/rcs/{account}/launch",
        json={"regions": ["nowhere"], "questionnaire": QUESTIONNAIRE},
        headers=headers,
    )
    assert regions.status_code == 400, regions.text

    launched = await api.post(
        f"/api/v1/rcs/{account}/launch",
        json={"regions": ["asia-pacific"], "questionnaire": QUESTIONNAIRE},
        headers=headers,
    )
    assert launched.status_code == 200, launched.text
    assert launched.json()["launches"] == {"asia-pacific": "PENDING"}
    assert launched.json()["status"] == 6

    events = await wait_until(
        lambda: [e for e in channel_events(system, account) if e["channel"]["status"] == 3] or None,
        timeout=30,
        what="the launch's type 4 webhook",
    )
    assert events[0]["applicationId"] == 2
    assert events[0]["channel"]["publicId"] == account
    state = (await api.get(f"/api/v1/rcs/{account}/status", headers=headers)).json()
    assert (state["status"], state["launches"]) == (3, {"asia-pacific": "LAUNCHED"})

    moved = await api.post(
        f"/api/v1/rcs/{account}",
        json={"name": "Bank launch", "agent": profile("Bank launch", hostingRegion="EUROPE")},
        headers=headers,
    )
    assert moved.status_code == 400, moved.text


async def test_a_rejected_launch_is_a_reject_webhook(api: httpx.AsyncClient, system: System, company: Tenant):
    headers = company.headers
    body = {"name": "Rejected", "agent": profile("Casino [reject]"), "webhookUrl": system.receiver.url}
    created = await api.post("/api/v1/rcs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    account = created.json()["publicId"]
    system.receiver.secrets[account] = created.json()["webhookSecret"]
    indonesia = {
        "questionnaire": QUESTIONNAIRE,
        "carriers": ["telkomsel"],
        "companyRegistrationNumber": "1234567890123",
        "taxId": "012345678901234",
        "picName": "Budi",
        "picPhone": "+6281234567890",
    }
    asked = await api.post(f"/api/v1/rcs/{account}/launch/indonesia", json=indonesia, headers=headers)
    assert asked.status_code == 200, asked.text
    events = await wait_until(
        lambda: [e for e in channel_events(system, account) if e["channel"]["status"] == 5] or None,
        timeout=30,
        what="the rejection's type 4 webhook",
    )
    assert events[0]["channel"]["cause"]


async def test_agent_routes_refuse_other_channels_and_bad_input(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    headers = company.headers
    viber = await system.viber_channel(api, company)
    assert (await api.get(f"/api/v1/rcs/{viber['publicId']}/status", headers=headers)).status_code == 404
    bad = await api.post(
        "/api/v1/rcs", json={"name": "x", "agent": profile("x", color="blue")}, headers=headers
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["name"] == "agent.color"
    account = (await create_agent(api, system, company, "Bank input"))["publicId"]
    wrong = await api.post(
        f"/api/v1/rcs/{account}/test", json={"phones": ["85512345671", "12"]}, headers=headers
    )
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["name"] == "phones[1]"


async def test_a_company_cannot_make_the_operators_account_act_for_its_channel(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    """Only agents the platform made go without a key file (the partner account acts for them): from a
    company, credentials without one would send as the operator, whatever agent they name."""
    headers = company.headers
    made = await create_agent(api, system, company, "Bank own")
    body = {"name": "Borrowed", "applicationId": 2, "credentials": {"agentId": "someone-elses-agent"}}
    refused = await api.post("/api/v1/channel", json=body, headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["name"] == "credentials.serviceAccountJson"
    edited = await api.post(
        f"/api/v1/channel/{made['publicId']}", json={"credentials": {"agentId": "x"}}, headers=headers
    )
    assert edited.status_code == 400, edited.text
    assert edited.json()["errors"][0]["name"] == "credentials.serviceAccountJson"
