"""A campaign's run: broadcast, the runner's paced steps, pause / resume / cancel, auto-pause, quiet hours,
expiry, Send Bulk Contact Message, progress and its event stream. The runner is driven step by step here
(`CampaignRunner.step`), and "dispatch" is played by the test (the campaign's jobs taken, their messages
given a status); tests/e2e/test_campaigns.py runs the real processes."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import delete, func, select, update

from openmmp.campaigns.runner import CampaignRunner
from openmmp.kit.time import now_ms
from openmmp.messages.repository import DISPATCH
from openmmp.models import Campaign, CampaignContact, Job, Message
from openmmp.models.campaign import CampaignStatus, ContactStatus
from openmmp.models.message import MessageStatus, Priority
from openmmp.queue.sql import Claimer
from openmmp.settings import CampaignSettings
from tests.campaigns.conftest import API, make_campaign, onboard
from tests.conftest import Tenant
from tests.templates.conftest import sms_credentials

RATE = 10
"""The SMS channels' rateLimitPerSecond: with 1 s ahead, a step tops the outbox up to 11 sends."""


def phones(count: int, first: int = 0) -> list[str]:
    return [f"012{n:06d}" for n in range(first, first + count)]


def contacts(count: int, first: int = 0) -> list[dict[str, Any]]:
    return [{"phone": p, "params": {"name": f"N{n}", "code": n}} for n, p in enumerate(phones(count, first))]


def runner(app: Any, **campaigns: Any) -> CampaignRunner:
    settings = app.state.settings.model_copy(
        update={"campaigns": CampaignSettings(queue_ahead_seconds=1, **campaigns)}
    )
    return CampaignRunner(app.state.db, app.state.keyring, settings, on_commit=lambda: None)


async def sms_campaign(
    client: httpx.AsyncClient, partner: Tenant, tenant: Tenant, **settings: Any
) -> dict[str, Any]:
    return await make_campaign(
        client,
        partner,
        tenant,
        application_id=3,
        credentials=sms_credentials(),
        settings={"rateLimitPerSecond": RATE} | settings,
    )


async def internal_id(app: Any, public_id: str) -> int:
    async with app.state.db.read_sessions() as session:
        found = await session.scalar(select(Campaign.id).where(Campaign.public_id == public_id))
    assert found is not None
    return int(found)


async def broadcast(
    client: httpx.AsyncClient, tenant: Tenant, campaign: dict[str, Any], body: dict[str, Any]
) -> httpx.Response:
    return await client.post(f"{API}/{campaign['publicId']}/broadcast", json=body, headers=tenant.headers)


async def dispatched(app: Any, campaign_id: int, status: MessageStatus = MessageStatus.SENT) -> int:
    """Play dispatch: every queued send of the campaign leaves the outbox with `status`; how many."""
    async with app.state.db.write_sessions() as session, session.begin():
        ids = select(CampaignContact.message_id).where(CampaignContact.campaign_id == campaign_id)
        queued = list((await session.execute(select(Job.id).where(Job.message_id.in_(ids)))).scalars())
        await session.execute(delete(Job).where(Job.id.in_(queued)))
        await session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.status == MessageStatus.PENDING)
            .values(status=int(status))
        )
    return len(queued)


async def contact_rows(app: Any, campaign_id: int) -> list[CampaignContact]:
    async with app.state.db.read_sessions() as session:
        statement = select(CampaignContact).where(CampaignContact.campaign_id == campaign_id)
        return list((await session.execute(statement.order_by(CampaignContact.id))).scalars())


