"""The Messenger provider against its simulator over real HTTP, with webhooks to a real receiver.

Sandbox users and outcomes by the PSID's last digit, the 24-hour window, throughput, the Send API's checks
and envelopes, the Page's subscription (the set-up, in sandbox mode and outside), signed webhooks held
until the Page is set up, per-mid deliveries and delivery and read watermarks, echoes, and end users
writing and tapping postback buttons.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import pytest
from tests.providers.meta_harness import MetaChannel
from tests.providers.viber_harness import Sim, StartSim

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import (
    CallbackRequest,
    InboundEvent,
    Outgoing,
    ProviderContext,
    ProviderError,
    SandboxUser,
    StatusEvent,
)
from openmmp.providers.messenger.provider import MessengerProvider
from openmmp.providers.simulation import now_ms

PROVIDER = MessengerProvider()
TEXT = {"type": "text", "message": "Your card is ready"}
CARD = {
    "type": "rich_card",
    "richCards": [
        {
            "title": "Card ready",
            "description": "Pick it up at the branch",
            "suggestions": [{"action": "reply", "text": "Pick up", "postbackData": "PICKUP"}],
        }
    ],
}
VIDEO = {"type": "video", "fileUrl": "https://cdn.bank.example/how-to.mp4"}


@dataclass
class Page(MetaChannel):
    """One Facebook Page (a channel) at the simulator."""

    provider = PROVIDER
    message = TEXT

    @property
    def id(self) -> str:
        return str(self.credentials["pageId"])

    async def writes(self, phone: str | None = None, text: str = "hello", user_id: str | None = None) -> str:
        user = SandboxUser(name="Sokha", text=text, phone=phone, user_id=user_id)
        return (await PROVIDER.sandbox_inbound(self.ctx, self.credentials, user)).user_id

    def delivered(self, mid: str) -> list[StatusEvent]:
        return [e for e in self.events() if isinstance(e, StatusEvent) and e.provider_message_id == mid]

    def watermarks(self, psid: str, status: str) -> list[StatusEvent]:
        return [
            e
            for e in self.events()
            if isinstance(e, StatusEvent)
            and e.up_to_ms is not None
            and e.user_id == psid
            and e.status == status
        ]

    def inbound(self) -> list[InboundEvent]:
        return [e for e in self.events() if isinstance(e, InboundEvent)]

    async def wait(self, done: Any) -> None:
        await self.sim.inbox.wait_for(lambda _: bool(done()))

    async def raw(self, body: Any, *, bearer: bool = True, query: str = "") -> HttpResponse:
        headers = {"authorization": f"Bearer {self.credentials['pageAccessToken']}"} if bearer else {}
        return await self.sim.post(f"/messenger/{self.id}/messages{query}", body, headers=headers)

    async def control(self, path: str, body: Any) -> HttpResponse:
        return await self.sim.post(f"/messenger/_sandbox/{path}", body)


def page_on(sim: Sim) -> Page:
    page_id = str(random.randrange(10**14, 10**15))
    credentials = {"pageId": page_id, "pageAccessToken": "EAAB-page-token", "appSecret": f"secret-{page_id}"}
    return Page(sim, credentials, iter(range(1, 10**6)))


@pytest.fixture
async def page(sim: Sim) -> Page:
    made = page_on(sim)
    await made.set_up()
    return made


async def page_with(start_sim: StartSim, **knobs: Any) -> Page:
    """A Page, set up, at a simulator started with these Messenger knobs."""
    made = page_on(await start_sim(options={"messenger": knobs}))
    await made.set_up()
    return made


def message_to(psid: str, **message: Any) -> dict[str, Any]:
    return {"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": message}


def template_to(psid: str, **payload: Any) -> dict[str, Any]:
    return message_to(psid, attachment={"type": "template", "payload": payload})


class TestSandboxUsers:
    async def test_a_psid_ends_in_the_digit_of_the_phone_and_is_the_same_user_again(self, page: Page):
        psid = await page.writes("85512345677")
        assert len(psid) == 16 and psid.isdigit() and psid.endswith("7")
        assert await page.writes("85512345677") == psid
        assert await page.writes(user_id=psid) == psid
        assert await page.writes("85512345673") != psid

    async def test_a_psid_is_page_scoped(self, sim: Sim, page: Page):
        other = page_on(sim)
        await other.set_up()
        assert await page.writes("85512345670") != await other.writes("85512345670")

    async def test_without_a_phone_a_user_ends_in_the_handle_s_digit_or_0(self, page: Page):
        handle = await page.writes(user_id="customer-8")
        assert handle.endswith("8") and await page.writes(user_id="customer-8") == handle
        first, second = await page.writes(), await page.writes()
        assert first.endswith("0") and second.endswith("0") and first != second


class TestSandboxOutcomes:
    async def test_0_to_6_delivered_per_mid_then_read_by_watermark(self, page: Page):
        psid = await page.writes("85512345670")
        before = now_ms()
        mid = await page.sent(psid)
        assert mid.startswith("m_")
        await page.wait(lambda: page.delivered(mid) and page.watermarks(psid, "READ"))
        [delivered] = page.delivered(mid)
        assert (delivered.status, delivered.dedupe_key) == ("DELIVERED", f"delivered:{mid}")
        [read] = page.watermarks(psid, "READ")
        assert read.provider_message_id == "" and read.up_to_ms is not None
        assert before <= read.up_to_ms <= now_ms()
        kinds = [type(e).__name__ + getattr(e, "status", "") for e in page.events()]
        assert kinds.index("StatusEventDELIVERED") < kinds.index("StatusEventREAD")

    async def test_7_is_delivered_and_never_read(self, page: Page):
        never, reader = await page.writes("85512345677"), await page.writes("85512345670")
        mid = await page.sent(never)
        marker = await page.sent(reader)
        await page.wait(lambda: page.delivered(mid) and page.watermarks(reader, "READ"))
        assert page.delivered(marker)
        assert page.watermarks(never, "READ") == []

    async def test_8_is_a_final_refusal_the_person_is_unavailable(self, page: Page):
        error = await page.refused(await page.writes("85512345678"))
        assert (error.code, error.retryable) == ("MESSENGER_551", False)
        assert "not available" in error.message

    async def test_9_fails_twice_passingly_then_goes(self, page: Page):
        psid = await page.writes("85512345679")
        key = next(page.keys)
        outcomes = []
        for _ in range(3):
            [unit] = PROVIDER.plan(page.ctx, page.credentials, [Outgoing(key, psid, TEXT)])
            outcomes.append((await unit.call())[key])
        assert [getattr(o, "code", "ok") for o in outcomes] == ["MESSENGER_1200", "MESSENGER_1200", "ok"]
        assert all(o.retryable for o in outcomes[:2])  # type: ignore[union-attr]

    async def test_a_card_goes_as_the_generic_template_it_maps_to(self, page: Page):
        mid = await page.sent(await page.writes("85512345670"), CARD)
        recorded = (await page.sim.http.get(f"{page.sim.base_url}/messenger/_sandbox/messages/{mid}")).json()
        request = recorded["request"]
        assert (recorded["pageId"], request["messaging_type"]) == (page.id, "RESPONSE")
        assert request["message"]["attachment"]["payload"]["template_type"] == "generic"
        assert request["message"]["attachment"]["payload"]["elements"][0]["buttons"] == [
            {"type": "postback", "title": "Pick up", "payload": "PICKUP"}
        ]

    async def test_in_rates_mode_an_undelivered_message_gets_no_webhook(self, start_sim: StartSim):
        sim = await start_sim(mode="rates", seed=1, fail_rate=0, retryable_error_rate=0, delivered_rate=0)
        page = page_on(sim)
        await page.set_up()
        mid = await page.sent(await page.writes("85512345670"))
        await sim.settled("messenger")
        assert page.delivered(mid) == []
        assert [e for e in page.events() if isinstance(e, StatusEvent)] == []


class TestWindow:
    async def test_a_user_who_never_wrote_cannot_be_messaged(self, page: Page):
        error = await page.refused("1234567890123450")
        assert (error.code, error.retryable) == ("MESSENGER_2018278", False)
        assert error.message.startswith("outside the 24-hour window")

    async def test_the_window_closes_and_writing_opens_it_again(self, start_sim: StartSim):
        page = await page_with(start_sim, session_window_s=0.3)
        psid = await page.writes("85512345670")
        await page.sent(psid)
        await asyncio.sleep(0.35)
        assert (await page.refused(psid)).code == "MESSENGER_2018278"
        await page.writes("85512345670")
        await page.sent(psid)

    async def test_no_window_knob_lets_anybody_be_messaged(self, start_sim: StartSim):
        page = await page_with(start_sim, session_window_s=0)
        await page.sent("1234567890123450")

    async def test_tags_go_outside_the_window_human_agent_within_its_own(self, start_sim: StartSim):
        page = await page_with(start_sim, session_window_s=0.2, human_agent_window_s=60)
        psid = await page.writes("85512345670")
        await asyncio.sleep(0.25)
        tagged = {**message_to(psid, text="Your agent replied"), "messaging_type": "MESSAGE_TAG"}
        assert (await page.raw({**tagged, "tag": "HUMAN_AGENT"})).status_code == 200
        stranger = {**message_to("1234567890123450", text="Account update"), "messaging_type": "MESSAGE_TAG"}
        assert (await page.raw({**stranger, "tag": "ACCOUNT_UPDATE"})).status_code == 200
        human = await page.raw({**stranger, "tag": "HUMAN_AGENT"})
        assert human.json()["error"]["error_subcode"] == 2018278
        assert (await page.raw(tagged)).json()["error"]["code"] == 100


class TestSendApi:
    async def test_an_accepted_send_names_recipient_and_mid(self, page: Page):
        psid = await page.writes("85512345670")
        answer = await page.raw(message_to(psid, text="hi"))
        assert answer.status_code == 200
        assert answer.json()["recipient_id"] == psid and answer.json()["message_id"].startswith("m_")
        by_query = await page.raw(
            message_to(psid, text="hi"), bearer=False, query="?access_token=EAAB-page-token"
        )
        assert by_query.status_code == 200

    async def test_no_token_is_190(self, page: Page):
        answer = await page.raw(message_to("1234567890123450", text="hi"), bearer=False)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == 190

    @pytest.mark.parametrize(
        ("body", "subcode"),
        [
            ({"messaging_type": "RESPONSE", "message": {"text": "hi"}}, None),
            (message_to("not-a-psid", text="hi"), 2018001),
            ({"recipient": {"id": "1234567890123450"}, "message": {"text": "hi"}}, None),
            (message_to("1234567890123450"), None),
            (message_to("1234567890123450", text="x" * 2001), None),
            (
                message_to(
                    "1234567890123450",
                    text="hi",
                    attachment={"type": "image", "payload": {"url": "https://a.b/c"}},
                ),
                None,
            ),
            (message_to("1234567890123450", attachment={"type": "image", "payload": {"url": "a.b/c"}}), None),
            (message_to("1234567890123450", attachment={"type": "sticker", "payload": {}}), None),
            (template_to("1234567890123450", template_type="generic", elements=[{"title": "Alone"}]), None),
            (
                template_to(
                    "1234567890123450",
                    template_type="button",
                    text="Pick",
                    buttons=[{"type": "postback", "title": f"b{n}", "payload": "p"} for n in range(4)],
                ),
                None,
            ),
            (
                message_to(
                    "1234567890123450",
                    text="Pick",
                    quick_replies=[
                        {"content_type": "text", "title": f"r{n}", "payload": "p"} for n in range(14)
                    ],
                ),
                None,
            ),
            (
                template_to(
                    "1234567890123450",
                    template_type="button",
                    text="Call",
                    buttons=[{"type": "phone_number", "title": "Call", "payload": "855 23 999"}],
                ),
                None,
            ),
        ],
    )
    async def test_what_the_send_api_refuses_is_100(
        self, page: Page, body: dict[str, Any], subcode: int | None
    ):
        answer = await page.raw(body)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert (error["code"], error.get("error_subcode")) == (100, subcode)
        assert error["message"].startswith("(#100) ") and error["fbtrace_id"]

    async def test_throughput_beyond_the_page_s_rate_is_613_waited_out(self, start_sim: StartSim):
        page = await page_with(start_sim, messages_per_second=2)
        psid = await page.writes("85512345670")
        await page.sent(psid)
        await page.sent(psid)
        error = await page.refused(psid)
        assert (error.code, error.rate_limited, error.retryable, error.retry_after) == (
            "MESSENGER_613",
            True,
            True,
            60.0,
        )

    async def test_audio_and_video_have_a_lower_rate(self, start_sim: StartSim):
        page = await page_with(start_sim, media_per_second=1)
        psid = await page.writes("85512345670")
        await page.sent(psid, VIDEO)
        assert (await page.refused(psid, VIDEO)).code == "MESSENGER_613"
        await page.sent(psid)

    async def test_faults_are_meta_s_answers(self, page: Page):
        psid = await page.writes("85512345670")
        await page.sim.fault("messenger", kind="final_error", status=368)
        assert ((e := await page.refused(psid)).code, e.retryable) == ("MESSENGER_368", False)
        await page.sim.fault("messenger", kind="final_error")
        assert (await page.refused(psid)).code == "MESSENGER_551"
        await page.sim.fault("messenger", kind="http_503")
        assert ((e := await page.refused(psid)).code, e.retryable) == ("MESSENGER_HTTP_503", True)
        await page.sent(psid)

    async def test_a_message_the_mapping_refuses_fails_finally_before_any_request(self, page: Page):
        requests = (await page.sim.stats("messenger"))["requests"]
        error = await page.refused(await page.writes("85512345670"), {"type": "text", "message": "x" * 2001})
        assert (error.code, error.retryable) == ("MESSENGER_INVALID_MESSAGE", False)
        assert (await page.sim.stats("messenger"))["requests"] == requests


class TestSetUp:
    async def test_the_set_up_subscribes_the_app_to_the_four_fields_again_and_again(self, page: Page):
        await page.set_up()
        answer = await page.sim.http.get(
            f"{page.sim.base_url}/messenger/{page.id}/subscribed_apps", headers={"authorization": "Bearer t"}
        )
        [app] = answer.json()["data"]
        assert app["subscribed_fields"] == [
            "message_deliveries",
            "message_reads",
            "messages",
            "messaging_postbacks",
        ]

    async def test_outside_sandbox_mode_it_only_subscribes_the_page(self, sim: Sim):
        page = page_on(sim)
        meta = ProviderContext(
            sim.http, f"{sim.base_url}/messenger", "https://mmp.example.com", sandbox=False
        )
        await PROVIDER.set_up(
            meta, callback_url="https://mmp.example.com/callbacks/messenger/x", credentials=page.credentials
        )
        answer = await sim.http.get(
            f"{sim.base_url}/messenger/{page.id}/subscribed_apps", headers={"authorization": "Bearer t"}
        )
        assert len(answer.json()["data"]) == 1
        # The app's callback URL is the business's to set in Meta's dashboard: the simulator has none.
        written = await page.control("inbound", {"pageId": page.id, "text": "hello"})
        assert written.json()["webhook"] is False

    async def test_a_token_meta_refuses_rejects_the_set_up_for_good_an_outage_not(self, sim: Sim):
        page = page_on(sim)
        await sim.fault("messenger", kind="final_error", status=190, count=1)
        with pytest.raises(ProviderError) as refused:
            await page.set_up()
        assert (refused.value.code, refused.value.retryable) == ("MESSENGER_190", False)
        assert "credentials.pageAccessToken" in refused.value.message
        await sim.fault("messenger", kind="http_503", count=1)
        with pytest.raises(ProviderError) as passing:
            await page.set_up()
        assert passing.value.retryable

    async def test_a_subscription_names_known_fields(self, page: Page):
        url = f"/messenger/{page.id}/subscribed_apps"
        auth = {"authorization": "Bearer t"}
        assert (
            await page.sim.post(f"{url}?subscribed_fields=messages,feeds", {}, headers=auth)
        ).status_code == 400
        assert (await page.sim.post(url, {}, headers=auth)).json()["error"]["code"] == 100
        listed = await page.sim.post(url, {"subscribed_fields": ["messages"]}, headers=auth)
        assert listed.json() == {"success": True}


class TestWebhooks:
    async def test_webhooks_wait_until_the_page_is_set_up(self, sim: Sim):
        page = page_on(sim)
        written = await page.control("inbound", {"pageId": page.id, "phone": "85512345670", "text": "hi"})
        assert written.json()["webhook"] is False
        mid = await page.sent(written.json()["psid"])
        await sim.settled("messenger")
        assert sim.inbox.received == []
        with pytest.raises(ProviderError) as early:
            await page.writes("85512345670")
        assert (early.value.code, early.value.retryable) == ("SIMULATOR_NOT_SET_UP", True)
        await page.set_up()
        await page.wait(lambda: page.delivered(mid))

    async def test_only_subscribed_fields_come(self, page: Page):
        psid = await page.writes("85512345670")
        auth = {"authorization": "Bearer t"}
        await page.sim.post(
            f"/messenger/{page.id}/subscribed_apps?subscribed_fields=message_deliveries", {}, headers=auth
        )
        mid = await page.sent(psid)
        await page.wait(lambda: page.delivered(mid))
        await page.sim.settled("messenger")
        assert page.watermarks(psid, "READ") == []

    async def test_echoes_come_when_subscribed_and_mean_nothing(self, page: Page):
        psid = await page.writes("85512345670")
        fields = "messages,message_deliveries,message_echoes"
        await page.sim.post(
            f"/messenger/{page.id}/subscribed_apps?subscribed_fields={fields}",
            {},
            headers={"authorization": "Bearer t"},
        )
        mid = await page.sent(psid)
        await page.wait(lambda: page.delivered(mid))
        echoes = [r for r in page.sim.inbox.received if b'"is_echo":true' in r.body]
        assert len(echoes) == 1
        assert echoes[0].json()["entry"][0]["messaging"][0]["message"]["mid"] == mid
        assert PROVIDER.parse(echoes[0].body) == []

    async def test_older_clients_deliveries_are_watermarks(self, start_sim: StartSim):
        page = await page_with(start_sim, delivery_mids=False)
        psid = await page.writes("85512345670")
        before = now_ms()
        mid = await page.sent(psid)
        await page.wait(lambda: page.watermarks(psid, "DELIVERED") and page.watermarks(psid, "READ"))
        [delivered] = page.watermarks(psid, "DELIVERED")
        assert delivered.up_to_ms is not None and before <= delivered.up_to_ms <= now_ms()
        assert page.delivered(mid) == []

    async def test_webhooks_are_signed_with_the_page_s_app_secret_only(self, page: Page):
        mid = await page.sent(await page.writes("85512345670"))
        await page.wait(lambda: page.delivered(mid))
        item = page.sim.inbox.received[-1]
        request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
        assert not PROVIDER.verify(page.ctx, request, {**page.credentials, "appSecret": "another"})

    async def test_a_removed_callback_url_gets_nothing(self, page: Page):
        psid = await page.writes("85512345670")
        await page.control("webhooks", {"pageId": page.id, "callbackUrl": ""})
        count = len(page.sim.inbox.received)
        await page.sent(psid)
        written = await page.control("inbound", {"pageId": page.id, "userId": psid, "text": "again"})
        assert written.json()["webhook"] is False
        await page.sim.settled("messenger")
        assert len(page.sim.inbox.received) == count


class TestInbound:
    async def test_an_end_user_writing_is_an_inbound_message_from_their_psid(self, page: Page):
        user = SandboxUser(name="Sokha", text="Is my card ready? ស្រី 🙂", phone="85512345670")
        written = await PROVIDER.sandbox_inbound(page.ctx, page.credentials, user)
        await page.wait(page.inbound)
        [event] = page.inbound()
        assert event.contact.id == written.user_id
        assert event.message["message"] == "Is my card ready? ស្រី 🙂"
        assert event.dedupe_key == f"message:{written.message_token}"

    async def test_a_postback_button_tapped_is_its_title(self, page: Page):
        psid = await page.writes("85512345670", text="hi")
        tap = {"pageId": page.id, "userId": psid, "postback": {"title": "Pick up", "payload": "PICKUP"}}
        answer = (await page.control("inbound", tap)).json()
        await page.wait(lambda: any(e.message["message"] == "Pick up" for e in page.inbound()))
        [event] = [e for e in page.inbound() if e.message["message"] == "Pick up"]
        assert event.contact.id == psid and event.dedupe_key == f"postback:{answer['mid']}"
        assert event.message["extra"]["postback"]["payload"] == "PICKUP"

    async def test_attachments_are_media_messages(self, page: Page):
        photo = {"type": "image", "url": "https://scontent.example/p.jpg"}
        await page.control("inbound", {"pageId": page.id, "attachments": [photo]})
        await page.wait(page.inbound)
        [event] = page.inbound()
        assert (event.message["type"], event.message["fileUrl"]) == (
            "picture",
            "https://scontent.example/p.jpg",
        )

    @pytest.mark.parametrize(
        "body",
        [
            {"text": "no page"},
            {"pageId": "1"},
            {"pageId": "1", "text": ""},
            {"pageId": "1", "text": "hi", "phone": "not a phone"},
            {"pageId": "1", "postback": {"title": "t", "payload": "p"}, "text": "both"},
            {"pageId": "1", "attachments": [{"type": "sticker", "url": "https://a.b/c"}]},
        ],
    )
    async def test_a_malformed_user_action_is_400(self, page: Page, body: dict[str, Any]):
        assert (await page.control("inbound", body)).status_code == 400
