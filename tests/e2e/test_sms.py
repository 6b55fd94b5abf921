"""SMS end to end: the platform binds to the SMSC simulator (a real SMPP server) and sends, receipts and
replies come back on the binds, and webhooks follow; a SIGKILL of the workers loses no receipt."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import ChannelFactory, Launcher
from tests.e2e.harness import SIMULATOR_ARGS, System, all_final, status_webhooks, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LONG = "Ваш заказ 4711 готов к выдаче. " * 6  # UCS-2: 186 characters, 3 parts of 67


def sms_credentials() -> dict[str, Any]:
    """An SMPP account of its own: the simulator routes replies by system_id."""
    return {
        "host": "127.0.0.1",
        "port": 2775,
        "systemId": f"e2e{random.randrange(10**9)}",
        "password": "secret",
        "sourceAddr": "ACME",
    }


async def broadcast(api: httpx.AsyncClient, company: Tenant, account: str, items: list[dict]) -> list[str]:
    response = await api.post(
        f"/api/v1/channel/{account}/broadcast/batch", json={"messages": items}, headers=company.headers
    )
    assert response.status_code == 200, response.text
    return [m["messageId"] for m in response.json()["messages"]]


async def test_sms_are_sent_in_parts_and_reported_by_receipts(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    channel = await launched_channel(3, sms_credentials())
    account = channel["publicId"]
    short, long, refused, flaky = await broadcast(
        api,
        company,
        account,
        [
            {"phone": "85512345670", "message": {"type": "text", "message": "Your code is 4711"}},
            {"phone": "85512345671", "message": {"type": "text", "message": LONG}},
            {"phone": "85512345678", "message": {"type": "text", "message": "never"}},
            {"phone": "85512345679", "message": {"type": "text", "message": "queue full twice"}},
        ],
    )
    statuses = await all_final(system, account, 4)
    assert statuses == {short: 4, long: 4, refused: 3, flaky: 4}  # DELIVERED, except the refused FAIL
    segments = dict(
        await system.sql(
            "SELECT public_id, segments FROM messages WHERE public_id IN (:a, :b)", a=short, b=long
        )
    )
    assert segments == {short: 1, long: 3}
    [[parts]] = await system.sql(
        "SELECT count(*) FROM message_parts p JOIN messages m ON m.id = p.message_id "
        "WHERE m.public_id = :m AND p.status = 4",
        m=long,
    )
    assert parts == 3
    status = await api.get(f"/api/v1/message/{refused}/status", headers=company.headers)
    assert status.json()["error"] == {"code": "SMPP_0x0B", "message": "Invalid destination address"}

    seen = await status_webhooks(system, account, 7)
    assert {k: sorted(v) for k, v in seen.items()} == {
        short: [2, 4],
        long: [2, 4],
        refused: [3],
        flaky: [2, 4],
    }
    if not system.separate_workers:  # serve's /metrics adds its worker process's
        metrics = (await api.get("/metrics")).text
        up = re.search(r'^openmmp_upstream_connections_up\{provider="smpp"\} (\S+)$', metrics, re.M)
        assert up is not None and float(up[1]) >= 1


async def test_a_reply_by_sms_becomes_a_type_2_webhook_in_a_conversation_per_phone(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    channel = await launched_channel(3, sms_credentials())
    account = channel["publicId"]
    long_reply = "សូមអរគុណ! " * 20  # Khmer: UCS-2, in parts that the platform puts together again
    for text in ("STOP", long_reply):
        written = await api.post(
            f"/sandbox/{account}/inbound",
            json={"name": "Dara", "text": text, "phone": "+855 12 345 670"},
            headers=company.headers,
        )
        assert written.status_code == 200, written.text

    def inbound() -> list[Any]:
        found = [
            d for d in system.receiver.deliveries if d.body.get("type") == 2 and d.body["publicId"] == account
        ]
        return found if len(found) == 2 else []

    first, second = await wait_until(inbound, timeout=30, what="two inbound webhooks")
    assert [first.body["message"]["message"], second.body["message"]["message"]] == ["STOP", long_reply]
    assert first.body["from"] == second.body["from"]  # one conversation per phone
    assert first.body["contact"]["phone"] == "85512345670"
    assert first.signature_ok and second.signature_ok


async def test_openmmp_simulate_says_where_its_smsc_listens(system: System):
    async with httpx.AsyncClient(base_url=system.sim) as sim:
        where = (await sim.get("/smpp/_sandbox/address")).json()
    logged = re.search(
        r'"port": (\d+), "event": "smsc_simulator_listening"', system.processes["simulator"].log()
    )
    assert logged is not None and int(logged[1]) == where["port"]


async def test_callbacks_over_http_are_refused_for_sms(
    api: httpx.AsyncClient, system: System, launched_channel: ChannelFactory
):
    channel = await launched_channel(3, sms_credentials())
    forged = await api.post(
        f"/callbacks/smpp/{channel['publicId']}",
        content=b'{"kind": "receipt", "id": "0000000000000001", "stat": "DELIVRD", "at": 1}',
    )
    assert forged.status_code == 401


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_kill_of_the_workers_loses_no_receipt(launch: Launcher, kind: str):
    """Receipts pending at the SMSC (0.5 s after each submit) when the workers are killed come again on
    the next bind, so every message still ends DELIVERED; SMPP has no idempotency key, so only what was
    accepted and not yet recorded may go out twice."""
    system = await launch(
        launch.database(kind, "sms_crash"),
        workers=0 if kind == "sqlite" else 1,
        simulator_args=[*SIMULATOR_ARGS, "--set", "smpp.receipt_delay_s=0.5"],
    )
    count = 300
    async with httpx.AsyncClient(base_url=system.api, timeout=30) as api:
        company = await system.onboard(api)
        credentials = sms_credentials()
        channel = await system.channel(api, company, 3, credentials, webhooks=False, rateLimitPerSecond=150)
        account = channel["publicId"]
        ids = await broadcast(
            api,
            company,
            account,
            [
                {"phone": f"85512{n:05d}0", "message": {"type": "text", "message": f"SMS {n}"}}
                for n in range(count)
            ],
        )
        async with httpx.AsyncClient(base_url=system.sim, timeout=10) as sim:

            async def under_way() -> bool:
                stats = (await sim.get("/smpp/_sandbox/stats")).json()
                return bool(stats["accepted"] > 60)

            await wait_until(under_way, timeout=60, what="SMS under way")
            await system.kill_workers()
            await asyncio.sleep(1.0)  # receipts come due at the SMSC while nothing is bound
            [[recorded]] = await system.sql(
                "SELECT count(*) FROM messages m JOIN channels c ON c.id = m.channel_id "
                "WHERE c.public_id = :p AND m.status <> 1",
                p=account,
            )
            stats = (await sim.get("/smpp/_sandbox/stats")).json()
            at_risk = stats["accepted"] - int(recorded)
            await system.restart_workers()
            statuses = await all_final(system, account, count)
            assert set(statuses) == set(ids)
            assert set(statuses.values()) == {4}  # every receipt arrived, none was lost at the kill
            stats = (await sim.get("/smpp/_sandbox/stats", params={"detail": 1})).json()
            ours = {k: v for k, v in stats["acceptedByKey"].items() if k.startswith(credentials["systemId"])}
            assert len(ours) == count
            assert sum(v - 1 for v in ours.values()) <= max(at_risk, 0)
            # The kill left receipts at the SMSC: sent and unanswered, or due while nothing was bound.
            assert stats["smpp"]["redelivered"] + stats["smpp"]["held"] > 0
        assert await system.outbox_breaches() == {
            "pending messages without a job": 0,
            "jobs without a message": 0,
        }
