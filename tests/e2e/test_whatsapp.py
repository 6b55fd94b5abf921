"""WhatsApp end to end: the platform sends to the sandbox's Cloud API simulator, whose webhooks come back
signed with the channel's app secret; an end user writes in (a `type: 2` webhook), replies by
conversation and by phone, reply buttons and a template reach READ, and a refusal fails with its cause."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import ChannelFactory
from tests.e2e.harness import (
    READ_OR_FAIL,
    System,
    all_final,
    final_status,
    send_one,
    signed_webhooks,
    wait_until,
)

from openmmp.providers.whatsapp.callbacks import callback_verify_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BUTTONS = {
    "type": "FB_WHATSAPP_INTERACTIVE",
    "whatsappInteractive": {
        "type": "button",
        "header": {"type": "text", "text": "Card delivery"},
        "body": {"text": "Hello {{name}}, is tomorrow 10:00 fine?"},
        "footer": {"text": "Bank"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "slot-ok", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "slot-other", "title": "Another time"}},
            ]
        },
    },
}
TEMPLATE = {
    "type": "fb_whatsapp_template",
    "whatsappTemplateParam": {"templateId": "card_ready", "language": "en_US", "body": ["{{name}}", "4711"]},
}


def whatsapp_credentials() -> dict[str, Any]:
    """A phone number of its own: the simulator sends each number's webhooks to its channel."""
    number = str(random.randrange(10**14, 10**15))
    return {
        "phoneNumberId": number,
        "wabaId": f"9{number}",
        "accessToken": f"EAAJe2e{random.randrange(10**9)}",
        "appSecret": f"e2e-app-secret-{random.randrange(10**9)}",
    }


async def reaches_read(api: httpx.AsyncClient, system: System, company: Tenant, message_id: str) -> None:
    status = await final_status(api, company, message_id, READ_OR_FAIL)
    assert (status["status"], status["cause"]) == (5, "READ"), status
    assert [h["status"] for h in status["history"]] == [1, 2, 4, 5]
    assert sorted(await signed_webhooks(system, message_id, 3)) == [2, 4, 5]


async def inbound_webhook(system: System, account: str, text: str) -> dict[str, Any]:
    def arrived() -> dict[str, Any] | None:
        for delivery in system.receiver.deliveries:
            body = delivery.body
            if (
                body.get("type") == 2
                and body.get("publicId") == account
                and body["message"]["message"] == text
            ):
                assert delivery.signature_ok
                return body
        return None

    found: dict[str, Any] = await wait_until(arrived, timeout=30, what="the type 2 webhook")
    return found


async def sent_request(system: System, token: str) -> dict[str, Any]:
    """What the Cloud API simulator got for the message with wamid `token`."""
    async with httpx.AsyncClient(base_url=system.api, timeout=10) as sim:
        answer = await sim.get(f"/sim/whatsapp/_sandbox/messages/{token}")
    assert answer.status_code == 200, answer.text
    request: dict[str, Any] = answer.json()["request"]
    return request


async def provider_token(system: System, message_id: str) -> str:
    [[token]] = await system.sql(
        "SELECT provider_message_id FROM messages WHERE public_id = :m", m=message_id
    )
    return str(token)


async def test_an_end_user_writes_in_and_replies_by_conversation_by_phone_and_with_buttons_are_read(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    channel = await launched_channel(11, whatsapp_credentials())
    account = channel["publicId"]
    wrote = await api.post(
        f"/sandbox/{account}/inbound",
        json={"name": "Sokha", "text": "Is my card ready? ស្រី", "phone": "+855 12 345 670"},
        headers=company.headers,
    )
    assert wrote.status_code == 200, wrote.text
    assert wrote.json()["userId"] == "85512345670"
    webhook = await inbound_webhook(system, account, "Is my card ready? ស្រី")
    assert (webhook["contact"]["name"], webhook["contact"]["phone"]) == ("Sokha", "85512345670")
    assert webhook["message"]["type"] == "text"
    assert webhook["message"]["extra"]["from"] == "85512345670"

    reply = await send_one(
        api,
        company,
        account,
        {"to": webhook["from"], "message": {"type": "text", "message": "Yes"}},
        "conversation",
    )
    by_phone = await send_one(
        api,
        company,
        account,
        {"phone": "85512345670", "message": {"type": "text", "message": "Pick it up at the branch"}},
        "broadcast",
    )
    buttons = await send_one(
        api,
        company,
        account,
        {"phone": "85512345670", "message": BUTTONS, "params": {"name": "Sokha"}},
        "broadcast",
    )
    for message_id in (reply, by_phone, buttons):
        await reaches_read(api, system, company, message_id)

    request = await sent_request(system, await provider_token(system, buttons))
    assert request["to"] == "85512345670"
    assert request["type"] == "interactive"
    interactive = request["interactive"]
    assert interactive["body"] == {"text": "Hello Sokha, is tomorrow 10:00 fine?"}
    assert [b["reply"]["title"] for b in interactive["action"]["buttons"]] == ["Yes", "Another time"]


async def test_a_template_reaches_anybody_while_free_form_waits_for_the_user(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    channel = await launched_channel(11, whatsapp_credentials())
    account = channel["publicId"]
    template = await send_one(
        api,
        company,
        account,
        {"phone": "85512345672", "message": TEMPLATE, "params": {"name": "Dara"}},
        "broadcast",
    )
    await reaches_read(api, system, company, template)
    request = await sent_request(system, await provider_token(system, template))
    assert request["template"] == {
        "name": "card_ready",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Dara"}, {"type": "text", "text": "4711"}],
            }
        ],
    }

    refused = await api.post(
        f"/api/v1/channel/{account}/broadcast",
        json={"phone": "85512345673", "message": {"type": "text", "message": "Hello"}},
        headers=company.headers,
    )
    assert refused.status_code == 400, refused.text
    [error] = refused.json()["errors"]
    assert error["name"] == "message.type"
    assert "24-hour" in error["message"]


