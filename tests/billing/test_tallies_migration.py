"""Upgrading to the tallies fills them from the messages already stored, on both databases."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from openmmp import migrate
from openmmp.kit.db import Database
from openmmp.models import Channel, Company, Message, MessageTally
from tests.conftest import POSTGRES_URL, recreate_postgres_database, run_sync

HOUR = 3_600_000
START = 1_764_547_200_000  # an hour's start
# (status, upstream id, segments, hours after START); every one counted, the accepted ones' segments too
MESSAGES = [
    (1, False, 1, 0),
    (2, True, 2, 0),
    (4, True, 1, 0),
    (5, True, 3, 1),
    (3, False, 1, 1),  # refused: no segments
    (3, True, 2, 1),  # failed after it was accepted: its segments
    (5, True, 1, 1),
]


async def _seed(url: str) -> int:
    db = Database(url)
    try:
        async with db.write_sessions() as session, session.begin():
            company = Company(name="Before tallies")
            session.add(company)
            await session.flush()
            channel = Channel(company_id=company.id, name="SMS", application_id=3, credentials="sealed")
            session.add(channel)
            await session.flush()
            for n, (status, accepted, segments, hours) in enumerate(MESSAGES):
                created = START + hours * HOUR + n * 1000
                session.add(
                    Message(
                        public_id=str(uuid.uuid4()),
                        company_id=company.id,
                        channel_id=channel.id,
                        client_message_id=f"m{n}",
                        request_hash="0" * 64,
                        recipient="85512345678",
                        content={"type": "text", "message": "hi"},
                        status=status,
                        provider_message_id=f"up-{n}" if accepted else None,
                        segments=segments,
                        created_at=created,
                        updated_at=created,
                    )
                )
            return channel.id
    finally:
        await db.dispose()


async def _tallies(url: str) -> dict[tuple[int, int], tuple[int, int]]:
    db = Database(url)
    try:
        async with db.read_sessions() as session:
            statement = select(
                MessageTally.hour,
                MessageTally.status,
                func.sum(MessageTally.messages),
                func.sum(MessageTally.segments),
            ).group_by(MessageTally.hour, MessageTally.status)
            return {(int(h), int(s)): (int(m), int(g)) for h, s, m, g in await session.execute(statement)}
    finally:
        await db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_upgrade_tallies_the_messages_stored(kind: str, tmp_path, worker_name: str) -> None:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    else:
        if not POSTGRES_URL:
            pytest.skip("OPENMMP_TEST_DATABASE_URL is not set")
        url = recreate_postgres_database(f"tallies_{worker_name}")
    run_sync(lambda: asyncio.to_thread(migrate.upgrade, url, "0014"))
    run_sync(lambda: _seed(url))
    run_sync(lambda: asyncio.to_thread(migrate.upgrade, url))
    assert run_sync(lambda: _tallies(url)) == {
        (START, 1): (1, 0),
        (START, 2): (1, 2),
        (START, 4): (1, 1),
        (START + HOUR, 5): (2, 4),
        (START + HOUR, 3): (2, 2),
    }
