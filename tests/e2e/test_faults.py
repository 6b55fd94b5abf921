"""Upstream trouble: timeouts, 5xx, rate limiting and final errors end in the right retries and causes;
after an outage the backlog drains at the channel's rate, and what expired meanwhile fails as expired."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import Launcher
from tests.e2e.harness import FINAL, SIMULATOR_ARGS, System, wait_until

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


# ---- an upstream outage, then the backlog ---------------------------------------------------------------

LIMIT_PER_SECOND = 20


@pytest.fixture(params=["sqlite", "postgresql"])
async def limited_upstream(request: pytest.FixtureRequest, launch: Launcher) -> System:
    """A private system whose simulator enforces LIMIT_PER_SECOND per Viber service, as upstream does."""
    return await launch(
        launch.database(request.param, "upstream_outage"),
        workers=0 if request.param == "sqlite" else 1,
        env={"OPENMMP_DISPATCH__RETRY_BASE_SECONDS": "0.2", "OPENMMP_DISPATCH__RETRY_MAX_SECONDS": "1"},
        simulator_args=[*SIMULATOR_ARGS, "--set", f"viber.requests_per_second={LIMIT_PER_SECOND}"],
    )


@pytest.mark.alone
async def test_after_an_upstream_outage_the_backlog_drains_at_the_channels_rate_and_expired_ones_fail(
    limited_upstream: System,
):
    system = limited_upstream
    expiring, backlog = 10, 70  # 80 sends take 4 s at 19/s: within the 5 s a send may wait for its slot
    async with (
        httpx.AsyncClient(base_url=system.api, timeout=30) as api,
        httpx.AsyncClient(base_url=system.sim, timeout=10) as sim,
    ):
        company = await system.onboard(api)
        channel = await system.viber_channel(
            api, company, webhooks=False, rateLimitPerSecond=LIMIT_PER_SECOND
        )
        service = f"{channel['_serviceId']}:"
        # The upstream holds every request past our 2 s timeout for 2.5 s, then answers 503 for 2.5 s
        # (meanwhile the held requests time out), then recovers. The 503s replace the timeouts before
        # those would end on their own, so that no request slips through between the two.
        await sim.post("/viber/_sandbox/faults", json={"kind": "timeout", "seconds": 10})
        outage_started = time.monotonic()
        items = [
            {
                "phone": f"8551234{n:04d}{n % 8}",
                "message": {"type": "text", "message": "outage"},
                **({"expire": {"type": "TTL", "ttl": 2}} if n < expiring else {}),
            }
            for n in range(expiring + backlog)
        ]
        response = await api.post(
            f"/api/v1/channel/{channel['publicId']}/broadcast/batch",
            json={"messages": items},
            headers=company.headers,
        )
        assert response.status_code == 200, response.text
        ids = [m["messageId"] for m in response.json()["messages"]]
        await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - outage_started)))
        await sim.post("/viber/_sandbox/faults", json={"kind": "http_503", "seconds": 2.5})
        await asyncio.sleep(2.5)

        async def all_final() -> dict[str, int] | None:
            statuses = await system.statuses(channel["publicId"])
            return statuses if all(s in FINAL for s in statuses.values()) else None

        statuses = await wait_until(all_final, timeout=60, interval=0.25, what="every message final")
        stats = (await sim.get("/viber/_sandbox/stats", params={"detail": 1})).json()
        expired = [await _status(api, company, message_id) for message_id in ids[:expiring]]

    assert stats["faultsInjected"] > 0
    # The expiring messages failed as expired, without a send, and say why.
    for status in expired:
        assert status["status"] == 3, status
        assert status["error"]["code"] == "EXPIRED"
        assert status["error"]["message"]
        assert [h["status"] for h in status["history"]] == [1, 3]
    # The others were all sent, once each, after the outage.
    accepted_at = sorted(t for k, t in stats["acceptedAtByKey"].items() if k.startswith(service))
    assert len(accepted_at) == backlog
    assert {statuses[m] for m in ids[expiring:]} <= {4, 5}
    assert {v for k, v in stats["acceptedByKey"].items() if k.startswith(service)} == {1}
    # ... at the channel's rate: never over it (the upstream enforces it: no "too many requests"), and close.
    assert stats["rateLimited"] == 0
    achieved = (len(accepted_at) - 1) / ((accepted_at[-1] - accepted_at[0]) / 1000)
    gaps = [round(b - a) for a, b in itertools.pairwise(accepted_at)]
    assert 0.7 * LIMIT_PER_SECOND <= achieved <= LIMIT_PER_SECOND, (achieved, gaps)
    print(
        f"backlog of {backlog} drained at {achieved:.1f}/s (limit {LIMIT_PER_SECOND}/s); {expired[0]['error']}"
    )


async def test_a_backlog_longer_than_the_limit_wait_still_drains(launch: Launcher):
    """With the default batch of 200 jobs, a channel limited to 40/s books 5 s of sends per round; with
    `max_limit_wait_seconds` = 1 most of them are handed back. They must still all go out, at the rate."""
    system = await launch(
        launch.database("sqlite", "limit_wait"),
        env={"OPENMMP_DISPATCH__MAX_LIMIT_WAIT_SECONDS": "1"},
        simulator_args=[*SIMULATOR_ARGS, "--set", "viber.requests_per_second=40"],
    )
    async with httpx.AsyncClient(base_url=system.api, timeout=30) as api:
        company = await system.onboard(api)
        channel = await system.viber_channel(api, company, webhooks=False, rateLimitPerSecond=40)
        items = [
            {"phone": f"8551234{n:04d}0", "message": {"type": "text", "message": "x"}} for n in range(200)
        ]
        response = await api.post(
            f"/api/v1/channel/{channel['publicId']}/broadcast/batch",
            json={"messages": items},
            headers=company.headers,
        )
        assert response.status_code == 200, response.text

        async def all_sent() -> bool:
            statuses = await system.statuses(channel["publicId"])
            return all(s != 1 for s in statuses.values())

        await wait_until(all_sent, timeout=12, interval=0.5, what="200 sends at 38/s")
