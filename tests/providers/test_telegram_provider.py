"""The Telegram provider's declarations and the provider itself against its simulator over real HTTP."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pydantic import ValidationError
from tests.providers.viber_harness import Received, Sim

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackRequest,
    InboundEvent,
    Outgoing,
    ProviderContext,
    ProviderError,
    SandboxUser,
    SendOk,
)
from openmmp.providers.registry import REGISTRY
from openmmp.providers.telegram.provider import TelegramCredentials, TelegramProvider

PROVIDER = TelegramProvider()
TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CREDENTIALS = {"botToken": TOKEN}


def context(sim: Sim) -> ProviderContext:
    return ProviderContext(http=sim.http, base_url=f"{sim.base_url}/telegram", public_url="", sandbox=True)


async def sent(ctx: ProviderContext, recipient: str, content: dict[str, Any] | None = None) -> Any:
    message = Outgoing(1, recipient, content or PROVIDER.example_message, account_id="acc")
    [unit] = PROVIDER.plan(ctx, CREDENTIALS, [message])
    assert unit.keys == (1,)
    return (await unit.call())[1]


def request(item: Received) -> CallbackRequest:
    return CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)


class TestDeclarations:
    def test_it_is_the_registrys_telegram(self):
        assert REGISTRY.for_application(Application.TELEGRAM).__class__ is TelegramProvider
        assert REGISTRY.by_name("telegram").__class__ is TelegramProvider

    def test_it_is_a_bot_addressed_by_conversation_that_reports_nothing_after_the_send(self):
        assert PROVIDER.addressing is Addressing.CONVERSATION
        assert (PROVIDER.reports_delivery, PROVIDER.reports_read, PROVIDER.idempotent) == (
            False,
            False,
            False,
        )
        assert PROVIDER.message_types == {"text", "rich_card", "picture", "video", "file"}
        assert PROVIDER.callback_proof == "sender"

    def test_the_limits_are_telegrams_30_a_second_per_bot_and_1_a_second_per_chat(self):
        assert (PROVIDER.rate_limit.requests, PROVIDER.rate_limit.window_seconds) == (30, 1.0)
        assert PROVIDER.recipient_rate is not None
        assert (PROVIDER.recipient_rate.requests, PROVIDER.recipient_rate.window_seconds) == (1, 1.0)


class TestCredentials:
    def test_the_wire_name_is_bot_token_and_the_token_is_the_bot(self):
        credentials = TelegramCredentials.model_validate(CREDENTIALS)
        assert credentials.model_dump(by_alias=True) == {"botToken": TOKEN}
        assert TelegramCredentials.identity_name() == "credentials.botToken"
        assert (
            credentials.identity() != TelegramCredentials.model_validate({"botToken": "1:other"}).identity()
        )

    @pytest.mark.parametrize("given", [{}, {"botToken": ""}, {"botToken": "x" * 4097}])
    def test_a_token_is_required(self, given: dict[str, Any]):
        with pytest.raises(ValidationError, match="botToken"):
            TelegramCredentials.model_validate(given)

    def test_the_demo_channels_credentials_are_valid(self):
        TelegramCredentials.model_validate(PROVIDER.sandbox_credentials)


class TestAgainstTheSimulator:
    async def test_set_up_then_a_send_is_accepted_and_named_by_chat_and_message(self, sim: Sim):
        ctx = context(sim)
        assert PROVIDER.needs_setup(sandbox=True)
        await PROVIDER.set_up(ctx, callback_url=sim.inbox.url, credentials=CREDENTIALS)
        written = await PROVIDER.sandbox_inbound(ctx, CREDENTIALS, SandboxUser(name="Dara", text="hi"))
        outcome = await sent(ctx, written.user_id)
        assert isinstance(outcome, SendOk)
        assert outcome.provider_message_id == f"{written.user_id}:2"  # after the user's own message 1

    async def test_a_user_with_a_phone_shares_it_first_and_is_reached_by_its_digit(self, sim: Sim):
        ctx = context(sim)
        await PROVIDER.set_up(ctx, callback_url=sim.inbox.url, credentials=CREDENTIALS)
        written = await PROVIDER.sandbox_inbound(
            ctx, CREDENTIALS, SandboxUser(name="Dara", text="hi", phone="85512345678")
        )
        received = await sim.inbox.wait_for(lambda items: len(items) >= 2)
        [shared, wrote] = [event for item in received for event in PROVIDER.parse(item.body)]
        assert isinstance(shared, InboundEvent) and isinstance(wrote, InboundEvent)
        assert (shared.contact.phone, shared.contact.id, wrote.contact.id) == (
            "85512345678",
            written.user_id,
            written.user_id,
        )
        assert wrote.message["message"] == "hi"
        assert written.message_token == "2"
        outcome = await sent(ctx, written.user_id)
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("TELEGRAM_403", False)

    async def test_sandbox_inbound_before_set_up_is_a_retryable_error(self, sim: Sim):
        with pytest.raises(ProviderError) as caught:
            await PROVIDER.sandbox_inbound(context(sim), CREDENTIALS, SandboxUser(name="Dara", text="hi"))
        assert (caught.value.code, caught.value.retryable) == ("SIMULATOR_NOT_SET_UP", True)

    async def test_a_message_that_can_no_longer_be_mapped_fails_for_good_without_a_request(self, sim: Sim):
        outcome = await sent(context(sim), "551234560", {"type": "text", "message": "x" * 5000})
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("TELEGRAM_INVALID_MESSAGE", False)
        assert (await sim.stats("telegram"))["requests"] == 0

    async def test_a_set_up_telegram_refuses_is_final(self, sim: Sim):
        with pytest.raises(ProviderError) as caught:
            await PROVIDER.set_up(context(sim), callback_url="ftp://nowhere.example", credentials=CREDENTIALS)
        assert (caught.value.code, caught.value.retryable) == ("TELEGRAM_400", False)


class TestUpdatesAreProvenBySender:
    """What the conformance suite's callback tests check, on an update (Telegram sends no reports)."""

    @staticmethod
    async def one_update(sim: Sim) -> Received:
        ctx = context(sim)
        await PROVIDER.set_up(ctx, callback_url=sim.inbox.url, credentials=CREDENTIALS)
        await PROVIDER.sandbox_inbound(ctx, CREDENTIALS, SandboxUser(name="Dara", text="hi"))
        [item] = await sim.inbox.wait_for(lambda items: len(items) >= 1)
        return item

    async def test_the_genuine_update_verifies_and_one_without_the_header_does_not(self, sim: Sim):
        item = await self.one_update(sim)
        ctx = context(sim)
        assert PROVIDER.verify(ctx, request(item), CREDENTIALS)
        unsigned = CallbackRequest("POST", {"content-type": "application/json"}, {}, item.body)
        assert not PROVIDER.verify(ctx, unsigned, CREDENTIALS)

    async def test_another_bots_channel_refuses_it(self, sim: Sim):
        item = await self.one_update(sim)
        assert not PROVIDER.verify(context(sim), request(item), {"botToken": TOKEN + "-other"})

    async def test_a_replayed_update_is_the_same_event(self, sim: Sim):
        item = await self.one_update(sim)
        keys = [event.dedupe_key for event in PROVIDER.parse(item.body)]  # type: ignore[union-attr]
        assert keys == [event.dedupe_key for event in PROVIDER.parse(item.body)]  # type: ignore[union-attr]
        assert all(keys)


class TestTheTokenNeverLeaks:
    async def test_an_unreachable_api_is_retryable_and_carries_neither_url_nor_token(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # closed again: nothing listens there
        http = HttpClient(timeout=2.0)
        try:
            ctx = ProviderContext(
                http=http, base_url=f"http://127.0.0.1:{port}", public_url="", sandbox=False
            )
            outcome = await sent(ctx, "551234560")
            with pytest.raises(ProviderError) as caught:
                await PROVIDER.set_up(ctx, callback_url="https://mmp.example/cb", credentials=CREDENTIALS)
        finally:
            await http.aclose()
        for error in (outcome, caught.value):
            assert isinstance(error, ProviderError)
            assert (error.code, error.retryable) == ("UPSTREAM_UNREACHABLE", True)
            assert TOKEN not in str(error) and "AAHdqTcv" not in repr(error.args)
            # The transport's own exception names the URL: it must not ride along.
            assert error.__cause__ is None and error.__context__ is None
