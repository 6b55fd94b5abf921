"""The MM7 provider against its MMSC simulator over real HTTP: what the MMSC receives, what it answers,
the reports it sends back, the media fetch, and the guard on tenants' hosts outside sandbox mode."""

from __future__ import annotations

import asyncio
import itertools
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from tests.providers.viber_harness import AppHost, Inbox, Received, Sim, StartSim

from openmmp.kit.http import HttpClient
from openmmp.kit.time import now_ms
from openmmp.providers.base import (
    CallbackRequest,
    Outgoing,
    ProviderContext,
    ProviderError,
    SendOk,
    SendOutcome,
    StatusEvent,
)
from openmmp.providers.mm7 import mime, soap
from openmmp.providers.mm7.client import transaction_id
from openmmp.providers.mm7.provider import Mm7Provider
from openmmp.providers.mm7.simulator import SAMPLE_PNG
from openmmp.webhooks.guard import upstream_target_check

PROVIDER = Mm7Provider()
_keys = itertools.count(50_000_000)


@dataclass
class Mmsc:
    """The provider with a channel of its own, set up against the simulator."""

    sim: Sim
    ctx: ProviderContext
    credentials: dict[str, Any]
    keys: list[int] = field(default_factory=list)

    @property
    def media_url(self) -> str:
        return f"{self.sim.base_url}/mm7/_sandbox/media/sample.png"

    async def send(
        self, phone: str, content: dict[str, Any], *, key: int | None = None, expire_at_ms: int | None = None
    ) -> SendOutcome:
        key = next(_keys) if key is None else key
        message = Outgoing(key, phone, content, expire_at_ms)
        [unit] = PROVIDER.plan(self.ctx, self.credentials, [message])
        return (await unit.call())[key]

    async def sent(self, phone: str, content: dict[str, Any], **options: Any) -> str:
        outcome = await self.send(phone, content, **options)
        assert isinstance(outcome, SendOk), outcome
        return outcome.provider_message_id

    async def refused(self, phone: str, content: dict[str, Any], **options: Any) -> ProviderError:
        outcome = await self.send(phone, content, **options)
        assert isinstance(outcome, ProviderError), outcome
        return outcome

    def verified(self, item: Received, credentials: dict[str, Any] | None = None) -> list[StatusEvent]:
        request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
        assert PROVIDER.verify(self.ctx, request, credentials or self.credentials), item.headers
        return list(PROVIDER.parse(item.body))  # type: ignore[arg-type]

    async def reports(self, token: str, *wanted: str) -> list[StatusEvent]:
        def of_token() -> list[StatusEvent]:
            events = [e for item in self.sim.inbox.received for e in self.verified(item)]
            return [e for e in events if e.provider_message_id == token]

        await self.sim.inbox.wait_for(lambda _: set(wanted) <= {e.status for e in of_token()})
        return of_token()

    async def submission(self, message_id: str) -> dict[str, Any]:
        response = await self.sim.http.get(f"{self.sim.base_url}/mm7/_sandbox/submissions/{message_id}")
        assert response.status_code == 200, response.content
        found: dict[str, Any] = response.json()
        return found

    async def stats(self) -> dict[str, Any]:
        return await self.sim.stats("mm7")


def channel(**extra: Any) -> dict[str, Any]:
    return {
        "url": "https://mmsc.example.com/mm7",
        "vaspId": f"vasp-{uuid.uuid4().hex[:8]}",
        "vasId": "alerts",
        "senderAddress": "4711",
        **extra,
    }


async def mmsc_for(sim: Sim, http: HttpClient, inbox: Inbox, **credentials: Any) -> Mmsc:
    ctx = ProviderContext(http, f"{sim.base_url}/mm7", "http://127.0.0.1:9", True)
    chosen = channel(**credentials)
    await PROVIDER.set_up(ctx, callback_url=inbox.url, credentials=chosen)
    return Mmsc(sim, ctx, chosen)


@pytest.fixture
async def mmsc(sim: Sim, http: HttpClient, inbox: Inbox) -> Mmsc:
    return await mmsc_for(sim, http, inbox)


# ---- a media server that misbehaves in every way ---------------------------------------------------------


