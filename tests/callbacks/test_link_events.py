"""What an SMPP link hands over about the channel itself: the SMSC refused its account, so the channel
is REJECT with the cause (a type 4 webhook follows, as for any channel event), however often it is said."""

from __future__ import annotations

import httpx
import orjson
from tests.callbacks.test_message_parts import sms_channel
from tests.conftest import Tenant

from openmmp.providers.base import CallbackRequest


async def test_a_refused_account_rejects_the_channel_until_its_credentials_change(
    app, client: httpx.AsyncClient, tenant: Tenant
):
    account = await sms_channel(client, tenant)
    cause = "The SMSC refused the bind: invalid password (command_status 0x0000000E)"
    for at in (1_796_000_000_000, 1_796_000_000_500):  # two worker processes say it
        body = orjson.dumps({"kind": "channel", "status": "REJECT", "cause": cause, "at": at})
        request = CallbackRequest(method="LINK", headers={}, query={}, body=body)
        assert await app.state.callbacks.receive("smpp", account, request, trusted=True) == "channel"
    status = (await client.get(f"/api/v1/channel/{account}/status", headers=tenant.headers)).json()
    assert (status["status"], status["cause"]) == (5, cause)
    # New credentials bring it back.
    fixed = await client.post(
        f"/api/v1/channel/{account}",
        json={
            "credentials": {
                "host": "smsc.example.com",
                "port": 2775,
                "systemId": "fixed-account",
                "password": "right",
                "sourceAddr": "ACME",
            }
        },
        headers=tenant.headers,
    )
    assert fixed.status_code == 200, fixed.text
    status = (await client.get(f"/api/v1/channel/{account}/status", headers=tenant.headers)).json()
    assert status["status"] == 3  # LAUNCH: the links bind with the new credentials