async def test_an_undeliverable_number_fails_with_the_cause(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    channel = await launched_channel(11, whatsapp_credentials())
    message_id = await send_one(
        api,
        company,
        channel["publicId"],
        {"phone": "85512345678", "message": TEMPLATE, "params": {"name": "Dara"}},
        "broadcast",
    )
    status = await final_status(api, company, message_id)
    assert (status["status"], status["cause"]) == (3, "FAIL")
    assert status["error"] == {
        "code": "WHATSAPP_131026",
        "message": "(#131026) Message undeliverable: the recipient is not a WhatsApp user (sandbox)",
    }
    assert await signed_webhooks(system, message_id, 1) == [3]


async def test_metas_handshake_is_answered_and_a_forged_webhook_refused(
    api: httpx.AsyncClient, launched_channel: ChannelFactory
):
    credentials = whatsapp_credentials()
    channel = await launched_channel(11, credentials)
    url = f"/callbacks/whatsapp/{channel['publicId']}"
    token = callback_verify_token(credentials["appSecret"])
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    answered = await api.get(url, params=query)
    assert (answered.status_code, answered.text) == (200, "1158201444")
    assert (await api.get(url, params={**query, "hub.verify_token": "guess"})).status_code == 401
    forged = await api.post(
        url,
        content=b'{"object": "whatsapp_business_account", "entry": []}',
        headers={"content-type": "application/json", "x-hub-signature-256": "sha256=" + "0" * 64},
    )
    assert forged.status_code == 401


async def test_many_messages_to_one_user_wait_for_the_pair_rate_instead_of_being_refused(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    """Meta's pair rate (about 45 at once, then one per 6 s) is kept by dispatch: no 131056 comes back
    (about 50 s: the 8 beyond the channel's burst of 40 go 6 s apart)."""
    channel = await launched_channel(11, whatsapp_credentials())
    account = channel["publicId"]
    async with httpx.AsyncClient(base_url=system.api, timeout=10) as sim:
        refused_before = (await sim.get("/sim/whatsapp/_sandbox/stats")).json()["rateLimited"]
        ids = [
            await send_one(
                api,
                company,
                account,
                {"phone": "85512345674", "message": TEMPLATE, "params": {"name": f"n{n}"}},
            )
            for n in range(48)  # 3 more than the simulator's burst of 45: refused without the limit
        ]
        await all_final(system, account, len(ids))

        async def all_read() -> bool:  # DELIVERED is final too, and READ follows it a moment later
            return set((await system.statuses(account)).values()) == {5}

        await wait_until(all_read, timeout=60, what="every message READ")
        refused_after = (await sim.get("/sim/whatsapp/_sandbox/stats")).json()["rateLimited"]
    assert refused_after == refused_before


async def test_a_company_onboards_its_number_through_embedded_signup_and_talks_on_it(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    """Generate token → the simulator's sign-up page → its redirect to our callback: the channel is made
    for the company, its set-up launches it, and an end user's message and the reply go through it. The
    redirect carries the code alone (as Meta's often does), so the platform looks the ids up."""
    issued = await api.post(
        "/api/v1/channel/onboard/token",
        json={"applicationId": 11, "name": "Onboarded number", "webhookUrl": system.receiver.url},
        headers=company.headers,
    )
    assert issued.status_code == 200, issued.text
    async with httpx.AsyncClient(follow_redirects=True, timeout=30) as browser:
        landed = await browser.get(issued.json()["url"] + "&sandbox_omit_ids=1")
    assert [r.status_code for r in landed.history] == [302]
    assert (landed.status_code, landed.url.path) == (201, "/onboard/whatsapp/callback"), landed.text
    channel = landed.json()
    account = channel["publicId"]
    assert (channel["applicationId"], channel["name"]) == (11, "Onboarded number")
    system.receiver.secrets[account] = channel["webhookSecret"]

    async def launched() -> bool:
        status = await api.get(f"/api/v1/channel/{account}/status", headers=company.headers)
        return bool(status.json()["status"] == 3)

    await wait_until(launched, timeout=90, what="the onboarded channel's launch")
    listed = await api.get("/api/v1/channel", params={"applicationId": 11}, headers=company.headers)
    assert account in [c["publicId"] for c in listed.json()["items"]]

    wrote = await api.post(
        f"/sandbox/{account}/inbound",
        json={"name": "Dara", "text": "Hello, new number", "phone": "+855 12 345 660"},
        headers=company.headers,
    )
    assert wrote.status_code == 200, wrote.text
    webhook = await inbound_webhook(system, account, "Hello, new number")
    reply = await send_one(
        api,
        company,
        account,
        {"to": webhook["from"], "message": {"type": "text", "message": "Welcome!"}},
        "conversation",
    )
    await reaches_read(api, system, company, reply)

    again = await api.get(str(landed.url))
    assert again.status_code == 409, again.text
