"""Single sends that arrive together are written in one transaction (messages/batching.py): each still
answered only once stored, idempotent as alone, and one that fails fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from tests.conftest import Tenant, viber_credentials
from tests.messages.test_message_endpoints import TEXT, launch, send

from openmmp.kit.db import Database
from openmmp.messages.batching import SendBatcher
from openmmp.models import Job, Message


@pytest.fixture
async def viber(make_channel, tenant: Tenant) -> dict[str, Any]:
    return await make_channel(tenant, applicationId=1, credentials=viber_credentials())  # type: ignore[no-any-return]


async def test_concurrent_sends_are_each_stored_with_their_job(
    client: httpx.AsyncClient, app, tenant: Tenant, viber: dict[str, Any]
):
    await launch(app, viber)
    answers = await asyncio.gather(
        *(send(client, tenant, viber, {"phone": f"855123456{n:02d}", "message": TEXT}) for n in range(40))
    )
    assert [a.status_code for a in answers] == [200] * 40
    ids = [a.json()["messageId"] for a in answers]
    assert len(set(ids)) == 40
    async with app.state.db.read_sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Message).where(Message.public_id.in_(ids))
        )
        jobs = await session.scalar(
            select(func.count())
            .select_from(Job)
            .join(Message, Message.id == Job.message_id)
            .where(Message.public_id.in_(ids))
        )
    assert (stored, jobs) == (40, 40)


async def test_the_same_send_at_once_is_stored_once_and_another_body_is_a_409(
    client: httpx.AsyncClient, app, tenant: Tenant, viber: dict[str, Any]
):
    await launch(app, viber)
    body = {"phone": "85512345670", "message": TEXT, "clientMessageId": "batch-same"}
    answers = await asyncio.gather(*(send(client, tenant, viber, body) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert len({a.json()["messageId"] for a in answers}) == 1
    other = {**body, "message": {"type": "text", "message": "Another"}}
    clash = await asyncio.gather(send(client, tenant, viber, other), send(client, tenant, viber, body))
    assert sorted(a.status_code for a in clash) == [200, 409]
    async with app.state.db.read_sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Message).where(Message.client_message_id == "batch-same")
        )
    assert stored == 1


async def test_a_send_that_fails_fails_alone_and_the_batch_commits_once(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'batch.db'}")
    commits = []
    batcher = SendBatcher(db, on_commit=lambda: commits.append(1))
    async with db.write_sessions() as session, session.begin():
        await session.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))

    def insert(n: int) -> Any:
        async def store(session: Any) -> dict[str, Any]:
            await session.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
            return {"n": n}

        return store

    try:
        results = await asyncio.gather(
            batcher.store(insert(1)),
            batcher.store(insert(1)),
            batcher.store(insert(2)),
            return_exceptions=True,
        )
        assert results[0] == {"n": 1} and results[2] == {"n": 2}
        assert isinstance(results[1], Exception)  # the duplicate key: rolled back to its SAVEPOINT
        async with db.read_sessions() as session:
            assert list((await session.execute(text("SELECT n FROM t ORDER BY n"))).scalars()) == [1, 2]
        assert commits == [1]
    finally:
        await db.dispose()
