"""Zalo end to end, with real processes and the Zalo simulators over HTTP.

- Zalo OA: an access token that expires while two worker processes send renews once, with nothing failed
  (the refresh token works once: a second renewal would be refused and the messages with it).
- Zalo ZNS: a template reviewed by Zalo is sent by phone and delivered; a promotional one at night fails
  with the rule in its cause; consent is asked and read through the API.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import Launcher
from tests.e2e.harness import System, final_status, send_one, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MESSAGES = 24


def zalo_credentials() -> dict[str, str]:
    oa = f"{random.randrange(10**15)}"
    return {
        "oaId": oa,
        "appId": f"app{oa}",
        "accessToken": f"access-{uuid.uuid4().hex}",
        "refreshToken": f"refresh-{uuid.uuid4().hex}",
        "secretKey": "zalo-app-secret",
    }


async def _inbound_from(system: System, account: str) -> dict[str, Any]:
    def arrived() -> dict[str, Any] | None:
        found = [
            d.body
            for d in system.receiver.deliveries
            if d.body.get("type") == 2 and d.body.get("publicId") == account and d.signature_ok
        ]
        return found[-1] if found else None

    body: dict[str, Any] = await wait_until(arrived, timeout=30, what="the user's type 2 webhook")
    return body


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_an_expired_token_is_renewed_once_by_two_workers_and_nothing_fails(
    launch: Launcher, kind: str
) -> None:
    # Small rounds, so both workers hold messages of the channel when the token turns out stale.
    system = await launch(
        launch.database(kind, "zalo_tokens"), workers=2, env={"OPENMMP_DISPATCH__BATCH_SIZE": "3"}
    )
    async with (
        httpx.AsyncClient(base_url=system.api, timeout=15) as api,
        httpx.AsyncClient(base_url=system.sim, timeout=15) as sim,
    ):
        company = await system.onboard(api)
        credentials = zalo_credentials()
        channel = await system.channel(api, company, 7, credentials)
        account = channel["publicId"]
        wrote = await api.post(
            f"/sandbox/{account}/inbound",
            json={"name": "Lan", "text": "Xin chào", "phone": "84912345670"},
            headers=company.headers,
        )
        assert wrote.status_code == 200, wrote.text
        user = (await _inbound_from(system, account))["from"]
        expired = await sim.post(
            "/zalo/_sandbox/zalo/expire", json={"accessToken": credentials["accessToken"]}
        )
        assert expired.status_code == 200

        sent = [
            await send_one(
                api,
                company,
                account,
                {"to": user, "message": {"type": "text", "message": f"n{n}"}},
                "conversation",
            )
            for n in range(MESSAGES)
        ]
        finals = [await final_status(api, company, message_id, frozenset({3, 5})) for message_id in sent]

        assert [f["status"] for f in finals] == [5] * MESSAGES, [f.get("error") for f in finals]
        assert (await sim.get("/zalo/_sandbox/zalo/tokens")).json()["refreshes"] == 1
        # The renewed pair is what the channel holds now: the next send goes with it, asking nothing.
        after = await send_one(
            api,
            company,
            account,
            {"to": user, "message": {"type": "text", "message": "later"}},
            "conversation",
        )
        assert (await final_status(api, company, after, frozenset({3, 5})))["status"] == 5
        assert (await sim.get("/zalo/_sandbox/zalo/tokens")).json()["refreshes"] == 1


def zns_template(account: str, name: str, *, tag: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "accountId": account,
        "templateType": 1,
        "tag": tag,
        "content": "Xin chào <customer_name>, đơn hàng <order_code> đã được giao.",
        "params": [
            {"name": "customer_name", "type": 1, "sampleValue": "Lan"},
            {"name": "order_code", "type": 4, "sampleValue": "A123"},
        ],
    }


async def _approved(api: httpx.AsyncClient, system: System, company: Tenant, template: str) -> None:
    async def approved() -> bool:
        shown = await api.get(f"/api/v1/template/{template}", headers=company.headers)
        return bool(shown.json()["status"] == 2)

    def announced() -> bool:
        verdicts = [d.body for d in system.receiver.deliveries if d.body.get("type") == 3 and d.signature_ok]
        return any(v["template"]["publicId"] == template and v["template"]["status"] == 2 for v in verdicts)

    # Behind whatever earlier tests of the session left in the simulator's callbacks (as channel launches).
    await wait_until(approved, timeout=90, what="Zalo's approval")
    # The type 3 webhook goes out after the verdict is stored, not with it.
    await wait_until(announced, timeout=30, what="the signed type 3 webhook of the approval")


async def test_a_zns_template_reviewed_by_zalo_is_delivered_and_a_promotion_at_night_fails_clearly(
    api: httpx.AsyncClient, sim: httpx.AsyncClient, system: System, company: Tenant
) -> None:
    channel = await system.channel(api, company, 8, zalo_credentials())
    account = channel["publicId"]
    created = await api.post(
        "/api/v1/template",
        json=zns_template(account, f"delivered_{uuid.uuid4().hex[:8]}"),
        headers=company.headers,
    )
    assert created.status_code == 201, created.text
    template = created.json()["publicId"]
    await _approved(api, system, company, template)

    body = {
        "templateId": template,
        "phone": "84912345670",
        "params": {"customer_name": "Lan", "order_code": "A1"},
    }
    message_id = await send_one(api, company, account, body, "broadcast-template")
    delivered = await final_status(api, company, message_id)
    assert delivered["status"] == 4  # ZNS reports delivery, never reading

    promotion = await api.post(
        "/api/v1/template",
        json=zns_template(account, f"promo_{uuid.uuid4().hex[:8]}", tag=3),
        headers=company.headers,
    )
    assert promotion.status_code == 201, promotion.text
    await _approved(api, system, company, promotion.json()["publicId"])
    night = await sim.post("/zalo-zns/_sandbox/zns/clock", json={"vietnamTime": "23:30"})
    assert night.status_code == 200, night.text
    try:
        late = await send_one(
            api, company, account, {**body, "templateId": promotion.json()["publicId"]}, "broadcast-template"
        )
        failed = await final_status(api, company, late)
    finally:
        await sim.post("/zalo-zns/_sandbox/zns/clock", json={"vietnamTime": None})
    assert failed["status"] == 3
    assert "07:00" in failed["error"]["message"] and "22:00" in failed["error"]["message"], failed


async def test_consent_is_asked_and_read_through_the_channel(
    api: httpx.AsyncClient, system: System, company: Tenant
) -> None:
    channel = await system.channel(api, company, 8, zalo_credentials())
    consent = f"/api/v1/zalo/{channel['publicId']}/consent"

    asked = await api.post(
        consent,
        json={"phone": "+84 91 234 5670", "callType": "audio", "reasonCode": 101},
        headers=company.headers,
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["phone"] == "84912345670"
    assert asked.json()["status"] == "REQUESTED"

    async def granted() -> dict[str, Any] | None:
        read = await api.get(consent, params={"phone": "84912345670"}, headers=company.headers)
        assert read.status_code == 200, read.text
        return read.json() if read.json()["status"] == "GRANTED" else None

    answer = await wait_until(granted, timeout=20, what="the user's consent")
    assert answer["code"] == 0 and answer["expiredTime"] > 0

    bad = await api.get(consent, params={"phone": "12"}, headers=company.headers)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["name"] == "phone"
    viber = await system.viber_channel(api, company)
    elsewhere = await api.get(
        f"/api/v1/zalo/{viber['publicId']}/consent", params={"phone": "84912345670"}, headers=company.headers
    )
    assert elsewhere.status_code == 404
