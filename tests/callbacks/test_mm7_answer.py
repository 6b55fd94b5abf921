"""The callback route answers an MM7 report in MM7 (a DeliveryReportRsp), as MMSCs expect: one answered
with anything else is taken as not delivered and sent again, or the VASP is dropped."""

from __future__ import annotations

import base64
import uuid

import httpx
from tests.conftest import Tenant

from openmmp.providers.mm7 import soap


async def test_a_report_is_answered_with_its_rsp_and_a_wrong_login_with_401(
    client: httpx.AsyncClient, tenant: Tenant
):
    credentials = {
        "url": "https://mmsc.example.com/mm7",
        "vaspId": f"v{uuid.uuid4().hex[:10]}",
        "vasId": "bank",
        "senderAddress": "ACME",
        "username": "mmsc",
        "password": "report-secret",
    }
    body = {"name": "MMS", "applicationId": 15, "credentials": credentials}
    created = await client.post("/api/v1/channel", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    account = created.json()["publicId"]
    report = soap.report_req(
        soap.Report(
            kind="DeliveryReportReq",
            transaction_id="mmsc-tx-9",
            message_id="mmsc-unknown-message",
            recipient="85512345670",
            sender="ACME",
            mm_status="Retrieved",
            timestamp_ms=1_765_000_000_000,
        )
    )

    def login(password: str) -> dict[str, str]:
        token = base64.b64encode(f"mmsc:{password}".encode()).decode()
        return {"authorization": f"Basic {token}", "content-type": "text/xml"}

    answered = await client.post(f"/callbacks/mm7/{account}", content=report, headers=login("report-secret"))
    assert answered.status_code == 200, answered.text
    assert answered.headers["content-type"].startswith("text/xml")
    rsp = soap.read_answer(answered.content)
    assert (rsp.kind, rsp.transaction_id) == ("DeliveryReportRsp", "mmsc-tx-9")
    assert rsp.status is not None and rsp.status.code == 1000
    refused = await client.post(f"/callbacks/mm7/{account}", content=report, headers=login("wrong"))
    assert refused.status_code == 401