def _media_app() -> Starlette:
    async def big(request: Request) -> Response:
        return Response(b"\x89PNG" + bytes(700 * 1024), media_type="image/png")

    async def page(request: Request) -> Response:
        return Response("<html>login</html>", media_type="text/html")

    async def missing(request: Request) -> Response:
        return Response("gone", status_code=404)

    async def busy(request: Request) -> Response:
        return Response("busy", status_code=503)

    async def moved(request: Request) -> Response:
        return RedirectResponse("/elsewhere.png", status_code=302)

    async def blob(request: Request) -> Response:
        return Response(SAMPLE_PNG, media_type="application/octet-stream")

    async def part(request: Request) -> Response:
        return Response(b"\x89PNG" + bytes(150 * 1024 - 4), media_type="image/png")

    async def clip(request: Request) -> Response:
        return Response(b"ID3" + bytes(1000), media_type="audio/mpeg")

    return Starlette(
        routes=[
            Route("/big.png", big),
            Route("/page", page),
            Route("/missing.png", missing),
            Route("/busy.png", busy),
            Route("/moved.png", moved),
            Route("/blob.png", blob),
            Route("/clip.mp3", clip),
            Route("/150k.png", part),
        ]
    )


@pytest.fixture
async def media(app_host: AppHost) -> AsyncIterator[str]:
    async with app_host.mounted(_media_app()) as base_url:
        yield base_url


# ---- tests -----------------------------------------------------------------------------------------------


class TestAPictureMms:
    async def test_reaches_the_mmsc_as_smil_text_and_image_with_its_subject(self, mmsc: Mmsc):
        key = next(_keys)
        content = {
            "type": "picture",
            "message": "Your new card",
            "fileUrl": mmsc.media_url,
            "subject": "Card",
        }
        token = await mmsc.sent("85512345670", content, key=key)
        seen = await mmsc.submission(token)
        assert {
            k: seen[k] for k in ("vaspId", "vasId", "sender", "recipient", "subject", "transactionId")
        } == {
            "vaspId": mmsc.credentials["vaspId"],
            "vasId": "alerts",
            "sender": "4711",
            "recipient": "85512345670",
            "subject": "Card",
            "transactionId": transaction_id(key),
        }
        assert (seen["deliveryReport"], seen["readReply"], seen["expiryMs"]) == (True, True, None)
        assert [(p["contentType"], p["contentId"]) for p in seen["parts"]] == [
            ("application/smil", "smil"),
            ("text/plain", "text"),
            ("image/png", "media1"),
        ]
        assert seen["parts"][2]["size"] == len(SAMPLE_PNG)
        assert seen["parts"][2]["location"] == "sample.png"
        assert seen["text"] == "Your new card"

    async def test_comes_back_delivered_then_read_in_reports_proven_by_basic_auth(self, mmsc: Mmsc):
        content = {"type": "picture", "fileUrl": mmsc.media_url}
        token = await mmsc.sent("85512345670", content)
        events = await mmsc.reports(token, "DELIVERED", "READ")
        assert [e.status for e in events] == ["DELIVERED", "READ"]
        assert [e.raw["kind"] for e in events] == ["DeliveryReportReq", "ReadReplyReq"]
        assert events[0].raw["recipient"] == "+85512345670"

    async def test_an_expiry_becomes_the_expiry_date(self, mmsc: Mmsc):
        expire = now_ms() + 3_600_000
        token = await mmsc.sent("85512345677", {"type": "text", "message": "hi"}, expire_at_ms=expire)
        assert (await mmsc.submission(token))["expiryMs"] == expire // 1000 * 1000


