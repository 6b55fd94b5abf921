"""The business's receiver is down, then up: every event arrives, in status order, with stable ids."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import System, wait_until

pytestmark = pytest.mark.e2e


async def test_events_queued_while_the_receiver_is_down_arrive_in_order_after_it_returns(
    api: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    channel = await viber_channel()
    receiver = system.receiver
    await receiver.stop()
    try:
        messages = []
        for digit in (1, 2, 3, 7):
            response = await api.post(
                f"/api/v1/channel/{channel['publicId']}/broadcast",
                json={"phone": f"8551234567{digit}", "message": {"type": "text", "message": "outage"}},
                headers=company.headers,
            )
            messages.append((digit, response.json()["messageId"]))

        async def all_sent_and_read() -> bool:
            for digit, message_id in messages:
                status = (
                    await api.get(f"/api/v1/message/{message_id}/status", headers=company.headers)
                ).json()
                if status["status"] != (4 if digit == 7 else 5):
                    return False
            return True

        await wait_until(all_sent_and_read, timeout=30, what="statuses while the receiver is down")
        await asyncio.sleep(0.5)  # a few delivery attempts fail against the closed port
    finally:
        await receiver.start()
    receiver.fail_next = 3  # and it is flaky when it comes back
    refused_before = len(receiver.refused_ids)

    def all_arrived() -> bool:
        return all(len(receiver.of_message(m)) >= (2 if d == 7 else 3) for d, m in messages)

    await wait_until(all_arrived, timeout=30, what="webhooks after the outage")
    for digit, message_id in messages:
        deliveries = receiver.of_message(message_id)
        assert [d.body["status"] for d in deliveries] == ([2, 4] if digit == 7 else [2, 4, 5])
        assert all(d.signature_ok for d in deliveries)
        assert len({d.webhook_id for d in deliveries}) == len(deliveries)
    # The deliveries refused after the outage came back later with the same webhook-id.
    refused = set(receiver.refused_ids[refused_before:])
    assert refused
    assert refused <= {d.webhook_id for d in receiver.deliveries}


async def test_a_retried_webhook_keeps_its_webhook_id(
    api: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    channel = await viber_channel()
    account = channel["publicId"]
    response = await api.post(
        f"/api/v1/channel/{account}/broadcast",
        json={"phone": "85512345677", "message": {"type": "text", "message": "retry"}},
        headers=company.headers,
    )
    message_id = response.json()["messageId"]
    await wait_until(lambda: len(system.receiver.of_message(message_id)) >= 2, timeout=20, what="webhooks")
    listing = await api.get(f"/api/v1/channel/{account}/webhook/deliveries", headers=company.headers)
    assert listing.status_code == 200, listing.text
    delivered_ids = {d.webhook_id for d in system.receiver.of_message(message_id)}
    first = next(iter(sorted(delivered_ids)))
    replay = await api.post(
        f"/api/v1/channel/{account}/webhook/deliveries/{first}/replay", headers=company.headers
    )
    assert replay.status_code == 200, replay.text
    await wait_until(
        lambda: sum(1 for d in system.receiver.deliveries if d.webhook_id == first) == 2,
        timeout=20,
        what="replay",
    )
    copies = [d for d in system.receiver.deliveries if d.webhook_id == first]
    assert copies[0].raw == copies[1].raw
