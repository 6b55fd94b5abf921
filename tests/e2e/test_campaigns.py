"""A bulk campaign end to end with real processes: contacts imported from a CSV, broadcast at its channel's
limit, paused, its worker killed with SIGKILL (once while paused, once while sending), resumed, run to DONE.

Each recipient is accepted upstream exactly once (the Viber simulator counts every `seq`) and none is
skipped; a transactional send made while the campaign has a backlog in the outbox goes out ahead of it;
the event stream and `openmmp campaign progress` show the campaign DONE. The bench (bench/campaign_send.py)
runs the same with 100,000 recipients.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import Launcher
from tests.e2e.harness import FINAL, SIMULATOR_ARGS, System, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TOTAL = 2000
LIMIT = 200
"""The channel's sends a second: 2,000 recipients take ~11 s of sending."""
TEMPLATE = {"type": "text", "message": "Hello {{name}}, your code is {{code}}"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def campaign_system(request: pytest.FixtureRequest, launch: Launcher) -> System:
    # Jobs a killed worker held are taken again after their lease: 15 s rather than a minute.
    return await launch(
        launch.database(request.param, "campaigns"),
        workers=0 if request.param == "sqlite" else 1,
        env={"OPENMMP_DISPATCH__LEASE_SECONDS": "15", "OPENMMP_PROVIDERS__TIMEOUT_SECONDS": "5"},
        simulator_args=[*SIMULATOR_ARGS, "--set", f"viber.requests_per_second={LIMIT}"],
    )


def contacts_csv() -> bytes:
    """Distinct phones the simulator accepts (last digit 0-7), with the template's two parameters."""
    lines = ["phone,name,code"] + [f"+85597{n:06d}{n % 8},Customer {n},C{n}" for n in range(TOTAL)]
    return ("\n".join(lines) + "\n").encode()


async def accepted(system: System, service_id: int) -> int:
    stats = await system.sim_stats(detail=True)
    return sum(1 for key in stats["acceptedByKey"] if key.startswith(f"{service_id}:"))


async def still(system: System, service_id: int, seconds: float = 2.0) -> int:
    """Wait until nothing more is accepted for `seconds`; the count then."""
    last = await accepted(system, service_id)
    while True:
        await asyncio.sleep(seconds)
        now = await accepted(system, service_id)
        if now == last:
            return now
        last = now


async def make_campaign(api: httpx.AsyncClient, system: System, company: Tenant, account: str) -> str:
    body = {
        "name": "Campaign",
        "type": 1,
        "applicationId": 1,
        "accountId": account,
        "messages": [{"id": "m1", "name": "promo", "status": "START", "message": TEMPLATE}],
    }
    template = (await api.post("/api/v1/template", json=body, headers=company.headers)).json()["publicId"]
    approved = await api.post(
        f"/api/v1/template/{template}/approve", json={}, headers={"apiKey": system.partner_key}
    )
    assert approved.status_code == 200, approved.text
    created = await api.post(
        "/api/v1/bulk-campaign",
        json={"name": "Promo", "type": 1, "channels": [{"accountId": account, "templateId": template}]},
        headers=company.headers,
    )
    assert created.status_code == 201, created.text
    campaign = str(created.json()["publicId"])
    task = await api.post(
        f"/api/v1/bulk-campaign/{campaign}/contacts",
        params={"filename": "contacts.csv"},
        content=contacts_csv(),
        headers={**company.headers, "content-type": "text/csv"},
    )
    assert task.status_code == 202, task.text

    async def imported() -> dict[str, Any] | None:
        state = (
            await api.get(f"/api/v1/background-task/{task.json()['id']}", headers=company.headers)
        ).json()
        return state if state["status"] >= 3 else None

    state = await wait_until(imported, timeout=120, what="contacts imported")
    assert state["summary"]["imported"] == TOTAL, state
    return campaign


async def test_a_campaign_runs_through_pause_kills_and_resume_each_recipient_once(
    campaign_system: System,
) -> None:
    system = campaign_system
    async with httpx.AsyncClient(base_url=system.api, timeout=60) as api:
        company = await system.onboard(api)
        channel = await system.viber_channel(api, company, webhooks=False, rateLimitPerSecond=LIMIT)
        account, service_id = channel["publicId"], channel["_serviceId"]
        campaign = await make_campaign(api, system, company, account)
        base = f"/api/v1/bulk-campaign/{campaign}"

        async def show() -> dict[str, Any]:
            shown: dict[str, Any] = (await api.get(base, headers=company.headers)).json()
            return shown

        started = await api.post(f"{base}/broadcast", json={"broadcastType": 2}, headers=company.headers)
        assert started.status_code == 200, started.text

        async def backlog() -> bool:
            return bool((await show())["progress"]["inQueue"] > LIMIT)

        await wait_until(backlog, timeout=60, what="campaign sends waiting in the outbox")
        # A transactional send overtakes the campaign's backlog.
        otp = await api.post(
            f"/api/v1/channel/{account}/broadcast",
            json={"phone": "+85512999997", "message": {"type": "text", "message": "OTP 4711"}},
            headers=company.headers,
        )
        assert otp.status_code == 200, otp.text

        async def otp_sent() -> bool:
            status = await api.get(
                f"/api/v1/message/{otp.json()['messageId']}/status", headers=company.headers
            )
            return bool(status.json()["status"] != 1)

        await wait_until(otp_sent, timeout=30, interval=0.1, what="the transactional send sent")
        assert (await show())["progress"]["inQueue"] > 0, "the OTP waited for the campaign's backlog"

        async def a_quarter() -> bool:
            return await accepted(system, service_id) >= TOTAL // 4

        await wait_until(a_quarter, timeout=120, what="a quarter sent")
        paused = await api.post(f"{base}/pause", headers=company.headers)
        assert paused.json()["status"] == 8
        at_pause = await still(system, service_id)
        # Only what was in the outbox went after the pause: 5 s of the channel's limit at most.
        assert at_pause < TOTAL * 3 // 4
        await system.kill_workers()
        await system.restart_workers()
        await asyncio.sleep(3)
        assert await accepted(system, service_id) == at_pause, "a paused campaign sent after a restart"
        assert (await show())["status"] == 8
        resumed = await api.post(f"{base}/resume", headers=company.headers)
        assert resumed.json()["status"] == 2

        async def most() -> bool:
            return await accepted(system, service_id) >= TOTAL * 7 // 10

        await wait_until(most, timeout=120, what="70 % sent")
        await system.kill_workers()
        await system.restart_workers()

        async def finished() -> dict[str, Any] | None:
            shown = await show()
            return shown if shown["status"] == 4 and shown["progress"]["inQueue"] == 0 else None

        shown = await wait_until(finished, timeout=240, interval=1.0, what="the campaign DONE, all settled")
        progress = shown["progress"]
        assert progress["notSend"] == 0
        assert progress["fail"] == 0
        assert progress["sent"] + progress["delivered"] + progress["read"] == TOTAL
        stats = await system.sim_stats(detail=True)
        ours = [n for key, n in stats["acceptedByKey"].items() if key.startswith(f"{service_id}:")]
        assert len(ours) == TOTAL + 1  # every recipient and the OTP: none skipped, none with two seqs
        assert set(ours) == {1}  # each seq accepted once
        [[messages, phones]] = await system.sql(
            "SELECT count(*), count(DISTINCT phone) FROM messages WHERE client_message_id LIKE :p",
            p=f"cmp-{campaign}-%",
        )
        assert (messages, phones) == (TOTAL, TOTAL)
        statuses = await system.statuses(account)
        assert all(s in FINAL or s == 2 for s in statuses.values())

        async with api.stream("GET", f"{base}/events", headers=company.headers) as stream:
            text = (await stream.aread()).decode()
        assert text.count("event: progress") == 1
        assert '"status":4' in text
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "openmmp.cli",
        "campaign",
        "progress",
        campaign,
        "--url",
        system.api,
        env={**os.environ, "OPENMMP_API_KEY": company.api_key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(cli.communicate(), timeout=60))[0].decode()
    assert cli.returncode == 0, output
    assert "DONE" in output
    assert company.api_key not in output
