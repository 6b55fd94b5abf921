"""ViberBotClient against the Viber Bot simulator over real HTTP, with callbacks to a real receiver."""

from __future__ import annotations

import socket
from typing import Any

import orjson
import pytest
from tests.providers.viber_harness import Inbox, Received, Sim, StartSim

from openmmp.kit.http import HttpClient
from openmmp.providers.base import CallbackEvent, InboundEvent, PingEvent, ProviderError, StatusEvent
from openmmp.providers.viber_bot.callbacks import parse_callback, verify_signature
from openmmp.providers.viber_bot.client import ViberBotClient

TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
HELLO: dict[str, Any] = {"type": "text", "message": "Hello Dara"}


def client_for(sim: Sim) -> ViberBotClient:
    return ViberBotClient(sim.http, sim.bot_url + "/")


def verified(item: Received, token: str = TOKEN) -> CallbackEvent:
    """What the core does with a callback: check the signature over the raw bytes, then parse."""
    assert verify_signature(item.body, item.headers.get("x-viber-content-signature"), token)
    return parse_callback(item.body)


def statuses(inbox: Inbox) -> list[StatusEvent]:
    events = [
        verified(item) for item in inbox.received if item.json()["event"] in ("delivered", "seen", "failed")
    ]
    return [event for event in events if isinstance(event, StatusEvent)]


async def with_webhook(sim: Sim, token: str = TOKEN) -> ViberBotClient:
    client = client_for(sim)
    await client.set_webhook(auth_token=token, url=sim.inbox.url)
    return client


async def user_with_phone(sim: Sim, phone: str, token: str = TOKEN) -> str:
    answer = await sim.inbound(token, name="Dara", text="hi", phone=phone)
    user_id: str = answer["userId"]
    return user_id


async def send(
    client: ViberBotClient, receiver: str, message: dict[str, Any] = HELLO, token: str = TOKEN
) -> str:
    sent = await client.send_message(
        auth_token=token, sender_name="Shop", sender_avatar=None, receiver=receiver, message=message
    )
    return sent.provider_message_id


