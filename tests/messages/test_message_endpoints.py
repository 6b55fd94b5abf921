"""Broadcast, batch broadcast, conversation replies and status reads through the API (no workers)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from tests.conftest import Tenant, viber_credentials

from openmmp.kit.time import now_ms
from openmmp.messages.schemas import BroadcastBatchResponse, BroadcastResponseMessage
from openmmp.models import Channel, Job, Message


@pytest.fixture
async def viber(make_channel, tenant: Tenant) -> dict[str, Any]:
    return await make_channel(
        tenant, applicationId=1, credentials=viber_credentials(), settings={"defaultCountry": "KH"}
    )


async def launch(app, channel: dict[str, Any]) -> None:
    """Mark a channel launched as the set-up worker would (these tests run without workers)."""
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(
            update(Channel).where(Channel.public_id == channel["publicId"]).values(status=3)
        )


def send(
    client: httpx.AsyncClient,
    tenant: Tenant,
    channel: dict[str, Any],
    body: dict[str, Any],
    path: str = "broadcast",
):
    return client.post(f"/api/v1/channel/{channel['publicId']}/{path}", json=body, headers=tenant.headers)


TEXT = {"type": "text", "message": "Hello"}


class TestBroadcast:
    async def test_answers_pending_and_writes_the_message_with_its_job(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        response = await send(
            client, tenant, viber, {"phone": "012 345 678", "message": TEXT, "requestId": "r-1"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {
            "messageId",
            "clientMessageId",
            "requestId",
            "phone",
            "status",
            "cause",
            "applicationId",
            "publicId",
            "createdDate",
        }
        assert (body["status"], body["cause"], body["phone"], body["requestId"]) == (
            1,
            "PENDING",
            "85512345678",
            "r-1",
        )
        assert body["publicId"] == viber["publicId"]
        assert body["applicationId"] == 1
        uuid.UUID(body["clientMessageId"])
        async with app.state.db.read_sessions() as session:
            message = (
                await session.execute(select(Message).where(Message.public_id == body["messageId"]))
            ).scalar_one()
            jobs = (
                await session.execute(
                    select(func.count()).select_from(Job).where(Job.message_id == message.id)
                )
            ).scalar_one()
        assert jobs == 1
        assert message.recipient == "85512345678"

    async def test_placeholders_are_filled_from_params(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        message = {"type": "text", "message": "Hi {{name}}, code {{ code }}"}
        response = await send(
            client,
            tenant,
            viber,
            {"phone": "85512345678", "message": message, "params": {"name": "Dara", "code": 4711}},
        )
        assert response.status_code == 200
        async with app.state.db.read_sessions() as session:
            stored = (
                await session.execute(
                    select(Message).where(Message.public_id == response.json()["messageId"])
                )
            ).scalar_one()
        assert stored.content["message"] == "Hi Dara, code 4711"

    async def test_a_missing_param_is_400_naming_it(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        message = {"type": "text", "message": "Hi {{name}}, code {{code}}"}
        response = await send(
            client, tenant, viber, {"phone": "85512345678", "message": message, "params": {"name": "Dara"}}
        )
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {"name": "params.code", "code": "INVALID", "message": "missing value"}
        ]

    @pytest.mark.parametrize(
        ("body", "name"),
        [
            ({"message": TEXT}, "phone"),
            ({"phone": "12", "message": TEXT}, "phone"),
            ({"phone": "85512345678"}, "message"),
            (
                {
                    "phone": "85512345678",
                    "message": {"type": "location", "location": {"latitude": 1, "longitude": 2}},
                },
                "message.type",
            ),
            ({"phone": "85512345678", "message": {"type": "sms"}}, "message.type"),
            ({"phone": "85512345678", "message": {"type": "text", "message": "x" * 1001}}, "message.message"),
            ({"phone": "85512345678", "message": {"type": "text"}}, "message.message"),
            (
                {"phone": "85512345678", "message": TEXT, "expire": {"type": "TTL", "ttl": 1_209_601}},
                "expire.ttl",
            ),
            ({"phone": "85512345678", "message": TEXT, "expire": {"type": "TTL"}}, "expire"),
            (
                {"phone": "85512345678", "message": TEXT, "expire": {"type": "EXPIRE_TIME", "expireTime": 1}},
                "expire.expireTime",
            ),
            ({"phone": "85512345678", "message": TEXT, "clientMessageId": ""}, "clientMessageId"),
            ({"phone": "85512345678", "message": TEXT, "params": {"a": {"nested": 1}}}, "params.a"),
        ],
    )
    async def test_bad_input_is_400_naming_the_field(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber, body: dict[str, Any], name: str
    ):
        await launch(app, viber)
        response = await send(client, tenant, viber, body)
        assert response.status_code == 400, response.text
        names = [e["name"] for e in response.json()["errors"]]
        assert any(n == name or n.startswith(name + ".") or n.startswith(name + "[") for n in names), names

    async def test_a_channel_that_is_not_launched_refuses_sends(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        async with app.state.db.write_sessions() as session, session.begin():
            await session.execute(
                update(Channel).where(Channel.public_id == viber["publicId"]).values(status=4)
            )
        response = await send(client, tenant, viber, {"phone": "85512345678", "message": TEXT})
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "NOT_ACCEPTABLE"

    async def test_a_channel_of_an_application_this_version_does_not_know_refuses_sends_clearly(
        self, client: httpx.AsyncClient, app, make_channel, tenant: Tenant
    ):
        # A row written by a later version, with an application this one has no provider for.
        channel = await make_channel(tenant)
        async with app.state.db.write_sessions() as session, session.begin():
            await session.execute(
                update(Channel).where(Channel.public_id == channel["publicId"]).values(application_id=999)
            )
        response = await send(client, tenant, channel, {"phone": "85512345678", "message": TEXT})
        assert response.status_code == 400
        assert response.json()["errors"][0] == {
            "name": "accountId",
            "code": "NOT_ACCEPTABLE",
            "message": "This version of OpenMMP does not know the channel's application",
        }

    async def test_another_companys_channel_is_404(self, client: httpx.AsyncClient, app, new_company, viber):
        await launch(app, viber)
        other = await new_company()
        response = await send(client, other, viber, {"phone": "85512345678", "message": TEXT})
        assert response.status_code == 404


class TestIdempotency:
    async def test_the_same_body_again_returns_the_original_answer_and_sends_nothing(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        body = {"phone": "85512345678", "message": TEXT, "clientMessageId": "order-1"}
        first = await send(client, tenant, viber, body)
        second = await send(client, tenant, viber, body)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        async with app.state.db.read_sessions() as session:
            count = (
                await session.execute(
                    select(func.count()).select_from(Message).where(Message.client_message_id == "order-1")
                )
            ).scalar_one()
        assert count == 1

    async def test_another_body_with_the_same_id_is_409(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        await send(
            client, tenant, viber, {"phone": "85512345678", "message": TEXT, "clientMessageId": "order-2"}
        )
        other = await send(
            client, tenant, viber, {"phone": "85512345679", "message": TEXT, "clientMessageId": "order-2"}
        )
        assert other.status_code == 409
        assert other.json()["errors"][0] == {
            "name": "clientMessageId",
            "code": "EXISTED",
            "message": "clientMessageId was already used with another body",
        }

    async def test_client_ids_are_per_company(
        self, client: httpx.AsyncClient, app, new_company, make_channel
    ):
        results = []
        for _ in range(2):
            company = await new_company()
            channel = await make_channel(company, applicationId=1, credentials=viber_credentials())
            await launch(app, channel)
            results.append(
                await send(
                    client,
                    company,
                    channel,
                    {"phone": "85512345678", "message": TEXT, "clientMessageId": "shared"},
                )
            )
        assert [r.status_code for r in results] == [200, 200]
        assert results[0].json()["messageId"] != results[1].json()["messageId"]


class TestBatch:
    async def test_good_items_are_sent_and_bad_ones_answered_in_place(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        items = [
            {"phone": "85512345670", "message": TEXT},
            {"phone": "nope", "message": TEXT},
            {"message": TEXT},
            {"phone": "85512345671", "message": TEXT, "clientMessageId": "b-1"},
            {"phone": "85512345671", "message": TEXT, "clientMessageId": "b-1"},
            {"phone": "85512345672", "message": {"type": "location"}},
        ]
        response = await send(client, tenant, viber, {"messages": items}, "broadcast/batch")
        assert response.status_code == 200, response.text
        results = response.json()["messages"]
        assert len(results) == 6
        assert results[0]["status"] == 1
        assert results[1]["errors"][0]["name"] == "phone"
        assert results[2]["errors"][0]["name"] == "phone"
        assert results[3]["messageId"] == results[4]["messageId"]
        assert results[5]["errors"][0]["name"] == "message.type"
        async with app.state.db.read_sessions() as session:
            channel_id = (
                await session.execute(select(Channel.id).where(Channel.public_id == viber["publicId"]))
            ).scalar_one()
            stored = (
                await session.execute(
                    select(func.count()).select_from(Message).where(Message.channel_id == channel_id)
                )
            ).scalar_one()
            jobs = (
                await session.execute(
                    select(func.count()).select_from(Job).where(Job.channel_id == channel_id)
                )
            ).scalar_one()
        assert stored == jobs == 2

    async def test_each_answer_is_the_documented_schema_and_matches_a_single_send(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        items = [
            {"phone": "85512345670", "message": TEXT, "requestId": "r-1"},
            {"phone": "85512345671", "message": TEXT, "clientMessageId": "schema-1"},
        ]
        response = await send(client, tenant, viber, {"messages": items}, "broadcast/batch")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        # `email` only on messages to an address.
        wire_names = {f.alias for f in BroadcastResponseMessage.model_fields.values()} - {"email"}
        assert [set(item) for item in body["messages"]] == [wire_names, wire_names]
        assert BroadcastBatchResponse.model_validate(body).model_dump(mode="json", by_alias=True) == body
        first, second = body["messages"]
        assert (first["requestId"], first["phone"], first["status"], first["cause"]) == (
            "r-1",
            "85512345670",
            1,
            "PENDING",
        )
        assert (first["applicationId"], first["publicId"]) == (viber["applicationId"], viber["publicId"])
        # The replay of one item through the single endpoint answers what the batch answered.
        replay = await send(client, tenant, viber, items[1])
        assert replay.status_code == 200, replay.text
        assert replay.json() == second

    async def test_more_than_1000_items_is_400(self, client: httpx.AsyncClient, app, tenant: Tenant, viber):
        await launch(app, viber)
        items = [{"phone": "85512345670", "message": TEXT}] * 1001
        response = await send(client, tenant, viber, {"messages": items}, "broadcast/batch")
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "messages"


class TestConversationSend:
    async def test_oa_channels_have_no_conversations(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        response = await send(
            client, tenant, viber, {"to": str(uuid.uuid4()), "message": TEXT}, "conversation"
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "NOT_ACCEPTABLE"

    async def test_a_bot_broadcast_by_unknown_phone_is_400(
        self, client: httpx.AsyncClient, app, tenant: Tenant, make_channel
    ):
        bot = await make_channel(tenant)
        await launch(app, bot)
        response = await send(client, tenant, bot, {"phone": "85512345678", "message": TEXT})
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == "phone"


class TestStatus:
    async def test_by_message_id_and_by_client_message_id(
        self, client: httpx.AsyncClient, app, tenant: Tenant, viber
    ):
        await launch(app, viber)
        sent = (
            await send(
                client, tenant, viber, {"phone": "85512345678", "message": TEXT, "clientMessageId": "s-1"}
            )
        ).json()
        by_id = await client.get(f"/api/v1/message/{sent['messageId']}/status", headers=tenant.headers)
        by_client = await client.get(
            "/api/v1/message/status", params={"clientMessageId": "s-1"}, headers=tenant.headers
        )
        assert by_id.status_code == by_client.status_code == 200
        assert by_id.json() == by_client.json()
        status = by_id.json()
        assert status["status"] == 1
        assert status["cause"] == "PENDING"
        assert status["history"] == [{"status": 1, "cause": "PENDING", "timestamp": sent["createdDate"]}]
        assert status["timestamp"] == sent["createdDate"]
        assert status.get("error") is None

    async def test_unknown_and_foreign_messages_are_404(
        self, client: httpx.AsyncClient, app, tenant: Tenant, new_company, viber
    ):
        await launch(app, viber)
        sent = (await send(client, tenant, viber, {"phone": "85512345678", "message": TEXT})).json()
        other = await new_company()
        for url in (
            f"/api/v1/message/{sent['messageId']}/status",
            f"/api/v1/message/{uuid.uuid4()}/status",
            "/api/v1/message/x/status",
        ):
            assert (await client.get(url, headers=other.headers)).status_code == 404
        missing = await client.get(
            "/api/v1/message/status",
            params={"clientMessageId": sent["clientMessageId"]},
            headers=other.headers,
        )
        assert missing.status_code == 404

    async def test_expiry_is_stored(self, client: httpx.AsyncClient, app, tenant: Tenant, viber):
        await launch(app, viber)
        before = now_ms()
        sent = (
            await send(
                client,
                tenant,
                viber,
                {"phone": "85512345678", "message": TEXT, "expire": {"type": "TTL", "ttl": 3600}},
            )
        ).json()
        async with app.state.db.read_sessions() as session:
            stored = (
                await session.execute(select(Message).where(Message.public_id == sent["messageId"]))
            ).scalar_one()
        assert stored.expire_at is not None
        assert before + 3_600_000 <= stored.expire_at <= now_ms() + 3_600_000
