"""Delivery against a real receiver over real HTTP, on the real database (SQLite and PostgreSQL)."""

import asyncio
import base64
import hashlib
import hmac
import socket
import time
import uuid

import httpx
import orjson
from sqlalchemy import func, select
from tests.conftest import Tenant, bot_credentials
from tests.webhooks.conftest import Answer, drive, eventually

from openmmp.models import Channel, WebhookDelivery
from openmmp.models.channel import WebhookStatus
from openmmp.models.webhook import DeliveryState
from openmmp.settings import WebhookSettings
from openmmp.webhooks import service as webhooks
from openmmp.webhooks.signing import verify
from openmmp.webhooks.tasks import retry_delay_ms


def status_body(message_id: str, status: int, cause: str) -> dict:
    return {
        "messageId": message_id,
        "cause": cause,
        "clientMessageId": "c-" + message_id,
        "timestamp": 1749113280000 + status,
        "type": 1,
        "status": status,
        "publicId": "channel",
        "applicationId": 10,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestEnqueue:
    async def test_a_channel_without_webhook_url_stores_nothing(
        self, hook_app, hook_client: httpx.AsyncClient, owner: Tenant
    ):
        body = {"name": "Quiet", "applicationId": 10, "credentials": bot_credentials()}
        created = (await hook_client.post("/api/v1/channel", json=body, headers=owner.headers)).json()
        async with hook_app.state.db.write_sessions() as session, session.begin():
            channel = (
                await session.execute(select(Channel).where(Channel.public_id == created["publicId"]))
            ).scalar_one()
            stored = await webhooks.enqueue(
                session, channel=channel, event_type=1, body={"type": 1}, ordering_key=None
            )
            assert stored is None
            count = await session.execute(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.channel_id == channel.id)
            )
            assert count.scalar_one() == 0

    async def test_the_body_is_stored_once_as_compact_json(self, make_hook, enqueue, read_delivery):
        hook = await make_hook()
        body = {"messageId": "m", "contact": {"name": "Hà Phước Hòa", "address": None}, "n": [1, 2]}
        webhook_id = await enqueue(hook, body)
        delivery, attempts = await read_delivery(webhook_id)
        assert delivery.body == orjson.dumps(body).decode()
        assert '": ' not in delivery.body and ", " not in delivery.body
        assert (delivery.state, delivery.attempts, attempts) == (DeliveryState.PENDING, 0, [])


