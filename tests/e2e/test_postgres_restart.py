"""PostgreSQL restarts under load (a clean `-m fast` stop, then a crash-like `-m immediate` one).

The server is a private cluster started for this test (the machine's shared PostgreSQL serves other tests
at the same time). Nothing is restarted but PostgreSQL: the API and the worker recover by themselves —
pooled connections that died with the server are dropped, the worker's LISTEN connection comes back —
and no message a client was answered 200 for is lost. Clients retry what got no answer (a 5xx while the
database is away, or a lost connection) with the same clientMessageId.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from tests.conftest import POSTGRES_URL, TEST_SECRET, asgi_client, bot_credentials, running_app
from tests.e2e.conftest import Launcher
from tests.e2e.harness import (
    FINAL,
    SANDBOX_WEBHOOKS,
    BroadcastClients,
    CuttingProxy,
    PrivatePostgres,
    System,
    postgres_bindir,
    wait_until,
)

from openmmp import migrate
from openmmp.companies.service import companies
from openmmp.kit import db as db_module
from openmmp.kit.db import Database
from openmmp.settings import Settings

pytestmark = pytest.mark.e2e
OUTAGE_SECONDS = 2.0


async def worker_listening(system: System) -> bool:
    """A worker's LISTEN connection is open on the system's database."""
    [[count]] = await system.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"
    )
    return bool(count >= 1)


@pytest.fixture
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """Requested before `launch`, so that it is torn down after the system that uses it."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests are off (OPENMMP_TEST_DATABASE_URL is not set)")
    bindir = postgres_bindir()
    if bindir is None:
        message = "SKIPPED: no initdb/pg_ctl (e.g. /usr/lib/postgresql/15/bin): PostgreSQL restart not tested"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    server = PrivatePostgres(bindir)
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
        try:
            await admin.execute("CREATE DATABASE openmmp")
        finally:
            await admin.close()
        await asyncio.to_thread(migrate.upgrade, server.url)
        yield server
    finally:
        await asyncio.to_thread(server.destroy)


async def test_the_service_recovers_by_itself_when_postgresql_restarts_under_load(
    private_postgres: PrivatePostgres, launch: Launcher
):
    server = private_postgres
    launch.extra_logs["postgres"] = server.log
    system = await launch(server.url, workers=1, env={"OPENMMP_DB_POOL_SIZE": "4"})
    async with httpx.AsyncClient(base_url=system.api, timeout=10) as api:
        company = await system.onboard(api)
        channel = await system.viber_channel(api, company)
        account = channel["publicId"]
        load = BroadcastClients(system.api, company.headers, account, clients=4, pause=0.1, digits=range(8))
        stop = asyncio.Event()
        clients = asyncio.create_task(load.run(stop))
        try:
            for mode in ("fast", "immediate"):
                floor = len(load.answered) + 30
                await wait_until(
                    lambda floor=floor: len(load.answered) >= floor, timeout=60, what="load under way"
                )
                await asyncio.to_thread(server.stop, mode)
                await asyncio.sleep(OUTAGE_SECONDS)
                await asyncio.to_thread(server.start)
                back = time.monotonic()
                # Nobody restarts the API: it answers 200 again by itself.
                await wait_until(
                    lambda back=back: load.accepted_since(back) >= 20,
                    timeout=60,
                    what=f"sends after a {mode} restart",
                )
        finally:
            stop.set()
            await asyncio.wait_for(clients, timeout=120)

        assert not load.errors, load.errors[:5]
        assert load.interruptions, "the clients never noticed the database was away"
        assert all(process.running for process in system.processes.values())

        async def all_final() -> dict[str, int] | None:
            statuses = await system.statuses(account)
            return statuses if all(s in FINAL for s in statuses.values()) else None

        statuses = await wait_until(all_final, timeout=120, interval=0.5, what="every message final")
        answered = {cid: answer.message_id for cid, answer in load.answered.items()}
        assert set(statuses) == set(answered.values())  # nothing lost, nothing the clients do not know
        assert len(set(answered.values())) == len(answered)
        assert await system.outbox_breaches() == {
            "pending messages without a job": 0,
            "jobs without a message": 0,
        }

        # The worker listens again (on a backend of the restarted server); it may still be in its
        # reconnect back-off when the last message becomes final, so give it a moment.
        await wait_until(lambda: worker_listening(system), timeout=30, what="the worker listening again")

        # Every message's webhooks arrived (at least once) up to its final status.
        def webhooks_arrived() -> bool:
            return all(
                {d.body["status"] for d in system.receiver.of_message(message_id)}
                >= set(SANDBOX_WEBHOOKS[int(load.sent_phone[cid][-1])])
                for cid, message_id in answered.items()
            )

        await wait_until(webhooks_arrived, timeout=60, interval=0.5, what="every webhook")
        stats = await system.sim_stats(detail=True)
    ours = {k: v for k, v in stats["acceptedByKey"].items() if k.startswith(f"{channel['_serviceId']}:")}
    assert len(ours) == len(answered)
    assert set(ours.values()) == {1}  # each message accepted upstream once
    print(
        f"messages: {len(answered)}, interruptions seen by clients: {load.interruptions}, "
        f"collapsed repeats upstream: {stats['duplicates']}"
    )


