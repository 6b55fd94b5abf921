"""Each sandbox outcome gives exactly the documented webhook sequence and status history (README table)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import System, wait_until

pytestmark = pytest.mark.e2e

EXPECTED = {
    **{digit: [2, 4, 5] for digit in range(7)},
    7: [2, 4],
    8: [3],
    9: [2, 4, 5],
}
CAUSES = {1: "PENDING", 2: "SEND", 3: "FAIL", 4: "DELIVERED", 5: "READ"}
STATUS_BODY_KEYS = {
    "messageId",
    "cause",
    "clientMessageId",
    "timestamp",
    "type",
    "status",
    "publicId",
    "applicationId",
}


async def _settled(system: System, message_ids: dict[int, str]) -> None:
    def done() -> bool:
        return all(len(system.receiver.of_message(mid)) >= len(EXPECTED[d]) for d, mid in message_ids.items())

    await wait_until(done, timeout=30, what="all webhooks")
    await asyncio.sleep(0.5)  # anything beyond the documented sequence would arrive now


def _check_webhooks(system: System, channel: dict, digit: int, message_id: str, client_id: str) -> None:
    deliveries = system.receiver.of_message(message_id)
    assert [d.body["status"] for d in deliveries] == EXPECTED[digit], (digit, [d.body for d in deliveries])
    assert len({d.webhook_id for d in deliveries}) == len(deliveries)
    for delivery in deliveries:
        assert delivery.signature_ok
        assert set(delivery.body) == STATUS_BODY_KEYS
        assert delivery.body["cause"] == CAUSES[delivery.body["status"]]
        assert delivery.body["clientMessageId"] == client_id
        assert delivery.body["publicId"] == channel["publicId"]
        assert delivery.body["applicationId"] == channel["applicationId"]
        assert delivery.body["type"] == 1
    timestamps = [d.body["timestamp"] for d in deliveries]
    assert timestamps == sorted(timestamps)


async def _check_history(api: httpx.AsyncClient, company: Tenant, digit: int, message_id: str) -> None:
    status = (await api.get(f"/api/v1/message/{message_id}/status", headers=company.headers)).json()
    assert [h["status"] for h in status["history"]] == [1, *EXPECTED[digit]]
    assert status["status"] == EXPECTED[digit][-1]
    if digit == 8:
        assert status["error"]["code"] == "VIBER_9"
    else:
        assert status.get("error") is None


class TestViberBusinessMessages:
    async def test_every_last_digit_gives_its_documented_sequence(
        self, api: httpx.AsyncClient, system: System, company: Tenant, viber_channel
    ):
        channel = await viber_channel()
        sent: dict[int, tuple[str, str]] = {}
        for digit in range(10):
            response = await api.post(
                f"/api/v1/channel/{channel['publicId']}/broadcast",
                json={
                    "phone": f"+855 12 345 67{digit}",
                    "message": {"type": "text", "message": f"Code {digit}"},
                },
                headers=company.headers,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["status"], body["cause"], body["phone"]) == (1, "PENDING", f"8551234567{digit}")
            sent[digit] = (body["messageId"], body["clientMessageId"])
        await _settled(system, {d: m for d, (m, _) in sent.items()})
        for digit, (message_id, client_id) in sent.items():
            _check_webhooks(system, channel, digit, message_id, client_id)
            await _check_history(api, company, digit, message_id)


class TestViberBot:
    async def test_every_last_digit_gives_its_documented_sequence(
        self, api: httpx.AsyncClient, system: System, company: Tenant, bot_channel
    ):
        channel = await bot_channel()
        account = channel["publicId"]
        conversations = {}
        for digit in range(10):
            phone = f"8551234567{digit}"
            written = await api.post(
                f"/sandbox/viber-bot/{account}/inbound",
                json={"name": f"User {digit}", "text": "hi", "phone": phone},
                headers=company.headers,
            )
            assert written.status_code == 200, written.text

        def inbound_seen() -> bool:
            inbound = [
                d
                for d in system.receiver.deliveries
                if d.body.get("type") == 2 and d.body["publicId"] == account
            ]
            for delivery in inbound:
                if delivery.body["contact"]["phone"]:  # the text may overtake the shared contact
                    conversations[delivery.body["contact"]["phone"]] = delivery.body["from"]
            return len(conversations) == 10

        await wait_until(inbound_seen, timeout=20, what="inbound webhooks")
        sent: dict[int, tuple[str, str]] = {}
        for digit in range(10):
            response = await api.post(
                f"/api/v1/channel/{account}/broadcast",
                json={
                    "phone": f"8551234567{digit}",
                    "message": {"type": "text", "message": "Same text for all"},
                },
                headers=company.headers,
            )
            assert response.status_code == 200, response.text
            sent[digit] = (response.json()["messageId"], response.json()["clientMessageId"])
        await _settled(system, {d: m for d, (m, _) in sent.items()})
        for digit, (message_id, client_id) in sent.items():
            _check_webhooks(system, channel, digit, message_id, client_id)
            status = (await api.get(f"/api/v1/message/{message_id}/status", headers=company.headers)).json()
            assert [h["status"] for h in status["history"]] == [1, *EXPECTED[digit]]
