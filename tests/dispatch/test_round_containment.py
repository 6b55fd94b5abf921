"""A dispatch round is not all-or-nothing, and what an upstream without idempotency accepted is recorded
at once.

One round carries messages of three channels: a healthy Viber channel (sent to the real simulator), a
channel whose credentials cannot be decrypted, and a Viber Bot channel whose request fails inside
OpenMMP with an exception no adapter expects (an HTTP client that raises RuntimeError, standing for a
bug). What the upstream accepted is recorded SENT; the unreadable channel's message FAILs with the
cause; the crashed request's message is retried (an attempt counted), never lost.

And while a round waits for a hanging Viber request, the Viber Bot message the upstream accepted in the
same round is already committed SENT: a crash then would not send it again. However slow those commits,
no more Viber Bot requests are accepted and unrecorded than the worker has requests in flight. A report
applied while the round records its send is never undone by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from tests.callbacks.test_callback_endpoints import user_writes
from tests.conftest import Tenant, viber_credentials
from tests.e2e.harness import wait_until
from tests.providers.viber_harness import serve

from openmmp.dispatch.flows import Dispatcher
from openmmp.kit.http import HttpClient, HttpResponse
from openmmp.kit.limits import LocalLimiter
from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import Channel, Conversation, Job, Message, MessageEvent
from openmmp.models.message import MessageStatus
from openmmp.providers.base import ProviderContext
from openmmp.providers.registry import REGISTRY
from openmmp.providers.simulation import SimulatorConfig, create_simulators_app


class CrashingHttp(HttpClient):
    """An HTTP client with a bug: every request raises what no adapter expects."""

    async def post(self, url: str, **kwargs: Any) -> HttpResponse:
        raise RuntimeError("a bug in the HTTP layer")


@pytest.fixture
async def simulators() -> AsyncIterator[str]:
    http = HttpClient(timeout=5.0)
    app = create_simulators_app(SimulatorConfig(callback_latency_s=0.01), http)
    try:
        async with app.router.lifespan_context(app), serve(app) as base_url:
            yield base_url
    finally:
        await http.aclose()


TEXT = {"type": "text", "message": "hello"}


async def _send(client: httpx.AsyncClient, tenant: Tenant, account: str, body: dict[str, Any]) -> str:
    response = await client.post(f"/api/v1/channel/{account}/broadcast", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["messageId"])


async def _launch(app: Any, *accounts: str) -> None:
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(update(Channel).where(Channel.public_id.in_(accounts)).values(status=3))


async def test_an_unexpected_error_stays_with_its_messages_and_the_rest_of_the_round_is_recorded(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel, simulators: str
):
    healthy = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    unreadable = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    bot = await make_channel(tenant)
    await _launch(app, healthy["publicId"], unreadable["publicId"], bot["publicId"])
    user = f"u-{uuid.uuid4().hex[:8]}"
    await user_writes(client, bot["publicId"], user, int(now_ms()))
    async with app.state.db.read_sessions() as session:
        conversation = (
            await session.execute(select(Conversation).where(Conversation.external_id == user))
        ).scalar_one()

    sent = [
        await _send(client, tenant, healthy["publicId"], {"phone": f"8551234567{d}", "message": TEXT})
        for d in (0, 1)
    ]
    lost = await _send(client, tenant, unreadable["publicId"], {"phone": "85512345672", "message": TEXT})
    crashed = await _send(client, tenant, bot["publicId"], {"to": conversation.public_id, "message": TEXT})
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(
            update(Channel)
            .where(Channel.public_id == unreadable["publicId"])
            .values(credentials="not-a-token")
        )

    http, crashing = HttpClient(timeout=5.0), CrashingHttp(timeout=5.0)
    contexts = {
        "viber": ProviderContext(http, f"{simulators}/viber", "http://127.0.0.1:9", sandbox=False),
        "viber-bot": ProviderContext(
            crashing, f"{simulators}/viber-bot", "http://127.0.0.1:9", sandbox=False
        ),
        **{
            p.name: ProviderContext(http, f"{simulators}/{p.name}", "http://127.0.0.1:9", sandbox=False)
            for p in REGISTRY.providers
            if p.name not in ("viber", "viber-bot")
        },
    }
    assert set(contexts) == {p.name for p in REGISTRY.providers}
    dispatcher = Dispatcher(app.state.db, app.state.keyring, app.state.settings, contexts, LocalLimiter())
    try:
        before = now_ms()
        while await dispatcher.run_once():
            pass
    finally:
        await http.aclose()
        await crashing.aclose()

    async with app.state.db.read_sessions() as session:
        messages = {
            m.public_id: m
            for m in (
                await session.execute(select(Message).where(Message.public_id.in_([*sent, lost, crashed])))
            ).scalars()
        }
        crashed_job = (
            await session.execute(select(Job).where(Job.message_id == messages[crashed].id))
        ).scalar_one()
    for message_id in sent:
        assert messages[message_id].status == 2
        assert messages[message_id].provider_message_id
    assert messages[lost].status == 3
    assert messages[lost].error_code == "CHANNEL_CREDENTIALS"
    assert "DecryptionFailed" in (messages[lost].error_message or "")
    assert messages[crashed].status == 1  # still to be sent: retried, not failed, not lost
    assert crashed_job.attempts == 1
    assert crashed_job.lease_until == 0
    assert crashed_job.run_at > before


async def test_an_answer_of_an_upstream_without_idempotency_is_committed_before_the_round_ends(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel, simulators: str
):
    viber = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    bot = await make_channel(tenant)
    await _launch(app, viber["publicId"], bot["publicId"])
    # The simulator picks an outcome by the receiver's last digit (8: final error, 9: retryable): 0 is sent.
    user = f"u-{uuid.uuid4().hex[:8]}-0"
    await user_writes(client, bot["publicId"], user, int(now_ms()))
    async with app.state.db.read_sessions() as session:
        conversation = (
            await session.execute(select(Conversation).where(Conversation.external_id == user))
        ).scalar_one()
    slow = await _send(client, tenant, viber["publicId"], {"phone": "85512345670", "message": TEXT})
    quick = await _send(client, tenant, bot["publicId"], {"to": conversation.public_id, "message": TEXT})

    async def status(message_id: str) -> int:
        async with app.state.db.read_sessions() as session:
            found = await session.execute(select(Message.status).where(Message.public_id == message_id))
            return int(found.scalar_one())

    async def quick_sent() -> bool:
        return await status(quick) == 2

    async with _simulators_client(simulators) as (http, contexts):
        dispatcher = Dispatcher(app.state.db, app.state.keyring, app.state.settings, contexts, LocalLimiter())
        await http.post(f"{simulators}/viber/_sandbox/faults", json={"kind": "timeout", "count": 1})
        async with _rounds_alone(app, dispatcher, [slow, quick]) as rounds:
            # Before the hanging request's 8 s timeout ends the round (a loaded machine can take seconds).
            await wait_until(quick_sent, timeout=6.0, interval=0.02, what="the Viber Bot message SENT")
            assert await status(slow) == 1  # its request still hangs: its round has not ended
            await rounds
    assert await status(quick) == 2


_ASIDE_MS = 10**15
"""Added to other tests' jobs' run_at while this one runs (far beyond any real epoch ms), then taken off."""


@contextlib.asynccontextmanager
async def _simulators_client(simulators: str) -> AsyncIterator[tuple[HttpClient, dict[str, ProviderContext]]]:
    """An HTTP client to the simulators, and every provider's context through it."""
    http = HttpClient(timeout=8.0)
    try:
        yield (
            http,
            {
                p.name: ProviderContext(http, f"{simulators}/{p.name}", "http://127.0.0.1:9", False)
                for p in REGISTRY.providers
            },
        )
    finally:
        await http.aclose()