async def test_a_listen_connection_lost_as_it_starts_listening_does_not_stop_the_worker(launch: Launcher):
    """The database connection drops at the worst moment for the listener: right after it was opened,
    when the worker sends LISTEN (a restart under way, a proxy or a firewall cutting it). The worker
    keeps working and listens again on a later connection."""
    database_url = launch.database("postgresql", "listen_cut")
    target = make_url(database_url)
    proxy = CuttingProxy((target.host or "127.0.0.1", target.port or 5432), cut_on=b"LISTEN", cuts=2)
    await proxy.start()
    try:
        proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        system = await launch(proxied, workers=1)
        await wait_until(lambda: proxy.cut == 2, timeout=30, what="two LISTEN connections cut")
        async with httpx.AsyncClient(base_url=system.api, timeout=10) as api:
            company = await system.onboard(api)
            channel = await system.viber_channel(api, company, webhooks=False)
            response = await api.post(
                f"/api/v1/channel/{channel['publicId']}/broadcast",
                json={"phone": "85512345671", "message": {"type": "text", "message": "still here"}},
                headers=company.headers,
            )
            assert response.status_code == 200, response.text

            async def read() -> bool:
                statuses = await system.statuses(channel["publicId"])
                return set(statuses.values()) == {5}

            await wait_until(read, timeout=30, what="the message sent and read")

            await wait_until(lambda: worker_listening(system), timeout=30, what="the worker listening again")
        assert system.processes["worker"].running, system.processes["worker"].log()[-3000:]
    finally:
        await proxy.stop()


@pytest.mark.parametrize("ping_after_idle_s", [0.0, 3600.0])
async def test_a_pooled_connection_that_died_idle_is_replaced_before_use(
    private_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch, ping_after_idle_s: float
):
    """Idle long enough, a pooled connection is checked before use: a restart meanwhile costs nothing.

    Busy connections are not pinged (a round trip per checkout); their next statement finds out, fails,
    and the pool starts afresh for the requests after it.
    """
    monkeypatch.setattr(db_module, "_IDLE_BEFORE_PING_S", ping_after_idle_s)
    db = Database(private_postgres.url, pool_size=1)
    try:
        async with db.read_sessions() as session:
            assert await session.scalar(text("SELECT 1")) == 1
        await asyncio.to_thread(private_postgres.stop, "fast")
        await asyncio.to_thread(private_postgres.start)
        if ping_after_idle_s == 0.0:
            async with db.read_sessions() as session:
                assert await session.scalar(text("SELECT 2")) == 2
        else:
            with pytest.raises(DBAPIError):
                async with db.read_sessions() as session:
                    await session.scalar(text("SELECT 2"))
        async with db.read_sessions() as session:
            assert await session.scalar(text("SELECT 3")) == 3
    finally:
        await db.dispose()


async def test_while_postgresql_is_away_requests_are_answered_503_with_retry_after(
    private_postgres: PrivatePostgres, tmp_path: Path
):
    """A database that is down is a dependency away, not a bug of ours: 503 SERVICE_UNAVAILABLE with
    Retry-After (nothing stored, retry), for reads, writes and provider callbacks alike; 200 once it is back."""
    settings = Settings(database_url=private_postgres.url, data_dir=tmp_path, secret_key=TEST_SECRET)
    async with running_app(settings) as app, asgi_client(app) as client:
        async with app.state.db.write_sessions() as session, session.begin():
            _, key = await companies.create_partner(session, app.state.keyring, name="Partner")
        headers = {"apiKey": key}
        channel = {"name": "Bot", "applicationId": 10, "credentials": bot_credentials()}
        made = await client.post("/api/v1/channel", json=channel, headers=headers)
        assert made.status_code == 201, made.text
        account = made.json()["publicId"]
        send = {"phone": "85512345671", "message": {"type": "text", "message": "hello"}}
        requests = [
            ("GET", "/api/v1/channel", None),
            ("POST", f"/api/v1/channel/{account}/broadcast", send),
            ("GET", "/api/v1/message/status", None),
            ("POST", f"/callbacks/viber-bot/{account}", {"event": "webhook", "timestamp": 1}),
        ]

        await asyncio.to_thread(private_postgres.stop, "fast")
        for method, path, body in requests:
            answer = await client.request(method, path, json=body, headers=headers)
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert answer.headers["Retry-After"] == "2"
            assert answer.json() == {
                "errors": [
                    {"name": "database", "code": "SERVICE_UNAVAILABLE", "message": "Database is unavailable"}
                ]
            }

        await asyncio.to_thread(private_postgres.start)
        answer = await client.get("/api/v1/channel", headers=headers)
        assert answer.status_code == 200, answer.text
        again = await client.post(
            "/api/v1/channel", json={**channel, "credentials": bot_credentials()}, headers=headers
        )
        assert again.status_code == 201, again.text
