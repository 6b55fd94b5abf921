"""E-mail through the API (no workers): Broadcast Message by address, Send Mail and Get Batch Email Status,
and the 400s that keep e-mail fields off other channels and other channels off e-mail."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from tests.conftest import Tenant, viber_credentials
from tests.messages.test_message_endpoints import launch, send

from openmmp.models import Message

TEXT = {"type": "text", "message": "Your statement is ready"}


@pytest.fixture
async def mail(make_channel, tenant: Tenant, app) -> dict[str, Any]:
    channel = await make_channel(tenant, applicationId=24, credentials={"from": "noreply@acme.example"})
    await launch(app, channel)
    return channel  # type: ignore[no-any-return]


@pytest.fixture
async def viber(make_channel, tenant: Tenant, app) -> dict[str, Any]:
    channel = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    await launch(app, channel)
    return channel  # type: ignore[no-any-return]


def names(response: httpx.Response) -> list[str]:
    return [e["name"] for e in response.json()["errors"]]


class TestBroadcast:
    async def test_an_address_a_subject_and_html_are_rendered_into_the_message(
        self, client: httpx.AsyncClient, app, tenant: Tenant, mail
    ):
        body = {
            "email": " Dara@BANK.example ",
            "subject": "Statement for {{name}}",
            "html": "<p>{{name}}</p>",
            "message": {"type": "text", "message": "Hello {{name}}"},
            "params": {"name": "Dara"},
        }
        response = await send(client, tenant, mail, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert (answer["email"], answer["phone"], answer["applicationId"]) == ("Dara@bank.example", None, 24)
        async with app.state.db.read_sessions() as session:
            row = (
                await session.execute(select(Message).where(Message.public_id == answer["messageId"]))
            ).scalar_one()
        assert (row.recipient, row.phone) == ("Dara@bank.example", None)
        assert row.content == {
            "type": "text",
            "message": "Hello Dara",
            "subject": "Statement for Dara",
            "html": "<p>Dara</p>",
        }
        status = await client.get(f"/api/v1/message/{answer['messageId']}/status", headers=tenant.headers)
        assert status.json()["email"] == "Dara@bank.example"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"subject": "s", "message": TEXT}, "email"),
            ({"phone": "85512345678", "subject": "s", "message": TEXT}, "email"),
            ({"email": "dara@bank.example", "message": TEXT}, "subject"),
            ({"email": "dara@bank", "subject": "s", "message": TEXT}, "email"),
            ({"email": "<dara@bank.example>", "subject": "s", "message": TEXT}, "email"),
            ({"email": "dara@bank.example", "subject": "s", "message": {"type": "text"}}, "message.message"),
            ({"email": "dara@bank.example", "subject": "s", "message": {"type": "picture"}}, "message.type"),
        ],
    )
    async def test_what_cannot_be_mailed_is_a_400_naming_it(
        self, client: httpx.AsyncClient, tenant: Tenant, mail, body: dict[str, Any], field: str
    ):
        response = await send(client, tenant, mail, body)
        assert response.status_code == 400, response.text
        assert field in names(response)

    @pytest.mark.parametrize(
        ("extra", "field"),
        [
            ({"email": "dara@bank.example"}, "email"),
            ({"subject": "s"}, "subject"),
            ({"html": "<p/>"}, "html"),
        ],
    )
    async def test_other_channels_take_no_email_fields(
        self, client: httpx.AsyncClient, tenant: Tenant, viber, extra: dict[str, str], field: str
    ):
        response = await send(client, tenant, viber, {"phone": "85512345678", "message": TEXT, **extra})
        assert response.status_code == 400, response.text
        assert names(response) == [field]

    async def test_an_email_channel_is_no_fallback_for_a_phone_and_has_no_conversations(
        self, client: httpx.AsyncClient, tenant: Tenant, viber, mail
    ):
        body = {
            "phone": "85512345678",
            "message": TEXT,
            "fallback": {"channels": [{"accountId": mail["publicId"]}]},
        }
        response = await send(client, tenant, viber, body)
        assert response.status_code == 400
        assert (
            response.json()["errors"][0]["message"]
            == "EMAIL channels send to e-mail addresses, not to a phone"
        )
        reply = await send(client, tenant, mail, {"to": "x", "message": TEXT}, "conversation")
        assert reply.status_code == 400, reply.text
        assert reply.json()["errors"][0]["code"] == "NOT_ACCEPTABLE"


async def send_mail(client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/v1/email/send", json=body, headers=tenant.headers)


class TestSendMail:
    async def test_each_address_is_a_message_of_its_own_idempotent_by_its_own_id(
        self, client: httpx.AsyncClient, app, tenant: Tenant, mail
    ):
        body = {
            "accountId": mail["publicId"],
            "to": [
                "a@bank.example",
                {"email": "b@bank.example", "clientMessageId": "stmt-b", "params": {"n": "B"}},
            ],
            "subject": "Hi {{n}}",
            "text": "Hello {{n}}",
            "params": {"n": "all"},
            "requestId": "batch-1",
        }
        response = await send_mail(client, tenant, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["requestId"] == "batch-1"
        first, second = answer["messages"]
        assert (first["email"], first["status"], first["cause"]) == ("a@bank.example", 1, "PENDING")
        assert second["clientMessageId"] == "stmt-b"
        async with app.state.db.read_sessions() as session:
            subjects = dict(
                (
                    await session.execute(
                        select(Message.recipient, Message.content["subject"].as_string()).where(
                            Message.public_id.in_([first["messageId"], second["messageId"]])
                        )
                    )
                ).all()
            )
        assert subjects == {"a@bank.example": "Hi all", "b@bank.example": "Hi B"}

        again = await send_mail(client, tenant, {**body, "to": body["to"][1:]})
        assert again.json()["messages"][0]["messageId"] == second["messageId"]
        changed = await send_mail(client, tenant, {**body, "to": body["to"][1:], "subject": "Other"})
        [refused] = changed.json()["messages"]
        assert refused["email"] == "b@bank.example"
        assert refused["errors"][0]["code"] == "EXISTED"

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"to": []}, "to"),
            ({"to": ["a@bank.example", "not-an-address"]}, "to[1]"),
            ({"text": None}, "body"),
            ({"subject": ""}, "subject"),
            ({"params": None, "text": "Hello {{n}}"}, "params.n"),
        ],
    )
    async def test_a_bad_request_is_a_400_naming_the_field(
        self, client: httpx.AsyncClient, tenant: Tenant, mail, change: dict[str, Any], field: str
    ):
        body = {"accountId": mail["publicId"], "to": ["a@bank.example"], "subject": "s", "text": "t"}
        body = {k: v for k, v in {**body, **change}.items() if v is not None}
        response = await send_mail(client, tenant, body)
        if field == "params.n":  # checked per address: the address is refused in its place
            assert response.status_code == 200
            assert [e["name"] for e in response.json()["messages"][0]["errors"]] == [field]
            return
        assert response.status_code == 400, response.text
        assert any(name.startswith(field) for name in names(response)), response.text

    async def test_only_email_channels_send_mail(self, client: httpx.AsyncClient, tenant: Tenant, viber):
        body = {"accountId": viber["publicId"], "to": ["a@bank.example"], "subject": "s", "text": "t"}
        response = await send_mail(client, tenant, body)
        assert response.status_code == 400
        assert names(response) == ["accountId"]


class TestEmailStatus:
    async def test_statuses_in_email_terms_and_what_is_not_an_email_of_the_company(
        self, client: httpx.AsyncClient, app, tenant: Tenant, new_company, mail, viber
    ):
        sent = await send_mail(
            client,
            tenant,
            {
                "accountId": mail["publicId"],
                "to": ["a@bank.example", "b@bank.example", "c@bank.example"],
                "subject": "s",
                "text": "t",
            },
        )
        pending, success, failed = [m["messageId"] for m in sent.json()["messages"]]
        async with app.state.db.write_sessions() as session, session.begin():
            await session.execute(update(Message).where(Message.public_id == success).values(status=4))
            await session.execute(
                update(Message)
                .where(Message.public_id == failed)
                .values(status=3, error_code="SMTP_550", error_message="smtp; 550 5.1.1 user unknown")
            )
        phone = await send(client, tenant, viber, {"phone": "85512345678", "message": TEXT})
        ids = [pending, success, failed, phone.json()["messageId"], "no-such-id"]
        response = await client.post("/api/v1/email/status", json={"messageIds": ids}, headers=tenant.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        got = {i["messageId"]: (i["status"], i["cause"], i["messageStatus"]) for i in body["items"]}
        assert got == {pending: (1, "PENDING", 1), success: (2, "SUCCESS", 4), failed: (3, "FAIL", 3)}
        [bounce] = [i for i in body["items"] if i["messageId"] == failed]
        assert bounce["error"] == {"code": "SMTP_550", "message": "smtp; 550 5.1.1 user unknown"}
        assert body["notFound"] == ids[3:]

        by_client = [m["clientMessageId"] for m in sent.json()["messages"]]
        response = await client.post(
            "/api/v1/email/status", json={"clientMessageIds": by_client}, headers=tenant.headers
        )
        assert len(response.json()["items"]) == 3
        other = await new_company()
        theirs = await client.post("/api/v1/email/status", json={"messageIds": ids}, headers=other.headers)
        assert (theirs.json()["items"], theirs.json()["notFound"]) == ([], ids)

    @pytest.mark.parametrize(
        "body", [{}, {"messageIds": [], "clientMessageIds": ["x"]}, {"messageIds": ["x"] * 1001}]
    )
    async def test_a_bad_request_is_a_400(
        self, client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
    ):
        response = await client.post("/api/v1/email/status", json=body, headers=tenant.headers)
        assert response.status_code == 400