class TestSandboxOutcomes:
    async def test_digit_7_is_retrieved_and_never_read(self, mmsc: Mmsc):
        token = await mmsc.sent("85512345677", {"type": "text", "message": "hi"})
        await mmsc.reports(token, "DELIVERED")
        marker = await mmsc.sent("85512345670", {"type": "text", "message": "hi"})
        await mmsc.reports(marker, "READ")
        assert [e.status for e in await mmsc.reports(token)] == ["DELIVERED"]

    async def test_digit_8_is_refused_at_submit_for_good(self, mmsc: Mmsc):
        error = await mmsc.refused("85512345678", {"type": "text", "message": "hi"})
        assert (error.code, error.message, error.retryable) == (
            "MM7_2003",
            "Address Not Found: the recipient is not an MMS subscriber",
            False,
        )

    async def test_digit_9_fails_twice_for_the_same_transaction_then_goes_through(self, mmsc: Mmsc):
        key = next(_keys)
        for _ in range(2):
            error = await mmsc.refused("85512345679", {"type": "text", "message": "hi"}, key=key)
            assert (error.code, error.retryable, error.rate_limited) == ("MM7_3000", True, False)
        token = await mmsc.sent("85512345679", {"type": "text", "message": "hi"}, key=key)
        assert (await mmsc.submission(token))["transactionId"] == transaction_id(key)

    async def test_a_repeated_submit_is_not_collapsed(self, mmsc: Mmsc):
        """MM7 has no idempotency key: the provider says so (`idempotent` False), the MMSC shows it."""
        key = next(_keys)
        first = await mmsc.sent("85512345670", {"type": "text", "message": "hi"}, key=key)
        second = await mmsc.sent("85512345670", {"type": "text", "message": "hi"}, key=key)
        assert first != second
        assert (await mmsc.stats())["duplicates"] == 1
        assert not PROVIDER.idempotent


class TestAttachments:
    async def test_each_attachment_is_a_slide(self, mmsc: Mmsc, media: str):
        content = {
            "type": "text_with_attachment",
            "message": "Your statement",
            "attachments": [
                {"type": "image/png", "name": "page1.png", "url": mmsc.media_url},
                {"type": "audio/mpeg", "name": "note.mp3", "url": f"{media}/clip.mp3"},
            ],
        }
        token = await mmsc.sent("85512345670", content)
        parts = (await mmsc.submission(token))["parts"]
        assert [(p["contentType"], p["location"]) for p in parts] == [
            ("application/smil", "mms.smil"),
            ("text/plain", "text.txt"),
            ("image/png", "page1.png"),
            ("audio/mpeg", "note.mp3"),
        ]

    async def test_a_generic_type_is_read_from_the_file_name(self, mmsc: Mmsc, media: str):
        token = await mmsc.sent("85512345670", {"type": "picture", "fileUrl": f"{media}/blob.png"})
        assert (await mmsc.submission(token))["parts"][-1]["contentType"] == "image/png"


class TestMediaThatCannotGo:
    @pytest.mark.parametrize(
        ("path", "kind", "code", "words", "retryable"),
        [
            ("missing.png", "picture", "MM7_MEDIA_HTTP_404", "answered HTTP 404", False),
            ("busy.png", "picture", "MM7_MEDIA_HTTP_503", "answered HTTP 503", True),
            ("moved.png", "picture", "MM7_MEDIA_HTTP_302", "redirects are not followed", False),
            (
                "page",
                "picture",
                "MM7_MEDIA_TYPE",
                "an image expected, the media server sent text/html",
                False,
            ),
            (
                "clip.mp3",
                "video",
                "MM7_MEDIA_TYPE",
                "a video expected, the media server sent audio/mpeg",
                False,
            ),
            ("big.png", "picture", "MM7_CONTENT_TOO_LARGE", "at most 600 KB", False),
        ],
    )
    async def test_is_refused_naming_the_field_before_anything_is_submitted(
        self, mmsc: Mmsc, media: str, path: str, kind: str, code: str, words: str, retryable: bool
    ):
        error = await mmsc.refused("85512345670", {"type": kind, "fileUrl": f"{media}/{path}"})
        assert (error.code, error.retryable) == (code, retryable)
        assert error.message.startswith("message.fileUrl: ")
        assert words in error.message
        assert (await mmsc.stats())["requests"] == 0

    async def test_parts_small_enough_alone_but_too_large_together(self, mmsc: Mmsc, media: str):
        attachment = {"type": "image/png", "name": "p.png", "url": f"{media}/150k.png"}
        content = {"type": "text_with_attachment", "message": "hi", "attachments": [attachment] * 5}
        error = await mmsc.refused("85512345670", content)
        assert (error.code, error.message, error.retryable) == (
            "MM7_CONTENT_TOO_LARGE",
            "message: the MMS content would be 750 KB; at most 600 KB",
            False,
        )
        assert (await mmsc.stats())["requests"] == 0

    async def test_a_media_server_that_does_not_answer_may_answer_later(self, mmsc: Mmsc):
        error = await mmsc.refused("85512345670", {"type": "picture", "fileUrl": "http://127.0.0.1:9/a.png"})
        assert (error.code, error.message, error.retryable) == (
            "MM7_MEDIA_UNREACHABLE",
            "message.fileUrl: could not be reached",
            True,
        )