class TestSignedDelivery:
    async def test_the_receiver_gets_the_stored_bytes_signed_with_the_channels_secret(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        webhook_id = await enqueue(hook, status_body("m-1", 5, "READ"), ordering_key="m-1")
        before = int(time.time())
        await drive(make_deliverer(), lambda: _received(receiver, hook.path, 1))
        [request] = receiver.of(hook.path)
        delivery, [attempt] = await read_delivery(webhook_id)

        assert request.body == delivery.body.encode()
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-id"] == webhook_id
        timestamp = int(request.headers["webhook-timestamp"])
        assert before - 1 <= timestamp <= time.time() + 1
        key = base64.b64decode(hook.secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + request.body, hashlib.sha256).digest()
        assert request.headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
        assert verify(hook.secret, request.body, request.headers)

        assert delivery.state == DeliveryState.DELIVERED
        assert delivery.attempts == 1
        assert delivery.delivered_at is not None
        assert delivery.last_status_code == 204
        assert attempt.status_code == 204
        assert attempt.url == hook.url
        assert attempt.error is None
        assert attempt.latency_ms > 0
        for stored in (attempt.response_excerpt, attempt.error or "", delivery.last_error or ""):
            assert hook.secret not in stored
            assert request.headers["webhook-signature"] not in stored


async def _received(receiver, path: str, count: int) -> bool:
    return len(receiver.of(path)) >= count


async def _state(read_delivery, webhook_id: str) -> DeliveryState:
    delivery, _ = await read_delivery(webhook_id)
    return DeliveryState(delivery.state)


class TestRetries:
    async def test_failures_are_retried_with_the_same_id_and_bytes_until_success(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery, read_channel
    ):
        hook = await make_hook()
        receiver.script(hook.path, Answer(500, b"boom"), Answer(503, b"busy"))
        webhook_id = await enqueue(hook, status_body("m-2", 2, "SEND"))
        deliverer = make_deliverer()

        await drive(deliverer, lambda: _received(receiver, hook.path, 1))
        channel = await read_channel(hook.account_id)
        assert channel.webhook_failing_since is not None
        delivery, _ = await read_delivery(webhook_id)
        assert (delivery.state, delivery.attempts, delivery.last_status_code) == (
            DeliveryState.PENDING,
            1,
            500,
        )
        assert delivery.last_error == "HTTP 500"

        await drive(deliverer, lambda: _state_is(read_delivery, webhook_id, DeliveryState.DELIVERED))
        requests = receiver.of(hook.path)
        assert [r.webhook_id for r in requests] == [webhook_id] * 3
        assert len({r.body for r in requests}) == 1
        assert all(verify(hook.secret, r.body, r.headers) for r in requests)
        # Back-off: 0.05 s then 0.1 s (± 10 %) between attempts.
        assert requests[1].at - requests[0].at >= 0.045
        assert requests[2].at - requests[1].at >= 0.09

        delivery, attempts = await read_delivery(webhook_id)
        assert delivery.attempts == 3
        assert [(a.status_code, a.response_excerpt, a.error) for a in attempts] == [
            (500, "boom", "HTTP 500"),
            (503, "busy", "HTTP 503"),
            (204, "", None),
        ]
        assert (await read_channel(hook.account_id)).webhook_failing_since is None

    def test_the_schedule_has_jitter_and_its_last_interval_repeats(self):
        settings = WebhookSettings(retry_schedule_s=[5, 30])
        firsts = {retry_delay_ms(settings, 1) for _ in range(50)}
        assert all(4500 <= d <= 5500 for d in firsts) and len(firsts) > 1
        assert all(27000 <= retry_delay_ms(settings, n) <= 33000 for n in (2, 3, 50))

    def test_the_default_schedule_keeps_retrying_past_a_day(self):
        settings = WebhookSettings()
        assert settings.retry_schedule_s[-1] == 43200
        assert sum(retry_delay_ms(settings, n) for n in range(1, 13)) > 86_400_000


async def _state_is(read_delivery, webhook_id: str, state: DeliveryState) -> bool:
    return await _state(read_delivery, webhook_id) == state


class TestOrdering:
    async def test_a_messages_next_event_waits_until_the_previous_one_is_delivered(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook, other = await make_hook(), await make_hook()
        receiver.script(hook.path, Answer(500), Answer(502), Answer(503))
        key = str(uuid.uuid4())
        sent = await enqueue(hook, status_body(key, 2, "SEND"), ordering_key=key)
        read = await enqueue(hook, status_body(key, 5, "READ"), ordering_key=key)
        independent = await enqueue(other, status_body("x", 2, "SEND"), ordering_key=None)
        deliverer = make_deliverer()

        await drive(deliverer, lambda: _received(receiver, hook.path, 2))
        # The first event is failing; the one after it is not tried, an unrelated one is delivered.
        assert [r.webhook_id for r in receiver.of(hook.path)] == [sent, sent]
        assert await _state(read_delivery, independent) == DeliveryState.DELIVERED
        assert (await read_delivery(read))[0].attempts == 0

        await drive(deliverer, lambda: _state_is(read_delivery, read, DeliveryState.DELIVERED))
        assert [r.webhook_id for r in receiver.of(hook.path)] == [sent, sent, sent, sent, read]
        sent_attempts = (await read_delivery(sent))[1]
        read_attempts = (await read_delivery(read))[1]
        assert [a.status_code for a in sent_attempts] == [500, 502, 503, 204]
        assert read_attempts[0].attempted_at >= sent_attempts[-1].attempted_at

    async def test_order_holds_across_several_deliverers(self, make_hook, enqueue, receiver, make_deliverer):
        hook = await make_hook()
        keys = [str(uuid.uuid4()) for _ in range(5)]
        expected: dict[str, list[str]] = {k: [] for k in keys}
        for status, cause in ((2, "SEND"), (4, "DELIVERED"), (5, "READ")):
            for key in keys:
                expected[key].append(await enqueue(hook, status_body(key, status, cause), ordering_key=key))
        deliverers = [make_deliverer(), make_deliverer(), make_deliverer()]

        async def all_received() -> bool:
            return len(receiver.of(hook.path)) >= 15

        deadline = time.monotonic() + 10
        while not await all_received():
            assert time.monotonic() < deadline
            await asyncio.gather(*(d.deliver_due() for d in deliverers))
        seen = [r.webhook_id for r in receiver.of(hook.path)]
        for key in keys:
            assert [i for i in seen if i in expected[key]] == expected[key]


class TestFailureKinds:
    async def test_a_slow_receiver_is_a_timeout(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        receiver.script(hook.path, Answer(204, delay_s=1.0))
        webhook_id = await enqueue(hook, status_body("slow", 2, "SEND"))
        deliverer = make_deliverer(timeout_seconds=0.2)
        await drive(deliverer, lambda: _state_is(read_delivery, webhook_id, DeliveryState.DELIVERED))
        _, attempts = await read_delivery(webhook_id)
        assert attempts[0].status_code is None
        assert attempts[0].error == "timed out after 0.2 s"
        assert 150 <= attempts[0].latency_ms < 1000
        assert attempts[-1].status_code == 204

    async def test_a_closed_port_is_a_connection_error(
        self, hook_client: httpx.AsyncClient, make_hook, enqueue, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        await hook_client.post(
            f"/api/v1/channel/{hook.account_id}/webhook",
            json={"url": f"http://127.0.0.1:{free_port()}/closed", "secret": hook.secret},
            headers=hook.tenant.headers,
        )
        webhook_id = await enqueue(hook, status_body("closed", 2, "SEND"))
        await make_deliverer().deliver_due()
        delivery, [attempt] = await read_delivery(webhook_id)
        assert (attempt.status_code, attempt.error) == (None, "connection failed: ConnectError")
        assert (delivery.state, delivery.attempts, delivery.last_status_code) == (
            DeliveryState.PENDING,
            1,
            None,
        )
        await _point_back(hook_client, hook)

    async def test_a_private_target_is_refused_at_delivery_time(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()  # allowed when it was set; this deliverer does not allow it
        webhook_id = await enqueue(hook, status_body("private", 2, "SEND"))
        await make_deliverer(allow_private=False).deliver_due()
        delivery, [attempt] = await read_delivery(webhook_id)
        assert (
            attempt.error
            == "target refused: 127.0.0.1 is a loopback address; webhooks go to public addresses only"
        )
        assert attempt.status_code is None
        assert delivery.state == DeliveryState.PENDING
        assert receiver.of(hook.path) == []

    async def test_the_answer_is_kept_to_2_kib_and_made_storable(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        receiver.script(hook.path, Answer(500, b"\x00\xff" + b"x" * 5000))
        webhook_id = await enqueue(hook, status_body("big", 2, "SEND"))
        await drive(make_deliverer(), lambda: _state_is(read_delivery, webhook_id, DeliveryState.DELIVERED))
        _, attempts = await read_delivery(webhook_id)
        assert len(attempts[0].response_excerpt) == 2048
        assert attempts[0].response_excerpt.startswith("\ufffd\ufffdxxx")


async def _point_back(hook_client: httpx.AsyncClient, hook) -> None:
    response = await hook_client.post(
        f"/api/v1/channel/{hook.account_id}/webhook",
        json={"url": hook.url, "secret": hook.secret},
        headers=hook.tenant.headers,
    )
    assert response.status_code == 200, response.text


class TestEndpointHealth:
    async def test_continuous_failure_fails_the_endpoint_and_set_webhook_releases_what_was_kept(
        self,
        hook_client: httpx.AsyncClient,
        make_hook,
        enqueue,
        receiver,
        make_deliverer,
        read_delivery,
        read_channel,
    ):
        hook = await make_hook()
        receiver.always(hook.path, Answer(500, b"down"))
        key = str(uuid.uuid4())
        first = await enqueue(hook, status_body(key, 2, "SEND"), ordering_key=key)
        deliverer = make_deliverer(endpoint_failed_after_s=0.3, retry_schedule_s=[0.05])

        async def failed() -> bool:
            return (await read_channel(hook.account_id)).webhook_status == WebhookStatus.FAILED

        await drive(deliverer, failed)
        channel = await read_channel(hook.account_id)
        assert channel.webhook_failing_since is not None
        assert await _state(read_delivery, first) == DeliveryState.HELD
        attempts_before = len(receiver.of(hook.path))
        assert attempts_before >= 3

        second = await enqueue(hook, status_body(key, 5, "READ"), ordering_key=key)
        assert await _state(read_delivery, second) == DeliveryState.HELD
        attempts_held = (await read_delivery(first))[0].attempts
        await deliverer.deliver_due()
        assert len(receiver.of(hook.path)) == attempts_before
        assert (await read_delivery(first))[0].attempts == attempts_held

        receiver.always(hook.path, Answer(200, b"ok"))
        response = await hook_client.post(
            f"{hook.base}", json={"url": hook.url, "secret": hook.secret}, headers=hook.tenant.headers
        )
        assert response.status_code == 200
        assert response.json()["status"] == 1
        channel = await read_channel(hook.account_id)
        assert (channel.webhook_status, channel.webhook_failing_since) == (WebhookStatus.ACTIVATED, None)
        for webhook_id in (first, second):
            delivery, _ = await read_delivery(webhook_id)
            assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 0)

        await drive(deliverer, lambda: _state_is(read_delivery, second, DeliveryState.DELIVERED))
        assert [r.webhook_id for r in receiver.of(hook.path)[attempts_before:]] == [first, second]

    async def test_a_success_ends_the_failure_streak(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery, read_channel
    ):
        hook = await make_hook()
        receiver.script(hook.path, Answer(500))
        webhook_id = await enqueue(hook, status_body("streak", 2, "SEND"))
        deliverer = make_deliverer(endpoint_failed_after_s=60)
        await drive(deliverer, lambda: _state_is(read_delivery, webhook_id, DeliveryState.DELIVERED))
        channel = await read_channel(hook.account_id)
        assert (channel.webhook_status, channel.webhook_failing_since) == (WebhookStatus.ACTIVATED, None)


class TestRunLoop:
    async def test_wake_cuts_the_idle_sleep_short_and_stop_ends_the_loop(
        self, make_hook, enqueue, receiver, make_deliverer
    ):
        hook = await make_hook()
        deliverer = make_deliverer(poll_interval_min_s=10, poll_interval_max_s=10)
        stop = asyncio.Event()
        loop = asyncio.create_task(deliverer.run(stop))
        try:
            await asyncio.sleep(0.2)  # the first round found nothing of ours; it sleeps 10 s now
            webhook_id = await enqueue(hook, status_body("woken", 2, "SEND"))
            started = time.monotonic()
            deliverer.wake()
            await eventually(lambda: bool(receiver.of(hook.path)), timeout=3, what="the woken delivery")
            assert time.monotonic() - started < 3
            assert receiver.of(hook.path)[0].webhook_id == webhook_id
        finally:
            stop.set()
            async with asyncio.timeout(5):
                await loop

    async def test_a_flood_of_wake_ups_becomes_a_few_claims(self, make_deliverer):
        """Every committed status change wakes every worker; one claim per wake-up and worker was most of
        a PostgreSQL worker's CPU with several workers."""
        deliverer = make_deliverer(poll_interval_min_s=0.05, poll_interval_max_s=1)
        claims = 0
        claim = deliverer._claim

        async def counted(limit: int):
            nonlocal claims
            claims += 1
            return await claim(limit)

        deliverer._claim = counted  # type: ignore[method-assign]
        stop = asyncio.Event()
        loop = asyncio.create_task(deliverer.run(stop))
        try:
            for _ in range(200):  # 200 wake-ups in about half a second
                deliverer.wake()
                await asyncio.sleep(0.0025)
        finally:
            stop.set()
            async with asyncio.timeout(5):
                await loop
        # At most one claim per 50 ms (plus the first one); one per wake-up would be about 200.
        assert claims <= 20, claims

    async def test_the_loop_retries_on_its_own(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        receiver.script(hook.path, Answer(500), Answer(500))
        webhook_id = await enqueue(hook, status_body("loop", 2, "SEND"))
        stop = asyncio.Event()
        loop = asyncio.create_task(make_deliverer().run(stop))
        try:
            await eventually(lambda: _state_is(read_delivery, webhook_id, DeliveryState.DELIVERED))
        finally:
            stop.set()
            await loop
        assert [r.webhook_id for r in receiver.of(hook.path)] == [webhook_id] * 3

    async def test_stopping_finishes_requests_under_way_and_hands_back_the_rest(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        receiver.always(hook.path, Answer(204, delay_s=0.5))
        ids = [await enqueue(hook, status_body(f"stop-{n}", 2, "SEND")) for n in range(6)]
        stop = asyncio.Event()
        loop = asyncio.create_task(make_deliverer(concurrency=2).run(stop))
        try:
            await eventually(lambda: len(receiver.of(hook.path)) >= 2, what="the first two requests")
        finally:
            stop.set()
            started = time.monotonic()
            await loop
            receiver.always(hook.path, Answer())
        assert time.monotonic() - started < 1.5
        rows = [(await read_delivery(i))[0] for i in ids]
        sent = [r for r in rows if r.state == DeliveryState.DELIVERED]
        handed_back = [r for r in rows if r.state == DeliveryState.PENDING]
        assert len(sent) == 2
        assert len(handed_back) == 4
        assert all((r.attempts, r.lease_until) == (0, 0) for r in handed_back)
        await drive(make_deliverer(), lambda: _all_delivered(read_delivery, ids))


async def _all_delivered(read_delivery, ids: list[str]) -> bool:
    return all([(await read_delivery(i))[0].state == DeliveryState.DELIVERED for i in ids])


class TestABoundedLife:
    async def test_a_body_refused_every_time_is_given_up_and_the_messages_later_events_go_out(
        self, make_hook, enqueue, receiver, make_deliverer, read_delivery, read_channel, hook_client
    ):
        hook = await make_hook()
        key = str(uuid.uuid4())
        refused = await enqueue(hook, status_body(key, 2, "SEND"), ordering_key=key)
        later = await enqueue(hook, status_body(key, 5, "READ"), ordering_key=key)
        receiver.script(hook.path, *[Answer(422)] * 4)  # this body, every time; then the receiver is fine
        deliverer = make_deliverer(max_attempts=4, retry_schedule_s=[0.02])

        await drive(deliverer, lambda: _state_is(read_delivery, later, DeliveryState.DELIVERED))
        delivery, attempts = await read_delivery(refused)
        assert delivery.state == DeliveryState.FAILED
        assert [a.status_code for a in attempts] == [422, 422, 422, 422]
        assert [r.webhook_id for r in receiver.of(hook.path)] == [refused] * 4 + [later]
        assert (await read_channel(hook.account_id)).webhook_status == WebhookStatus.ACTIVATED

        listed = await hook_client.get(
            f"{hook.base}/deliveries", params={"state": "FAILED"}, headers=hook.tenant.headers
        )
        assert listed.status_code == 200, listed.text
        assert [item["webhookId"] for item in listed.json()["items"]] == [refused]
        replayed = await hook_client.post(
            f"{hook.base}/deliveries/{refused}/replay", headers=hook.tenant.headers
        )
        assert replayed.status_code == 200, replayed.text
        await drive(deliverer, lambda: _state_is(read_delivery, refused, DeliveryState.DELIVERED))
        assert [r.webhook_id for r in receiver.of(hook.path)][-1] == refused

    def test_the_default_life_lasts_more_than_a_day_and_ends(self):
        settings = WebhookSettings()
        waits = sum(retry_delay_ms(settings, n) for n in range(1, settings.max_attempts))
        assert 86_400_000 < waits < 2 * 86_400_000
