"""The Telegram simulator over real HTTP: the Bot API's methods, checks, limits, outcomes and updates."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.providers.viber_harness import Inbox, Received, Sim, StartSim

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import CallbackRequest, InboundEvent, ProviderContext, ProviderError, SendOk
from openmmp.providers.telegram.callbacks import SECRET_HEADER, parse_update, webhook_secret
from openmmp.providers.telegram.client import TelegramClient
from openmmp.providers.telegram.provider import SANDBOX_TOKEN_HEADER, TelegramProvider

TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PROVIDER = TelegramProvider()
HELLO: dict[str, Any] = {"type": "text", "message": "Hello Dara"}


def api(sim: Sim, method: str, token: str = TOKEN) -> str:
    return f"{sim.base_url}/telegram/bot{token}/{method}"


async def call(
    sim: Sim, method: str, params: dict[str, Any] | None = None, token: str = TOKEN
) -> HttpResponse:
    return await sim.http.post(api(sim, method, token), json=params or {})


async def ok(sim: Sim, method: str, params: dict[str, Any] | None = None, token: str = TOKEN) -> Any:
    response = await call(sim, method, params, token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True
    return body["result"]


async def refused(sim: Sim, method: str, params: dict[str, Any], status: int) -> str:
    response = await call(sim, method, params)
    assert response.status_code == status, response.content
    body = response.json()
    assert (body["ok"], body["error_code"]) == (False, status)
    description: str = body["description"]
    return description


async def act(sim: Sim, token: str = TOKEN, **body: Any) -> dict[str, Any]:
    """Make an end user act on the bot through the sandbox route; the simulator's answer."""
    response = await sim.http.post(
        f"{sim.base_url}/telegram/_sandbox/inbound", json=body, headers={SANDBOX_TOKEN_HEADER: token}
    )
    assert response.status_code == 200, response.content
    answer: dict[str, Any] = response.json()
    return answer


def context(sim: Sim) -> ProviderContext:
    return ProviderContext(http=sim.http, base_url=f"{sim.base_url}/telegram", public_url="", sandbox=True)


async def with_webhook(sim: Sim, token: str = TOKEN) -> None:
    await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials={"botToken": token})


async def send(sim: Sim, chat_id: str, message: dict[str, Any] = HELLO, token: str = TOKEN) -> SendOk:
    return await TelegramClient(sim.http, f"{sim.base_url}/telegram").send(
        token=token, chat_id=chat_id, message=message
    )


async def send_error(sim: Sim, chat_id: str, message: dict[str, Any] = HELLO) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await send(sim, chat_id, message)
    return caught.value


def verified(item: Received, token: str = TOKEN) -> list[InboundEvent]:
    """What the core does with an update: check the secret header, then parse."""
    request = CallbackRequest("POST", dict(item.headers), {}, item.body)
    assert PROVIDER.verify(context_free(), request, {"botToken": token})
    events = parse_update(item.body)
    assert all(isinstance(e, InboundEvent) for e in events)
    return [e for e in events if isinstance(e, InboundEvent)]


def context_free() -> ProviderContext:
    return ProviderContext(http=None, base_url="", public_url="", sandbox=True)  # type: ignore[arg-type]


async def events(inbox: Inbox, count: int) -> list[InboundEvent]:
    await inbox.wait_for(lambda received: len(received) >= count)
    return [event for item in inbox.received for event in verified(item)]


class TestSandboxOutcomesByLastDigit:
    @pytest.mark.parametrize("digit", range(8))
    async def test_digits_0_to_7_are_accepted_and_nothing_more_is_said(self, sim: Sim, digit: int):
        await with_webhook(sim)
        sent = await send(sim, f"55123456{digit}")
        assert sent.provider_message_id == f"55123456{digit}:1"
        stats = await sim.settled("telegram")
        assert (stats["accepted"], stats["callbacksSent"]) == (1, 0)
        assert sim.inbox.received == []

    async def test_digit_8_is_blocked_by_the_user_and_final(self, sim: Sim):
        error = await send_error(sim, "551234568")
        assert (error.code, error.message, error.retryable) == (
            "TELEGRAM_403",
            "Forbidden: bot was blocked by the user",
            False,
        )

    async def test_digit_9_fails_twice_retryably_then_goes_through(self, sim: Sim):
        first, second = await send_error(sim, "551234569"), await send_error(sim, "551234569")
        assert [(e.code, e.retryable, e.rate_limited) for e in (first, second)] == [
            ("TELEGRAM_500", True, False)
        ] * 2
        assert isinstance(await send(sim, "551234569"), SendOk)
        # Another message to the same chat is attempts of its own.
        assert (await send_error(sim, "551234569", {"type": "text", "message": "other"})).retryable

    async def test_the_phone_a_user_shared_picks_the_outcome_over_the_chat_id(self, sim: Sim):
        await with_webhook(sim)
        user = await act(sim, userId="dara", name="Dara", text="hi")
        assert user["userId"].endswith("0")
        await act(sim, userId=user["userId"], name="Dara", phone="+85512345678")
        assert (await send_error(sim, user["userId"])).code == "TELEGRAM_403"

    async def test_messages_in_one_chat_are_numbered_in_one_sequence_with_the_users(self, sim: Sim):
        await with_webhook(sim)
        user = await act(sim, name="Dara", text="hi")
        assert user["messageId"] == "1"
        assert (await send(sim, user["userId"])).provider_message_id == f"{user['userId']}:2"


