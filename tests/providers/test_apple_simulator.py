"""The provider against its simulator over real HTTP: the gateway's checks, duplicate ids, the sandbox
outcomes, attachments uploaded encrypted, signed (sometimes compressed) callbacks, and a user's pick of a
list picker or quick reply coming back as an inbound message."""

from __future__ import annotations

import base64
import hashlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.providers.viber_harness import AppHost, Received, Sim, StartSim

from openmmp.providers.apple import auth
from openmmp.providers.apple.callbacks import inflate
from openmmp.providers.apple.client import message_id
from openmmp.providers.apple.provider import AppleProvider
from openmmp.providers.base import (
    CallbackRequest,
    InboundEvent,
    Outgoing,
    ProviderContext,
    ProviderError,
    SandboxUser,
    SendOk,
    SendOutcome,
)

PROVIDER = AppleProvider()
KEY = b"apple simulator test msp secret!"
CREDENTIALS = {"businessId": "biz-sim", "mspId": "msp-sim", "secret": base64.b64encode(KEY).decode()}
ACCOUNT = "5d1f6c0e-6a7b-4f43-9d0e-2f7b2a3c4d5e"
READ, FINAL, FLAKY = "85512345670", "85512345678", "85512345679"
_keys = itertools.count(30_000_000)
FILE = bytes(range(256)) * 40
PICKER: dict[str, Any] = {
    "type": "listPicker",
    "message": "Pick a branch",
    "allowMultiple": True,
    "listPicker": [
        {"title": "Riverside", "value": "b1"},
        {"title": "Airport", "value": "b2"},
        {"title": "Old Market", "value": "b3"},
    ],
}
QUICK: dict[str, Any] = {
    "type": "quickReply",
    "message": "Was this helpful?",
    "suggestions": [
        {"action": "reply", "text": "Yes", "postbackData": "helpful-yes"},
        {"action": "reply", "text": "No", "postbackData": "helpful-no"},
    ],
}


def context(sim: Sim) -> ProviderContext:
    return ProviderContext(http=sim.http, base_url=f"{sim.base_url}/apple", public_url="", sandbox=True)


async def registered(sim: Sim, credentials: dict[str, str] = CREDENTIALS) -> ProviderContext:
    ctx = context(sim)
    await PROVIDER.set_up(ctx, callback_url=sim.inbox.url, credentials=credentials)
    return ctx


async def user(ctx: ProviderContext, phone: str = READ, text: str = "hello") -> str:
    written = await PROVIDER.sandbox_inbound(
        ctx, CREDENTIALS, SandboxUser(name="Dara", text=text, phone=phone)
    )
    return written.user_id


async def send(
    ctx: ProviderContext, recipient: str, content: dict[str, Any] | None = None, key: int | None = None
) -> SendOutcome:
    key = next(_keys) if key is None else key
    message = Outgoing(key, recipient, content or PROVIDER.example_message, account_id=ACCOUNT)
    [unit] = PROVIDER.plan(ctx, CREDENTIALS, [message])
    return (await unit.call())[key]


def verified(item: Received, credentials: dict[str, str] = CREDENTIALS) -> list[InboundEvent]:
    """What the core does with a callback: verify the request, then parse its raw body."""
    request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
    assert PROVIDER.verify(context_for_verify(), request, credentials), item.headers
    parsed = PROVIDER.parse(PROVIDER.readable_body(request))
    assert all(isinstance(event, InboundEvent) for event in parsed)
    return parsed  # type: ignore[return-value]


def context_for_verify() -> ProviderContext:
    return ProviderContext(http=None, base_url="", public_url="", sandbox=True)  # type: ignore[arg-type]


async def inbound(sim: Sim, predicate: Any) -> InboundEvent:
    """The first verified inbound event matching `predicate`, waiting for it."""

    def found(items: list[Received]) -> bool:
        return any(predicate(event) for item in items for event in verified(item))

    await sim.inbox.wait_for(found)
    return next(event for item in sim.inbox.received for event in verified(item) if predicate(event))


async def gateway(sim: Sim, body: dict[str, Any], headers: dict[str, str]) -> int:
    response = await sim.http.post(f"{sim.base_url}/apple/v1/message", json=body, headers=headers)
    assert response.content == b""
    return response.status_code


