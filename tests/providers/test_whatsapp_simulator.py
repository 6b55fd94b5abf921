"""The WhatsApp provider against its simulator over real HTTP, with webhooks to a real receiver.

Sandbox outcomes by the phone's last digit, the 24-hour window, throughput and the pair rate, Meta's
checks and envelopes, signed webhooks (held until the number's first set-up), end users writing in, and
outside sandbox mode the set-up's webhook override, verified by Meta's handshake against a real callback
route (`CallbackRoute`).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.providers.meta_harness import MetaChannel
from tests.providers.viber_harness import AppHost, Received, Sim, StartSim

from openmmp.kit.http import HttpClient, HttpResponse
from openmmp.providers.base import (
    CallbackRequest,
    CallbackUnverified,
    InboundEvent,
    ProviderContext,
    ProviderError,
    SandboxUser,
    SendOk,
    StatusEvent,
)
from openmmp.providers.whatsapp.callbacks import callback_verify_token
from openmmp.providers.whatsapp.onboarding import SANDBOX_APP_ID, SANDBOX_APP_SECRET, SANDBOX_CONFIG_ID
from openmmp.providers.whatsapp.provider import WhatsappProvider

PROVIDER = WhatsappProvider()
TEXT = {"type": "text", "message": "Your card is ready"}
TEMPLATE = PROVIDER.example_message
BUTTONS = {
    "type": "FB_WHATSAPP_INTERACTIVE",
    "whatsappInteractive": {
        "type": "button",
        "header": {"type": "text", "text": "Delivery"},
        "body": {"text": "Is 10:00 fine?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}}]},
    },
}


@dataclass
class Number(MetaChannel):
    """One business phone number (a channel) at the simulator."""

    provider = PROVIDER
    message = TEMPLATE

    async def writes(self, phone: str, text: str = "hello", name: str = "Sokha") -> str:
        user = SandboxUser(name=name, text=text, phone=phone)
        return (await PROVIDER.sandbox_inbound(self.ctx, self.credentials, user)).user_id

    def statuses(self, wamid: str) -> list[str]:
        return [
            e.status for e in self.events() if isinstance(e, StatusEvent) and e.provider_message_id == wamid
        ]

    async def wait_statuses(self, wamid: str, *wanted: str) -> list[str]:
        await self.sim.inbox.wait_for(lambda _: set(wanted) <= set(self.statuses(wamid)))
        return self.statuses(wamid)

    async def raw(self, body: Any, *, bearer: bool = True) -> HttpResponse:
        headers = {"authorization": f"Bearer {self.credentials['accessToken']}"} if bearer else {}
        pnid = self.credentials["phoneNumberId"]
        return await self.sim.post(f"/whatsapp/{pnid}/messages", body, headers=headers)


def number_on(sim: Sim, **credentials: Any) -> Number:
    pnid = str(random.randrange(10**14, 10**15))
    base = {
        "phoneNumberId": pnid,
        "wabaId": f"9{pnid}",
        "accessToken": "EAAJ-token",
        "appSecret": f"secret-{pnid}",
    }
    return Number(sim, {**base, **credentials}, iter(range(1, 10**6)))


@pytest.fixture
async def number(sim: Sim) -> Number:
    made = number_on(sim)
    await made.set_up()
    return made


def meta_ctx(sim: Sim) -> ProviderContext:
    """Outside sandbox mode, with the simulator as Meta's Graph API and its Meta app as the operator's."""
    options = {"app_id": SANDBOX_APP_ID, "app_secret": SANDBOX_APP_SECRET, "config_id": SANDBOX_CONFIG_ID}
    return ProviderContext(sim.http, f"{sim.base_url}/whatsapp", "https://mmp.example.com", False, options)


class CallbackRoute:
    """OpenMMP's callback route for WhatsApp channels in miniature, on a real port.

    `/callbacks/whatsapp/{account}` answers Meta's GET handshake with the provider's `challenge` (401 for
    a wrong token) and keeps the POSTs the provider `verify`s with the channel's credentials (401 for the
    others). `handshake_answer` (status, body) makes it answer every handshake with that instead.
    """

    def __init__(self, ctx: ProviderContext) -> None:
        self.base_url = ""
        self.handshakes: list[dict[str, str]] = []
        self.handshake_answer: tuple[int, bytes] | None = None
        self._ctx = ctx
        self._channels: dict[str, Mapping[str, Any]] = {}
        self._received: dict[str, list[bytes]] = {}
        self._changed = asyncio.Condition()
        route = Route("/callbacks/whatsapp/{account}", self._callback, methods=["GET", "POST"])
        self.app = Starlette(routes=[route])

    def channel(self, credentials: Mapping[str, Any]) -> str:
        """A new channel with these credentials; its callback URL."""
        account = uuid.uuid4().hex
        self._channels[account] = credentials
        self._received[account] = []
        return f"{self.base_url}/callbacks/whatsapp/{account}"

    def events(self, url: str) -> list[Any]:
        """The events of every verified webhook the channel of `url` got."""
        account = url.rsplit("/", 1)[-1]
        return [event for body in self._received[account] for event in PROVIDER.parse(body)]

    def statuses(self, url: str, wamid: str) -> list[str]:
        return [
            e.status
            for e in self.events(url)
            if isinstance(e, StatusEvent) and e.provider_message_id == wamid
        ]

    def inbound(self, url: str) -> list[str]:
        """The texts end users wrote to the channel of `url`."""
        return [e.message["message"] for e in self.events(url) if isinstance(e, InboundEvent)]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_statuses(self, url: str, wamid: str, *wanted: str) -> list[str]:
        await self.wait_for(lambda: set(wanted) <= set(self.statuses(url, wamid)))
        return self.statuses(url, wamid)

    async def _callback(self, request: Request) -> Response:
        account = request.path_params["account"]
        credentials = self._channels.get(account)
        if credentials is None:
            return Response(status_code=404)
        headers = {name.lower(): value for name, value in request.headers.items()}
        callback = CallbackRequest(request.method, headers, dict(request.query_params), await request.body())
        if request.method == "GET":
            self.handshakes.append(dict(callback.query))
            if self.handshake_answer is not None:
                status, body = self.handshake_answer
                return Response(body, status_code=status)
            try:
                reply = PROVIDER.challenge(self._ctx, callback, credentials)
            except CallbackUnverified:
                return Response(status_code=401)
            return Response(reply.body, status_code=reply.status_code, media_type=reply.media_type)
        if not PROVIDER.verify(self._ctx, callback, credentials):
            return Response(status_code=401)
        async with self._changed:
            self._received[account].append(callback.body)
            self._changed.notify_all()
        return Response("ok")

    @classmethod
    @asynccontextmanager
    async def mounted(cls, app_host: AppHost, http: HttpClient) -> AsyncIterator[CallbackRoute]:
        """A route served by `app_host` until the block ends."""
        route = cls(ProviderContext(http, "http://127.0.0.1:9", "https://mmp.example.com", False))
        async with app_host.mounted(route.app) as base_url:
            route.base_url = base_url
            yield route


@pytest.fixture
async def callback_route(app_host: AppHost, http: HttpClient) -> AsyncIterator[CallbackRoute]:
    async with CallbackRoute.mounted(app_host, http) as route:
        yield route


def raw_statuses(items: list[Received], wamid: str) -> list[str]:
    return [
        status["status"]
        for item in items
        for change in item.json()["entry"][0]["changes"]
        for status in change["value"].get("statuses", [])
        if status["id"] == wamid
    ]


class TestSandboxOutcomesByPhoneDigit:
    @pytest.mark.parametrize("digit", [0, 3, 6])
    async def test_0_to_6_are_sent_delivered_then_read(self, number: Number, digit: int):
        wamid = await number.sent(f"8551234567{digit}")
        assert await number.wait_statuses(wamid, "READ") == ["DELIVERED", "READ"]
        assert raw_statuses(number.sim.inbox.received, wamid) == ["sent", "delivered", "read"]

    async def test_7_is_delivered_and_never_read(self, number: Number):
        wamid = await number.sent("85512345677")
        await number.wait_statuses(wamid, "DELIVERED")
        await number.sim.settled("whatsapp")
        assert number.statuses(wamid) == ["DELIVERED"]

    async def test_8_is_undeliverable_at_send_and_final(self, number: Number):
        error = await number.refused("85512345678")
        assert (error.code, error.retryable) == ("WHATSAPP_131026", False)
        assert "Message undeliverable" in error.message
        assert (await number.sim.settled("whatsapp"))["rejected"] == {"131026": 1}

    async def test_9_fails_twice_retryably_then_goes(self, number: Number):
        for _ in range(2):
            error = await number.refused("85512345679")
            assert (error.code, error.retryable, error.rate_limited) == ("WHATSAPP_131000", True, False)
        wamid = await number.sent("85512345679")
        assert await number.wait_statuses(wamid, "READ") == ["DELIVERED", "READ"]

    async def test_in_rates_mode_an_undelivered_message_fails_with_its_code(self, start_sim: StartSim):
        sim = await start_sim(mode="rates", seed=1, fail_rate=0, retryable_error_rate=0, delivered_rate=0)
        number = number_on(sim)
        await number.set_up()
        wamid = await number.sent("85512345670")
        await number.wait_statuses(wamid, "FAIL")
        [event] = [e for e in number.events() if isinstance(e, StatusEvent)]
        assert (event.error_code, event.error_message) == ("WHATSAPP_131026", "Message undeliverable")


class TestTheTwentyFourHourWindow:
    async def test_a_free_form_message_to_someone_who_never_wrote_is_refused(self, number: Number):
        error = await number.refused("85512345670", TEXT)
        assert (error.code, error.retryable) == ("WHATSAPP_131047", False)
        assert "only a template (fb_whatsapp_template)" in error.message
        assert "more than 24 hours have passed" in error.message

    async def test_once_the_user_wrote_free_form_messages_go(self, number: Number):
        assert await number.writes("+85512345670") == "85512345670"
        for content in (TEXT, BUTTONS):
            wamid = await number.sent("85512345670", content)
            await number.wait_statuses(wamid, "READ")

    async def test_a_template_goes_to_anybody(self, number: Number):
        wamid = await number.sent("85512345671", TEMPLATE)
        await number.wait_statuses(wamid, "READ")

    async def test_the_window_is_the_business_numbers(self, sim: Sim, number: Number):
        other = number_on(sim)
        await other.set_up()
        await number.writes("85512345670")
        assert (await other.refused("85512345670", TEXT)).code == "WHATSAPP_131047"
        assert isinstance(await number.send("85512345670", TEXT), SendOk)

    async def test_the_window_closes(self, start_sim: StartSim):
        sim = await start_sim(options={"whatsapp": {"session_window_s": 0.3}})
        number = number_on(sim)
        await number.set_up()
        await number.writes("85512345670")
        assert isinstance(await number.send("85512345670", TEXT), SendOk)
        await asyncio.sleep(0.4)
        assert (await number.refused("85512345670", TEXT)).code == "WHATSAPP_131047"

    async def test_a_knob_turns_the_rule_off(self, start_sim: StartSim):
        sim = await start_sim(options={"whatsapp": {"session_window_s": 0}})
        number = number_on(sim)
        assert isinstance(await number.send("85512345670", TEXT), SendOk)


class TestLimits:
    async def test_throughput_beyond_the_numbers_rate_is_130429(self, start_sim: StartSim):
        sim = await start_sim(options={"whatsapp": {"messages_per_second": 3}})
        number = number_on(sim)
        outcomes = [await number.send(f"8551234560{n}") for n in range(4)]
        assert [isinstance(o, SendOk) for o in outcomes] == [True, True, True, False]
        error = outcomes[3]
        assert isinstance(error, ProviderError)
        assert (error.code, error.retryable, error.rate_limited, error.retry_after) == (
            "WHATSAPP_130429",
            True,
            True,
            1.0,
        )
        assert (await sim.stats("whatsapp"))["rateLimited"] == 1

    async def test_one_user_gets_a_burst_then_one_message_per_interval(self, start_sim: StartSim):
        sim = await start_sim(options={"whatsapp": {"pair_burst": 2, "pair_interval_s": 0.3}})
        number = number_on(sim)
        for _ in range(2):
            assert isinstance(await number.send("85512345670"), SendOk)
        error = await number.refused("85512345670")
        assert (error.code, error.retryable, error.rate_limited, error.retry_after) == (
            "WHATSAPP_131056",
            True,
            True,
            6.0,
        )
        assert isinstance(await number.send("85512345671"), SendOk)  # another user is not held back
        await asyncio.sleep(0.35)
        assert isinstance(await number.send("85512345670"), SendOk)

    async def test_the_default_burst_lets_a_conversation_through(self, number: Number):
        await number.writes("85512345670")
        for n in range(20):
            assert isinstance(await number.send("85512345670", {"type": "text", "message": f"m{n}"}), SendOk)


class TestMetasChecksAndEnvelopes:
    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"messaging_product": "sms", "to": "85512345670", "type": "text", "text": {"body": "x"}}, 100),
            ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, 131008),
            ({"messaging_product": "whatsapp", "to": "x1", "type": "text", "text": {"body": "x"}}, 131009),
            ({"messaging_product": "whatsapp", "to": "85512345670", "type": "poll", "poll": {}}, 131051),
            (
                {
                    "messaging_product": "whatsapp",
                    "to": "85512345670",
                    "type": "text",
                    "text": {"body": "x" * 4097},
                },
                100,
            ),
            ({"messaging_product": "whatsapp", "to": "85512345670", "type": "image", "image": {}}, 131008),
            (
                {"messaging_product": "whatsapp", "to": "85512345670", "type": "template", "template": {}},
                131008,
            ),
        ],
    )
    async def test_a_malformed_send_gets_metas_envelope(
        self, number: Number, body: dict[str, Any], code: int
    ):
        response = await number.raw(body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["code"], error["type"]) == (code, "OAuthException")
        assert error["message"].startswith(f"(#{code}) ")
        assert error["fbtrace_id"]

    async def test_interactive_limits_are_the_cloud_apis(self, number: Number):
        await number.writes("85512345670")
        four = [{"type": "reply", "reply": {"id": str(n), "title": f"B{n}"}} for n in range(4)]
        interactive = {"type": "button", "body": {"text": "?"}, "action": {"buttons": four}}
        body = {
            "messaging_product": "whatsapp",
            "to": "85512345670",
            "type": "interactive",
            "interactive": interactive,
        }
        assert (await number.raw(body)).json()["error"]["code"] == 131009

    async def test_without_a_bearer_token_the_answer_is_190(self, number: Number):
        response = await number.raw(
            {"messaging_product": "whatsapp", "to": "85512345670", "type": "text", "text": {"body": "x"}},
            bearer=False,
        )
        assert (response.status_code, response.json()["error"]["code"]) == (401, 190)

    async def test_only_known_templates_when_the_number_has_a_list(self, start_sim: StartSim):
        sim = await start_sim(options={"whatsapp": {"templates": "hello_world, order_ready"}})
        number = number_on(sim)
        assert isinstance(await number.send("85512345670", TEMPLATE), SendOk)
        other = {"type": "fb_whatsapp_template", "whatsappTemplateParam": {"templateId": "promo"}}
        error = await number.refused("85512345670", other)
        assert (error.code, error.retryable) == ("WHATSAPP_132001", False)

    async def test_the_cloud_api_gets_what_the_payload_builds(self, number: Number):
        await number.writes("85512345670")
        wamid = await number.sent("+85512345670", BUTTONS)
        response = await number.sim.http.get(f"{number.sim.base_url}/whatsapp/_sandbox/messages/{wamid}")
        request = response.json()["request"]
        assert request["to"] == "+85512345670"
        assert request["interactive"] == BUTTONS["whatsappInteractive"]


class TestWebhooks:
    async def test_they_are_signed_with_the_numbers_app_secret_and_name_it(self, number: Number):
        wamid = await number.sent("85512345670")
        await number.wait_statuses(wamid, "READ")
        item = number.sim.inbox.received[0]
        entry = item.json()["entry"][0]
        assert entry["id"] == number.credentials["wabaId"]
        assert (
            entry["changes"][0]["value"]["metadata"]["phone_number_id"] == number.credentials["phoneNumberId"]
        )
        forged = CallbackRequest(
            "POST", {"x-hub-signature-256": item.headers["x-hub-signature-256"]}, {}, item.body
        )
        other = {**number.credentials, "appSecret": "another-secret"}
        assert not PROVIDER.verify(number.ctx, forged, other)

    async def test_until_the_first_set_up_they_wait_then_come(self, sim: Sim):
        number = number_on(sim)
        wamid = await number.sent("85512345670")
        await asyncio.sleep(0.1)
        assert sim.inbox.received == []
        await number.set_up()
        assert await number.wait_statuses(wamid, "READ") == ["DELIVERED", "READ"]

    async def test_set_up_again_does_not_double_them(self, number: Number):
        await number.set_up()
        wamid = await number.sent("85512345670")
        await number.wait_statuses(wamid, "READ")
        await number.sim.settled("whatsapp")
        assert raw_statuses(number.sim.inbox.received, wamid) == ["sent", "delivered", "read"]

    async def test_a_number_without_a_callback_url_gets_none(self, number: Number):
        body = {"phoneNumberId": number.credentials["phoneNumberId"], "callbackUrl": ""}
        assert (await number.sim.post("/whatsapp/_sandbox/webhooks", body)).status_code == 200
        await number.sent("85512345670")
        await number.sim.settled("whatsapp")
        assert number.sim.inbox.received == []

    @pytest.mark.parametrize(
        "body",
        [
            {"callbackUrl": "http://127.0.0.1:9/x", "appSecret": "s"},
            {"phoneNumberId": "1", "callbackUrl": "ftp://127.0.0.1/x", "appSecret": "s"},
            {"phoneNumberId": "1", "callbackUrl": "http://127.0.0.1:9/x"},
        ],
    )
    async def test_a_set_up_without_what_signing_needs_is_refused(self, sim: Sim, body: dict[str, Any]):
        assert (await sim.post("/whatsapp/_sandbox/webhooks", body)).status_code == 400


class TestEndUsersWriting:
    async def test_before_the_set_up_the_provider_says_so(self, sim: Sim):
        number = number_on(sim)
        with pytest.raises(ProviderError) as refused:
            await number.writes("85512345670")
        assert (refused.value.code, refused.value.retryable) == ("SIMULATOR_NOT_SET_UP", True)
        assert sim.inbox.received == []

    async def test_a_message_becomes_an_inbound_event_with_the_profile(self, number: Number):
        user_id = await number.writes("85512345670", "Is my card ready? ស្រី", name="Sokha")
        await number.sim.inbox.wait_for(lambda items: bool(items))
        [event] = number.events()
        assert isinstance(event, InboundEvent)
        assert (event.contact.id, event.contact.name, event.contact.phone) == (
            user_id,
            "Sokha",
            "85512345670",
        )
        assert {k: v for k, v in event.message.items() if k != "extra"} == {
            "type": "text",
            "message": "Is my card ready? ស្រី",
        }

    async def test_a_user_writes_from_a_phone(self, number: Number):
        with pytest.raises(ValueError, match=r"^phone: required"):
            await PROVIDER.sandbox_inbound(number.ctx, number.credentials, SandboxUser(name="A", text="hi"))
        response = await number.sim.post(
            "/whatsapp/_sandbox/inbound", {"phoneNumberId": "1", "from": "not a phone", "text": "hi"}
        )
        assert response.status_code == 400


class TestWebhookOverrides:
    """Outside sandbox mode the set-up of a channel with `webhookOverride` makes the number's webhooks go
    to the channel's callback URL; here the number's app has another URL (the receiver's inbox)."""

    async def overridden(self, number: Number, route: CallbackRoute) -> str:
        url = route.channel(number.credentials)
        await PROVIDER.set_up(meta_ctx(number.sim), callback_url=url, credentials=number.credentials)
        return url

    async def test_meta_checks_the_channels_url_with_its_verify_token_then_sends_there(
        self, sim: Sim, callback_route: CallbackRoute
    ):
        number = number_on(sim, webhookOverride=True)
        await number.set_up()
        url = await self.overridden(number, callback_route)
        [handshake] = callback_route.handshakes
        assert handshake["hub.mode"] == "subscribe"
        assert handshake["hub.verify_token"] == callback_verify_token(number.credentials["appSecret"])
        assert handshake["hub.challenge"].isdigit()

        wamid = await number.sent("85512345670")
        assert await callback_route.wait_statuses(url, wamid, "READ") == ["DELIVERED", "READ"]
        await number.writes("85512345671", "over here")
        await callback_route.wait_for(lambda: bool(callback_route.inbound(url)))
        await sim.settled("whatsapp")
        assert callback_route.inbound(url) == ["over here"]
        assert sim.inbox.received == []  # the app's own URL got none of them

    async def test_setting_it_again_at_the_next_start_is_harmless(
        self, sim: Sim, callback_route: CallbackRoute
    ):
        number = number_on(sim, webhookOverride=True)
        await number.set_up()
        url = await self.overridden(number, callback_route)
        await PROVIDER.set_up(meta_ctx(sim), callback_url=url, credentials=number.credentials)
        assert len(callback_route.handshakes) == 2
        wamid = await number.sent("85512345670")
        await callback_route.wait_statuses(url, wamid, "READ")
        await sim.settled("whatsapp")
        assert callback_route.statuses(url, wamid) == ["DELIVERED", "READ"]

    @pytest.mark.parametrize("answer", [(200, b"not the challenge"), (403, b"Forbidden")])
    async def test_a_route_that_answers_wrongly_fails_the_set_up_for_good(
        self, sim: Sim, callback_route: CallbackRoute, answer: tuple[int, bytes]
    ):
        number = number_on(sim, webhookOverride=True)
        await number.set_up()
        callback_route.handshake_answer = answer
        with pytest.raises(ProviderError) as refused:
            await self.overridden(number, callback_route)
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_2200", False)
        assert "not with Meta's challenge" in refused.value.message
        assert "OPENMMP_PUBLIC_URL" in refused.value.message
        assert f"{callback_route.base_url}/callbacks/whatsapp/" in refused.value.message
        wamid = await number.sent("85512345670")
        assert await number.wait_statuses(wamid, "READ") == ["DELIVERED", "READ"]  # still the app's URL

    async def test_a_route_that_does_not_answer_is_tried_again(self, sim: Sim, callback_route: CallbackRoute):
        number = number_on(sim, webhookOverride=True)
        await number.set_up()
        with pytest.raises(ProviderError) as unreachable:
            await PROVIDER.set_up(
                meta_ctx(sim),
                callback_url="http://127.0.0.1:9/callbacks/whatsapp/x",
                credentials=number.credentials,
            )
        assert (unreachable.value.code, unreachable.value.retryable) == ("WHATSAPP_2200", True)
        assert "did not answer" in unreachable.value.message
        callback_route.handshake_answer = (503, b"starting")
        with pytest.raises(ProviderError) as failing:
            await self.overridden(number, callback_route)
        assert (failing.value.code, failing.value.retryable) == ("WHATSAPP_2200", True)

    @pytest.mark.parametrize("credentials", [{}, {"webhookOverride": False}])
    async def test_a_channel_that_does_not_ask_for_it_asks_nothing_of_meta(
        self, sim: Sim, callback_route: CallbackRoute, credentials: dict[str, Any]
    ):
        number = number_on(sim, **credentials)
        await number.set_up()
        before = (await sim.stats("whatsapp"))["requests"]
        url = await self.overridden(number, callback_route)
        assert (await sim.stats("whatsapp"))["requests"] == before
        assert callback_route.handshakes == []
        wamid = await number.sent("85512345670")
        await number.wait_statuses(wamid, "READ")
        await sim.settled("whatsapp")
        assert callback_route.events(url) == []

    async def test_a_permission_error_is_final_and_says_what_the_token_lacks(
        self, sim: Sim, callback_route: CallbackRoute
    ):
        number = number_on(sim, webhookOverride=True)
        await number.set_up()
        await sim.fault("whatsapp", kind="final_error", status=10)
        with pytest.raises(ProviderError) as refused:
            await self.overridden(number, callback_route)
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_10", False)
        assert "whatsapp_business_management" in refused.value.message
        assert "webhookOverride" in refused.value.message
        assert callback_route.handshakes == []

    @pytest.mark.parametrize(
        ("kind", "code"), [("http_503", "WHATSAPP_HTTP_503"), ("rate_limit", "WHATSAPP_130429")]
    )
    async def test_meta_failing_or_busy_is_tried_again(
        self, sim: Sim, callback_route: CallbackRoute, kind: str, code: str
    ):
        number = number_on(sim, webhookOverride=True)
        await number.set_up()
        await sim.fault("whatsapp", kind=kind)
        with pytest.raises(ProviderError) as failed:
            await self.overridden(number, callback_route)
        assert (failed.value.code, failed.value.retryable) == (code, True)

    async def test_a_number_meta_does_not_know_is_final(self, sim: Sim, callback_route: CallbackRoute):
        number = number_on(sim, webhookOverride=True)  # never configured: no app the simulator knows
        with pytest.raises(ProviderError) as refused:
            await self.overridden(number, callback_route)
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_100", False)
        assert "does not exist" in refused.value.message


class TestTheOverrideEndpoint:
    async def override(self, number: Number, configuration: Any, *, bearer: bool = True) -> HttpResponse:
        headers = {"authorization": f"Bearer {number.credentials['accessToken']}"} if bearer else {}
        pnid = number.credentials["phoneNumberId"]
        return await number.sim.post(
            f"/whatsapp/{pnid}", {"webhook_configuration": configuration}, headers=headers
        )

    @pytest.mark.parametrize(
        ("configuration", "code"),
        [
            ({"override_callback_uri": "https://mmp.example.com/x"}, 100),
            ({"override_callback_uri": "ftp://mmp.example.com/x", "verify_token": "t"}, 100),
            ({"override_callback_uri": "https://mmp.example.com/" + "x" * 200, "verify_token": "t"}, 100),
            ({"verify_token": "t"}, 100),
            ("https://mmp.example.com/x", 100),
        ],
    )
    async def test_a_malformed_override_is_refused_before_any_handshake(
        self, number: Number, configuration: Any, code: int
    ):
        response = await self.override(number, configuration)
        assert (response.status_code, response.json()["error"]["code"]) == (400, code)

    async def test_without_a_bearer_token_the_answer_is_190(self, number: Number):
        response = await self.override(
            number, {"override_callback_uri": "", "verify_token": "t"}, bearer=False
        )
        assert (response.status_code, response.json()["error"]["code"]) == (401, 190)

    async def test_a_failed_handshake_is_2200_in_metas_words(
        self, number: Number, callback_route: CallbackRoute
    ):
        url = callback_route.channel(number.credentials)
        response = await self.override(number, {"override_callback_uri": url, "verify_token": "a guess"})
        error = response.json()["error"]
        assert (response.status_code, error["code"], error["type"]) == (400, 2200, "OAuthException")
        assert error["message"] == "(#2200) callback verification failed"
        assert "HTTP Status Code = 401" in error["error_data"]["details"]

    async def test_an_empty_url_removes_the_override(self, number: Number, callback_route: CallbackRoute):
        url = callback_route.channel(number.credentials)
        token = callback_verify_token(number.credentials["appSecret"])
        set_ = await self.override(number, {"override_callback_uri": url, "verify_token": token})
        assert (set_.status_code, set_.json()) == (200, {"success": True})
        removed = await self.override(number, {"override_callback_uri": ""})
        assert (removed.status_code, removed.json()) == (200, {"success": True})
        wamid = await number.sent("85512345670")
        await number.wait_statuses(wamid, "READ")
        await number.sim.settled("whatsapp")
        assert callback_route.events(url) == []
