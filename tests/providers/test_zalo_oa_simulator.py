"""The Zalo OA provider against its simulator over real HTTP, with webhooks to a real receiver.

Declarations and registration; sandbox users and outcomes by the user id's last digit; the 7-day window;
signed webhooks (held until the app's webhook is registered); files fetched and uploaded; the send's
checks, throughput and faults; end users writing, sharing their details and following.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.providers.meta_harness import MetaChannel
from tests.providers.viber_harness import AppHost, Sim, StartSim

from openmmp.kit.http import HttpClient, HttpResponse
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    InboundEvent,
    ProviderContext,
    SandboxUser,
    StatusEvent,
)
from openmmp.providers.registry import REGISTRY
from openmmp.providers.zalo.oa import SANDBOX_APP_HEADER, SANDBOX_OA_HEADER, ZaloOaProvider

PROVIDER = ZaloOaProvider()
TEXT = {"type": "text", "message": "Your card is ready"}
PDF = b"%PDF-1.4 statement"


@dataclass
class Oa(MetaChannel):
    """One Official Account (a channel) at the simulator."""

    provider = PROVIDER
    message = TEXT

    @property
    def app_id(self) -> str:
        return str(self.credentials["appId"])

    async def writes(self, phone: str | None = None, text: str = "hello", user_id: str | None = None) -> str:
        user = SandboxUser(name="Lan Nguyen", text=text, phone=phone, user_id=user_id)
        return (await PROVIDER.sandbox_inbound(self.ctx, self.credentials, user)).user_id

    def statuses(self, mid: str) -> list[StatusEvent]:
        return [e for e in self.events() if isinstance(e, StatusEvent) and e.provider_message_id == mid]

    def inbound(self) -> list[InboundEvent]:
        return [e for e in self.events() if isinstance(e, InboundEvent)]

    async def wait(self, done: Any) -> None:
        await self.sim.inbox.wait_for(lambda _: bool(done()))

    async def raw(
        self, body: Any, *, token: str | None = None, path: str = "/v3.0/oa/message/cs"
    ) -> HttpResponse:
        headers = {"access_token": self.credentials["accessToken"] if token is None else token}
        return await self.sim.post(f"/zalo{path}", body, headers=headers)

    async def control(self, path: str, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
        return await self.sim.post(f"/zalo/_sandbox/{path}", body, headers=headers)

    async def recorded(self, mid: str) -> dict[str, Any]:
        response = await self.sim.http.get(f"{self.sim.base_url}/zalo/_sandbox/messages/{mid}")
        assert response.status_code == 200
        found: dict[str, Any] = response.json()
        return found


def oa_on(sim: Sim) -> Oa:
    app_id = str(random.randrange(10**17, 10**18))
    credentials = {
        "oaId": f"9{app_id}",
        "appId": app_id,
        "accessToken": f"token-{app_id}",
        "refreshToken": f"refresh-{app_id}",
        "secretKey": f"secret-{app_id}",
    }
    return Oa(sim, credentials, iter(range(1, 10**6)))


@pytest.fixture
async def oa(sim: Sim) -> Oa:
    made = oa_on(sim)
    await made.set_up()
    return made


async def oa_with(start_sim: StartSim, **knobs: Any) -> Oa:
    made = oa_on(await start_sim(options={"zalo": knobs}))
    await made.set_up()
    return made


def cs(user_id: str, **message: Any) -> dict[str, Any]:
    return {"recipient": {"user_id": user_id}, "message": message}


class TestDeclarations:
    def test_it_is_the_registrys_zalo(self):
        assert REGISTRY.for_application(Application.ZALO).__class__ is ZaloOaProvider
        assert REGISTRY.by_name("zalo").__class__ is ZaloOaProvider

    def test_a_bot_by_conversation_with_a_7_day_window_and_expiring_credentials(self):
        assert PROVIDER.addressing is Addressing.CONVERSATION
        assert PROVIDER.session_window_seconds == 7 * 86400 and PROVIDER.window_free_types == frozenset()
        assert PROVIDER.refreshes_credentials and not PROVIDER.idempotent
        assert (PROVIDER.reports_delivery, PROVIDER.reports_read) == (True, True)
        assert PROVIDER.message_types == {"text", "rich_card", "picture", "file"}
        assert (PROVIDER.rate_limit.requests, PROVIDER.rate_limit.window_seconds) == (4000, 60.0)

    async def test_outside_sandbox_mode_there_is_nothing_to_set_up(self):
        assert not PROVIDER.needs_setup(sandbox=False) and PROVIDER.needs_setup(sandbox=True)
        http = HttpClient(timeout=0.5)
        try:
            ctx = ProviderContext(http, "http://127.0.0.1:9", "http://me", False)
            await PROVIDER.set_up(ctx, callback_url="https://me/cb", credentials=PROVIDER.sandbox_credentials)
        finally:
            await http.aclose()


class TestSandboxUsers:
    async def test_a_user_id_ends_in_the_digit_of_the_phone_and_is_the_same_user_again(self, oa: Oa):
        user = await oa.writes("84912345677")
        assert len(user) == 19 and user.isdigit() and user.endswith("7")
        assert await oa.writes("84912345677") == user
        assert await oa.writes(user_id=user) == user
        assert await oa.writes("84912345673") != user

    async def test_a_user_with_a_phone_shares_their_details_then_writes(self, oa: Oa):
        user = await oa.writes("84912345670", text="I lost my card")
        await oa.wait(lambda: len(oa.inbound()) >= 2)
        shared, wrote = oa.inbound()
        assert (shared.contact.id, shared.contact.phone, shared.contact.name) == (
            user,
            "84912345670",
            "Lan Nguyen",
        )
        assert shared.message["extra"]["event_name"] == "user_submit_info"
        assert (wrote.contact.id, wrote.message["type"], wrote.message["message"]) == (
            user,
            "text",
            "I lost my card",
        )

    async def test_without_a_phone_a_user_ends_in_the_handle_s_digit_or_0(self, oa: Oa):
        handle = await oa.writes(user_id="customer-8")
        assert handle.endswith("8") and await oa.writes(user_id="customer-8") == handle
        first, second = await oa.writes(), await oa.writes()
        assert first.endswith("0") and second.endswith("0") and first != second

    async def test_users_are_per_app(self, sim: Sim, oa: Oa):
        other = oa_on(sim)
        await other.set_up()
        assert await oa.writes("84912345670") != await other.writes("84912345670")

    async def test_follow_and_unfollow(self, oa: Oa):
        headers = {SANDBOX_APP_HEADER: oa.app_id, SANDBOX_OA_HEADER: oa.credentials["oaId"]}
        followed = await oa.control("inbound", {"userId": "fan-1", "event": "follow"}, headers)
        await oa.control("inbound", {"userId": "fan-1", "event": "unfollow"}, headers)
        await oa.wait(lambda: len(oa.inbound()) >= 2)
        kinds = sorted((e.kind, e.contact.id) for e in oa.inbound())
        user = followed.json()["userId"]
        assert kinds == [("subscribed", user), ("unsubscribed", user)]

    async def test_the_sandbox_refuses_what_it_cannot_use(self, oa: Oa):
        assert (await oa.control("inbound", {"text": "x"})).status_code == 400
        headers = {SANDBOX_APP_HEADER: oa.app_id, SANDBOX_OA_HEADER: oa.credentials["oaId"]}
        assert (await oa.control("inbound", {}, headers)).status_code == 400
        assert (await oa.control("inbound", {"text": "x", "event": "block"}, headers)).status_code == 400
        assert (await oa.control("inbound", {"phone": "12"}, headers)).status_code == 400


class TestOutcomes:
    async def test_0_to_6_are_received_then_seen_in_signed_webhooks(self, oa: Oa):
        user = await oa.writes("84912345670")
        mid = await oa.sent(user)
        await oa.wait(lambda: {"DELIVERED", "READ"} <= {e.status for e in oa.statuses(mid)})
        [delivered, read] = oa.statuses(mid)
        assert (delivered.status, read.status) == ("DELIVERED", "READ")
        assert delivered.timestamp_ms <= read.timestamp_ms
        webhook = oa.sim.inbox.received[-1].json()
        assert isinstance(webhook["timestamp"], str) and webhook["app_id"] == oa.app_id

    async def test_7_is_received_never_seen(self, oa: Oa):
        user = await oa.writes("84912345677")
        mid = await oa.sent(user)
        marker = await oa.sent(await oa.writes("84912345671"))
        await oa.wait(lambda: any(e.status == "READ" for e in oa.statuses(marker)))
        assert [e.status for e in oa.statuses(mid)] == ["DELIVERED"]

    async def test_8_is_a_final_refusal(self, oa: Oa):
        refused = await oa.refused(await oa.writes("84912345678"))
        assert refused.code == "ZALO_-213" and not refused.retryable and not refused.stale_credentials

    async def test_9_fails_twice_then_goes(self, oa: Oa):
        user = await oa.writes("84912345679")
        first, second = await oa.refused(user), await oa.refused(user)
        assert first.retryable and second.retryable and first.code == "ZALO_HTTP_500"
        await oa.sent(user)

    async def test_webhooks_wait_until_the_app_is_registered(self, sim: Sim):
        made = oa_on(sim)
        form = f"app_id={made.app_id}&grant_type=refresh_token&refresh_token=r".encode()
        issued = await sim.post(
            "/zalo/v4/oa/access_token",
            content=form,
            headers={"content-type": "application/x-www-form-urlencoded", "secret_key": "s"},
        )
        made.credentials["accessToken"] = issued.json()["access_token"]
        mid = await made.sent("1234567890123456780")
        assert (await sim.settled("zalo"))["callbacksSent"] == 0
        await made.set_up()
        await made.wait(lambda: len(made.statuses(mid)) == 2)


class TestWindow:
    async def test_a_user_quiet_for_more_than_7_days_is_minus_230(self, oa: Oa):
        user = await oa.writes("84912345670")
        await oa.control("zalo/interaction", {"userId": user, "secondsAgo": 8 * 86400})
        refused = await oa.refused(user)
        assert refused.code == "ZALO_-230" and not refused.retryable and "7 days" in refused.message
        await oa.writes(user_id=user)
        await oa.sent(user)

    async def test_after_48_hours_the_send_uses_the_paid_quota(self, oa: Oa):
        user = await oa.writes("84912345670")
        fresh = (await oa.raw(cs(user, text="hi"))).json()["data"]
        assert fresh["quota"]["quota_type"] == "reply" and fresh["user_id"] == user
        await oa.control("zalo/interaction", {"userId": user, "secondsAgo": 3 * 86400})
        later = (await oa.raw(cs(user, text="hi"))).json()["data"]
        assert later["quota"]["quota_type"] == "sub_quota"

    async def test_no_window_when_the_knob_is_0(self, start_sim: StartSim):
        oa = await oa_with(start_sim, window_s=0)
        user = await oa.writes("84912345670")
        await oa.control("zalo/interaction", {"userId": user, "secondsAgo": 30 * 86400})
        await oa.sent(user)

    async def test_the_quota_route_says_when_the_user_last_interacted(self, oa: Oa):
        user = await oa.writes("84912345670")
        answer = (await oa.raw({"user_id": user}, path="/v3.0/oa/quota/message")).json()
        assert answer["error"] == 0 and answer["data"]["last_interaction"].isdigit()
        assert answer["data"]["cs_reply"] == {"remain": 8, "total": 8}


class TestContent:
    async def test_a_list_and_a_picture_go_as_mapped(self, oa: Oa):
        user = await oa.writes("84912345670")
        card = {
            "type": "rich_card",
            "richCards": [
                {"title": "Savings", "image": "https://cdn.bank.example/s.png"},
                {
                    "title": "Loans",
                    "suggestions": [{"action": "reply", "text": "Loans", "postbackData": "#l"}],
                },
            ],
            "suggestions": [{"action": "dial", "text": "Call", "postbackData": "+84912345678"}],
        }
        mid = await oa.sent(user, card)
        sent = (await oa.recorded(mid))["request"]
        assert sent["recipient"] == {"user_id": user}
        assert sent["message"]["attachment"]["payload"]["template_type"] == "list"
        picture = {"type": "picture", "fileUrl": "https://cdn.bank.example/a.jpg", "message": "Card"}
        mid = await oa.sent(user, picture)
        assert (await oa.recorded(mid))["request"]["message"]["text"] == "Card"

    @pytest.fixture
    async def files(self, app_host: AppHost) -> AsyncIterator[str]:
        async def serve_file(request: Request) -> Response:
            name = request.path_params["name"]
            if name == "statement.pdf":
                return Response(PDF, media_type="application/pdf")
            if name == "download":
                return Response(
                    b"docx bytes",
                    media_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                )
            if name == "photo.png":
                return Response(b"\x89PNG", media_type="image/png")
            if name == "huge.pdf":
                return Response(b"0" * (5 * 1024 * 1024 + 1), media_type="application/pdf")
            if name == "busy.pdf":
                return Response("busy", status_code=503)
            return Response("gone", status_code=404)

        app = Starlette(routes=[Route("/{name}", serve_file)])
        async with app_host.mounted(app) as base_url:
            yield base_url

    async def test_a_file_is_fetched_uploaded_and_sent_by_its_token(self, oa: Oa, files: str):
        user = await oa.writes("84912345670")
        mid = await oa.sent(user, {"type": "file", "fileUrl": f"{files}/statement.pdf"})
        attachment = (await oa.recorded(mid))["request"]["message"]["attachment"]
        assert attachment["type"] == "file" and attachment["payload"]["token"]
        await oa.wait(lambda: len(oa.statuses(mid)) == 2)

    async def test_the_media_type_names_a_file_whose_url_does_not(self, oa: Oa, files: str):
        user = await oa.writes("84912345670")
        await oa.sent(user, {"type": "file", "fileUrl": f"{files}/download", "fileName": "contract.docx"})
        await oa.sent(user, {"type": "file", "fileUrl": f"{files}/download"})

    @pytest.mark.parametrize(
        ("name", "code", "retryable"),
        [
            ("photo.png", "ZALO_FILE_TYPE", False),
            ("huge.pdf", "ZALO_FILE_TOO_LARGE", False),
            ("missing.pdf", "ZALO_FILE_HTTP_404", False),
            ("busy.pdf", "ZALO_FILE_HTTP_503", True),
        ],
    )
    async def test_a_file_that_cannot_go(self, oa: Oa, files: str, name: str, code: str, retryable: bool):
        user = await oa.writes("84912345670")
        refused = await oa.refused(user, {"type": "file", "fileUrl": f"{files}/{name}"})
        assert (refused.code, refused.retryable) == (code, retryable)
        assert refused.message.startswith("message.fileUrl:")

    async def test_the_upload_wants_a_supported_file(self, oa: Oa):
        boundary = "b0undary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.exe"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\nMZ\r\n--{boundary}--\r\n"
        ).encode()
        answer = await oa.sim.post(
            "/zalo/v2.0/oa/upload/file",
            content=body,
            headers={"access_token": "t", "content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert answer.json()["error"] == -201
        user = await oa.writes("84912345670")
        forged = await oa.raw(cs(user, attachment={"type": "file", "payload": {"token": "never-issued"}}))
        assert forged.json()["error"] == -201


class TestTheSendChecks:
    @pytest.mark.parametrize(
        "message",
        [
            {},
            {"text": ""},
            {"text": "a" * 2001},
            {
                "attachment": {
                    "type": "template",
                    "payload": {"buttons": [{"title": "x", "type": "oa.query.show", "payload": "p"}]},
                }
            },
            {"attachment": {"type": "template", "payload": {"template_type": "media", "elements": []}}},
            {
                "attachment": {
                    "type": "template",
                    "payload": {"template_type": "list", "elements": [{"title": "t"}] * 6},
                }
            },
            {
                "attachment": {
                    "type": "template",
                    "payload": {"template_type": "list", "elements": [{"subtitle": "s"}]},
                }
            },
            {
                "text": "x",
                "attachment": {
                    "type": "template",
                    "payload": {
                        "buttons": [{"title": "x", "type": "oa.open.url", "payload": {"url": "nope"}}]
                    },
                },
            },
            {
                "text": "x",
                "attachment": {
                    "type": "template",
                    "payload": {
                        "buttons": [{"title": "x", "type": "oa.open.phone", "payload": {"phone_code": "+84"}}]
                    },
                },
            },
            {"text": "x", "attachment": {"type": "video", "payload": {}}},
        ],
    )
    async def test_what_zalo_refuses_is_minus_201(self, oa: Oa, message: dict[str, Any]):
        user = await oa.writes("84912345670")
        answer = await oa.raw(cs(user, **message))
        assert answer.status_code == 200 and answer.json()["error"] == -201

    async def test_a_user_id_that_is_no_number_is_minus_201(self, oa: Oa):
        assert (await oa.raw(cs("not-a-user", text="x"))).json()["error"] == -201

    async def test_no_access_token_is_minus_216(self, oa: Oa):
        answer = await oa.sim.post("/zalo/v3.0/oa/message/cs", cs("1230", text="x"))
        assert answer.json()["error"] == -216

    async def test_beyond_the_apps_requests_a_minute_is_minus_32_waited_out(self, start_sim: StartSim):
        oa = await oa_with(start_sim, requests_per_minute=2)
        user = await oa.writes("84912345670")
        await oa.sent(user)
        await oa.sent(user)
        limited = await oa.refused(user)
        assert limited.rate_limited and limited.retryable and limited.code == "ZALO_-32"

    async def test_a_final_error_fault_answers_its_status_as_zalo_s_code(self, oa: Oa):
        user = await oa.writes("84912345670")
        await oa.sim.fault("zalo", kind="final_error", status=144)
        refused = await oa.refused(user)
        assert refused.code == "ZALO_-144" and "daily quota" in refused.message
        await oa.sim.fault("zalo", kind="stale_credentials")
        stale = await oa.refused(user)
        assert stale.stale_credentials and stale.code == "ZALO_-216"
