"""ViberClient against the Viber Business Messages simulator over real HTTP, with signed callbacks."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from tests.providers.viber_harness import Inbox, Received, Sim, StartSim

from openmmp.kit.http import HttpClient
from openmmp.providers.base import CallbackEvent, InboundEvent, ProviderError, StatusEvent
from openmmp.providers.viber.callbacks import SANDBOX_CALLBACK_SECRET, parse_callback, verify_signature
from openmmp.providers.viber.client import ViberClient

SERVICE = 4711
SECRET = SANDBOX_CALLBACK_SECRET
HELLO: dict[str, Any] = {"type": "text", "message": "Your code is 4711"}
_seqs = itertools.count(1000)


def client_for(sim: Sim, http: HttpClient | None = None) -> ViberClient:
    return ViberClient(http or sim.http, sim.bm_url)


def verified(item: Received, secret: str = SECRET) -> CallbackEvent:
    assert verify_signature(item.body, item.headers.get("x-viber-content-signature"), secret)
    return parse_callback(item.body)


def statuses(inbox: Inbox) -> list[StatusEvent]:
    events = [verified(item) for item in inbox.received]
    return [event for event in events if isinstance(event, StatusEvent)]


async def send(
    client: ViberClient,
    dest: str,
    *,
    seq: int | None = None,
    service_id: int = SERVICE,
    ttl: int | None = None,
) -> str:
    sent = await client.send_message(
        service_id=service_id,
        dest=dest,
        seq=next(_seqs) if seq is None else seq,
        label=None,
        message=HELLO,
        ttl=ttl,
    )
    return sent.provider_message_id


async def send_error(coro: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await coro
    return caught.value


class TestSandboxOutcomesByPhoneDigit:
    @pytest.mark.parametrize("digit", range(7))
    async def test_digits_0_to_6_are_delivered_on_two_devices_then_seen(self, sim: Sim, digit: int) -> None:
        await sim.register_service(SERVICE)
        token = await send(client_for(sim), f"85512345{digit}")
        await sim.inbox.wait_events("seen", 1)
        events = statuses(sim.inbox)
        assert [(e.status, e.provider_message_id) for e in events] == [
            ("DELIVERED", token),
            ("DELIVERED", token),
            ("READ", token),
        ]
        # Two devices, one delivery: the core collapses them on the dedupe key.
        assert events[0].dedupe_key == events[1].dedupe_key
        assert [e.raw["device"] for e in events[:2]] == ["smartphone", "desktop"]

    async def test_digit_7_is_delivered_and_never_seen(self, sim: Sim) -> None:
        await sim.register_service(SERVICE)
        token = await send(client_for(sim), "855123457")
        await sim.settled("viber")
        assert [(e.status, e.provider_message_id) for e in statuses(sim.inbox)] == [
            ("DELIVERED", token),
            ("DELIVERED", token),
        ]

    async def test_digit_8_is_not_a_viber_user_and_final(self, sim: Sim) -> None:
        await sim.register_service(SERVICE)
        error = await send_error(send(client_for(sim), "855123458"))
        assert (error.code, error.message, error.retryable) == ("VIBER_9", "NOT_VIBER_USER", False)
        await sim.settled("viber")
        assert sim.inbox.received == []

    async def test_digit_9_fails_twice_for_the_same_seq_then_goes_through(self, sim: Sim) -> None:
        await sim.register_service(SERVICE)
        client = client_for(sim)
        for _ in range(2):
            error = await send_error(send(client, "855123459", seq=77))
            assert (error.code, error.message, error.retryable) == ("VIBER_1", "INTERNAL_FAILURE", True)
        token = await send(client, "855123459", seq=77)
        await sim.inbox.wait_events("seen", 1)
        assert [e.status for e in statuses(sim.inbox)] == ["DELIVERED", "DELIVERED", "READ"]
        assert {e.provider_message_id for e in statuses(sim.inbox)} == {token}
        # A new seq is a new message, and starts failing again.
        assert (await send_error(send(client, "855123459", seq=78))).code == "VIBER_1"

    async def test_a_single_delivered_when_duplicates_are_off(self, start_sim: StartSim) -> None:
        sim = await start_sim(options={"viber": {"duplicate_delivered": False}})
        await sim.register_service(SERVICE)
        await send(client_for(sim), "855123450")
        await sim.inbox.wait_events("seen", 1)
        assert [e.status for e in statuses(sim.inbox)] == ["DELIVERED", "READ"]


class TestIdempotency:
    async def test_the_same_seq_twice_returns_the_same_token_and_counts_a_duplicate(self, sim: Sim) -> None:
        await sim.register_service(SERVICE)
        client = client_for(sim)
        first = await send(client, "855123450", seq=5)
        again = await send(client, "855123450", seq=5)
        other_service = await send(client, "855123450", seq=5, service_id=SERVICE + 1)
        assert first == again != other_service
        stats = await sim.settled("viber")
        assert stats["duplicates"] == 1
        assert stats["accepted"] == 2
        assert len(sim.inbox.events("seen")) == 1
        detail = await sim.stats("viber", detail=True)
        assert detail["acceptedByKey"] == {f"{SERVICE}:5": 1, f"{SERVICE + 1}:5": 1}


class TestCallbacks:
    async def test_callbacks_are_signed_with_the_configured_secret(self, start_sim: StartSim) -> None:
        sim = await start_sim(options={"viber": {"callback_secret": "operator-secret"}})
        await sim.register_service(SERVICE)
        await send(client_for(sim), "855123450")
        [seen] = await sim.inbox.wait_events("seen", 1)
        assert not verify_signature(seen.body, seen.headers["x-viber-content-signature"], SECRET)
        assert isinstance(verified(seen, "operator-secret"), StatusEvent)

    async def test_a_service_without_a_callback_url_gets_no_callbacks(self, sim: Sim) -> None:
        assert await send(client_for(sim), "855123450")
        stats = await sim.settled("viber")
        assert stats["callbacksSent"] == 0

    async def test_callbacks_of_a_service_not_yet_registered_since_the_start_follow_its_registration(
        self, sim: Sim
    ) -> None:
        # A simulator restarted with the platform: the send comes before the channel's set-up registers.
        token = await send(client_for(sim), "855123450")
        assert (await sim.settled("viber"))["callbacksSent"] == 0
        await sim.register_service(SERVICE)
        [seen] = await sim.inbox.wait_events("seen", 1)
        assert [e.provider_message_id for e in statuses(sim.inbox)] == [token] * 3  # delivered x2, seen
        assert isinstance(verified(seen), StatusEvent)

    async def test_a_service_unregistered_on_purpose_gets_no_callbacks_even_after_registering(
        self, sim: Sim
    ) -> None:
        removed = await sim.post(f"/viber/_sandbox/services/{SERVICE}", {"callbackUrl": ""})
        assert removed.status_code == 200
        await send(client_for(sim), "855123450")
        await sim.register_service(SERVICE)
        stats = await sim.settled("viber")
        assert stats["callbacksSent"] == 0
        assert sim.inbox.received == []

    async def test_a_user_reply_arrives_as_an_inbound_message(self, sim: Sim) -> None:
        await sim.register_service(SERVICE)
        response = await sim.post(
            "/viber/_sandbox/inbound",
            {"serviceId": SERVICE, "phone": "+85512345678", "text": "STOP", "trackingData": "t-1"},
        )
        assert response.status_code == 200
        [item] = await sim.inbox.wait_events("message", 1)
        event = verified(item)
        assert isinstance(event, InboundEvent)
        assert (event.contact.id, event.contact.phone) == ("85512345678", "85512345678")
        assert event.message["message"] == "STOP"
        assert event.message["extra"]["tracking_data"] == "t-1"
        assert event.dedupe_key == f"message:{response.json()['messageToken']}"

    async def test_rates_mode_expires_undelivered_messages(self, start_sim: StartSim) -> None:
        sim = await start_sim(
            mode="rates", seed=3, fail_rate=0.0, retryable_error_rate=0.0, delivered_rate=0.0
        )
        await sim.register_service(SERVICE)
        token = await send(client_for(sim), "855123450")
        [item] = await sim.inbox.wait_events("expired", 1)
        event = verified(item)
        assert isinstance(event, StatusEvent)
        assert (event.status, event.provider_message_id, event.error_code) == ("FAIL", token, "VIBER_EXPIRED")


class TestUpstreamChecks:
    BASE: dict[str, Any] = {
        "service_id": SERVICE,
        "dest": "85512345670",
        "seq": 1,
        "type": 206,
        "label": "transaction",
        "message": {"#txt": "hi"},
    }

    @pytest.mark.parametrize(
        ("overrides", "status"),
        [
            ({}, 0),
            ({"service_id": "4711"}, 2),
            ({"seq": "one"}, 6),
            ({"dest": "1234567"}, 27),
            ({"dest": "+85512345670"}, 27),
            ({"type": 999}, 5),
            ({"label": "marketing"}, 18),
            ({"ttl": 29}, 20),
            ({"ttl": 1_209_601}, 20),
            ({"message": {"#txt": "x" * 1001}}, 6),
            ({"type": 209, "message": {"#txt": "x", "#caption": "c" * 31, "#action": "https://e"}}, 6),
            ({"type": 220, "message": {"#media": "https://e/f", "#fileName": "a.pdf"}}, 6),
            ({"type": 230, "message": {"#media": "https://e/v"}, "file_size": 200 * 1024 * 1024 + 1}, 6),
            ({"type": 901, "carousel": {"items": [{"title": "ab", "imageUrl": "https://e/i"}]}}, 41),
        ],
    )
    async def test_send_message_validates_like_upstream(
        self, sim: Sim, overrides: dict[str, Any], status: int
    ) -> None:
        response = await sim.post("/viber/vibersrvc/1/send_message", {**self.BASE, **overrides})
        assert response.status_code == 200
        assert response.json()["status"] == status

    async def test_requests_over_30_kb_are_bad_data(self, sim: Sim) -> None:
        body = {**self.BASE, "pad": "p" * 31_000}
        response = await sim.post("/viber/vibersrvc/1/send_message", content=orjson.dumps(body))
        assert response.json()["status"] == 3

    async def test_every_mmp_type_the_mapping_produces_is_accepted(self, sim: Sim) -> None:
        client = client_for(sim)
        button = {"action": "open-url", "text": "Open", "postbackData": "https://e"}
        card = {"title": "Card", "image": "https://e/i.jpg", "suggestions": [button]}
        messages: list[dict[str, Any]] = [
            {"type": "text", "message": "x", "suggestions": [button]},
            {"type": "picture", "fileUrl": "https://e/p.jpg"},
            {"type": "picture", "fileUrl": "https://e/p.jpg", "message": "x", "suggestions": [button]},
            {"type": "file", "fileUrl": "https://e/f.pdf", "fileName": "f.pdf"},
            {"type": "video", "fileUrl": "https://e/v.mp4", "thumbnailUrl": "https://e/t.jpg", "fileSize": 9},
            {"type": "rich_card", "richCards": [card, card, card]},
        ]
        for label in ("transaction", "promotion"):
            for message in messages:
                sent = await client.send_message(
                    service_id=SERVICE,
                    dest="85512345670",
                    seq=next(_seqs),
                    label=label,
                    message=message,
                    ttl=60,
                )
                assert sent.provider_message_id

    async def test_an_unmappable_message_is_a_final_error_without_a_request(self, sim: Sim) -> None:
        error = await send_error(
            client_for(sim).send_message(
                service_id=SERVICE,
                dest="85512345670",
                seq=1,
                label=None,
                message={"type": "location"},
                ttl=None,
            )
        )
        assert (error.code, error.retryable) == ("VIBER_INVALID_MESSAGE", False)
        assert (await sim.stats("viber"))["requests"] == 0


class TestRateLimitAndFaults:
    async def test_over_the_per_service_rate_is_rate_limited(self, start_sim: StartSim) -> None:
        sim = await start_sim(options={"viber": {"requests_per_second": 2}})
        client = client_for(sim)
        await send(client, "855123450")
        await send(client, "855123450")
        error = await send_error(send(client, "855123450"))
        assert (error.code, error.retryable, error.rate_limited) == ("VIBER_12", True, True)
        assert await send(client, "855123450", service_id=SERVICE + 1)
        assert (await sim.stats("viber"))["rateLimited"] == 1

    async def test_http_503_is_retryable(self, sim: Sim) -> None:
        await sim.fault("viber", kind="http_503")
        client = client_for(sim)
        error = await send_error(send(client, "855123450"))
        assert (error.code, error.retryable) == ("UPSTREAM_HTTP_503", True)
        assert await send(client, "855123450")

    async def test_a_hanging_upstream_is_a_retryable_timeout(self, sim: Sim) -> None:
        await sim.fault("viber", kind="timeout")
        impatient = HttpClient(timeout=0.3)
        try:
            error = await send_error(send(client_for(sim, impatient), "855123450"))
        finally:
            await impatient.aclose()
        assert (error.code, error.retryable) == ("UPSTREAM_TIMEOUT", True)

    async def test_a_final_error_fault_is_not_retryable(self, sim: Sim) -> None:
        await sim.fault("viber", kind="final_error", status=43)
        error = await send_error(send(client_for(sim), "855123450"))
        assert (error.code, error.message, error.retryable) == ("VIBER_43", "SERVICE_BLOCKED", False)

    async def test_a_rate_limit_fault_is_rate_limited(self, sim: Sim) -> None:
        await sim.fault("viber", kind="rate_limit", count=1)
        assert (await send_error(send(client_for(sim), "855123450"))).rate_limited