class TestWebhook:
    async def test_set_up_sets_the_webhook_with_the_secret_and_the_kinds_openmmp_reads(self, sim: Sim):
        await with_webhook(sim)
        info = await ok(sim, "getWebhookInfo")
        assert info["url"] == sim.inbox.url
        assert info["allowed_updates"] == ["message", "callback_query", "my_chat_member"]
        assert info["pending_update_count"] == 0
        await act(sim, name="Dara", text="hi")
        [item] = await sim.inbox.wait_for(lambda received: len(received) >= 1)
        assert item.headers[SECRET_HEADER.lower()] == webhook_secret(TOKEN)

    async def test_setting_the_same_webhook_again_changes_nothing(self, sim: Sim):
        params = {"url": sim.inbox.url, "secret_token": "s3cret_-X"}
        first = await call(sim, "setWebhook", params)
        again = await call(sim, "setWebhook", params)
        assert first.json()["description"] == "Webhook was set"
        assert again.json() == {"ok": True, "result": True, "description": "Webhook is already set"}

    @pytest.mark.parametrize(
        ("params", "description"),
        [
            (
                {"url": "ftp://hooks.example"},
                "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
            ),
            ({"url": "https://hooks.example", "secret_token": "no spaces"}, "Bad Request: secret token"),
            ({"url": "https://hooks.example", "secret_token": "x" * 257}, "Bad Request: secret token"),
            ({"url": "https://hooks.example", "allowed_updates": "message"}, "Bad Request: can't parse"),
        ],
    )
    async def test_a_webhook_telegram_would_refuse_is_refused(
        self, sim: Sim, params: dict[str, Any], description: str
    ):
        assert (await refused(sim, "setWebhook", params, 400)).startswith(description)

    async def test_updates_come_one_at_a_time_in_update_id_order(self, sim: Sim):
        await with_webhook(sim)
        user = await act(sim, name="Dara", text="0")
        for n in range(1, 6):
            await act(sim, userId=user["userId"], name="Dara", text=str(n))
        received = await sim.inbox.wait_for(lambda items: len(items) >= 6)
        ids = [item.json()["update_id"] for item in received]
        assert ids == sorted(ids) == list(range(ids[0], ids[0] + 6))
        assert [item.json()["message"]["text"] for item in received] == [str(n) for n in range(6)]

    async def test_without_a_webhook_updates_wait_and_follow_the_next_set_webhook(self, start_sim: StartSim):
        sim = await start_sim(callback_latency_s=0.3)
        await with_webhook(sim)
        await act(sim, name="Dara", text="while you were away")
        await ok(sim, "deleteWebhook")
        await sim.settled("telegram")
        assert (await ok(sim, "getWebhookInfo"))["pending_update_count"] == 1
        assert sim.inbox.received == []
        await with_webhook(sim)
        [event] = await events(sim.inbox, 1)
        assert event.message["message"] == "while you were away"

    async def test_drop_pending_updates_drops_them(self, start_sim: StartSim):
        sim = await start_sim(callback_latency_s=0.3)
        await with_webhook(sim)
        await act(sim, name="Dara", text="lost")
        await ok(sim, "deleteWebhook", {"drop_pending_updates": True})
        assert (await ok(sim, "getWebhookInfo"))["pending_update_count"] == 0
        await with_webhook(sim)
        stats = await sim.settled("telegram")
        assert (stats["callbacksSent"], sim.inbox.received) == (0, [])

    async def test_kinds_left_out_of_allowed_updates_are_never_sent(self, sim: Sim):
        await ok(sim, "setWebhook", {"url": sim.inbox.url, "allowed_updates": ["message"]})
        user = await act(sim, name="Dara", text="one")
        await act(sim, userId=user["userId"], name="Dara", event="blocked")
        await act(sim, userId=user["userId"], name="Dara", event="unblocked")
        await act(sim, userId=user["userId"], name="Dara", text="two")
        await sim.settled("telegram")
        assert [set(item.json()) - {"update_id"} for item in sim.inbox.received] == [{"message"}, {"message"}]

    async def test_an_update_that_is_not_answered_200_is_retried(self, sim: Sim):
        await with_webhook(sim)
        sim.inbox.fail_first = 2
        await act(sim, name="Dara", text="persist")
        received = await sim.inbox.wait_for(lambda items: len(items) >= 3)
        assert len({item.body for item in received}) == 1
        stats = await sim.settled("telegram")
        assert (stats["callbacksSent"], stats["callbackAttemptsFailed"]) == (1, 2)


