"""The business's receiver is down, flaps (503, timeouts), then recovers: every event arrives at least once,
in status order per message, with a stable `webhook-id`."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import SANDBOX_WEBHOOKS, System, wait_until

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


async def test_a_flapping_receiver_that_refuses_and_hangs_still_gets_every_event_in_order(
    api: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    """The receiver answers 503, or holds requests past the deliverer's timeout, or accepts, in turn."""
    channel = await viber_channel()
    receiver = system.receiver
    pattern = ["503", "hang", "ok", "503", "ok", "hang", "503", "503", "ok", "hang", "ok"]
    receiver.script = pattern * 3
    messages: dict[str, int] = {}
    for digit in range(10):
        response = await api.post(
            f"/api/v1/channel/{channel['publicId']}/broadcast",
            json={"phone": f"8551234560{digit}", "message": {"type": "text", "message": "flapping"}},
            headers=company.headers,
        )
        assert response.status_code == 200, response.text
        messages[response.json()["messageId"]] = digit

    def acknowledged(message_id: str) -> set[int]:
        return {d.body["status"] for d in receiver.of_message(message_id)}

    def all_arrived() -> bool:
        return all(acknowledged(m) >= set(SANDBOX_WEBHOOKS[d]) for m, d in messages.items())

    await wait_until(all_arrived, timeout=90, interval=0.2, what="every event despite the flapping")
    assert not receiver.script, "the receiver's faults were not all met"
    attempts = [a for a in receiver.attempts if a.message_id in messages]
    assert {a.outcome for a in attempts} == {"ok", "refused", "hung"}
    for message_id, digit in messages.items():
        mine = [a for a in attempts if a.message_id == message_id]
        deliveries = receiver.of_message(message_id)
        assert all(d.signature_ok for d in deliveries)
        # One webhook-id per event, the same on every attempt, whatever the answer was.
        ids_by_status: dict[int, set[str]] = {}
        for attempt in mine:
            ids_by_status.setdefault(attempt.status or 0, set()).add(attempt.webhook_id)
        assert sorted(ids_by_status) == SANDBOX_WEBHOOKS[digit]
        assert all(len(ids) == 1 for ids in ids_by_status.values()), ids_by_status
        assert len({next(iter(ids)) for ids in ids_by_status.values()}) == len(ids_by_status)
        # Strictly in status order: no attempt of an event before the previous one was acknowledged.
        for attempt in mine:
            for earlier in SANDBOX_WEBHOOKS[digit]:
                if earlier >= (attempt.status or 0):
                    break
                acked = [d.answered_at for d in deliveries if d.body["status"] == earlier]
                assert acked and min(acked) <= attempt.arrived_at, (digit, attempt, earlier)
