"""RCS end to end: the platform buys an access token with the channel's service account, sends rich cards
and carousels to the sandbox's RBM simulator, RBM's signed webhooks come back, and signed webhooks follow."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import ChannelFactory
from tests.e2e.harness import READ_OR_FAIL, System, final_status, send_one, signed_webhooks, wait_until

from openmmp.providers.rbm.callbacks import SANDBOX_CLIENT_TOKEN
from openmmp.providers.rbm.sandbox import SANDBOX_SERVICE_ACCOUNT_JSON

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

IMAGE = "https://cdn.bank.example/card.png"
NOT_RCS_CAPABLE = {
    "code": "RBM_404",
    "message": "NOT_FOUND: the phone number is not reachable over RCS (no RCS, RCS turned off, or the agent "
    "is not launched on its carrier)",
}


def rcs_credentials() -> dict[str, Any]:
    """An agent of its own (one channel per agent), acting through the sandbox's service account."""
    return {
        "agentId": f"e2e_{random.randrange(10**9)}_agent",
        "serviceAccountJson": SANDBOX_SERVICE_ACCOUNT_JSON,
    }


async def received_by_rbm(system: System, message_id: str) -> dict[str, Any]:
    """What the RBM simulator got for a message (by the messageId the platform recorded)."""
    [[token]] = await system.sql(
        "SELECT provider_message_id FROM messages WHERE public_id = :m", m=message_id
    )
    async with httpx.AsyncClient(base_url=system.api, timeout=10) as sim:
        answer = await sim.get(f"/sim/rbm/_sandbox/messages/{token}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_rich_card_with_suggestions_reaches_read(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    account = (await launched_channel(2, rcs_credentials()))["publicId"]
    card = {
        "title": "Your new card, {{name}}",
        "description": "Activate it in the app or talk to us.",
        "image": IMAGE,
        "suggestions": [{"action": "reply", "text": "Activate", "postbackData": "activate-{{card}}"}],
    }
    message = {
        "type": "rich_card",
        "richCards": [card],
        "rcsRichCardsOpts": {"type": "STANDALONE", "orientation": "HORIZONTAL", "imageAlign": "LEFT"},
        "suggestions": [
            {"action": "dial", "text": "Call us", "postbackData": "+85523430999"},
            {"action": "open-url", "text": "Terms", "postbackData": "https://bank.example/terms"},
        ],
    }
    message_id = await send_one(
        api,
        company,
        account,
        {"phone": "+855 12 345 670", "message": message, "params": {"name": "Dara", "card": "4711"}},
    )
    status = await final_status(api, company, message_id, READ_OR_FAIL)
    assert (status["status"], status["cause"]) == (5, "READ")
    assert [h["status"] for h in status["history"]] == [1, 2, 4, 5]
    assert sorted(await signed_webhooks(system, message_id, 3)) == [2, 4, 5]

    got = await received_by_rbm(system, message_id)
    assert got["phone"] == "+85512345670"
    assert got["agentMessage"]["messageTrafficType"] == "TRANSACTION"
    content = got["agentMessage"]["contentMessage"]
    standalone = content["richCard"]["standaloneCard"]
    assert standalone["cardContent"]["title"] == "Your new card, Dara"
    assert standalone["cardContent"]["suggestions"] == [
        {"reply": {"text": "Activate", "postbackData": "activate-4711"}}
    ]
    assert [list(s["action"])[-1] for s in content["suggestions"]] == ["dialAction", "openUrlAction"]


async def test_a_carousel_is_delivered_and_read_or_delivered_by_the_phones_digit(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    account = (await launched_channel(2, rcs_credentials()))["publicId"]
    carousel = {
        "type": "rich_card",
        "richCards": [
            {"title": f"Plan {n}", "image": IMAGE, "suggestions": [{"action": "reply", "text": f"Plan {n}"}]}
            for n in range(3)
        ],
        "suggestions": [{"action": "SHARE_LOCATION", "text": "Nearest branch"}],
    }
    read = await send_one(api, company, account, {"phone": "85512345674", "message": carousel})
    delivered = await send_one(api, company, account, {"phone": "85512345677", "message": carousel})
    assert (await final_status(api, company, read, READ_OR_FAIL))["status"] == 5
    assert sorted(await signed_webhooks(system, read, 3)) == [2, 4, 5]
    assert (await final_status(api, company, delivered))["status"] == 4
    assert sorted(await signed_webhooks(system, delivered, 2)) == [2, 4]
    cards = (await received_by_rbm(system, read))["agentMessage"]["contentMessage"]["richCard"][
        "carouselCard"
    ]
    assert [c["title"] for c in cards["cardContents"]] == ["Plan 0", "Plan 1", "Plan 2"]


async def test_a_phone_without_rcs_fails_with_the_cause(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    account = (await launched_channel(2, rcs_credentials()))["publicId"]
    refused = await send_one(
        api, company, account, {"phone": "85512345678", "message": {"type": "text", "message": "never"}}
    )
    status = await final_status(api, company, refused)
    assert (status["status"], status["cause"], status["error"]) == (3, "FAIL", NOT_RCS_CAPABLE)
    assert await signed_webhooks(system, refused, 1) == [3]


async def test_what_rbm_cannot_show_is_refused_when_sent(
    api: httpx.AsyncClient, company: Tenant, launched_channel: ChannelFactory
):
    account = (await launched_channel(2, rcs_credentials()))["publicId"]
    chips = [{"action": "reply", "text": "Yes please, tell me more now"}]
    response = await api.post(
        f"/api/v1/channel/{account}/broadcast",
        json={"phone": "85512345670", "message": {"type": "text", "message": "Hi", "suggestions": chips}},
        headers=company.headers,
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["name"] == "message.suggestions[0].text"


async def test_an_end_users_message_becomes_a_type_2_webhook(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    account = (await launched_channel(2, rcs_credentials()))["publicId"]
    written = await api.post(
        f"/sandbox/{account}/inbound",
        json={"name": "Sokha", "text": "Is my card ready? ស្រី", "phone": "+855 12 345 671"},
        headers=company.headers,
    )
    assert written.status_code == 200, written.text

    def inbound() -> list[Any]:
        return [
            d for d in system.receiver.deliveries if d.body.get("type") == 2 and d.body["publicId"] == account
        ]

    [delivery] = await wait_until(inbound, timeout=30, what="the inbound webhook")
    assert delivery.signature_ok
    assert delivery.body["applicationId"] == 2
    assert delivery.body["message"]["type"] == "text"
    assert delivery.body["message"]["message"] == "Is my card ready? ស្រី"
    assert delivery.body["message"]["extra"]["senderPhoneNumber"] == "+85512345671"
    assert delivery.body["contact"]["phone"] == "85512345671"


async def test_googles_webhook_check_is_answered_and_forgeries_are_refused(
    api: httpx.AsyncClient, launched_channel: ChannelFactory
):
    account = (await launched_channel(2, rcs_credentials()))["publicId"]
    check = await api.post(
        f"/callbacks/rbm/{account}", json={"clientToken": SANDBOX_CLIENT_TOKEN, "secret": "echo-8421"}
    )
    assert (check.status_code, check.text) == (200, "echo-8421")
    assert check.headers["content-type"].startswith("text/plain")
    wrong = await api.post(f"/callbacks/rbm/{account}", json={"clientToken": "guess", "secret": "echo-8421"})
    assert wrong.status_code == 401
    data = json.dumps({"agentId": "x", "eventType": "READ", "messageId": "m", "senderPhoneNumber": "+1"})
    forged = await api.post(
        f"/callbacks/rbm/{account}",
        content=orjson.dumps({"message": {"data": data.encode().hex(), "messageId": "1"}}),
        headers={"content-type": "application/json", "x-goog-signature": "Zm9yZ2Vk"},
    )
    assert forged.status_code == 401