class TestSandboxUsers:
    async def test_a_message_arrives_as_a_verified_update_from_the_users_chat(self, sim: Sim):
        await with_webhook(sim)
        answer = await act(sim, name="Dara Sok", text="Is my card ready? 🙂")
        assert answer["webhook"] is True
        [event] = await events(sim.inbox, 1)
        assert (event.kind, event.message["message"]) == ("message", "Is my card ready? 🙂")
        assert (event.contact.id, event.contact.name) == (answer["userId"], "Dara Sok")

    async def test_sharing_a_phone_gives_a_chat_id_ending_in_its_digit_and_the_phone(self, sim: Sim):
        await with_webhook(sim)
        answer = await act(sim, name="Dara", phone="+855 12 345 677")
        assert answer["userId"].endswith("7")
        [event] = await events(sim.inbox, 1)
        assert event.contact.phone == "85512345677"
        assert (await act(sim, name="Dara", phone="85512345677"))["userId"] == answer["userId"]

    async def test_a_numeric_user_id_is_the_chat_id(self, sim: Sim):
        await with_webhook(sim)
        assert (await act(sim, userId="123456789", name="Dara", text="hi"))["userId"] == "123456789"

    async def test_start_opens_the_conversation(self, sim: Sim):
        await with_webhook(sim)
        await act(sim, name="Dara", event="start", text="promo-7")
        [event] = await events(sim.inbox, 1)
        assert (event.kind, event.message["message"]) == ("conversation_started", "promo-7")

    async def test_tapping_a_button_the_bot_sent_says_its_data(self, sim: Sim):
        await with_webhook(sim)
        user = await act(sim, name="Dara", text="hi")
        keyboard = {
            "type": "text",
            "message": "Pick one",
            "suggestions": [{"action": "reply", "text": "Yes", "postbackData": "answer=yes"}],
        }
        await send(sim, user["userId"], keyboard)
        await act(sim, userId=user["userId"], name="Dara", event="callback", data="answer=yes")
        tap = (await events(sim.inbox, 2))[-1]
        assert (tap.kind, tap.message["message"], tap.contact.id) == ("message", "answer=yes", user["userId"])
        assert tap.message["extra"]["message"]["text"] == "Pick one"

    async def test_a_button_the_bot_never_sent_cannot_be_tapped(self, sim: Sim):
        await with_webhook(sim)
        response = await sim.http.post(
            f"{sim.base_url}/telegram/_sandbox/inbound",
            json={"name": "Dara", "event": "callback", "data": "forged"},
            headers={SANDBOX_TOKEN_HEADER: TOKEN},
        )
        assert response.status_code == 400

    async def test_blocking_unsubscribes_and_sends_are_refused_until_unblocked(self, sim: Sim):
        await with_webhook(sim)
        user = await act(sim, name="Dara", text="hi")
        await act(sim, userId=user["userId"], name="Dara", event="blocked")
        error = await send_error(sim, user["userId"])
        assert (error.message, error.retryable) == ("Forbidden: bot was blocked by the user", False)
        await act(sim, userId=user["userId"], name="Dara", text="I'm back")
        kinds = [(e.kind, e.message["message"]) for e in await events(sim.inbox, 4)]
        assert kinds == [("message", "hi"), ("unsubscribed", ""), ("subscribed", ""), ("message", "I'm back")]
        assert isinstance(await send(sim, user["userId"]), SendOk)

    async def test_without_a_webhook_nothing_is_sent(self, sim: Sim):
        answer = await act(sim, name="Dara", text="anyone?")
        assert (answer["webhook"], answer["messageId"]) == (False, "")
        stats = await sim.settled("telegram")
        assert stats["callbacksSent"] == 0

    @pytest.mark.parametrize(
        ("headers", "body", "status"),
        [
            ({}, {"name": "Dara", "text": "hi"}, 401),
            ({SANDBOX_TOKEN_HEADER: TOKEN}, {"name": "Dara"}, 400),
            ({SANDBOX_TOKEN_HEADER: TOKEN}, {"name": "Dara", "event": "callback"}, 400),
            ({SANDBOX_TOKEN_HEADER: TOKEN}, {"name": "Dara", "text": "hi", "event": "dance"}, 400),
            ({SANDBOX_TOKEN_HEADER: TOKEN}, {"name": "Dara", "phone": "12"}, 400),
        ],
    )
    async def test_the_sandbox_route_checks_its_input(
        self, sim: Sim, headers: dict[str, str], body: dict[str, Any], status: int
    ):
        response = await sim.http.post(
            f"{sim.base_url}/telegram/_sandbox/inbound", json=body, headers=headers
        )
        assert response.status_code == status


