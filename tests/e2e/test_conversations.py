"""An end user writes to the bot → `type: 2` webhook → the business replies with `to` = `from`."""

from __future__ import annotations

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import System, wait_until

from openmmp.providers.simulation import last_digit

pytestmark = pytest.mark.e2e
INBOUND_KEYS = {
    "from",
    "contact",
    "messageId",
    "message",
    "timestamp",
    "type",
    "channelId",
    "publicId",
    "applicationId",
}


class TestConversation:
    async def test_inbound_message_becomes_a_webhook_and_the_reply_reaches_the_simulator(
        self, api: httpx.AsyncClient, sim: httpx.AsyncClient, system: System, company: Tenant, bot_channel
    ):
        channel = await bot_channel()
        account = channel["publicId"]
        written = await api.post(
            f"/sandbox/viber-bot/{account}/inbound",
            json={"name": "Hà Phước Hòa", "text": "hoha 👋 សួស្តី"},
            headers=company.headers,
        )
        assert written.status_code == 200, written.text
        # The simulator decides a reply's fate by the last digit of the user's (random) id: 8 refuses it.
        refused = last_digit(written.json()["userId"]) == 8

        def inbound() -> list:
            return [
                d
                for d in system.receiver.deliveries
                if d.body.get("type") == 2 and d.body["publicId"] == account
            ]

        [delivery] = await wait_until(inbound, timeout=20, what="inbound webhook")
        body = delivery.body
        assert delivery.signature_ok
        assert set(body) == INBOUND_KEYS
        assert body["applicationId"] == 10
        assert body["channelId"] == body["publicId"] == account
        assert body["contact"]["name"] == "Hà Phước Hòa"
        assert set(body["contact"]) == {"avatarUrl", "name", "language", "country", "address", "phone"}
        assert body["message"]["type"] == "text"
        assert body["message"]["message"] == "hoha 👋 សួស្តី"
        assert body["message"]["extra"]["text"] == "hoha 👋 សួស្តី"

        before = (await sim.get("/viber-bot/_sandbox/stats")).json()["accepted"]
        reply = await api.post(
            f"/api/v1/channel/{account}/conversation",
            json={
                "to": body["from"],
                "message": {"type": "text", "message": "Hello {{name}}"},
                "params": {"name": "Hòa"},
            },
            headers=company.headers,
        )
        assert reply.status_code == 200, reply.text
        message_id = reply.json()["messageId"]
        await wait_until(lambda: len(system.receiver.of_message(message_id)) >= 1, what="first webhook")
        assert system.receiver.of_message(message_id)[0].body["status"] == (3 if refused else 2)
        accepted = (await sim.get("/viber-bot/_sandbox/stats")).json()["accepted"]
        assert accepted == before + (0 if refused else 1)

    async def test_the_same_user_keeps_one_conversation_id(
        self, api: httpx.AsyncClient, system: System, company: Tenant, bot_channel
    ):
        channel = await bot_channel()
        account = channel["publicId"]
        for text in ("first", "second"):
            response = await api.post(
                f"/sandbox/viber-bot/{account}/inbound",
                json={"name": "Dara", "text": text, "userId": "dara"},
                headers=company.headers,
            )
            assert response.status_code == 200

        def inbound() -> list:
            found = [
                d
                for d in system.receiver.deliveries
                if d.body.get("type") == 2 and d.body["publicId"] == account
            ]
            return found if len(found) == 2 else []

        first, second = await wait_until(inbound, timeout=20, what="two inbound webhooks")
        assert first.body["from"] == second.body["from"]
        assert [first.body["message"]["message"], second.body["message"]["message"]] == ["first", "second"]

    async def test_a_reply_to_an_unknown_conversation_is_400(
        self, api: httpx.AsyncClient, company: Tenant, bot_channel
    ):
        channel = await bot_channel()
        response = await api.post(
            f"/api/v1/channel/{channel['publicId']}/conversation",
            json={"to": "00000000-0000-4000-8000-000000000000", "message": {"type": "text", "message": "hi"}},
            headers=company.headers,
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "to"