class TestTheMmscsOwnChecks:
    async def test_an_account_it_requires(self, start_sim: StartSim, http: HttpClient, inbox: Inbox):
        sim = await start_sim(options={"mm7": {"username": "bank", "password": "s3cret"}})
        anonymous = await mmsc_for(sim, http, inbox)
        error = await anonymous.refused("85512345670", {"type": "text", "message": "hi"})
        assert (error.code, error.retryable) == ("MM7_HTTP_401", False)
        wrong = await mmsc_for(sim, http, inbox, username="bank", password="guess")
        assert (await wrong.refused("85512345670", {"type": "text", "message": "hi"})).code == "MM7_HTTP_401"
        right = await mmsc_for(sim, http, inbox, username="bank", password="s3cret")
        token = await right.sent("85512345670", {"type": "text", "message": "hi"})
        # The MMSC reports with the account the VASP used; the sandbox secret would not do for it.
        events = await right.reports(token, "DELIVERED", "READ")
        assert [e.status for e in events] == ["DELIVERED", "READ"]
        without_account = {k: v for k, v in right.credentials.items() if k not in ("username", "password")}
        request = CallbackRequest(
            "POST", {k.lower(): v for k, v in inbox.received[0].headers.items()}, {}, b""
        )
        assert not PROVIDER.verify(right.ctx, request, without_account)

    async def test_a_vasp_id_it_does_not_know(self, start_sim: StartSim, http: HttpClient, inbox: Inbox):
        sim = await start_sim(options={"mm7": {"vasp_ids": "bank, shop"}})
        stranger = await mmsc_for(sim, http, inbox)
        error = await stranger.refused("85512345670", {"type": "text", "message": "hi"})
        assert (error.code, error.retryable) == ("MM7_4001", False)
        assert "unknown VASPID" in error.message
        known = await mmsc_for(sim, http, inbox, vaspId="shop")
        assert isinstance(await known.send("85512345670", {"type": "text", "message": "hi"}), SendOk)

    async def test_throttling_is_rate_limiting(self, start_sim: StartSim, http: HttpClient, inbox: Inbox):
        sim = await start_sim(options={"mm7": {"requests_per_second": 1}})
        mmsc = await mmsc_for(sim, http, inbox)
        await mmsc.sent("85512345670", {"type": "text", "message": "hi"})
        error = await mmsc.refused("85512345670", {"type": "text", "message": "hi"})
        assert (error.code, error.retryable, error.rate_limited, error.retry_after) == (
            "MM7_4006",
            True,
            True,
            1.0,
        )
        assert (await mmsc.stats())["rateLimited"] == 1

    async def submit(self, sim: Sim, content_type: str, body: bytes) -> soap.Answer:
        response = await sim.http.post(
            f"{sim.base_url}/mm7/mm7", content=body, headers={"content-type": content_type}
        )
        return soap.read_answer(response.content)

    async def test_a_request_that_is_not_soap_with_attachments(self, sim: Sim):
        answer = await self.submit(sim, "text/xml", soap.submit_req(_request()))
        assert answer.status is not None and answer.status.code == 4004

    async def test_content_it_cannot_find_or_show(self, sim: Sim):
        envelope = mime.Part("text/xml", soap.submit_req(_request()), "soap")
        content_type, body = mime.encode([envelope], subtype="related", params={"type": "text/xml"})
        missing = await self.submit(sim, content_type, body)
        assert missing.status is not None and missing.status.code == 2004
        pdf = mime.Part("application/pdf", b"%PDF", "mms-content")
        content_type, body = mime.encode([envelope, pdf], subtype="related", params={"type": "text/xml"})
        shown = await self.submit(sim, content_type, body)
        assert shown.status == soap.Status(
            2004, "Multimedia content refused", "application/pdf parts are not supported"
        )

    async def test_two_recipients(self, sim: Sim):
        raw = soap.submit_req(_request()).replace(b"</To>", b"</To><Cc><Number>+85512345671</Number></Cc>")
        envelope = mime.Part("text/xml", raw, "soap")
        text = mime.Part("text/plain", b"hi", "mms-content")
        content_type, body = mime.encode([envelope, text], subtype="related", params={"type": "text/xml"})
        answer = await self.submit(sim, content_type, body)
        assert answer.status is not None and answer.status.code == 3003


