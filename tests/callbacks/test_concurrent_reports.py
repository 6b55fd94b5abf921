"""Two transactions applying reports about one message at once record each step once (PostgreSQL).

The callback endpoint and the dispatcher (reconciling a report that overtook its SENT commit) can apply
reports about the same message concurrently. Without a row lock both read SENT, and a DELIVERED plus a
READ gave the history and webhooks [2, 4, 4, 5]. SQLite runs one writer at a time, so only PostgreSQL
can interleave them.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from tests.callbacks.test_callback_endpoints import sent_message, status_of, user_writes

from openmmp.callbacks import service
from openmmp.models import Channel
from openmmp.providers.base import StatusEvent
from openmmp.providers.registry import REGISTRY


def report(status: str, *, user_id: str | None = None) -> StatusEvent:
    return StatusEvent(
        provider_message_id="race-1",
        status=status,  # type: ignore[arg-type]
        timestamp_ms=1_800_000_000_000,
        dedupe_key=f"race-1:{status}",
        raw={"event": status.lower()},
        user_id=user_id,
    )


@pytest.mark.parametrize("order", ["delivered-then-seen", "seen-then-delivered"])
async def test_a_report_waits_for_the_one_in_flight_and_sees_its_status(app, client, tenant, bot, order):
    if app.state.db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: nothing to interleave")
    account = bot["publicId"]
    await user_writes(client, account, "racer", 90)
    message_id = await sent_message(app, client, tenant, account, "racer", "race-1")
    db = app.state.db
    async with db.write_sessions() as first:
        await first.begin()
        channel = (await first.execute(select(Channel).where(Channel.public_id == account))).scalar_one()
        delivered, seen = report("DELIVERED"), report("READ", user_id="racer")
        first_report, second_report_event = (
            (delivered, seen) if order == "delivered-then-seen" else (seen, delivered)
        )
        assert await service.apply_status(first, channel, first_report)

        async def second_report() -> None:
            async with db.write_sessions() as second, second.begin():
                same = (
                    await second.execute(select(Channel).where(Channel.public_id == account))
                ).scalar_one()
                assert await service.apply_status(second, same, second_report_event)

        racing = asyncio.create_task(second_report())
        await asyncio.sleep(0.5)
        assert not racing.done(), "the second report did not wait for the first one's lock"
        await first.commit()
    await asyncio.wait_for(racing, timeout=10)

    status = await status_of(client, tenant, message_id)
    assert [h["status"] for h in status["history"]] == [1, 2, 4, 5]
    assert status["status"] == 5


async def test_reports_applied_together_lock_their_messages_like_a_lone_report(app, client, tenant, bot):
    if app.state.db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: nothing to interleave")
    account = bot["publicId"]
    await user_writes(client, account, "racer-2", 91)
    message_id = await sent_message(app, client, tenant, account, "racer-2", "race-2")
    db = app.state.db
    delivered = StatusEvent(
        provider_message_id="race-2",
        status="DELIVERED",
        timestamp_ms=1_800_000_000_000,
        dedupe_key="race-2:DELIVERED",
        raw={"event": "delivered"},
        user_id="racer-2",
    )
    seen = StatusEvent(
        provider_message_id="race-2",
        status="READ",
        timestamp_ms=1_800_000_000_001,
        dedupe_key="race-2:READ",
        raw={"event": "seen"},
        user_id="racer-2",
        cumulative=True,
    )
    async with db.write_sessions() as first:
        await first.begin()
        channel = (await first.execute(select(Channel).where(Channel.public_id == account))).scalar_one()
        provider = REGISTRY.by_name("viber-bot")
        assert provider is not None
        together = service.Prepared(provider, channel, [delivered], "{}")
        assert await service.apply_reports(first, [together]) == ["applied"]

        async def second_report() -> None:
            async with db.write_sessions() as second, second.begin():
                same = (
                    await second.execute(select(Channel).where(Channel.public_id == account))
                ).scalar_one()
                assert await service.apply_status(second, same, seen)

        racing = asyncio.create_task(second_report())
        await asyncio.sleep(0.5)
        assert not racing.done(), "the read report did not wait for the batch's lock"
        await first.commit()
    await asyncio.wait_for(racing, timeout=10)

    status = await status_of(client, tenant, message_id)
    assert [h["status"] for h in status["history"]] == [1, 2, 4, 5]