async def send_error(coro: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await coro
    return caught.value


class TestSandboxOutcomesByPhoneDigit:
    @pytest.mark.parametrize("digit", range(7))
    async def test_digits_0_to_6_are_accepted_then_delivered_then_seen(self, sim: Sim, digit: int) -> None:
        client = await with_webhook(sim)
        user_id = await user_with_phone(sim, f"85512345{digit}")
        token = await send(client, user_id)
        await sim.inbox.wait_events("seen", 1)
        assert [(e.status, e.provider_message_id, e.user_id) for e in statuses(sim.inbox)] == [
            ("DELIVERED", token, user_id),
            ("READ", token, user_id),
        ]

    async def test_digit_7_is_delivered_and_never_seen(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        user_id = await user_with_phone(sim, "855123457")
        token = await send(client, user_id)
        await sim.inbox.wait_events("delivered", 1)
        await sim.settled("viber-bot")
        assert [(e.status, e.provider_message_id) for e in statuses(sim.inbox)] == [("DELIVERED", token)]

    async def test_digit_8_is_refused_at_send_as_not_subscribed_and_final(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        user_id = await user_with_phone(sim, "855123458")
        error = await send_error(send(client, user_id))
        assert (error.code, error.message, error.retryable) == ("VIBER_BOT_6", "receiverNotSubscribed", False)
        stats = await sim.settled("viber-bot")
        assert stats["rejected"] == {"6": 1}
        assert statuses(sim.inbox) == []

    async def test_digit_9_fails_twice_retryably_then_goes_through(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        user_id = await user_with_phone(sim, "855123459")
        for _ in range(2):
            error = await send_error(send(client, user_id))
            assert (error.code, error.retryable, error.rate_limited) == ("VIBER_BOT_12", True, True)
        token = await send(client, user_id)
        await sim.inbox.wait_events("seen", 1)
        assert [(e.status, e.provider_message_id) for e in statuses(sim.inbox)] == [
            ("DELIVERED", token),
            ("READ", token),
        ]

    async def test_digit_9_counts_attempts_per_message_not_per_receiver(self, sim: Sim) -> None:
        client = client_for(sim)
        user_id = await user_with_phone(sim, "855123459")
        for _ in range(2):
            await send_error(send(client, user_id))
        await send(client, user_id)
        other = {"type": "text", "message": "Another message"}
        error = await send_error(send(client, user_id, other))
        assert error.code == "VIBER_BOT_12"

    async def test_without_a_shared_phone_the_receiver_ids_last_digit_decides(self, sim: Sim) -> None:
        client = client_for(sim)
        error = await send_error(send(client, "someUnknownUser+8="))
        assert error.code == "VIBER_BOT_6"
        assert await send(client, "someUnknownUser+3=")


class TestWebhook:
    async def test_set_webhook_pings_the_url_with_a_signed_webhook_event(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        [ping] = sim.inbox.events("webhook")
        event = verified(ping)
        assert isinstance(event, PingEvent)
        assert {"timestamp", "chat_hostname", "message_token"} <= set(event.raw)
        info = await client.get_account_info(auth_token=TOKEN)
        assert info["webhook"] == sim.inbox.url

    async def test_a_webhook_that_does_not_answer_200_is_refused(self, sim: Sim) -> None:
        sim.inbox.always_fail = True
        error = await send_error(client_for(sim).set_webhook(auth_token=TOKEN, url=sim.inbox.url))
        assert (error.code, error.retryable) == ("VIBER_BOT_1", False)
        assert (await client_for(sim).get_account_info(auth_token=TOKEN))["webhook"] == ""

    async def test_an_empty_url_removes_the_webhook_and_callbacks_stop(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        await client.set_webhook(auth_token=TOKEN, url="")
        assert (await client.get_account_info(auth_token=TOKEN))["webhook"] == ""
        await send(client, "user0=")
        await sim.settled("viber-bot")
        assert sim.inbox.events("delivered") == []

    async def test_reports_of_a_bot_without_a_webhook_since_the_start_follow_its_set_webhook(
        self, sim: Sim
    ) -> None:
        # A simulator restarted with the platform: the send comes before the channel's set-up sets the hook.
        client = client_for(sim)
        user_id = await user_with_phone(sim, "855123450")
        token = await send(client, user_id)
        assert (await sim.settled("viber-bot"))["callbacksSent"] == 0
        await client.set_webhook(auth_token=TOKEN, url=sim.inbox.url)
        await sim.inbox.wait_events("seen", 1)
        assert [(e.status, e.provider_message_id) for e in statuses(sim.inbox)] == [
            ("DELIVERED", token),
            ("READ", token),
        ]

    async def test_event_types_filter_delivery_reports(self, sim: Sim) -> None:
        client = client_for(sim)
        await client.set_webhook(auth_token=TOKEN, url=sim.inbox.url, event_types=["seen"])
        await send(client, "user0=")
        await sim.inbox.wait_events("seen", 1)
        assert sim.inbox.events("delivered") == []

    async def test_callbacks_that_fail_are_retried_with_back_off(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        sim.inbox.fail_first = 2
        token = await send(client, "user0=")
        await sim.inbox.wait_events("seen", 1)
        delivered = sim.inbox.events("delivered")
        assert len(delivered) == 3
        assert len({item.body for item in delivered}) == 1
        event = verified(delivered[-1])
        assert isinstance(event, StatusEvent) and event.provider_message_id == token
        stats = await sim.settled("viber-bot")
        assert stats["callbackAttemptsFailed"] == 2
        assert stats["callbacksFailed"] == 0

    async def test_callback_retries_are_bounded(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        sim.inbox.always_fail = True
        await send(client, "user0=")
        stats = await sim.settled("viber-bot")
        # delivered and seen: 1 try + 3 retries each, then given up.
        assert stats["callbacksFailed"] == 2
        assert stats["callbackAttemptsFailed"] == 8
        assert len(sim.inbox.events("delivered")) == 4


class TestInbound:
    async def test_an_end_user_message_arrives_as_a_signed_message_callback(self, sim: Sim) -> None:
        await with_webhook(sim)
        answer = await sim.inbound(TOKEN, name="Hà Phước Hòa", text="hoha", userId="alice")
        [item] = await sim.inbox.wait_events("message", 1)
        event = verified(item)
        assert isinstance(event, InboundEvent)
        assert event.kind == "message"
        assert event.contact.id == answer["userId"]
        assert event.contact.name == "Hà Phước Hòa"
        assert event.message["type"] == "text"
        assert event.message["message"] == "hoha"
        assert event.message["extra"] == {"type": "text", "text": "hoha"}
        assert event.dedupe_key == f"message:{answer['messageToken']}:{answer['userId']}"

    async def test_user_ids_are_stable_per_handle_and_look_like_viber_ids(self, sim: Sim) -> None:
        first = await sim.inbound(TOKEN, name="A", text="1", userId="alice")
        again = await sim.inbound(TOKEN, name="A", text="2", userId="alice")
        by_id = await sim.inbound(TOKEN, name="A", text="3", userId=first["userId"])
        by_phone = await sim.inbound(TOKEN, name="B", text="4", phone="+855 12 345 678")
        other_bot = await sim.inbound("another-bot", name="A", text="1", userId="alice")
        assert first["userId"] == again["userId"] == by_id["userId"]
        assert len({first["userId"], by_phone["userId"], other_bot["userId"]}) == 3
        assert all(len(answer["userId"]) == 24 for answer in (first, by_phone, other_bot))

    async def test_sharing_a_phone_sends_a_contact_message(self, sim: Sim) -> None:
        await with_webhook(sim)
        await sim.inbound(TOKEN, name="Dara", phone="85512345678")
        [item] = await sim.inbox.wait_events("message", 1)
        event = verified(item)
        assert isinstance(event, InboundEvent)
        assert event.contact.phone == "85512345678"

    @pytest.mark.parametrize(
        ("event", "mmp_type"),
        [
            ("subscribed", "SUBSCRIBED"),
            ("unsubscribed", "UNSUBSCRIBED"),
            ("conversation_started", "CONVERSATION_STARTED"),
        ],
    )
    async def test_user_events_arrive_as_inbound_events(self, sim: Sim, event: str, mmp_type: str) -> None:
        await with_webhook(sim)
        answer = await sim.inbound(TOKEN, name="Dara", userId="dara", event=event)
        [item] = await sim.inbox.wait_events(event, 1)
        parsed = verified(item)
        assert isinstance(parsed, InboundEvent)
        assert parsed.contact.id == answer["userId"]
        assert parsed.message["type"] == mmp_type

    async def test_inbound_needs_a_token_and_text(self, sim: Sim) -> None:
        assert (await sim.post("/viber-bot/_sandbox/inbound", {"name": "x", "text": "y"})).status_code == 401
        missing = await sim.post(
            "/viber-bot/_sandbox/inbound", {"name": "x"}, headers={"X-Viber-Auth-Token": "t"}
        )
        assert missing.status_code == 400


class TestBroadcast:
    async def test_300_receivers_with_a_digit_8_receiver_in_the_failed_list(self, sim: Sim) -> None:
        client = client_for(sim)
        receivers = [f"user{index:03d}x0=" for index in range(299)] + ["blockedUser8="]
        result = await client.broadcast_message(
            auth_token=TOKEN, sender_name="Shop", sender_avatar=None, receivers=receivers, message=HELLO
        )
        assert result.provider_message_id
        assert list(result.failed) == ["blockedUser8="]
        error = result.failed["blockedUser8="]
        assert (error.code, error.retryable) == ("VIBER_BOT_6", False)
        assert (await sim.stats("viber-bot"))["accepted"] == 299

    async def test_301_receivers_are_refused_by_client_and_simulator(self, sim: Sim) -> None:
        receivers = [f"u{index}=" for index in range(301)]
        with pytest.raises(ValueError, match="at most 300"):
            await client_for(sim).broadcast_message(
                auth_token=TOKEN, sender_name="Shop", sender_avatar=None, receivers=receivers, message=HELLO
            )
        body = {"broadcast_list": receivers, "sender": {"name": "Shop"}, "type": "text", "text": "x"}
        answer = await sim.post(
            "/viber-bot/pa/broadcast_message", body, headers={"X-Viber-Auth-Token": TOKEN}
        )
        assert answer.status_code == 200
        assert answer.json()["status"] == 3

    async def test_accepted_receivers_get_callbacks_and_retryable_ones_are_marked(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        result = await client.broadcast_message(
            auth_token=TOKEN,
            sender_name="Shop",
            sender_avatar=None,
            receivers=["okUser0=", "busyUser9=", "goneUser8="],
            message=HELLO,
        )
        assert {receiver: (e.code, e.retryable) for receiver, e in result.failed.items()} == {
            "busyUser9=": ("VIBER_BOT_12", True),
            "goneUser8=": ("VIBER_BOT_6", False),
        }
        await sim.inbox.wait_events("seen", 1)
        assert [(e.status, e.provider_message_id, e.user_id) for e in statuses(sim.inbox)] == [
            ("DELIVERED", result.provider_message_id, "okUser0="),
            ("READ", result.provider_message_id, "okUser0="),
        ]


class TestUpstreamChecks:
    async def call(
        self, sim: Sim, body: Any = None, *, content: bytes | None = None, token: str = TOKEN
    ) -> Any:
        answer = await sim.post(
            "/viber-bot/pa/send_message", body, content=content, headers={"X-Viber-Auth-Token": token}
        )
        assert answer.status_code == 200
        return answer.json()

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"sender": {"name": "Shop"}, "type": "text", "text": "x"}, 4),
            ({"receiver": "u=", "type": "text", "text": "x"}, 4),
            ({"receiver": "u=", "sender": {"name": "S" * 29}, "type": "text", "text": "x"}, 3),
            ({"receiver": "u=", "sender": {"name": "Shop"}, "type": "text", "text": "x" * 7001}, 3),
            ({"receiver": "u=", "sender": {"name": "Shop"}, "type": "hologram"}, 3),
            (
                {
                    "receiver": "u=",
                    "sender": {"name": "Shop"},
                    "type": "file",
                    "media": "https://e/f",
                    "size": 1,
                },
                4,
            ),
            ({"receiver": "u=", "sender": {"name": "Shop"}, "type": "text", "text": "x"}, 0),
        ],
    )
    async def test_send_message_validates_like_upstream(
        self, sim: Sim, body: dict[str, Any], status: int
    ) -> None:
        assert (await self.call(sim, body))["status"] == status

    async def test_requests_over_30_kb_are_bad_data(self, sim: Sim) -> None:
        body = {
            "receiver": "u=",
            "sender": {"name": "Shop"},
            "type": "text",
            "text": "x",
            "pad": "p" * 31_000,
        }
        answer = await self.call(sim, content=orjson.dumps(body))
        assert answer["status"] == 3

    async def test_a_broadcast_over_30_kb_through_the_client_is_a_final_error(self, sim: Sim) -> None:
        receivers = [f"{index:03d}" + "x" * 110 for index in range(300)]
        error = await send_error(
            client_for(sim).broadcast_message(
                auth_token=TOKEN, sender_name="Shop", sender_avatar=None, receivers=receivers, message=HELLO
            )
        )
        assert (error.code, error.retryable) == ("VIBER_BOT_3", False)

    async def test_a_missing_auth_token_is_status_2(self, sim: Sim) -> None:
        error = await send_error(send(client_for(sim), "u0=", token=""))
        assert (error.code, error.message, error.retryable) == ("VIBER_BOT_2", "invalidAuthToken", False)

    async def test_a_too_long_sender_name_never_reaches_upstream(self, sim: Sim) -> None:
        error = await send_error(
            client_for(sim).send_message(
                auth_token=TOKEN, sender_name="S" * 29, sender_avatar=None, receiver="u0=", message=HELLO
            )
        )
        assert (error.code, error.retryable) == ("VIBER_BOT_INVALID_MESSAGE", False)
        assert error.message.startswith("credentials.senderName")
        assert (await sim.stats("viber-bot"))["requests"] == 0

    async def test_every_mmp_type_the_mapping_produces_is_accepted(self, sim: Sim) -> None:
        client = client_for(sim)
        messages: list[dict[str, Any]] = [
            {
                "type": "text",
                "message": "x",
                "suggestions": [{"action": "dial", "text": "Call", "postbackData": "1"}],
            },
            {"type": "picture", "fileUrl": "https://e/p.jpg", "message": "caption"},
            {
                "type": "video",
                "fileUrl": "https://e/v.mp4",
                "fileSize": 10,
                "thumbnailUrl": "https://e/t.jpg",
            },
            {"type": "file", "fileUrl": "https://e/f.pdf", "fileSize": 10, "fileName": "f.pdf"},
            {"type": "rich_card", "richCards": [{"title": "A", "image": "https://e/a.jpg"}] * 6},
        ]
        for message in messages:
            assert await send(client, "u0=", message)


class TestRateLimit:
    async def test_over_the_window_limit_is_status_12_rate_limited(self, start_sim: StartSim) -> None:
        sim = await start_sim(options={"viber-bot": {"requests_per_window": 3, "window_s": 60}})
        client = client_for(sim)
        for _ in range(3):
            await send(client, "u0=")
        error = await send_error(send(client, "u0="))
        assert (error.code, error.retryable, error.rate_limited) == ("VIBER_BOT_12", True, True)
        broadcast = client.broadcast_message(
            auth_token=TOKEN, sender_name="Shop", sender_avatar=None, receivers=["u0="], message=HELLO
        )
        assert (await send_error(broadcast)).rate_limited
        assert await send(client, "u0=", token="a-different-bot")
        assert (await sim.stats("viber-bot"))["rateLimited"] == 2


class TestFaults:
    async def test_http_503_is_retryable_and_lasts_count_requests(self, sim: Sim) -> None:
        await sim.fault("viber-bot", kind="http_503", count=2)
        client = client_for(sim)
        for _ in range(2):
            error = await send_error(send(client, "u0="))
            assert (error.code, error.retryable) == ("UPSTREAM_HTTP_503", True)
        assert await send(client, "u0=")

    async def test_a_hanging_upstream_is_a_retryable_timeout(self, sim: Sim) -> None:
        await sim.fault("viber-bot", kind="timeout")
        impatient = HttpClient(timeout=0.3)
        try:
            error = await send_error(send(ViberBotClient(impatient, sim.bot_url), "u0="))
        finally:
            await impatient.aclose()
        assert (error.code, error.retryable) == ("UPSTREAM_TIMEOUT", True)

    async def test_a_final_error_fault_is_not_retryable(self, sim: Sim) -> None:
        await sim.fault("viber-bot", kind="final_error")
        error = await send_error(send(client_for(sim), "u0="))
        assert (error.code, error.retryable) == ("VIBER_BOT_3", False)

    async def test_a_rate_limit_fault_is_rate_limited(self, sim: Sim) -> None:
        await sim.fault("viber-bot", kind="rate_limit")
        assert (await send_error(send(client_for(sim), "u0="))).rate_limited

    async def test_a_fault_for_some_seconds_lasts_until_cleared(self, sim: Sim) -> None:
        await sim.fault("viber-bot", kind="http_503", seconds=60)
        client = client_for(sim)
        for _ in range(3):
            assert (await send_error(send(client, "u0="))).code == "UPSTREAM_HTTP_503"
        await sim.fault("viber-bot", kind="none")
        assert await send(client, "u0=")
        assert (await sim.stats("viber-bot"))["faultsInjected"] == 3

    async def test_malformed_fault_requests_are_refused(self, sim: Sim) -> None:
        for body in ({"kind": "meteor"}, {"kind": "http_503", "count": 0}, [1]):
            assert (await sim.post("/viber-bot/_sandbox/faults", body)).status_code == 400

    async def test_an_unreachable_upstream_is_retryable(self, sim: Sim) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        error = await send_error(send(ViberBotClient(sim.http, f"http://127.0.0.1:{port}"), "u0="))
        assert (error.code, error.retryable) == ("UPSTREAM_UNREACHABLE", True)


class TestReceiversAndStats:
    async def test_the_same_payload_to_the_same_receiver_counts_as_a_duplicate(self, sim: Sim) -> None:
        client = client_for(sim)
        await send(client, "u0=")
        await send(client, "u0=")
        await send(client, "u1=")
        stats = await sim.stats("viber-bot", detail=True)
        assert stats["duplicates"] == 1
        assert stats["accepted"] == 3
        assert sorted(stats["acceptedByKey"].values()) == [1, 2]
        assert "acceptedByKey" not in await sim.stats("viber-bot")
        assert all(TOKEN not in key for key in stats["acceptedByKey"])

    async def test_known_receivers_can_be_required(self, start_sim: StartSim) -> None:
        sim = await start_sim(options={"viber-bot": {"require_known_receivers": True}})
        client = client_for(sim)
        error = await send_error(send(client, "strangerX0="))
        assert (error.code, error.retryable) == ("VIBER_BOT_5", False)
        answer = await sim.inbound(TOKEN, name="Dara", text="hi", userId="dara", phone="85512345670")
        assert await send(client, answer["userId"])
        await sim.inbound(TOKEN, name="Dara", userId="dara", event="unsubscribed")
        assert (await send_error(send(client, answer["userId"]))).code == "VIBER_BOT_6"

    async def test_account_info_and_user_details(self, sim: Sim) -> None:
        client = await with_webhook(sim)
        answer = await sim.inbound(TOKEN, name="Dara", text="hi")
        info = await client.get_account_info(auth_token=TOKEN)
        assert info["subscribers_count"] == 1
        assert info["id"].startswith("pa:")
        user = await client.get_user_details(auth_token=TOKEN, user_id=answer["userId"])
        assert user["name"] == "Dara"

    async def test_rates_mode_draws_outcomes_from_a_seeded_rng(self, start_sim: StartSim) -> None:
        sim = await start_sim(
            mode="rates", seed=7, fail_rate=0.0, retryable_error_rate=0.0, delivered_rate=0.0
        )
        client = await with_webhook(sim)
        token = await send(client, "u0=")
        [item] = await sim.inbox.wait_events("failed", 1)
        event = verified(item)
        assert isinstance(event, StatusEvent)
        assert (event.status, event.provider_message_id, event.error_code) == (
            "FAIL",
            token,
            "VIBER_BOT_FAILED",
        )

    @pytest.mark.parametrize(
        ("rates", "code"),
        [({"fail_rate": 1.0}, "VIBER_BOT_6"), ({"retryable_error_rate": 1.0}, "VIBER_BOT_12")],
    )
    async def test_rates_mode_errors_at_send(
        self, start_sim: StartSim, rates: dict[str, float], code: str
    ) -> None:
        sim = await start_sim(
            mode="rates", seed=1, **{"fail_rate": 0.0, "retryable_error_rate": 0.0, **rates}
        )
        assert (await send_error(send(client_for(sim), "u3="))).code == code
