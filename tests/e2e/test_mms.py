"""MMS end to end: the platform submits MM7 to the sandbox's MMSC simulator with the media it fetched,
the MMSC's delivery and read reports come back over HTTP Basic, and signed webhooks follow."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import ChannelFactory
from tests.e2e.harness import READ_OR_FAIL, System, final_status, send_one, signed_webhooks

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def mms_credentials() -> dict[str, Any]:
    """A VASP account of its own: the simulator sends each VASP's reports to its channel."""
    return {
        "url": "https://mmsc.example.com/mm7",
        "vaspId": f"e2e{random.randrange(10**9)}",
        "vasId": "alerts",
        "senderAddress": "4711",
    }


async def test_a_picture_mms_with_a_subject_reaches_read(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    channel = await launched_channel(15, mms_credentials())
    account = channel["publicId"]
    picture = {
        "type": "picture",
        "message": "Hello {{name}}, your new card is ready",
        "fileUrl": f"{system.api}/sim/mm7/_sandbox/media/sample.png",
    }
    message_id = await send_one(
        api,
        company,
        account,
        {
            "phone": "85512345670",
            "subject": "Card for {{name}}",
            "message": picture,
            "params": {"name": "Dara"},
        },
    )
    status = await final_status(api, company, message_id, READ_OR_FAIL)
    assert (status["status"], status["cause"]) == (5, "READ")
    assert [h["status"] for h in status["history"]] == [1, 2, 4, 5]
    assert sorted(await signed_webhooks(system, message_id, 3)) == [2, 4, 5]

    # What the MMSC got: the rendered subject and text, the SMIL, and the picture the platform fetched.
    [[token]] = await system.sql(
        "SELECT provider_message_id FROM messages WHERE public_id = :m", m=message_id
    )
    async with httpx.AsyncClient(base_url=system.api, timeout=10) as sim:
        submitted = (await sim.get(f"/sim/mm7/_sandbox/submissions/{token}")).json()
        sample = (await sim.get("/sim/mm7/_sandbox/media/sample.png")).content
    assert submitted["subject"] == "Card for Dara"
    assert submitted["text"] == "Hello Dara, your new card is ready"
    assert submitted["recipient"] == "85512345670"
    assert [(p["contentType"], p["size"]) for p in submitted["parts"][1:]] == [
        ("text/plain", len("Hello Dara, your new card is ready")),
        ("image/png", len(sample)),
    ]
    assert submitted["parts"][0]["contentType"] == "application/smil"


async def test_a_final_refusal_fails_with_its_cause(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel: ChannelFactory
):
    channel = await launched_channel(15, mms_credentials())
    account = channel["publicId"]
    refused = await send_one(
        api, company, account, {"phone": "85512345678", "message": {"type": "text", "message": "never"}}
    )
    missing = await send_one(
        api,
        company,
        account,
        {
            "phone": "85512345670",
            "message": {"type": "picture", "fileUrl": f"{system.api}/sim/mm7/_sandbox/media/missing.png"},
        },
    )
    for message_id, error in (
        (
            refused,
            {"code": "MM7_2003", "message": "Address Not Found: the recipient is not an MMS subscriber"},
        ),
        (
            missing,
            {"code": "MM7_MEDIA_HTTP_404", "message": "message.fileUrl: the media server answered HTTP 404"},
        ),
    ):
        status = await final_status(api, company, message_id)
        assert (status["status"], status["cause"], status["error"]) == (3, "FAIL", error)
        assert await signed_webhooks(system, message_id, 1) == [3]


async def test_a_report_without_the_vasps_login_is_refused(
    api: httpx.AsyncClient, system: System, launched_channel: ChannelFactory
):
    channel = await launched_channel(15, mms_credentials())
    forged = await api.post(
        f"/callbacks/mm7/{channel['publicId']}",
        content=b"<Envelope/>",
        headers={"content-type": "text/xml", "authorization": "Basic ZGVtbzpndWVzcw=="},
    )
    assert forged.status_code == 401
