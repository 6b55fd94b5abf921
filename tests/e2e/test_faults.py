"""Upstream trouble: timeouts, 5xx, rate limiting and final errors end in the right retries and causes."""

from __future__ import annotations

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import System, wait_until

pytestmark = pytest.mark.e2e


async def _send(api: httpx.AsyncClient, company: Tenant, channel: dict, phone: str) -> str:
    response = await api.post(
        f"/api/v1/channel/{channel['publicId']}/broadcast",
        json={"phone": phone, "message": {"type": "text", "message": "fault test"}},
        headers=company.headers,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["messageId"])


async def _status(api: httpx.AsyncClient, company: Tenant, message_id: str) -> dict:
    return (await api.get(f"/api/v1/message/{message_id}/status", headers=company.headers)).json()


@pytest.mark.parametrize("kind", ["http_503", "timeout", "rate_limit"])
async def test_retryable_upstream_failures_are_retried_until_sent(
    kind: str, api: httpx.AsyncClient, sim: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    channel = await viber_channel()
    before = (await sim.get("/viber/_sandbox/stats")).json()
    await sim.post("/viber/_sandbox/faults", json={"kind": kind, "count": 2})
    message_id = await _send(api, company, channel, "85512345671")

    async def read() -> bool:
        return (await _status(api, company, message_id))["status"] == 5

    await wait_until(read, timeout=30, what=f"READ after {kind}")
    await wait_until(lambda: len(system.receiver.of_message(message_id)) >= 3, what="webhooks")
    after = (await sim.get("/viber/_sandbox/stats")).json()
    assert after["faultsInjected"] - before["faultsInjected"] == 2
    assert [d.body["status"] for d in system.receiver.of_message(message_id)] == [2, 4, 5]


async def test_a_final_upstream_error_fails_at_once_with_its_cause(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    channel = await viber_channel()
    await sim.post("/viber/_sandbox/faults", json={"kind": "final_error", "count": 1, "status": 8})
    message_id = await _send(api, company, channel, "85512345671")

    async def failed() -> dict | None:
        status = await _status(api, company, message_id)
        return status if status["status"] == 3 else None

    status = await wait_until(failed, timeout=20, what="FAIL")
    assert status["error"]["code"] == "VIBER_8"
    assert [h["status"] for h in status["history"]] == [1, 3]
    await wait_until(lambda: system.receiver.of_message(message_id), what="FAIL webhook")
    assert [d.body["cause"] for d in system.receiver.of_message(message_id)] == ["FAIL"]


async def test_an_outage_longer_than_the_expiry_fails_the_message_as_expired(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, system: System, company: Tenant, viber_channel
):
    channel = await viber_channel()
    await sim.post("/viber/_sandbox/faults", json={"kind": "http_503", "seconds": 4})
    response = await api.post(
        f"/api/v1/channel/{channel['publicId']}/broadcast",
        json={
            "phone": "85512345671",
            "message": {"type": "text", "message": "x"},
            "expire": {"type": "TTL", "ttl": 1},
        },
        headers=company.headers,
    )
    message_id = response.json()["messageId"]

    async def failed() -> dict | None:
        status = await _status(api, company, message_id)
        return status if status["status"] == 3 else None

    status = await wait_until(failed, timeout=20, what="FAIL by expiry")
    assert status["error"]["code"] == "EXPIRED"
    await wait_until(lambda: system.receiver.of_message(message_id), what="FAIL webhook")
    assert [d.body["cause"] for d in system.receiver.of_message(message_id)] == ["FAIL"]