async def show(client: httpx.AsyncClient, tenant: Tenant, campaign: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"{API}/{campaign['publicId']}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


async def test_a_campaign_runs_paced_to_done_each_contact_once(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    started = await broadcast(
        campaign_client, company, campaign, {"broadcastType": 2, "contacts": contacts(25), "requestId": "r1"}
    )
    assert started.status_code == 200, started.text
    assert started.json()["status"] == CampaignStatus.STARTED
    assert started.json()["totalContact"] == 25
    job_id = started.json()["jobId"]
    cid = await internal_id(campaign_app, campaign["publicId"])
    run = runner(campaign_app)

    steps = []
    while (queued := await run.step(cid)) or await dispatched(campaign_app, cid):
        steps.append(queued)
    # 11 a step (the channel's 9.5/s, 95 % of 10, for 1 s ahead and a burst of 1), none while the outbox
    # holds as many.
    assert [s for s in steps if s] == [11, 11, 3]
    assert await run.step(cid) == 0
    shown = await show(campaign_client, company, campaign)
    assert shown["status"] == CampaignStatus.DONE
    assert shown["progress"]["sent"] == 25
    assert shown["progress"]["etaSeconds"] is None
    rows = await contact_rows(campaign_app, cid)
    assert {r.status for r in rows} == {ContactStatus.IN_QUEUE}
    assert len({r.message_id for r in rows}) == 25
    async with campaign_app.state.db.read_sessions() as session:
        sent = (
            await session.execute(select(Message).where(Message.id.in_([r.message_id for r in rows])))
        ).scalars()
        sent = list(sent)
    assert {m.priority for m in sent} == {Priority.CAMPAIGN}
    assert {m.client_message_id for m in sent} == {f"cmp-{campaign['publicId']}-{r.id}" for r in rows}
    assert all("Hello N" in m.content["message"] for m in sent)

    # Started again (same requestId: the same answer; a new one: a new run with nothing left to send).
    again = await broadcast(campaign_client, company, campaign, {"broadcastType": 2, "requestId": "r1"})
    assert again.json()["jobId"] == job_id
    rerun = await broadcast(campaign_client, company, campaign, {"broadcastType": 2})
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["jobId"] != job_id
    assert await run.step(cid) == 0
    assert (await show(campaign_client, company, campaign))["status"] == CampaignStatus.DONE
    async with campaign_app.state.db.read_sessions() as session:
        count = await session.scalar(
            select(func.count()).where(Message.client_message_id.like(f"cmp-{campaign['publicId']}-%"))
        )
    assert count == 25


async def test_a_running_campaign_broadcast_again_adds_its_contacts_and_sends_each_once(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    first = await broadcast(campaign_client, company, campaign, {"broadcastType": 2, "contacts": contacts(5)})
    cid = await internal_id(campaign_app, campaign["publicId"])
    assert await runner(campaign_app).step(cid) == 5
    # The same five and three more: only the three are new, and only they are sent.
    second = await broadcast(
        campaign_client, company, campaign, {"broadcastType": 2, "contacts": contacts(8)}
    )
    assert second.json()["jobId"] == first.json()["jobId"]
    assert second.json()["totalContact"] == 8
    await dispatched(campaign_app, cid)
    assert await runner(campaign_app).step(cid) == 3
    rows = await contact_rows(campaign_app, cid)
    assert len({r.message_id for r in rows}) == 8


async def test_pause_resume_and_cancel(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    base = f"{API}/{campaign['publicId']}"
    not_running = await campaign_client.post(f"{base}/pause", headers=company.headers)
    assert not_running.status_code == 409, not_running.text
    await broadcast(campaign_client, company, campaign, {"broadcastType": 2, "contacts": contacts(30)})
    cid = await internal_id(campaign_app, campaign["publicId"])
    run = runner(campaign_app)
    assert await run.step(cid) == 11

    paused = await campaign_client.post(f"{base}/pause", headers=company.headers)
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == CampaignStatus.PAUSED
    assert paused.json()["reason"] == "paused by the company"
    assert (await campaign_client.post(f"{base}/pause", headers=company.headers)).status_code == 200
    await dispatched(campaign_app, cid)
    assert await run.step(cid) == 0
    refused = await broadcast(campaign_client, company, campaign, {"broadcastType": 2})
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["name"] == "campaignId"

    resumed = await campaign_client.post(f"{base}/resume", headers=company.headers)
    assert resumed.json()["status"] == CampaignStatus.STARTED
    assert resumed.json()["progress"]["etaSeconds"] == 2  # 19 left at 9.5/s
    assert await run.step(cid) == 11

    cancelled = await campaign_client.post(f"{base}/cancel", headers=company.headers)
    assert cancelled.json()["status"] == CampaignStatus.CANCELLED
    assert cancelled.json()["reason"] == "cancelled by the company: 8 contacts were not sent"
    await dispatched(campaign_app, cid)
    assert await run.step(cid) == 0
    assert (await campaign_client.post(f"{base}/resume", headers=company.headers)).status_code == 409
    assert (await broadcast(campaign_client, company, campaign, {"broadcastType": 2})).status_code == 409
    statuses = [r.status for r in await contact_rows(campaign_app, cid)]
    assert statuses.count(ContactStatus.IN_QUEUE) == 22
    assert statuses.count(ContactStatus.NOT_SEND) == 8


async def test_a_campaign_pauses_itself_when_its_sends_fail(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    await broadcast(campaign_client, company, campaign, {"broadcastType": 2, "contacts": contacts(40)})
    cid = await internal_id(campaign_app, campaign["publicId"])
    run = runner(campaign_app, auto_pause_failure_rate=0.5, auto_pause_window=20, auto_pause_min_sends=10)
    assert await run.step(cid) == 11
    await dispatched(campaign_app, cid, MessageStatus.FAIL)
    assert await run.step(cid) == 0
    shown = await show(campaign_client, company, campaign)
    assert shown["status"] == CampaignStatus.PAUSED
    assert shown["reason"].startswith("auto-paused: 11 of the last 11 sends failed")
    assert shown["progress"]["fail"] == 11
    # Resumed, the failures before count no more: it goes on.
    await campaign_client.post(f"{API}/{campaign['publicId']}/resume", headers=company.headers)
    assert await run.step(cid) == 11


async def test_quiet_hours_hold_a_campaign_and_expiry_ends_it(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    zone = ZoneInfo("Asia/Phnom_Penh")
    now = dt.datetime.now(zone)
    start, end = (
        (now - dt.timedelta(hours=1)).strftime("%H:%M"),
        (now + dt.timedelta(hours=1)).strftime("%H:%M"),
    )
    campaign = await sms_campaign(
        campaign_client, campaign_partner, company, quietHours={"start": start, "end": end}
    )
    await broadcast(campaign_client, company, campaign, {"broadcastType": 2, "contacts": contacts(3)})
    cid = await internal_id(campaign_app, campaign["publicId"])
    assert await runner(campaign_app).step(cid) == 0
    shown = await show(campaign_client, company, campaign)
    assert shown["status"] == CampaignStatus.STARTED
    assert shown["reason"].startswith("quiet hours of the channel until ")
    assert shown["reason"].endswith(f"{end}+07:00")

    async with campaign_app.state.db.write_sessions() as session, session.begin():
        await session.execute(update(Campaign).where(Campaign.id == cid).values(expired_date=now_ms() - 1))
    assert await runner(campaign_app).step(cid) == 0
    shown = await show(campaign_client, company, campaign)
    assert shown["status"] == CampaignStatus.DONE
    assert shown["reason"] == "expired: 3 contacts were not sent"


async def test_a_scheduled_campaign_waits_for_its_time(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    past = await broadcast(
        campaign_client, company, campaign, {"broadcastType": 1, "scheduleTime": "2020-01-01T09:00:00"}
    )
    assert past.status_code == 400
    assert past.json()["errors"][0]["name"] == "scheduleTime"
    missing = await broadcast(
        campaign_client, company, campaign, {"broadcastType": 1, "contacts": contacts(1)}
    )
    assert missing.json()["errors"][0]["name"] == "scheduleTime"
    when = (dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")) + dt.timedelta(days=1)).replace(microsecond=0)
    body = {
        "broadcastType": 1,
        "scheduleTime": when.replace(tzinfo=None).isoformat(),
        "timeZone": "Asia/Ho_Chi_Minh",
        "contacts": contacts(2),
    }
    started = await broadcast(campaign_client, company, campaign, body)
    assert started.status_code == 200, started.text
    shown = await show(campaign_client, company, campaign)
    assert shown["scheduleTime"] == int(when.timestamp() * 1000)
    assert shown["timeZone"] == "Asia/Ho_Chi_Minh"
    assert shown["progress"]["etaSeconds"] >= 86_000
    cid = await internal_id(campaign_app, campaign["publicId"])
    assert await runner(campaign_app).step(cid) == 0
    async with campaign_app.state.db.write_sessions() as session, session.begin():
        await session.execute(update(Campaign).where(Campaign.id == cid).values(schedule_time=now_ms() - 1))
    assert await runner(campaign_app).step(cid) == 2


async def test_broadcast_refusals(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    empty = await broadcast(campaign_client, company, campaign, {"broadcastType": 2})
    assert empty.status_code == 400
    assert empty.json()["errors"][0]["name"] == "contacts"
    bad = await broadcast(
        campaign_client,
        company,
        campaign,
        {"broadcastType": 2, "contacts": [*contacts(1), {"phone": "not a phone"}]},
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["name"] == "contacts[1].phone"
    assert (await show(campaign_client, company, campaign))["totalContact"] == 0
    zone = await broadcast(
        campaign_client,
        company,
        campaign,
        {"broadcastType": 1, "scheduleTime": 1, "timeZone": "Mars/Olympus"},
    )
    assert zone.status_code == 400
    other = Tenant(company.company_id, "not-this-key")
    assert (await broadcast(campaign_client, other, campaign, {"broadcastType": 2})).status_code == 401


async def test_contacts_that_cannot_be_sent_fail_with_why(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    # A column the template does not take (a file's `email`) is no fault; a variable missing is.
    extra = {"phone": "012999998", "params": {"name": "Extra", "code": 1, "email": "x@example.com"}}
    given = [*contacts(2), extra, {"phone": "012999999", "params": {"name": "No code"}}]
    await broadcast(campaign_client, company, campaign, {"broadcastType": 2, "contacts": given})
    cid = await internal_id(campaign_app, campaign["publicId"])
    assert await runner(campaign_app).step(cid) == 4
    rows = await contact_rows(campaign_app, cid)
    assert [r.status for r in rows] == [ContactStatus.IN_QUEUE] * 3 + [ContactStatus.FAIL]
    assert rows[3].error == "params.code: missing value"
    assert rows[3].message_id is None
    shown = await show(campaign_client, company, campaign)
    assert shown["progress"]["fail"] == 1
    assert shown["progress"]["inQueue"] == 3
    # Send Bulk Contact Message tries the failed contact again, with the value it lacked.
    url = f"{API}/{campaign['publicId']}/message"
    body = {"phone": "012999999", "params": {"name": "No code", "code": 9}}
    again = await campaign_client.post(url, json=body, headers=company.headers)
    assert again.status_code == 200, again.text
    assert again.json()["contactStatus"] == ContactStatus.IN_QUEUE
    assert (await show(campaign_client, company, campaign))["progress"]["inQueue"] == 4


async def test_send_bulk_contact_message_sends_a_contact_once(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    url = f"{API}/{campaign['publicId']}/message"
    body = {"phone": "012000100", "params": {"name": "Dara", "code": 7}, "clientMessageId": "mine-1"}
    sent = await campaign_client.post(url, json=body, headers=company.headers)
    assert sent.status_code == 200, sent.text
    answer = sent.json()
    assert answer["phone"] == "85512000100"
    assert answer["clientMessageId"] == "mine-1"
    assert answer["status"] == MessageStatus.PENDING
    assert answer["contactStatus"] == ContactStatus.IN_QUEUE
    again = await campaign_client.post(url, json={"phone": "+85512000100"}, headers=company.headers)
    assert again.json()["messageId"] == answer["messageId"]
    missing = await campaign_client.post(url, json={"phone": "012000101"}, headers=company.headers)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["name"] == "params.code"
    # The campaign's run sends neither again.
    await broadcast(campaign_client, company, campaign, {"broadcastType": 2})
    cid = await internal_id(campaign_app, campaign["publicId"])
    assert await runner(campaign_app).step(cid) == 0  # the refused 012000101 was not added either
    async with campaign_app.state.db.read_sessions() as session:
        message = await session.scalar(select(Message).where(Message.public_id == answer["messageId"]))
    assert message is not None
    assert message.priority == Priority.TRANSACTIONAL
    rows = await contact_rows(campaign_app, cid)
    assert [r.status for r in rows] == [ContactStatus.IN_QUEUE]
    assert (await show(campaign_client, company, campaign))["status"] == CampaignStatus.DONE


async def test_progress_events_stream_until_the_campaign_is_over(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    campaign = await sms_campaign(campaign_client, campaign_partner, company)
    await broadcast(campaign_client, company, campaign, {"broadcastType": 2, "contacts": contacts(2)})
    await campaign_client.post(f"{API}/{campaign['publicId']}/cancel", headers=company.headers)
    async with campaign_client.stream(
        "GET", f"{API}/{campaign['publicId']}/events", headers=company.headers
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = (await stream.aread()).decode()
    events = [e for e in text.split("\n\n") if e]
    assert len(events) == 1
    assert events[0].startswith("event: progress\ndata: {")
    assert '"status":9' in events[0]
    gone = await campaign_client.get(
        f"{API}/00000000-0000-7000-8000-000000000000/events", headers=company.headers
    )
    assert gone.status_code == 404


async def test_campaigns_of_two_companies_share_the_workers_evenly(
    campaign_app: Any, campaign_client: httpx.AsyncClient, campaign_partner: Tenant, company: Tenant
) -> None:
    other = await onboard(campaign_client, campaign_partner)
    ids = []
    for tenant in (company, other):
        campaign = await sms_campaign(campaign_client, campaign_partner, tenant)
        await broadcast(campaign_client, tenant, campaign, {"broadcastType": 2, "contacts": contacts(30)})
        ids.append(await internal_id(campaign_app, campaign["publicId"]))
        assert await runner(campaign_app).step(ids[-1]) == 11
    db = campaign_app.state.db
    async with db.read_sessions() as session:
        owners = (await session.execute(select(Campaign.company_id).where(Campaign.id.in_(ids)))).scalars()
        ours = set(owners)
        statement = select(func.count(func.distinct(Job.company_id))).where(Job.kind == DISPATCH)
        lanes = int(await session.scalar(statement) or 0)
    # A claim takes an equal share of each company's due sends (other tests' companies have some too).
    claimer = Claimer(kind=DISPATCH, lease_ms=1, skip_locked=not db.is_sqlite)
    async with db.write_sessions() as session, session.begin():
        claimed = await claimer.claim(session, limit=4 * lanes, now=now_ms())
    taken = [job.company_id for job in claimed if job.company_id in ours]
    low, high = sorted(taken.count(c) for c in ours)
    # Shares of companies with fewer due sends go to the others, split as evenly as the count allows.
    assert low >= 4
    assert high - low <= 1


@pytest.mark.parametrize("action", ["pause", "resume", "cancel", "broadcast", "message"])
async def test_another_companys_campaign_is_not_found(
    campaign_client: httpx.AsyncClient,
    pending_campaign: dict[str, Any],
    campaign_partner: Tenant,
    action: str,
) -> None:
    body = {"broadcastType": 2} if action == "broadcast" else {"phone": "012000001"}
    response = await campaign_client.post(
        f"{API}/{pending_campaign['publicId']}/{action}", json=body, headers=campaign_partner.headers
    )
    assert response.status_code == 404, response.text