def _request() -> soap.SubmitReq:
    return soap.SubmitReq("t-1", "vasp", "vas", "4711", "85512345670", "mms-content")


class TestReportsWaitForTheVasp:
    async def test_until_its_first_registration(self, sim: Sim, http: HttpClient, inbox: Inbox):
        ctx = ProviderContext(http, f"{sim.base_url}/mm7", "http://127.0.0.1:9", True)
        credentials = channel()
        early = Mmsc(sim, ctx, credentials)
        token = await early.sent("85512345677", {"type": "text", "message": "sent before set-up"})
        await asyncio.sleep(0.1)
        assert inbox.received == []
        await PROVIDER.set_up(ctx, callback_url=inbox.url, credentials=credentials)
        assert [e.status for e in await early.reports(token, "DELIVERED")] == ["DELIVERED"]


class TestOutsideSandboxMode:
    """The channel's `url` is where sends go, and tenant input: checked at connection time."""

    def ctx(self, http: HttpClient, allowed: list[str]) -> ProviderContext:
        return ProviderContext(
            http,
            "http://unused.example",
            "http://127.0.0.1:9",
            False,
            target_check=upstream_target_check(allowed),
        )

    async def test_sends_go_to_the_channels_url(self, sim: Sim, http: HttpClient, inbox: Inbox):
        await PROVIDER.set_up(
            ProviderContext(http, f"{sim.base_url}/mm7", "", True),
            callback_url=inbox.url,
            credentials=channel(),
        )
        mmsc = Mmsc(sim, self.ctx(http, ["127.0.0.1"]), channel(url=f"{sim.base_url}/mm7/mm7"))
        token = await mmsc.sent("85512345670", {"type": "text", "message": "to the MMSC itself"})
        assert (await mmsc.submission(token))["text"] == "to the MMSC itself"

    async def test_a_private_mmsc_is_refused_unless_the_operator_allows_it(self, sim: Sim, http: HttpClient):
        mmsc = Mmsc(sim, self.ctx(http, []), channel(url=f"{sim.base_url}/mm7/mm7"))
        error = await mmsc.refused("85512345670", {"type": "text", "message": "hi"})
        assert (error.code, error.retryable) == ("MM7_TARGET_REFUSED", True)
        assert "127.0.0.1, which is a loopback address" in error.message
        assert (await mmsc.stats())["requests"] == 0

    async def test_media_are_checked_by_address_even_from_a_host_allowed_by_name(
        self, sim: Sim, http: HttpClient
    ):
        local = sim.base_url.replace("127.0.0.1", "localhost")
        mmsc = Mmsc(sim, self.ctx(http, ["localhost"]), channel(url=f"{local}/mm7/mm7"))
        assert isinstance(await mmsc.send("85512345670", {"type": "text", "message": "hi"}), SendOk)
        content = {"type": "picture", "fileUrl": f"{local}/mm7/_sandbox/media/sample.png"}
        error = await mmsc.refused("85512345670", content)
        assert (error.code, error.retryable) == ("MM7_MEDIA_REFUSED", False)
        assert error.message.startswith("message.fileUrl: not fetched")


class TestTheSampleMedia:
    async def test_is_a_real_png(self, sim: Sim):
        response = await sim.http.get(f"{sim.base_url}/mm7/_sandbox/media/sample.png")
        assert (response.status_code, response.headers["content-type"]) == (200, "image/png")
        png = response.content
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
        assert (width, height, depth, colour) == (16, 16, 8, 2)
        length = struct.unpack(">I", png[33:37])[0]
        assert png[37:41] == b"IDAT"
        assert len(zlib.decompress(png[41 : 41 + length])) == 16 * (1 + 16 * 3)
