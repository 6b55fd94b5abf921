"""Fallback with real processes: Viber → SMS on a FAIL, and on a timer that runs out before Viber
reports delivery (the late delivery is reported, nothing is sent again); each leg's webhooks say which
leg it is, and the first message's status shows the chain."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import ChannelFactory, Launcher
from tests.e2e.harness import SIMULATOR_ARGS, System, wait_until
from tests.e2e.test_sms import sms_credentials

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def webhooks_of(system: System, message_id: str) -> list[dict[str, Any]]:
    return [d.body for d in system.receiver.deliveries if d.body.get("messageId") == message_id]


async def chain(api: httpx.AsyncClient, company: Tenant, message_id: str) -> dict[str, Any]:
    return dict((await api.get(f"/api/v1/message/{message_id}/status", headers=company.headers)).json())


async def test_a_failed_viber_message_goes_again_by_sms(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    service_id = random.randrange(1, 10**9)
    viber = await launched_channel(1, {"serviceId": service_id})
    sms = await launched_channel(3, sms_credentials())
    async with httpx.AsyncClient(base_url=system.sim) as sim:
        await sim.post("/viber/_sandbox/faults", json={"kind": "final_error", "count": 1})
    sent = await api.post(
        f"/api/v1/channel/{viber['publicId']}/broadcast",
        json={
            "phone": "85512345670",
            "message": {"type": "text", "message": "Your code is 4711"},
            "fallback": {"channels": [{"accountId": sms["publicId"]}]},
        },
        headers=company.headers,
    )
    assert sent.status_code == 200, sent.text
    root = sent.json()["messageId"]

    async def delivered_by_sms() -> dict[str, Any] | None:
        status = await chain(api, company, root)
        legs = status.get("fallback") or []
        return status if legs and legs[0]["status"] == 4 else None

    status = await wait_until(delivered_by_sms, timeout=60, interval=0.3, what="the SMS leg delivered")
    assert status["status"] == 3 and status["parentMessageId"] is None
    [leg] = status["fallback"]
    assert (leg["publicId"], leg["applicationId"]) == (sms["publicId"], 3)
    leg_status = await chain(api, company, leg["messageId"])
    assert leg_status["parentMessageId"] == root and leg_status["phone"] == "85512345670"

    def both_reported() -> bool:
        return [w["status"] for w in webhooks_of(system, leg["messageId"])] == [2, 4]

    await wait_until(both_reported, timeout=30, what="the leg's webhooks")
    assert {w["leg"] for w in webhooks_of(system, root)} == {0}
    assert all(w["leg"] == 1 and w["parentMessageId"] == root for w in webhooks_of(system, leg["messageId"]))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_no_delivery_in_time_goes_by_sms_and_a_late_one_is_only_reported(launch: Launcher, kind: str):
    # Viber reports a delivery only after 4 s; the fallback's timer runs out after 1 s.
    args = [arg if arg != "0.02" else "4" for arg in SIMULATOR_ARGS]
    system = await launch(
        launch.database(kind, "fallback_timer"), workers=0 if kind == "sqlite" else 1, simulator_args=args
    )
    async with httpx.AsyncClient(base_url=system.api, timeout=30) as api:
        company = await system.onboard(api)
        viber = await system.viber_channel(api, company)
        sms_account = sms_credentials()
        sms = await system.channel(api, company, 3, sms_account)
        # The channel's default fallback: sends on it that name none inherit it.
        edited = await api.post(
            f"/api/v1/channel/{viber['publicId']}",
            json={
                "settings": {
                    "fallback": {"channels": [{"accountId": sms["publicId"]}], "fallbackAfterSeconds": 1}
                }
            },
            headers=company.headers,
        )
        assert edited.status_code == 200, edited.text
        sent = await api.post(
            f"/api/v1/channel/{viber['publicId']}/broadcast",
            json={"phone": "85512345670", "message": {"type": "text", "message": "Boarding at gate 7"}},
            headers=company.headers,
        )
        assert sent.status_code == 200, sent.text
        root = sent.json()["messageId"]

        async def all_reported() -> dict[str, Any] | None:
            status = await chain(api, company, root)
            legs = status.get("fallback") or []
            return status if status["status"] == 5 and legs and legs[0]["status"] == 4 else None

        status = await wait_until(all_reported, timeout=90, interval=0.5, what="both legs reported")
        [leg] = status["fallback"]
        history = [h["status"] for h in status["history"]]
        assert history == [1, 2, 4, 5]  # the late Viber delivery and read, reported as they came
        async with httpx.AsyncClient(base_url=system.sim) as sim:
            stats = (await sim.get("/smpp/_sandbox/stats", params={"detail": 1})).json()
        ours = [v for k, v in stats["acceptedByKey"].items() if k.startswith(sms_account["systemId"])]
        assert ours == [1]  # one SMS, never a second one
        [[messages]] = await system.sql(
            "SELECT count(*) FROM messages WHERE id = (SELECT id FROM messages WHERE public_id = :r) "
            "OR parent_id = (SELECT id FROM messages WHERE public_id = :r)",
            r=root,
        )
        assert messages == 2
        assert leg["messageId"] != root