class TestUpstreamChecks:
    @pytest.mark.parametrize(
        ("method", "params", "description"),
        [
            ("sendMessage", {"text": "hi"}, "Bad Request: chat_id is empty"),
            ("sendMessage", {"chat_id": "@somechannel", "text": "hi"}, "Bad Request: chat not found"),
            ("sendMessage", {"chat_id": 1}, "Bad Request: message text is empty"),
            ("sendMessage", {"chat_id": 1, "text": "x" * 4097}, "Bad Request: message is too long"),
            ("sendPhoto", {"chat_id": 1}, "Bad Request: there is no photo in the request"),
            ("sendPhoto", {"chat_id": 1, "photo": "nonsense"}, "Bad Request: wrong file identifier/HTTP URL"),
            (
                "sendPhoto",
                {"chat_id": 1, "photo": "https://a.example/p.jpg", "caption": "x" * 1025},
                "Bad Request: message caption is too long",
            ),
            (
                "sendMessage",
                {
                    "chat_id": 1,
                    "text": "t",
                    "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "d" * 65}]]},
                },
                "Bad Request: BUTTON_DATA_INVALID",
            ),
            (
                "sendMessage",
                {
                    "chat_id": 1,
                    "text": "t",
                    "reply_markup": {"inline_keyboard": [[{"text": "a", "url": "tel:+855"}]]},
                },
                "Bad Request: BUTTON_URL_INVALID",
            ),
            (
                "sendMessage",
                {"chat_id": 1, "text": "t", "reply_markup": {"inline_keyboard": [[{"text": "plain"}]]}},
                "Bad Request: can't parse inline keyboard button",
            ),
            (
                "sendMessage",
                {"chat_id": 1, "text": "t", "entities": [{"type": "bold", "offset": 0, "length": 2}]},
                "Bad Request: can't parse entities",
            ),
        ],
    )
    async def test_sends_are_checked_like_upstream(
        self, sim: Sim, method: str, params: dict[str, Any], description: str
    ):
        assert (await refused(sim, method, params, 400)).startswith(description)

    async def test_an_unknown_method_is_404(self, sim: Sim):
        assert await refused(sim, "sendTelepathy", {}, 404) == "Not Found"

    async def test_method_names_are_case_insensitive(self, sim: Sim):
        assert (await ok(sim, "SENDMESSAGE", {"chat_id": 1, "text": "hi"}))["text"] == "hi"

    async def test_a_request_over_the_size_limit_is_413(self, sim: Sim):
        assert await refused(sim, "sendMessage", {"chat_id": 1, "text": "x" * 40_000}, 413)

    async def test_a_form_body_with_json_serialised_objects_is_taken(self, sim: Sim):
        markup = orjson.dumps({"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}).decode()
        form = f"chat_id=-1001234567890&text=hi%20all&reply_markup={markup}".encode()
        response = await sim.http.post(
            api(sim, "sendMessage"),
            content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        result = response.json()["result"]
        assert (result["chat"]["type"], result["text"]) == ("supergroup", "hi all")
        assert result["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "y"

    async def test_a_multipart_upload_is_taken(self, sim: Sim):
        body = (
            b'--XX\r\nContent-Disposition: form-data; name="chat_id"\r\n\r\n42\r\n'
            b'--XX\r\nContent-Disposition: form-data; name="document"; filename="statement.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n%PDF-1.4 sandbox\r\n--XX--\r\n"
        )
        response = await sim.http.post(
            api(sim, "sendDocument"),
            content=body,
            headers={"content-type": "multipart/form-data; boundary=XX"},
        )
        document = response.json()["result"]["document"]
        assert (document["file_name"], document["file_size"]) == ("statement.pdf", 16)

    async def test_parameters_in_the_query_string_are_taken(self, sim: Sim):
        response = await sim.http.get(api(sim, "sendMessage") + "?chat_id=42&text=from%20the%20query")
        assert response.json()["result"]["text"] == "from the query"

    async def test_a_file_id_telegram_gave_can_be_sent_again(self, sim: Sim):
        first = await ok(sim, "sendPhoto", {"chat_id": 1, "photo": "https://a.example/p.jpg"})
        again = await ok(sim, "sendPhoto", {"chat_id": 2, "photo": first["photo"][-1]["file_id"]})
        assert again["photo"][-1]["file_id"] != first["photo"][-1]["file_id"]

    async def test_every_mmp_type_the_mapping_produces_is_accepted(self, sim: Sim):
        image = "https://cdn.example.com/a.jpg"
        messages: list[dict[str, Any]] = [
            HELLO,
            {"type": "picture", "fileUrl": image, "message": "caption"},
            {"type": "video", "fileUrl": "https://cdn.example.com/a.mp4"},
            {"type": "file", "fileUrl": "https://cdn.example.com/a.pdf", "message": "statement"},
            {
                "type": "rich_card",
                "richCards": [
                    {
                        "title": "Gold 🙂",
                        "description": "No fee",
                        "image": image,
                        "suggestions": [
                            {"action": "reply", "text": "Apply"},
                            {"action": "open-url", "text": "More", "postbackData": "https://bank.example"},
                        ],
                    }
                ],
            },
            {"type": "rich_card", "richCards": [{"title": "Words only", "description": "d"}]},
        ]
        for message in messages:
            assert isinstance(await send(sim, "551234560", message), SendOk), message
        assert (await sim.stats("telegram"))["accepted"] == len(messages)

    async def test_a_chat_the_simulator_never_saw_is_not_found_when_asked_for(self, start_sim: StartSim):
        sim = await start_sim(options={"telegram": {"require_known_chats": True}})
        error = await send_error(sim, "551234560")
        assert (error.code, error.message, error.retryable) == (
            "TELEGRAM_400",
            "Bad Request: chat not found",
            False,
        )
        await with_webhook(sim)
        user = await act(sim, name="Dara", text="hi")
        assert isinstance(await send(sim, user["userId"]), SendOk)


class TestLimits:
    async def test_a_chat_gets_a_burst_then_429_with_retry_after(self, start_sim: StartSim):
        sim = await start_sim(options={"telegram": {"chat_burst": 2, "chat_window_s": 4.0}})
        await send(sim, "551234560")
        await send(sim, "551234560")
        error = await send_error(sim, "551234560")
        assert (error.code, error.rate_limited, error.retryable, error.retry_after) == (
            "TELEGRAM_429",
            True,
            True,
            2.0,
        )
        assert isinstance(await send(sim, "551234561"), SendOk)  # another chat is not held back

    async def test_the_bot_gets_its_requests_per_window(self, start_sim: StartSim):
        sim = await start_sim(options={"telegram": {"requests_per_window": 2, "window_s": 60.0}})
        await send(sim, "551234560")
        await send(sim, "551234561")
        error = await send_error(sim, "551234562")
        assert (error.rate_limited, error.retry_after) == (True, 1.0)
        assert (await sim.stats("telegram"))["rateLimited"] == 1

    async def test_unknown_knobs_are_refused(self, start_sim: StartSim):
        with pytest.raises(ValueError, match="telegram simulator"):
            await start_sim(options={"telegram": {"warp": 9}})


class TestFaults:
    async def test_a_503_fault_is_a_page_outside_the_envelope(self, sim: Sim):
        await sim.fault("telegram", kind="http_503")
        error = await send_error(sim, "551234560")
        assert (error.code, error.retryable, error.rate_limited) == ("UPSTREAM_HTTP_503", True, False)

    async def test_a_final_fault_takes_its_status(self, sim: Sim):
        await sim.fault("telegram", kind="final_error", status=403)
        error = await send_error(sim, "551234560")
        assert (error.code, error.retryable) == ("TELEGRAM_403", False)
        assert isinstance(await send(sim, "551234560"), SendOk)  # one request only
