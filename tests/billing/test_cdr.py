"""The billing CDR: requested, exported by its background task in steps (resumable), downloaded; one row per
billable message of the company's period, nothing of another company's."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openmmp.billing import cdr
from openmmp.billing.cdr import CdrExport
from openmmp.kit.time import now_ms
from openmmp.messages.repository import record_parts
from openmmp.models import BackgroundTask, Channel, Conversation, Message
from openmmp.models.message import MessageStatus
from openmmp.settings import TaskSettings
from openmmp.tasks.runner import TaskRun, TaskRunner
from tests.billing.conftest import move, send
from tests.conftest import Tenant
from tests.templates.conftest import sms_credentials

API = "/api/v1/billing/cdr"
S, D, R, F = MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAIL


async def sms_channel(
    app: Any, tenant: Tenant, make_channel: Callable[..., Awaitable[dict[str, Any]]]
) -> tuple[str, int]:
    channel = await make_channel(tenant, applicationId=3, credentials=sms_credentials())
    async with app.state.db.read_sessions() as session:
        found = await session.scalar(select(Channel.id).where(Channel.public_id == channel["publicId"]))
    assert found is not None
    return channel["publicId"], int(found)


async def export(app: Any, client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    """Request the CDR, run its task to its end, step by step; the task as Get billing request status
    shows it."""
    created = await client.post(API, json=body, headers=tenant.headers)
    assert created.status_code == 202, created.text
    runner = TaskRunner(app.state.db, {cdr.TYPE: CdrExport(app.state.db)}, TaskSettings())
    while await runner.run_once():
        pass
    shown = await client.get(f"{API}/{created.json()['id']}", headers=tenant.headers)
    assert shown.status_code == 200, shown.text
    task: dict[str, Any] = shown.json()
    return task


async def test_the_cdr_has_a_row_per_billable_message_of_the_company_and_period(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    new_company: Callable[..., Awaitable[Tenant]],
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cdr, "ID_WINDOW", 7)  # several steps, each from its checkpoint
    started = now_ms()
    account, channel_id = await sms_channel(app, tenant, make_channel)
    await send(client, tenant, account, 12)
    # 0-3 SENT, 4-5 DELIVERED, 6 READ, 7 refused (not billable), 8 failed after it was accepted (billable);
    # 9-11 stay PENDING (not billable).
    await move(app, channel_id, [(S, True)] * 4 + [(D, True)] * 2 + [(R, True), (F, False), (F, True)])
    async with app.state.db.write_sessions() as session, session.begin():
        first = await session.scalar(
            select(Message).where(Message.channel_id == channel_id).order_by(Message.id)
        )
        assert first is not None
        await record_parts(session, [(first, ("a", "b"))])
    other = await new_company()
    other_account, other_id = await sms_channel(app, other, make_channel)
    await send(client, other, other_account, 5)
    await move(app, other_id, [(S, True)] * 5)

    task = await export(app, client, tenant, {"fromDate": started - 60_000, "toDate": now_ms() + 60_000})
    assert task["status"] == 3, task
    assert task["summary"] == {"rows": 8}
    download = await client.get(f"{API}/{task['id']}/download", headers=tenant.headers)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert list(rows[0]) == list(cdr.HEADER)
    async with app.state.db.read_sessions() as session:
        ours = list(
            (
                await session.execute(
                    select(Message).where(Message.channel_id == channel_id).order_by(Message.id)
                )
            ).scalars()
        )
    billable = [m for m in ours[:9] if m is not ours[7]]
    assert {r["type"] for r in rows} == {"MESSAGE"}
    assert [r["id"] for r in rows] == [m.public_id for m in billable]
    assert {r["accountId"] for r in rows} == {account}
    assert {r["applicationId"] for r in rows} == {"3"}
    assert {r["tariffType"] for r in rows} == {"TRANSACTIONAL"}
    assert {r["country"] for r in rows} == {"KH"}
    assert [r["segments"] for r in rows] == ["2"] + ["1"] * 7
    assert [r["cause"] for r in rows] == ["SEND"] * 4 + ["DELIVERED"] * 2 + ["READ", "FAIL"]
    assert rows[0]["createdDate"] == str(billable[0].created_at)

    # A period before the messages, and one channel of the company: none of the other company's.
    empty = await export(
        app, client, tenant, {"fromDate": started - 7_200_000, "toDate": started - 3_600_000}
    )
    assert empty["summary"] == {"rows": 0}
    again = await export(
        app,
        client,
        other,
        {"fromDate": started - 60_000, "toDate": now_ms() + 60_000, "accountId": other_account},
    )
    assert again["summary"] == {"rows": 5}


async def test_a_step_run_again_after_a_crash_writes_its_rows_once(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cdr, "ID_WINDOW", 3)
    started = now_ms()
    account, channel_id = await sms_channel(app, tenant, make_channel)
    await send(client, tenant, account, 9)
    await move(app, channel_id, [(S, True)] * 9)
    created = await client.post(
        API, json={"fromDate": started - 1000, "toDate": now_ms() + 1000}, headers=tenant.headers
    )
    async with app.state.db.read_sessions() as session:
        task = await session.scalar(
            select(BackgroundTask).where(BackgroundTask.public_id == created.json()["id"])
        )
    assert task is not None
    handler = CdrExport(app.state.db)
    checkpoint: dict[str, Any] | None = None
    output = b""
    while True:
        run = TaskRun(task.public_id, task.company_id, task.channel_id, task.params, checkpoint)
        step = await handler.step(run)
        # Killed before its commit, the step runs again from the same checkpoint: the same rows, once.
        assert await handler.step(run) == step
        output += step.output
        checkpoint = step.checkpoint
        if step.finished:
            break
    ids = [r["id"] for r in csv.DictReader(io.StringIO(output.decode()))]
    assert len(ids) == len(set(ids)) == 9
    assert step.summary == {"rows": 9}


async def test_conversations_follow_the_messages_and_an_application_narrows_the_cdr(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cdr, "CONVERSATION_STEP", 2)  # the conversations over several steps
    started = now_ms()
    account, channel_id = await sms_channel(app, tenant, make_channel)
    await send(client, tenant, account, 3)
    await move(app, channel_id, [(S, True)] * 3)
    bot = await make_channel(tenant)
    async with app.state.db.write_sessions() as session, session.begin():
        bot_id = await session.scalar(select(Channel.id).where(Channel.public_id == bot["publicId"]))
        company_id = await session.scalar(select(Channel.company_id).where(Channel.id == bot_id))
        for n, (phone, when) in enumerate(
            [("84987654321", started), (None, started + 1), (None, started + 2), (None, started - 7_200_000)]
        ):
            session.add(
                Conversation(
                    company_id=company_id,
                    channel_id=bot_id,
                    external_id=f"user-{n}",
                    phone=phone,
                    country="KH" if phone is None else "",
                    created_at=when,
                )
            )
    period = {"fromDate": started - 60_000, "toDate": now_ms() + 60_000}
    task = await export(app, client, tenant, period)
    download = await client.get(f"{API}/{task['id']}/download", headers=tenant.headers)
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [r["type"] for r in rows] == ["MESSAGE"] * 3 + [
        "CONVERSATION"
    ] * 3  # not the one before the period
    conversations = rows[3:]
    assert {r["accountId"] for r in conversations} == {bot["publicId"]}
    assert [r["country"] for r in conversations] == ["VN", "KH", "KH"]
    assert {r["tariffType"] for r in conversations} == {"CONVERSATION"}
    assert task["summary"] == {"rows": 6}
    sms_only = await export(app, client, tenant, {**period, "applicationId": 3})
    assert sms_only["summary"] == {"rows": 3}
    bots_only = await export(app, client, tenant, {**period, "applicationId": 10})
    assert bots_only["summary"] == {"rows": 3}
    mismatch = await client.post(
        API, json={**period, "accountId": account, "applicationId": 10}, headers=tenant.headers
    )
    assert mismatch.status_code == 400
    assert mismatch.json()["errors"][0]["name"] == "applicationId"


async def test_billing_request_refusals(
    client: httpx.AsyncClient,
    tenant: Tenant,
    new_company: Callable[..., Awaitable[Tenant]],
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    backwards = await client.post(API, json={"fromDate": 2000, "toDate": 1000}, headers=tenant.headers)
    assert backwards.status_code == 400
    assert backwards.json()["errors"][0]["name"] == "toDate"
    channel = await make_channel(tenant)
    other = await new_company()
    theirs = await client.post(
        API, json={"fromDate": 0, "toDate": 1, "accountId": channel["publicId"]}, headers=other.headers
    )
    assert theirs.status_code == 404
    assert theirs.json()["errors"][0]["name"] == "accountId"
    mine = await client.post(API, json={"fromDate": 0, "toDate": 1}, headers=tenant.headers)
    assert (await client.get(f"{API}/{mine.json()['id']}", headers=other.headers)).status_code == 404
    not_done = await client.get(f"{API}/{mine.json()['id']}/download", headers=tenant.headers)
    assert not_done.status_code == 409
