"""A webhook claim behind a burst of pending deliveries, while PostgreSQL's statistics lag behind.

The earlier deliveries of an ordering key must be read from the order index alone: checked with the
PENDING range of the due index too, each candidate read every pending delivery (24,000 rows and index
entries for this claim; 4.9 s per claim with 18,000 pending in the end-to-end bench; now 12,000 and
1.7 ms). The rest of what it reads is the due range itself, sorted for the id tie-break.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import Tenant
from tests.pg_stats import analyze, rows_read

from openmmp.models import Channel
from openmmp.webhooks import repository

NOW = 1_900_000_000_000


def _rows(channel: Channel, count: int, prefix: str, state: int = 1) -> list[dict[str, Any]]:
    """`count` deliveries (pending unless said), each message with three events (the later two wait for
    the first while it is pending)."""
    return [
        {
            "public_id": f"{prefix}-{n:06d}",
            "company_id": channel.company_id,
            "channel_id": channel.id,
            "ordering_key": f"{prefix}-message-{n // 3}",
            "event_type": 1,
            "body": "{}",
            "state": state,
            "attempts": 0,
            "next_attempt_at": NOW - 1_000,
            "lease_until": 0,
            "created_at": NOW - 1_000,
        }
        for n in range(count)
    ]


async def test_a_claim_behind_a_burst_of_pending_deliveries_reads_few_rows(
    app: Any, tenant: Tenant, make_channel: Any
):
    db = app.state.db
    if db.is_sqlite:
        pytest.skip("PostgreSQL's planner and statistics")
    account = (await make_channel(tenant))["publicId"]
    async with db.write_sessions() as session, session.begin():
        channel = (await session.execute(select(Channel).where(Channel.public_id == account))).scalar_one()
        await repository.insert_deliveries(session, _rows(channel, 3_000, "done", state=2))
        await repository.insert_deliveries(session, _rows(channel, 30, "quiet"))
    await analyze(db, "webhook_deliveries")  # statistics of an outbox that keeps up ...
    async with db.write_sessions() as session, session.begin():  # ... then a burst
        await repository.insert_deliveries(session, _rows(channel, 6_000, "burst"))
    async with db.write_sessions() as session, session.begin():
        before = await rows_read(session, "webhook_deliveries")
        claimed = await repository.claim(
            session, now=NOW, lease_until=NOW + 60_000, limit=200, skip_locked=True
        )
        after = await rows_read(session, "webhook_deliveries")
        await session.rollback()
    assert len(claimed) == 200
    assert after - before < 18_000, f"the claim read {after - before} rows and index entries"
