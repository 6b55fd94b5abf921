"""Provider callbacks through the API: signatures, de-duplication, the state machine, inbound users."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import BOT_TOKENS, Tenant

from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.messages.repository import record_parts
from openmmp.models import Channel, Conversation, Message, ProviderEvent
from openmmp.models.message import MessageStatus


def signed(body: dict[str, Any], key: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Viber-Content-Signature": signature, "content-type": "application/json"}


async def post(
    client: httpx.AsyncClient, account: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    """POST `body` to the channel's callback route, signed with `key` (default: its bot's token)."""
    raw, headers = signed(body, key if key is not None else BOT_TOKENS.get(account, "unknown-bot"))
    return await client.post(f"/callbacks/viber-bot/{account}", content=raw, headers=headers)


async def user_writes(
    client: httpx.AsyncClient, account: str, user_id: str, token: int, text: str = "hi"
) -> None:
    body = {
        "event": "message",
        "timestamp": now_ms() + token,
        "message_token": token,
        "sender": {
            "id": user_id,
            "name": "Dara",
            "avatar": "",
            "country": "KH",
            "language": "km",
            "api_version": 10,
        },
        "message": {"type": "text", "text": text},
    }
    response = await post(client, account, body)
    assert response.status_code == 200, response.text


async def sent_message(
    app, client: httpx.AsyncClient, tenant: Tenant, account: str, user_id: str, token: str
) -> str:
    """A message to `user_id`, recorded SENT with provider token `token` as the dispatcher does."""
    async with app.state.db.read_sessions() as session:
        statement = (
            select(Conversation)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(Conversation.external_id == user_id, Channel.public_id == account)
        )
        conversation = (await session.execute(statement)).scalar_one()
    response = await client.post(
        f"/api/v1/channel/{account}/conversation",
        json={"to": conversation.public_id, "message": {"type": "text", "message": "hello"}},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    message_id = str(response.json()["messageId"])
    await record_sent(app, message_id, (token,))
    return message_id


async def record_sent(app, message_id: str, tokens: tuple[str, ...]) -> None:
    """Record a message SENT as the dispatcher does: with its upstream token, and when `tokens` holds
    several, in those parts (the whole then has a token of its own that no report names)."""
    async with app.state.db.write_sessions() as session, session.begin():
        message = (await session.execute(select(Message).where(Message.public_id == message_id))).scalar_one()
        channel = await session.get(Channel, message.channel_id)
        assert channel is not None
        token = tokens[0] if len(tokens) == 1 else f"{tokens[0]}+{len(tokens)}"
        change = status_machine.Change(message, MessageStatus.SENT, now_ms(), provider_message_id=token)
        await status_machine.apply(session, [change], {channel.id: channel})
        if len(tokens) > 1:
            await record_parts(session, [(message, tokens)])


async def status_of(client: httpx.AsyncClient, tenant: Tenant, message_id: str) -> dict[str, Any]:
    return (await client.get(f"/api/v1/message/{message_id}/status", headers=tenant.headers)).json()


class TestSignatures:
    @pytest.mark.parametrize("key", ["wrong-token", ""])
    async def test_a_bad_signature_is_401_and_changes_nothing(self, app, client, tenant, bot, key):
        await user_writes(client, bot["publicId"], "u-sig", 1)
        message_id = await sent_message(app, client, tenant, bot["publicId"], "u-sig", "t-sig")
        body = {"event": "delivered", "timestamp": 1, "message_token": "t-sig", "user_id": "u-sig"}
        raw, headers = signed(body, key or BOT_TOKENS[bot["publicId"]])
        if not key:
            headers.pop("X-Viber-Content-Signature")
        response = await client.post(f"/callbacks/viber-bot/{bot['publicId']}", content=raw, headers=headers)
        assert response.status_code == 401
        assert (await status_of(client, tenant, message_id))["status"] == 2

    async def test_a_reserialised_body_fails_the_check(self, client, bot):
        body = {"event": "webhook", "timestamp": 1, "message_token": 5}
        raw, headers = signed(body, BOT_TOKENS[bot["publicId"]])
        reordered = json.dumps(body, indent=1).encode()
        response = await client.post(
            f"/callbacks/viber-bot/{bot['publicId']}", content=reordered, headers=headers
        )
        assert response.status_code == 401
        assert (
            await client.post(f"/callbacks/viber-bot/{bot['publicId']}", content=raw, headers=headers)
        ).status_code == 200

    async def test_unknown_channels_are_404(self, client):
        response = await post(client, "00000000-0000-4000-8000-000000000000", {"event": "webhook"})
        assert response.status_code == 404

    async def test_a_signed_malformed_body_is_400(self, client, bot):
        raw = b"{not json"
        signature = hmac.new(BOT_TOKENS[bot["publicId"]].encode(), raw, hashlib.sha256).hexdigest()
        response = await client.post(
            f"/callbacks/viber-bot/{bot['publicId']}",
            content=raw,
            headers={"X-Viber-Content-Signature": signature},
        )
        assert response.status_code == 400


class TestStatusReports:
    async def test_delivered_then_seen_moves_forward_and_repeats_are_ignored(self, app, client, tenant, bot):
        account = bot["publicId"]
        await user_writes(client, account, "u1", 10)
        message_id = await sent_message(app, client, tenant, account, "u1", "t1")
        delivered = {
            "event": "delivered",
            "timestamp": 1_800_000_000_000,
            "message_token": "t1",
            "user_id": "u1",
        }
        assert (await post(client, account, delivered)).json()["outcome"] == "applied"
        assert (await post(client, account, delivered)).json()["outcome"] == "duplicate"
        seen = {"event": "seen", "timestamp": 1_800_000_001_000, "message_token": "t1", "user_id": "u1"}
        assert (await post(client, account, seen)).status_code == 200
        status = await status_of(client, tenant, message_id)
        assert [h["status"] for h in status["history"]] == [1, 2, 4, 5]
        late_failure = {
            "event": "failed",
            "timestamp": 1_800_000_002_000,
            "message_token": "t1",
            "user_id": "u1",
            "desc": "x",
        }
        await post(client, account, late_failure)
        assert (await status_of(client, tenant, message_id))["status"] == 5

    async def test_seen_marks_the_users_earlier_unread_messages_read(self, app, client, tenant, bot):
        account = bot["publicId"]
        await user_writes(client, account, "u2", 20)
        first = await sent_message(app, client, tenant, account, "u2", "t2a")
        second = await sent_message(app, client, tenant, account, "u2", "t2b")
        seen = {"event": "seen", "timestamp": 1_800_000_000_000, "message_token": "t2b", "user_id": "u2"}
        await post(client, account, seen)
        assert (await status_of(client, tenant, first))["status"] == 5
        assert [h["status"] for h in (await status_of(client, tenant, second))["history"]] == [1, 2, 4, 5]

    async def test_a_report_about_an_unknown_message_is_kept_unmatched_not_an_error(self, app, client, bot):
        body = {"event": "delivered", "timestamp": 1, "message_token": "nobody", "user_id": "u9"}
        response = await post(client, bot["publicId"], body)
        assert response.status_code == 200
        assert response.json()["outcome"] == "unmatched"
        async with app.state.db.read_sessions() as session:
            count = (
                await session.execute(
                    select(func.count())
                    .select_from(ProviderEvent)
                    .where(ProviderEvent.provider_message_id == "nobody")
                )
            ).scalar_one()
        assert count == 1


class TestInbound:
    async def test_a_user_gets_one_conversation_and_unsubscribing_is_recorded(self, app, client, bot):
        account = bot["publicId"]
        await user_writes(client, account, "u3", 30, "first")
        await user_writes(client, account, "u3", 31, "second")
        await post(
            client,
            account,
            {"event": "unsubscribed", "timestamp": now_ms(), "user_id": "u3", "message_token": 32},
        )
        async with app.state.db.read_sessions() as session:
            rows = list(
                (
                    await session.execute(select(Conversation).where(Conversation.external_id == "u3"))
                ).scalars()
            )
        assert len(rows) == 1
        assert rows[0].name == "Dara"
        assert rows[0].language == "km"
        assert rows[0].subscribed is False