def envelope(recipient: str, **changes: Any) -> tuple[dict[str, Any], dict[str, str]]:
    uid = str(uuid.uuid4())
    body = {
        "v": 1,
        "id": uid,
        "sourceId": "biz-sim",
        "destinationId": recipient,
        "type": "text",
        "body": "hi",
    }
    headers = {
        "authorization": f"Bearer {auth.msp_token('msp-sim', KEY)}",
        "id": uid,
        "source-id": "biz-sim",
        "destination-id": recipient,
    }
    return {**body, **changes}, headers


class TestSending:
    async def test_a_send_is_accepted_with_the_envelope_apple_wants(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        key = next(_keys)
        outcome = await send(ctx, recipient, key=key)
        assert isinstance(outcome, SendOk), outcome
        expected = message_id(business_id="biz-sim", account_id=ACCOUNT, key=key)
        assert outcome.provider_message_id == expected
        seen = (await sim.http.get(f"{sim.base_url}/apple/_sandbox/messages/{expected}")).json()
        assert seen["refused"] is None
        assert seen["headers"] == {"id": expected, "source-id": "biz-sim", "destination-id": recipient}
        assert seen["body"] == {
            "v": 1,
            "id": expected,
            "sourceId": "biz-sim",
            "destinationId": recipient,
            "type": "text",
            "body": "Hello from OpenMMP",
        }

    async def test_a_resend_carries_the_same_id_and_apple_collapses_it(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        key = next(_keys)
        first, again = await send(ctx, recipient, key=key), await send(ctx, recipient, key=key)
        assert isinstance(first, SendOk) and isinstance(again, SendOk)
        assert first.provider_message_id == again.provider_message_id
        other = await send(ctx, recipient)
        assert isinstance(other, SendOk) and other.provider_message_id != first.provider_message_id
        stats = await sim.stats("apple", detail=True)
        assert (stats["accepted"], stats["duplicates"]) == (2, 1)

    async def test_digit_8_is_unreachable_and_final(self, sim: Sim):
        ctx = await registered(sim)
        outcome = await send(ctx, await user(ctx, FINAL))
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("APPLE_410", False)
        assert "closed or deleted the conversation" in outcome.message

    async def test_digit_9_fails_twice_then_goes_and_repeats_are_collapsed(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx, FLAKY)
        key = next(_keys)
        outcomes = [await send(ctx, recipient, key=key) for _ in range(4)]
        assert [isinstance(o, ProviderError) and o.retryable for o in outcomes] == [True, True, False, False]
        assert [o.code for o in outcomes[:2] if isinstance(o, ProviderError)] == ["APPLE_503", "APPLE_503"]
        assert isinstance(outcomes[2], SendOk) and isinstance(outcomes[3], SendOk)
        stats = await sim.stats("apple")
        assert (stats["accepted"], stats["duplicates"]) == (1, 1)

    async def test_a_rate_limit_is_waited_out(self, start_sim: StartSim):
        sim = await start_sim(options={"apple": {"requests_per_window": 1, "window_s": 60}})
        ctx = await registered(sim)
        recipient = await user(ctx)
        assert isinstance(await send(ctx, recipient), SendOk)
        limited = await send(ctx, recipient)
        assert isinstance(limited, ProviderError)
        assert (limited.rate_limited, limited.retryable, limited.retry_after) == (True, True, 1.0)

    async def test_a_user_who_closed_the_conversation_is_gone_until_they_write_again(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        await sim.post(
            "/apple/_sandbox/inbound", {"businessId": "biz-sim", "userId": recipient, "event": "close"}
        )
        event = await inbound(sim, lambda e: e.kind == "unsubscribed")
        assert event.contact.id == recipient
        gone = await send(ctx, recipient)
        assert isinstance(gone, ProviderError) and (gone.code, gone.retryable) == ("APPLE_410", False)
        await PROVIDER.sandbox_inbound(
            ctx, CREDENTIALS, SandboxUser(name="Dara", text="back", user_id=recipient)
        )
        assert isinstance(await send(ctx, recipient), SendOk)

    async def test_a_secret_that_is_not_base64_fails_the_plan_with_the_field(self, sim: Sim):
        message = Outgoing(next(_keys), "urn:mbid:x", PROVIDER.example_message, account_id=ACCOUNT)
        with pytest.raises(ValueError, match=r"^credentials\.secret: "):
            PROVIDER.plan(context(sim), {**CREDENTIALS, "secret": "not base64!"}, [message])


class TestTheGatewayChecksTheJwt:
    async def test_a_registered_msps_token_must_be_signed_with_its_secret(self, sim: Sim):
        await registered(sim)
        body, headers = envelope("urn:mbid:AQAAYtest0")
        assert await gateway(sim, body, headers) == 200
        forged = {**headers, "authorization": f"Bearer {auth.msp_token('msp-sim', b'guess')}"}
        body, _ = envelope("urn:mbid:AQAAYtest0")
        assert await gateway(sim, body, {**forged, "id": body["id"]}) == 401

    async def test_an_msp_the_simulator_forgot_is_taken_on_fresh_claims_alone(self, sim: Sim):
        body, headers = envelope("urn:mbid:AQAAYtest0")
        assert await gateway(sim, body, headers) == 200
        stale = auth.msp_token("msp-sim", KEY, issued_s=1_600_000_000)
        body, headers = envelope("urn:mbid:AQAAYtest0")
        assert await gateway(sim, body, {**headers, "authorization": f"Bearer {stale}"}) == 401

    async def test_a_stale_or_missing_token_is_401(self, sim: Sim):
        await registered(sim)
        body, headers = envelope("urn:mbid:AQAAYtest0")
        stale = auth.msp_token("msp-sim", KEY, issued_s=1_600_000_000)
        assert await gateway(sim, body, {**headers, "authorization": f"Bearer {stale}"}) == 401
        assert await gateway(sim, body, {k: v for k, v in headers.items() if k != "authorization"}) == 401

    async def test_wrong_credentials_are_a_final_credentials_error(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        wrong = {**CREDENTIALS, "secret": base64.b64encode(b"another secret").decode()}
        [unit] = PROVIDER.plan(
            ctx, wrong, [Outgoing(1, recipient, PROVIDER.example_message, account_id=ACCOUNT)]
        )
        outcome = (await unit.call())[1]
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("APPLE_401", False)
        assert "credentials.secret" in outcome.message

    async def test_a_business_of_another_msp_is_403(self, sim: Sim):
        await registered(sim)
        other = {"businessId": "biz-other", "mspId": "msp-other", "secret": base64.b64encode(b"k2").decode()}
        await registered(sim, other)
        body, headers = envelope("urn:mbid:AQAAYtest0", sourceId="biz-other")
        assert await gateway(sim, body, {**headers, "source-id": "biz-other"}) == 403

    @pytest.mark.parametrize(
        "changes",
        [
            {"v": 2},
            {"sourceId": "someone-else"},
            {"destinationId": "urn:mbid:other"},
            {"type": "video"},
            {"body": ""},
        ],
    )
    async def test_an_envelope_that_does_not_agree_is_400(self, sim: Sim, changes: dict[str, Any]):
        await registered(sim)
        body, headers = envelope("urn:mbid:AQAAYtest0", **changes)
        assert await gateway(sim, body, headers) == 400


class TestAttachments:
    @pytest.fixture
    async def files(self, app_host: AppHost) -> AsyncIterator[str]:
        async def serve_file(request: Request) -> Response:
            name = request.path_params["name"]
            if name == "missing.pdf":
                return Response(status_code=404)
            if name == "busy.pdf":
                return Response(status_code=503)
            return Response(FILE, media_type="application/pdf")

        app = Starlette(routes=[Route("/files/{name}", serve_file)])
        async with app_host.mounted(app) as base_url:
            yield f"{base_url}/files"

    async def test_files_are_fetched_encrypted_uploaded_and_open_with_their_key(self, sim: Sim, files: str):
        ctx = await registered(sim)
        recipient = await user(ctx)
        content = {
            "type": "text_with_attachment",
            "message": "Your statements",
            "attachments": [
                {"type": "application/pdf", "name": "march.pdf", "url": f"{files}/march.pdf"},
                {"type": "application/pdf", "name": "april.pdf", "url": f"{files}/april.pdf"},
            ],
        }
        outcome = await send(ctx, recipient, content)
        assert isinstance(outcome, SendOk), outcome
        seen = (
            await sim.http.get(f"{sim.base_url}/apple/_sandbox/messages/{outcome.provider_message_id}")
        ).json()
        digest = hashlib.sha256(FILE).hexdigest()
        assert seen["attachments"] == [
            {"name": "march.pdf", "mimeType": "application/pdf", "size": len(FILE), "sha256": digest},
            {"name": "april.pdf", "mimeType": "application/pdf", "size": len(FILE), "sha256": digest},
        ]
        sent = seen["body"]["attachments"]
        assert seen["body"]["body"] == "Your statements\n\ufffc\ufffc"
        assert all(a["key"].startswith("00") and len(a["key"]) == 66 for a in sent)
        assert sent[0]["key"] != sent[1]["key"]

    @pytest.mark.parametrize(
        ("name", "code", "retryable"), [("missing.pdf", 404, False), ("busy.pdf", 503, True)]
    )
    async def test_a_file_that_cannot_be_fetched_names_the_field(
        self, sim: Sim, files: str, name: str, code: int, retryable: bool
    ):
        ctx = await registered(sim)
        content = {
            "type": "text_with_attachment",
            "attachments": [{"type": "application/pdf", "name": name, "url": f"{files}/{name}"}],
        }
        outcome = await send(ctx, await user(ctx), content)
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == (f"APPLE_MEDIA_HTTP_{code}", retryable)
        assert outcome.message.startswith("message.attachments[0].url: ")


class TestCallbacks:
    @pytest.mark.parametrize(("threshold", "compressed"), [(0, True), (None, False)])
    async def test_what_users_write_comes_signed_and_compressed_as_configured(
        self, start_sim: StartSim, threshold: int | None, compressed: bool
    ):
        sim = await start_sim(options={"apple": {"gzip_min_bytes": threshold}})
        ctx = await registered(sim)
        recipient = await user(ctx, text="Is my card ready? ស្រី 🙂")
        event = await inbound(sim, lambda e: e.message.get("message") == "Is my card ready? ស្រី 🙂")
        assert (event.kind, event.contact.id, event.contact.language) == ("message", recipient, "en")
        [item] = sim.inbox.received
        assert (item.headers.get("content-encoding") == "gzip") is compressed
        assert item.body.startswith(b"\x1f\x8b") is compressed
        assert item.headers["source-id"] == recipient
        assert item.headers["destination-id"] == "biz-sim"
        claims = auth.read_token(auth.bearer(item.headers["authorization"]), KEY)
        assert claims["aud"] == "msp-sim"

    async def test_another_channels_credentials_refuse_the_callback(self, sim: Sim):
        ctx = await registered(sim)
        await user(ctx)
        await sim.inbox.wait_for(lambda items: len(items) == 1)
        [item] = sim.inbox.received
        request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
        other_business = {**CREDENTIALS, "businessId": "biz-other"}
        other_msp = {**CREDENTIALS, "mspId": "msp-other"}
        other_key = {**CREDENTIALS, "secret": base64.b64encode(b"x").decode()}
        for credentials in (other_business, other_msp, other_key):
            assert not PROVIDER.verify(context_for_verify(), request, credentials)

    async def test_attachments_and_typing_as_apple_posts_them(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        for event in ("typing_start", "typing_end"):
            await sim.post(
                "/apple/_sandbox/inbound", {"businessId": "biz-sim", "userId": recipient, "event": event}
            )
        files = [{"name": "photo.jpg", "mimeType": "image/jpeg", "size": 2048}]
        await sim.post(
            "/apple/_sandbox/inbound",
            {"businessId": "biz-sim", "userId": recipient, "text": "see", "attachments": files},
        )
        event = await inbound(sim, lambda e: e.message.get("type") == "text_with_attachment")
        assert event.message["message"] == "see"
        assert event.message["attachments"] == [{"type": "image/jpeg", "name": "photo.jpg", "size": 2048}]
        await sim.settled("apple")
        kinds = {orjson.loads(inflate(item.body))["type"]: item for item in sim.inbox.received}
        assert sorted(kinds) == ["text", "typing_end", "typing_start"]
        assert verified(kinds["typing_start"]) == verified(kinds["typing_end"]) == []

    async def test_a_user_of_an_unregistered_business_cannot_write_yet(self, sim: Sim):
        ctx = context(sim)
        with pytest.raises(ProviderError) as refused:
            await PROVIDER.sandbox_inbound(ctx, CREDENTIALS, SandboxUser(name="Dara", text="hello"))
        assert refused.value.retryable
        await PROVIDER.set_up(ctx, callback_url="", credentials=CREDENTIALS)
        with pytest.raises(ProviderError) as still:
            await PROVIDER.sandbox_inbound(ctx, CREDENTIALS, SandboxUser(name="Dara", text="hello"))
        assert (still.value.code, still.value.retryable) == ("SIMULATOR_NOT_SET_UP", True)
        assert sim.inbox.received == []


class TestSelections:
    async def test_naming_list_picker_items_answers_with_their_values(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        assert isinstance(await send(ctx, recipient, PICKER), SendOk)
        written = await PROVIDER.sandbox_inbound(
            ctx, CREDENTIALS, SandboxUser(name="Dara", text="riverside, Old Market", user_id=recipient)
        )
        event = await inbound(sim, lambda e: e.message.get("message") == "b1, b3")
        assert event.kind == "message"
        assert event.message["type"] == "text"
        interactive = event.message["extra"]["interactiveData"]
        section = interactive["data"]["listPicker"]["sections"][0]
        assert [item["title"] for item in section["items"]] == ["Riverside", "Old Market"]
        assert interactive["data"]["replyMessage"]["title"] == "Riverside, Old Market"
        assert event.dedupe_key.startswith(written.message_token)

    async def test_one_pick_of_a_single_selection_picker_and_plain_text_otherwise(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        single = {**PICKER, "allowMultiple": False}
        assert isinstance(await send(ctx, recipient, single), SendOk)
        answer = await sim.post(
            "/apple/_sandbox/inbound", {"businessId": "biz-sim", "userId": recipient, "select": ["b2"]}
        )
        assert answer.json()["selected"] == ["b2"]
        await inbound(sim, lambda e: e.message.get("message") == "b2")
        two = await sim.post(
            "/apple/_sandbox/inbound", {"businessId": "biz-sim", "userId": recipient, "text": "b1, b2"}
        )
        assert two.json()["type"] == "text"  # a single-selection picker takes one: it is just text
        await inbound(sim, lambda e: e.message.get("message") == "b1, b2")
        refused = await sim.post(
            "/apple/_sandbox/inbound", {"businessId": "biz-sim", "userId": recipient, "select": ["nothing"]}
        )
        assert refused.status_code == 400

    async def test_a_quick_reply_is_answered_once_with_its_postback(self, sim: Sim):
        ctx = await registered(sim)
        recipient = await user(ctx)
        assert isinstance(await send(ctx, recipient, QUICK), SendOk)
        await PROVIDER.sandbox_inbound(
            ctx, CREDENTIALS, SandboxUser(name="Dara", text="yes", user_id=recipient)
        )
        event = await inbound(sim, lambda e: e.message.get("message") == "helpful-yes")
        data = event.message["extra"]["interactiveData"]["data"]
        assert data["quick-reply"] == {"selectedIdentifier": "helpful-yes", "selectedIndex": 0}
        again = await sim.post(
            "/apple/_sandbox/inbound", {"businessId": "biz-sim", "userId": recipient, "text": "No"}
        )
        assert again.json()["type"] == "text"
        await inbound(sim, lambda e: e.message.get("message") == "No")

    async def test_a_pick_is_for_the_user_who_was_sent_the_picker(self, sim: Sim):
        ctx = await registered(sim)
        first, second = await user(ctx, READ), await user(ctx, "85512345671")
        assert isinstance(await send(ctx, first, PICKER), SendOk)
        answer = await sim.post(
            "/apple/_sandbox/inbound", {"businessId": "biz-sim", "userId": second, "text": "Airport"}
        )
        assert answer.json()["type"] == "text"