@contextlib.asynccontextmanager
async def _rounds_alone(
    app: Any, dispatcher: Dispatcher, public_ids: list[str]
) -> AsyncIterator[asyncio.Task]:
    """The dispatcher's rounds, as a task, over these messages alone: earlier tests' unsent jobs (the
    database lives for the session) would share the first round, and the messages could land in
    different rounds, so the others are set aside until the end."""
    ours = select(Message.id).where(Message.public_id.in_(public_ids)).scalar_subquery()
    others = (Job.kind == "dispatch") & ~Job.message_id.in_(ours)
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(update(Job).where(others).values(run_at=Job.run_at + _ASIDE_MS))
    rounds = asyncio.create_task(_all_rounds(dispatcher))
    try:
        yield rounds
    finally:
        rounds.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rounds
        async with app.state.db.write_sessions() as session, session.begin():
            aside = (Job.kind == "dispatch") & (Job.run_at > _ASIDE_MS)
            await session.execute(update(Job).where(aside).values(run_at=Job.run_at - _ASIDE_MS))


async def _all_rounds(dispatcher: Dispatcher) -> None:
    while await dispatcher.run_once():
        pass


class GatedDispatcher(Dispatcher):
    """A dispatcher whose commits wait for `gate`: a commit that takes as long as the test wants."""

    gate: asyncio.Event

    async def _commit(self, round_: Any, channels: dict[int, Channel]) -> None:
        await self.gate.wait()
        await super()._commit(round_, channels)


