"""Get Channel Summary: read from the tallies the status machine keeps, it matches a count of the messages,
before and after the workers fold the tallies, on both databases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import func, select

from openmmp.kit.time import now_ms
from openmmp.messages import tallies
from openmmp.messages.repository import record_parts
from openmmp.models import Channel, Conversation, Message, MessageTally
from openmmp.models.message import MessageStatus
from tests.billing.conftest import move, send
from tests.conftest import Tenant
from tests.templates.conftest import sms_credentials

SUMMARY = "/api/v1/summary/channel"
HOUR = tallies.HOUR_MS


async def counted(app: Any, channel_id: int) -> dict[str, int]:
    """What the summary should say, from the messages themselves."""
    async with app.state.db.read_sessions() as session:
        by_status = dict(
            (
                await session.execute(
                    select(Message.status, func.count())
                    .where(Message.channel_id == channel_id)
                    .group_by(Message.status)
                )
            ).all()
        )
        accepted = (Message.status.in_([2, 4, 5])) | (
            (Message.status == 3) & Message.provider_message_id.is_not(None)
        )
        segments = await session.scalar(
            select(func.coalesce(func.sum(Message.segments), 0)).where(
                Message.channel_id == channel_id, accepted
            )
        )
    names = {1: "pending", 2: "sent", 3: "fail", 4: "delivered", 5: "read"}
    counts = {name: int(by_status.get(status, 0)) for status, name in names.items()}
    return counts | {"total": sum(counts.values()), "segments": int(segments or 0)}


async def summary(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    now = now_ms()
    query = {"fromDate": now - HOUR, "toDate": now + 1} | params
    response = await client.get(SUMMARY, params=query, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def figures(body: dict[str, Any]) -> dict[str, int]:
    """The message counts (conversations are checked apart)."""
    return {k: body[k] for k in ("total", "pending", "sent", "fail", "delivered", "read", "segments")}


async def test_the_summary_matches_a_count_of_the_messages_before_and_after_folding(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    sms = await make_channel(
        tenant, applicationId=3, credentials=sms_credentials(), settings={"defaultCountry": "KH"}
    )
    bot = await make_channel(tenant)  # a Viber Bot channel: it sends nothing, end users start conversations
    async with app.state.db.write_sessions() as session, session.begin():
        bot_id = await session.scalar(select(Channel.id).where(Channel.public_id == bot["publicId"]))
        company_id = await session.scalar(select(Channel.company_id).where(Channel.id == bot_id))
        for n, started in enumerate([now_ms(), now_ms(), now_ms() - 5 * HOUR]):
            session.add(
                Conversation(
                    company_id=company_id, channel_id=bot_id, external_id=f"user-{n}", created_at=started
                )
            )
    await send(client, tenant, sms["publicId"], 30)
    async with app.state.db.read_sessions() as session:
        channel_id = int(await session.scalar(select(Channel.id).where(Channel.public_id == sms["publicId"])))
    S, D, R, F = MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAIL
    # 0-9 SENT, 10-14 DELIVERED, 15-17 READ (skipping SENT), 18-19 refused (FAIL), 20 FAIL with an upstream
    # id (accepted, then failed); 21-29 stay PENDING.
    first = [(S, True)] * 10 + [(D, True)] * 5 + [(R, True)] * 3 + [(F, False)] * 2 + [(F, True)]
    await move(app, channel_id, first)
    async with app.state.db.write_sessions() as session, session.begin():
        long_one = await session.scalar(
            select(Message).where(Message.channel_id == channel_id).order_by(Message.id)
        )
        assert long_one is not None
        await record_parts(session, [(long_one, ("p1", "p2", "p3"))])  # a long SMS: 3 segments
    # Later receipts: 0-4 DELIVERED, 5 READ, 6 failed late; a repeat READ of 15 changes nothing.
    await move(app, channel_id, [(D, True)] * 5 + [(R, True), (F, True)] + [(S, True)] * 8 + [(R, True)])

    expected = await counted(app, channel_id)
    assert expected == {
        "pending": 9,
        "sent": 3,
        "fail": 4,
        "delivered": 10,
        "read": 4,
        "total": 30,
        "segments": 21,
    }
    one = await summary(client, tenant, accountId=sms["publicId"])
    assert figures(one) == expected
    assert (one["accountId"], one["applicationId"]) == (sms["publicId"], 3)
    assert one["fromDate"] % HOUR == 0
    assert one["toDate"] % HOUR == 0

    async with app.state.db.write_sessions() as session, session.begin():
        merged = await tallies.Folder().fold(session)
    assert merged > 0
    async with app.state.db.read_sessions() as session:
        rows = (
            await session.execute(
                select(MessageTally.hour, MessageTally.status, func.count())
                .where(MessageTally.channel_id == channel_id)
                .group_by(MessageTally.hour, MessageTally.status)
            )
        ).all()
    assert all(count == 1 for _, _, count in rows)
    assert figures(await summary(client, tenant, accountId=sms["publicId"])) == expected

    everything = await summary(client, tenant)
    assert (everything["accountId"], everything["applicationId"]) == (None, None)
    assert figures(everything) == expected  # the bot channel sent nothing
    by_application = {a["applicationId"]: a for a in everything["applications"]}
    assert set(by_application) == {3, 10}
    assert by_application[10]["total"] == 0
    assert by_application[10]["conversations"] == 2  # the one started 5 hours ago is before the period
    assert (everything["conversations"], one["conversations"]) == (2, 0)
    assert by_application[3]["segments"] == 21
    # A period before the messages counts none of them.
    earlier = await summary(client, tenant, fromDate=now_ms() - 5 * HOUR, toDate=now_ms() - 3 * HOUR)
    assert earlier["total"] == 0


async def test_summary_refusals(
    client: httpx.AsyncClient,
    tenant: Tenant,
    new_company: Callable[..., Awaitable[Tenant]],
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
) -> None:
    channel = await make_channel(tenant)
    backwards = await client.get(SUMMARY, params={"fromDate": 2000, "toDate": 1000}, headers=tenant.headers)
    assert backwards.status_code == 400
    assert backwards.json()["errors"][0]["name"] == "toDate"
    missing = await client.get(SUMMARY, params={"toDate": 1000}, headers=tenant.headers)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["name"] == "fromDate"
    other = await new_company()
    theirs = await client.get(
        SUMMARY, params={"accountId": channel["publicId"], "fromDate": 0, "toDate": 1}, headers=other.headers
    )
    assert theirs.status_code == 404
    assert theirs.json()["errors"][0]["name"] == "accountId"
