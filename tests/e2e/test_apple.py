"""Apple Messages for Business end to end: a user writes in through the MSP simulator (a signed JWT,
gzip-compressed callback), the business answers with a list picker, and the user's pick comes back as a
`type: 2` webhook. Apple reports no delivery: the answer stays 2 SENT."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import System, final_status, send_one, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _inbound(system: System, account: str) -> list[dict[str, Any]]:
    return [
        d.body
        for d in system.receiver.deliveries
        if d.body.get("type") == 2 and d.body.get("publicId") == account and d.signature_ok
    ]


async def test_a_list_picker_is_sent_and_the_users_pick_comes_back(
    api: httpx.AsyncClient, system: System, company: Tenant
) -> None:
    credentials = {
        "businessId": str(uuid.uuid4()),
        "mspId": f"msp-{uuid.uuid4().hex[:8]}",
        "secret": base64.b64encode(os.urandom(32)).decode(),
    }
    account = (await system.channel(api, company, 4, credentials))["publicId"]
    wrote = await api.post(
        f"/sandbox/{account}/inbound",
        json={"name": "Dara", "text": "Which branch is open today?", "phone": "85512345670"},
        headers=company.headers,
    )
    assert wrote.status_code == 200, wrote.text
    [first] = await wait_until(
        lambda: _inbound(system, account) or None, timeout=30, what="the user's message"
    )
    assert first["message"]["type"] == "text"
    assert first["message"]["message"] == "Which branch is open today?"

    picker = {
        "type": "listPicker",
        "message": "Pick a branch",
        "listPicker": [
            {"title": "Phnom Penh, Riverside", "value": "branch-pp"},
            {"title": "Siem Reap, Old Market", "value": "branch-sr", "subtitle": "until 17:00"},
        ],
    }
    message_id = await send_one(
        api, company, account, {"to": first["from"], "message": picker}, "conversation"
    )
    sent = await final_status(api, company, message_id, frozenset({2, 3}))
    assert sent["status"] == 2  # Apple reports nothing after the MSP gateway took it: SENT is final

    picked = await api.post(
        f"/sandbox/{account}/inbound",
        json={"name": "Dara", "text": "Siem Reap, Old Market", "userId": wrote.json()["userId"]},
        headers=company.headers,
    )
    assert picked.status_code == 200, picked.text
    [_, selection] = await wait_until(
        lambda: _inbound(system, account) if len(_inbound(system, account)) == 2 else None,
        timeout=30,
        what="the user's pick",
    )
    assert selection["from"] == first["from"]
    assert selection["message"]["message"] == "branch-sr"
