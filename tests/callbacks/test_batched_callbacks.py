"""Callbacks arriving together share a write transaction; each still answers as if alone."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from tests.callbacks.test_callback_endpoints import post, sent_message, status_of, user_writes
from tests.conftest import Tenant

from openmmp.callbacks import batching, repository
from openmmp.models import ProviderEvent

USERS = 40


def report(event: str, token: str, user: str) -> dict[str, Any]:
    """A Viber Bot delivery report of `event` (delivered, seen) about `token`."""
    return {"event": event, "timestamp": 1_700_000_000_000, "message_token": token, "user_id": user}


def delivered(token: str, user: str) -> dict[str, Any]:
    return report("delivered", token, user)


async def test_a_flood_of_callbacks_is_applied_in_few_transactions_and_answered_one_by_one(
    app,
    client: httpx.AsyncClient,
    tenant: Tenant,
    bot: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
):
    account = bot["publicId"]
    messages = {}
    for n in range(USERS):
        user = f"flood-{n}"
        await user_writes(client, account, user, 5_000 + n)
        messages[user] = await sent_message(app, client, tenant, account, user, f"flood-token-{n}")

    db = app.state.db
    commits = 0

    def count(_connection: Any) -> None:
        nonlocal commits
        commits += 1

    lookups = 0
    look_up = repository.channel_by_public_id

    async def counted(*args: Any) -> Any:
        nonlocal lookups
        lookups += 1
        return await look_up(*args)

    monkeypatch.setattr(repository, "channel_by_public_id", counted)
    event.listen(db.engine.sync_engine, "commit", count)
    try:
        answers = await asyncio.gather(
            *(post(client, account, delivered(f"flood-token-{n}", f"flood-{n}")) for n in range(USERS)),
            post(client, account, delivered("flood-token-0", "flood-0"), key="not-the-token"),
            post(client, "00000000-0000-4000-8000-000000000000", delivered("x", "y")),
            post(client, account, delivered("flood-token-1", "flood-1")),
        )
    finally:
        event.remove(db.engine.sync_engine, "commit", count)

    *applied, bad_signature, unknown_channel, repeated = answers
    assert [a.status_code for a in applied] == [200] * USERS
    assert {a.json()["outcome"] for a in applied} == {"applied"}
    assert bad_signature.status_code == 401
    assert unknown_channel.status_code == 404
    assert repeated.status_code == 200
    assert repeated.json()["outcome"] == "duplicate"
    for message_id in messages.values():
        assert (await status_of(client, tenant, message_id))["status"] == 4  # DELIVERED
    async with db.read_sessions() as session:
        stored = await session.scalar(
            select(func.count()).where(ProviderEvent.provider_message_id.like("flood-token-%"))
        )
    assert stored == USERS
    assert commits < USERS // 4, f"{USERS + 3} callbacks took {commits} transactions"
    # A batch looks its channels up once, and again after a callback of it failed.
    assert lookups < USERS // 4 + 2, f"{USERS + 3} callbacks looked their channel up {lookups} times"


async def _flood(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, account: str, name: str
) -> dict[str, str]:
    """A SENT message to each of 12 users of the bot, by user id."""
    messages = {}
    for n in range(12):
        user = f"{name}-{n}"
        await user_writes(client, account, user, 9_000 + n)
        messages[user] = await sent_message(app, client, tenant, account, user, f"{name}-token-{n}")
    return messages


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many callbacks each call of the set-based path (`apply_reports`) took, in order."""
    sizes: list[int] = []
    apply_reports = batching.apply_reports

    async def counted(session: Any, callbacks: list[Any]) -> list[str]:
        sizes.append(len(callbacks))
        return await apply_reports(session, callbacks)

    monkeypatch.setattr(batching, "apply_reports", counted)
    return sizes


async def test_reports_applied_together_answer_each_and_a_repeat_in_the_same_batch_is_a_duplicate(
    app,
    client: httpx.AsyncClient,
    tenant: Tenant,
    bot: dict[str, Any],
    batch_sizes: list[int],
):
    account = bot["publicId"]
    messages = await _flood(app, client, tenant, account, "together")
    reports = [delivered(f"together-token-{n}", f"together-{n}") for n in range(12)]
    answers = await asyncio.gather(*(post(client, account, body) for body in reports + reports))
    outcomes = [answer.json()["outcome"] for answer in answers]
    assert sorted(outcomes) == ["applied"] * 12 + ["duplicate"] * 12
    assert max(batch_sizes) > 1  # the set-based path took several callbacks at once
    for message_id in messages.values():
        status = await status_of(client, tenant, message_id)
        assert status["status"] == 4
        assert [step["status"] for step in status["history"]].count(4) == 1  # one DELIVERED step each


async def test_when_reports_fail_together_each_is_applied_alone(
    app,
    client: httpx.AsyncClient,
    tenant: Tenant,
    bot: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
):
    account = bot["publicId"]
    messages = await _flood(app, client, tenant, account, "alone")

    tried = 0

    async def broken(*_args: Any) -> list[str]:
        nonlocal tried
        tried += 1
        raise RuntimeError("a bug in the set-based path")

    monkeypatch.setattr(batching, "apply_reports", broken)
    reports = [delivered(f"alone-token-{n}", f"alone-{n}") for n in range(12)]
    answers = await asyncio.gather(*(post(client, account, body) for body in reports))
    assert tried >= 1
    assert [answer.json()["outcome"] for answer in answers] == ["applied"] * 12
    for message_id in messages.values():
        assert (await status_of(client, tenant, message_id))["status"] == 4


async def test_read_watermarks_are_applied_together_and_read_each_users_earlier_messages(
    app,
    client: httpx.AsyncClient,
    tenant: Tenant,
    bot: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    batch_sizes: list[int],
):
    """Viber Bot's `seen` covers everything the user has read up to that message: applied set-based with
    the other reports (one locking read for the messages and the users' unread ones), never alone."""
    account = bot["publicId"]
    earlier: dict[str, list[str]] = {}
    latest: dict[str, str] = {}
    for n in range(8):
        user = f"watermark-{n}"
        await user_writes(client, account, user, 9_500 + n)
        earlier[user] = [
            await sent_message(app, client, tenant, account, user, f"watermark-{n}-old-{k}") for k in range(2)
        ]
        latest[user] = await sent_message(app, client, tenant, account, user, f"watermark-{n}-new")
    # The first user's older message is already READ: it stays as it is (one READ step).
    await post(client, account, report("seen", "watermark-0-old-0", "watermark-0"))

    alone: list[Any] = []
    apply_prepared = batching.apply_prepared

    async def lone(*args: Any, **kwargs: Any) -> str:
        alone.append(args)
        return await apply_prepared(*args, **kwargs)

    monkeypatch.setattr(batching, "apply_prepared", lone)
    answers = await asyncio.gather(
        *(post(client, account, report("seen", f"watermark-{n}-new", f"watermark-{n}")) for n in range(8))
    )
    assert [answer.json()["outcome"] for answer in answers] == ["applied"] * 8
    assert max(batch_sizes) > 1 and alone == []
    for user, message_id in latest.items():
        for covered in [*earlier[user], message_id]:
            status = await status_of(client, tenant, covered)
            assert status["status"] == 5, (user, status)  # READ
            assert [step["status"] for step in status["history"]].count(5) == 1
