"""The RBM provider against its simulator over real HTTP: the sandbox's rules, RBM's checks, signed webhooks."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import orjson
import pytest
from tests.providers.viber_harness import Received, Sim, StartSim

from openmmp.providers.base import (
    CallbackEvent,
    CallbackRequest,
    InboundEvent,
    Outgoing,
    ProviderContext,
    ProviderError,
    SandboxUser,
    SendOk,
    StatusEvent,
)
from openmmp.providers.rbm import auth
from openmmp.providers.rbm.callbacks import envelope_data
from openmmp.providers.rbm.client import message_id
from openmmp.providers.rbm.credentials import parse_service_account
from openmmp.providers.rbm.provider import RbmProvider
from openmmp.providers.rbm.sandbox import SANDBOX_SERVICE_ACCOUNT_JSON

PROVIDER = RbmProvider()
ACCOUNT = "0190f5c2-7a3e-7d4b-8c1a-5e6f7a8b9c0d"
IMAGE = "https://cdn.bank.example/card.png"
HELLO = {"type": "text", "message": "Your code is 4711"}
_keys = itertools.count(1)


def credentials(agent: str = "bank_agent") -> dict[str, Any]:
    return {"agentId": agent, "serviceAccountJson": SANDBOX_SERVICE_ACCOUNT_JSON}


def context(sim: Sim) -> ProviderContext:
    return ProviderContext(sim.http, f"{sim.base_url}/rbm", "http://127.0.0.1:9", sandbox=True)


async def set_up(sim: Sim, agent: str = "bank_agent") -> None:
    await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials=credentials(agent))


async def send(
    sim: Sim,
    phone: str,
    content: dict[str, Any] | None = None,
    *,
    key: int | None = None,
    agent: str = "bank_agent",
) -> Any:
    key = next(_keys) if key is None else key
    message = Outgoing(key, phone, content or HELLO, account_id=ACCOUNT)
    [unit] = PROVIDER.plan(context(sim), credentials(agent), [message])
    return (await unit.call())[key]


def events(sim: Sim, items: list[Received] | None = None) -> list[CallbackEvent]:
    """Every webhook received, each verified as the platform verifies it, parsed."""
    found: list[CallbackEvent] = []
    for item in sim.inbox.received if items is None else items:
        request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
        assert PROVIDER.verify(context(sim), request, credentials()), item.body
        found += PROVIDER.parse(item.body)
    return found


def reports(sim: Sim, token: str) -> list[str]:
    return [e.status for e in events(sim) if isinstance(e, StatusEvent) and e.provider_message_id == token]


async def wait_reports(sim: Sim, token: str, *wanted: str) -> list[str]:
    await sim.inbox.wait_for(lambda _: set(wanted) <= set(reports(sim, token)))
    return reports(sim, token)


class TestSandboxOutcomesByPhoneDigit:
    @pytest.mark.parametrize("digit", [0, 3, 6])
    async def test_digits_0_to_6_are_delivered_then_read(self, sim: Sim, digit: int):
        await set_up(sim)
        sent = await send(sim, f"8551234567{digit}")
        assert isinstance(sent, SendOk)
        assert await wait_reports(sim, sent.provider_message_id, "DELIVERED", "READ") == ["DELIVERED", "READ"]

    async def test_digit_7_is_delivered_and_never_read(self, sim: Sim):
        await set_up(sim)
        never = await send(sim, "85512345677")
        marker = await send(sim, "85512345670")
        assert isinstance(never, SendOk) and isinstance(marker, SendOk)
        await wait_reports(sim, marker.provider_message_id, "READ")
        await asyncio.sleep(0.05)
        assert reports(sim, never.provider_message_id) == ["DELIVERED"]

    async def test_digit_8_is_not_reachable_over_rcs_a_final_404(self, sim: Sim):
        outcome = await send(sim, "85512345678")
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("RBM_404", False)
        assert outcome.message == (
            "NOT_FOUND: the phone number is not reachable over RCS (no RCS, RCS turned off, or the agent is "
            "not launched on its carrier)"
        )

    async def test_digit_9_is_unavailable_twice_then_goes_through(self, sim: Sim):
        outcomes = [await send(sim, "85512345679", key=4711) for _ in range(3)]
        assert [(o.code, o.retryable) for o in outcomes[:2]] == [("RBM_503", True)] * 2
        assert outcomes[2] == SendOk(message_id(ACCOUNT, 4711))


class TestIdempotency:
    async def test_a_repeated_send_is_accepted_once_and_reported_once(self, sim: Sim):
        await set_up(sim)
        first = await send(sim, "85512345670", key=99)
        again = await send(sim, "85512345670", key=99)
        assert first == again == SendOk(message_id(ACCOUNT, 99))
        await wait_reports(sim, first.provider_message_id, "READ")
        await asyncio.sleep(0.05)
        stats = await sim.stats("rbm", detail=True)
        assert (stats["accepted"], stats["duplicates"]) == (1, 1)
        assert reports(sim, first.provider_message_id) == ["DELIVERED", "READ"]

    async def test_the_same_message_id_on_another_agent_is_another_message(self, sim: Sim):
        assert isinstance(await send(sim, "85512345670", key=7, agent="agent_a"), SendOk)
        assert isinstance(await send(sim, "85512345670", key=7, agent="agent_b"), SendOk)
        assert (await sim.stats("rbm"))["duplicates"] == 0


class TestLimitsAndFaults:
    async def test_beyond_the_agents_rate_rbm_answers_429_with_retry_after(self, start_sim: StartSim):
        sim = await start_sim(options={"rbm": {"requests_per_minute": 2}})
        assert isinstance(await send(sim, "85512345670"), SendOk)
        assert isinstance(await send(sim, "85512345671"), SendOk)
        limited = await send(sim, "85512345672")
        assert isinstance(limited, ProviderError)
        assert (limited.code, limited.rate_limited, limited.retryable, limited.retry_after) == (
            "RBM_429",
            True,
            True,
            1.0,
        )
        assert isinstance(await send(sim, "85512345672", agent="another_agent"), SendOk)

    @pytest.mark.parametrize(("status", "code"), [(403, "RBM_403"), (400, "RBM_400")])
    async def test_a_final_error_fault_is_final(self, sim: Sim, status: int, code: str):
        await sim.fault("rbm", kind="final_error", status=status)
        outcome = await send(sim, "85512345670")
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == (code, False)
        assert outcome.message

    async def test_a_request_without_a_live_token_is_unauthenticated(self, sim: Sim):
        answer = await sim.post(
            "/rbm/v1/phones/+85512345670/agentMessages?messageId=m1&agentId=a",
            {"contentMessage": {"text": "hi"}},
            headers={"authorization": "Bearer made-up"},
        )
        assert answer.status_code == 401
        assert answer.json()["error"]["status"] == "UNAUTHENTICATED"

    async def test_an_assertion_that_is_not_a_jwt_gets_no_token(self, sim: Sim):
        answer = await sim.http.post(
            f"{sim.base_url}/rbm/token",
            content=b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_grant"


class TestRbmsChecks:
    async def _token(self, sim: Sim) -> str:
        account = parse_service_account(SANDBOX_SERVICE_ACCOUNT_JSON)
        token = await auth.fetch_token(sim.http, account, f"{sim.base_url}/rbm/token")
        return token.value

    @pytest.mark.parametrize(
        ("body", "complaint"),
        [
            ({"contentMessage": {"text": "x" * 3073}}, "contentMessage.text is longer than 3072"),
            ({"contentMessage": {"text": "a", "richCard": {}}}, "exactly one of"),
            (
                {
                    "contentMessage": {
                        "text": "a",
                        "suggestions": [{"reply": {"text": "x" * 26, "postbackData": "p"}}],
                    }
                },
                "contentMessage.suggestions[0].text is longer than 25",
            ),
            (
                {
                    "contentMessage": {
                        "richCard": {
                            "carouselCard": {"cardWidth": "MEDIUM", "cardContents": [{"title": "a"}]}
                        }
                    }
                },
                "2 to 10 cards",
            ),
            ({"contentMessage": {"text": "a"}, "ttl": "an hour"}, "ttl must be a duration"),
        ],
    )
    async def test_what_rbm_refuses_is_a_400_invalid_argument(
        self, sim: Sim, body: dict[str, Any], complaint: str
    ):
        answer = await sim.post(
            "/rbm/v1/phones/+85512345670/agentMessages?messageId=m1&agentId=a",
            body,
            headers={"authorization": f"Bearer {await self._token(sim)}"},
        )
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert complaint in error["message"]

    @pytest.mark.parametrize(
        "content",
        [
            {"type": "picture", "fileUrl": IMAGE, "thumbnailUrl": IMAGE},
            {"type": "video", "fileUrl": IMAGE},
            {"type": "file", "fileUrl": IMAGE, "fileName": "terms.pdf"},
            {
                "type": "rich_card",
                "richCards": [{"title": "New card", "image": IMAGE}],
                "rcsRichCardsOpts": {
                    "type": "STANDALONE",
                    "orientation": "HORIZONTAL",
                    "imageAlign": "RIGHT",
                },
            },
            {
                "type": "rich_card",
                "richCards": [
                    {
                        "title": f"Card {n}",
                        "description": "d",
                        "image": IMAGE,
                        "suggestions": [{"action": "reply", "text": "Pick"}],
                    }
                    for n in range(3)
                ],
                "suggestions": [
                    {"action": "open-url", "text": "Open", "postbackData": "https://bank.example"},
                    {"action": "dial", "text": "Call", "postbackData": "+85523430999"},
                    {"action": "VIEW_LOCATION", "text": "Branch", "postbackData": "11.55,104.92"},
                    {"action": "VIEW_LOCATION", "text": "Find", "postbackData": "ACME Bank"},
                    {"action": "SHARE_LOCATION", "text": "Share"},
                    {
                        "action": "CalendarEventAction",
                        "text": "Remind me",
                        "postbackData": json.dumps(
                            {"startTime": "2026-03-01T09:00:00Z", "endTime": "2026-03-01T10:00:00Z"}
                        ),
                    },
                ],
            },
        ],
        ids=["picture", "video", "file", "horizontal-card", "carousel-with-every-action"],
    )
    async def test_every_message_the_platform_accepts_rbm_accepts(self, sim: Sim, content: dict[str, Any]):
        PROVIDER.check_message(content, credentials())
        assert isinstance(await send(sim, "85512345670", content), SendOk)

    async def test_an_expiry_goes_as_a_ttl(self, sim: Sim):
        key = next(_keys)
        message = Outgoing(key, "85512345671", HELLO, expire_at_ms=2**41, account_id=ACCOUNT)
        [unit] = PROVIDER.plan(context(sim), credentials(), [message])
        assert isinstance((await unit.call())[key], SendOk)


class TestWebhooks:
    async def test_reports_of_an_agent_not_yet_registered_wait_for_its_set_up(self, sim: Sim):
        sent = await send(sim, "85512345670", agent="late_agent")
        assert isinstance(sent, SendOk)
        await asyncio.sleep(0.1)
        assert sim.inbox.received == []
        await set_up(sim, "late_agent")
        await sim.inbox.wait_for(lambda received: len(received) >= 2)
        statuses = [PROVIDER.parse(item.body)[0] for item in sim.inbox.received]
        assert [(s.status, s.provider_message_id) for s in statuses if isinstance(s, StatusEvent)] == [
            ("DELIVERED", sent.provider_message_id),
            ("READ", sent.provider_message_id),
        ]

    async def test_each_push_carries_the_signed_event_in_its_data(self, sim: Sim):
        await set_up(sim)
        sent = await send(sim, "85512345670")
        await wait_reports(sim, sent.provider_message_id, "DELIVERED")
        item = sim.inbox.received[0]
        envelope = item.json()
        assert set(envelope) == {"message", "subscription"}
        data = orjson.loads(envelope_data(item.body) or b"{}")
        assert data["agentId"] == "bank_agent"
        assert data["senderPhoneNumber"] == "+85512345670"
        assert (data["eventType"], data["messageId"]) == ("DELIVERED", sent.provider_message_id)


class TestEndUsers:
    async def test_a_user_writes_from_their_phone(self, sim: Sim):
        await set_up(sim)
        written = await PROVIDER.sandbox_inbound(
            context(sim),
            credentials(),
            SandboxUser(name="Sokha", text="Is my card ready?", phone="+85512345671"),
        )
        assert written.user_id == "85512345671"
        await sim.inbox.wait_for(lambda received: len(received) >= 1)
        [inbound] = events(sim)
        assert isinstance(inbound, InboundEvent)
        assert inbound.contact.id == written.user_id
        assert inbound.message["message"] == "Is my card ready?"
        assert inbound.dedupe_key == f"message:{written.message_token}"

    async def test_a_tapped_suggestion_and_a_shared_location(self, sim: Sim):
        await set_up(sim)
        for body in (
            {"text": "Activate", "postbackData": "activate-4711"},
            {"location": {"latitude": 11.55, "longitude": 104.92}},
        ):
            answer = await sim.post(
                "/rbm/_sandbox/inbound", {"agentId": "bank_agent", "phone": "85512345671", **body}
            )
            assert answer.status_code == 200, answer.content
        await sim.inbox.wait_for(lambda received: len(received) >= 2)
        found = {e.message["type"]: e.message for e in events(sim) if isinstance(e, InboundEvent)}
        assert found["text"]["message"] == "Activate"
        assert found["text"]["extra"]["suggestionResponse"]["postbackData"] == "activate-4711"
        assert found["location"]["location"] == {"latitude": 11.55, "longitude": 104.92}

    async def test_before_the_set_up_the_user_is_told_to_retry(self, sim: Sim):
        with pytest.raises(ProviderError, match="not registered") as caught:
            await PROVIDER.sandbox_inbound(
                context(sim), credentials("unknown_agent"), SandboxUser("S", "hi", "85512345671")
            )
        assert caught.value.retryable

    async def test_a_user_without_a_phone_is_refused(self, sim: Sim):
        with pytest.raises(ValueError, match="phone: required"):
            await PROVIDER.sandbox_inbound(context(sim), credentials(), SandboxUser(name="S", text="hi"))