async def test_an_upstream_without_idempotency_never_has_more_unrecorded_acceptances_than_requests_in_flight(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel, simulators: str
):
    """Every acceptance not yet recorded would be sent again by a crash: a slow commit must hold the next
    requests back rather than let them pile up. With one request in flight, one acceptance at most."""
    bot = await make_channel(tenant)
    await _launch(app, bot["publicId"])
    sent = []
    for n in range(4):
        user = f"u-{uuid.uuid4().hex[:8]}-0"
        await user_writes(client, bot["publicId"], user, int(now_ms()) + n)
        async with app.state.db.read_sessions() as session:
            conversation = (
                await session.execute(select(Conversation).where(Conversation.external_id == user))
            ).scalar_one()
        # Texts that differ: each message is a request of its own (equal ones share a broadcast).
        body = {"to": conversation.public_id, "message": {"type": "text", "message": f"hello {n}"}}
        sent.append(await _send(client, tenant, bot["publicId"], body))
    settings = app.state.settings
    one_in_flight = settings.model_copy(
        update={"dispatch": settings.dispatch.model_copy(update={"concurrency": 1})}
    )
    async with _simulators_client(simulators) as (http, contexts):

        async def accepted() -> int:
            return int((await http.get(f"{simulators}/viber-bot/_sandbox/stats")).json()["accepted"])

        async def first_accepted() -> bool:
            return await accepted() > before

        dispatcher = GatedDispatcher(app.state.db, app.state.keyring, one_in_flight, contexts, LocalLimiter())
        dispatcher.gate = asyncio.Event()
        before = await accepted()
        async with _rounds_alone(app, dispatcher, sent) as rounds:
            await wait_until(first_accepted, timeout=10, what="the first request accepted")
            await asyncio.sleep(0.5)  # room for the next requests to go out, were they let through
            assert await accepted() - before == 1
            dispatcher.gate.set()
            await rounds
    async with app.state.db.read_sessions() as session:
        found = await session.execute(select(Message.status).where(Message.public_id.in_(sent)))
        assert sorted(found.scalars()) == [2, 2, 2, 2]


async def test_a_report_applied_while_the_round_records_its_send_is_not_undone(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel, simulators: str
):
    """The round reads its messages again before recording SENT. A delivery report committed between
    that read and the update (its callback overtook the round's commit) must survive: recorded over it,
    SENT would move the message back, and nothing would ever move it forward again."""
    if app.state.db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: nothing to interleave")
    viber = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    await _launch(app, viber["publicId"])
    sent = await _send(client, tenant, viber["publicId"], {"phone": "85512345670", "message": TEXT})
    db = app.state.db

    async def round_waits_for_a_lock() -> bool:
        async with db.read_sessions() as session:
            waiting = await session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            return bool(waiting.scalar_one())

    async with _simulators_client(simulators) as (_, contexts):
        dispatcher = Dispatcher(db, app.state.keyring, app.state.settings, contexts, LocalLimiter())
        async with db.write_sessions() as report, _rounds_alone(app, dispatcher, [sent]) as rounds:
            await report.begin()
            # The report's transaction holds the message, as a callback applying DELIVERED does.
            message = (
                await report.execute(select(Message).where(Message.public_id == sent).with_for_update())
            ).scalar_one()
            channel = await report.get_one(Channel, message.channel_id)
            await wait_until(round_waits_for_a_lock, timeout=10, what="the round's write waiting")
            await status_machine.apply(
                report,
                [status_machine.Change(message, MessageStatus.DELIVERED, now_ms())],
                {channel.id: channel},
            )
            await report.commit()
            await rounds
    async with db.read_sessions() as session:
        message = (await session.execute(select(Message).where(Message.public_id == sent))).scalar_one()
        history = await session.execute(
            select(MessageEvent.status).where(MessageEvent.message_id == message.id).order_by(MessageEvent.id)
        )
        assert message.status == MessageStatus.DELIVERED
        assert list(history.scalars()) == [2, 4]  # SENT filled in by the report, once
