"""The portal's message log: a message sent through the API is found by its phone, its id or its
clientMessageId, shown with its status timeline and parts; another company's is not there."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openmmp.kit.time import now_ms
from openmmp.messages import fallback
from openmmp.messages import status as status_machine
from openmmp.messages.repository import record_parts
from openmmp.models import Channel, Message
from openmmp.models.message import MessageStatus
from openmmp.portal.pages import messages as messages_page
from tests.billing.conftest import move
from tests.conftest import Tenant
from tests.portal.conftest import PortalClient
from tests.templates.conftest import sms_credentials

S, D, R = MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ
_LISTED = re.compile(r'<a href="/portal/messages/([0-9a-f-]{36})">')
_STEP = re.compile(r'<li data-status="([A-Z]+)">')


async def sms_channel(
    app: Any, tenant: Tenant, make_channel: Callable[..., Awaitable[dict[str, Any]]], **overrides: Any
) -> tuple[str, int]:
    """An SMS channel of the tenant (sends to phones as soon as it is made); its publicId and id."""
    channel = await make_channel(
        tenant,
        applicationId=3,
        credentials=sms_credentials(),
        settings={"defaultCountry": "KH"},
        **overrides,
    )
    async with app.state.db.read_sessions() as session:
        found = await session.scalar(select(Channel.id).where(Channel.public_id == channel["publicId"]))
    assert found is not None
    return channel["publicId"], int(found)


async def broadcast(
    client: httpx.AsyncClient, tenant: Tenant, account: str, phone: str, client_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"phone": phone, "message": {"type": "text", "message": "Your code is 1234"}}
    if client_id is not None:
        body["clientMessageId"] = client_id
    response = await client.post(f"/api/v1/channel/{account}/broadcast", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def listed(page: str) -> list[str]:
    return _LISTED.findall(page)


class TestSearch:
    async def test_a_message_sent_through_the_api_is_found_by_phone_id_and_client_id(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, _ = await sms_channel(app, tenant, make_channel)
        client_id = f"order-{uuid.uuid4().hex[:8]}"
        sent = await broadcast(client, tenant, account, "012 345 678", client_id)
        other = await broadcast(client, tenant, account, "+855 12 999 888")
        assert sent["phone"] == "85512345678"

        # A phone as the API's phone fields take it: national digits of the company's country (KH), or
        # international with + and spaces; both mean the stored E.164 digits.
        for typed in ("012 345 678", "+855 12 345 678", "85512345678"):
            page = await admin.get("/portal/messages", params={"q": typed})
            assert page.status_code == 200, page.text
            assert listed(page.text) == [sent["messageId"]], typed
            assert "phone 85512345678" in page.text
        by_id = await admin.get("/portal/messages", params={"q": sent["messageId"].upper()})
        assert listed(by_id.text) == [sent["messageId"]]
        by_client_id = await admin.get("/portal/messages", params={"q": client_id})
        assert listed(by_client_id.text) == [sent["messageId"]]
        assert 'id="message-search"' in by_client_id.text
        assert "PENDING" in by_client_id.text
        other_phone = await admin.get("/portal/messages", params={"q": "012999888"})
        assert listed(other_phone.text) == [other["messageId"]]
        nothing = await admin.get("/portal/messages", params={"q": "no-such-message"})
        assert listed(nothing.text) == []
        assert "No message found" in nothing.text

    async def test_htmx_gets_the_results_only_and_a_channel_narrows_them(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        first, _ = await sms_channel(app, tenant, make_channel)
        second, _ = await sms_channel(app, tenant, make_channel)
        one = await broadcast(client, tenant, first, "+85512000111")
        two = await broadcast(client, tenant, second, "+85512000111")
        fragment = await admin.htmx("GET", "/portal/messages?q=%2B85512000111")
        assert fragment.status_code == 200
        assert "<html" not in fragment.text
        assert listed(fragment.text) == [two["messageId"], one["messageId"]]  # newest first
        narrowed = await admin.get("/portal/messages", params={"q": "+85512000111", "accountId": first})
        assert listed(narrowed.text) == [one["messageId"]]
        by_id = await admin.get("/portal/messages", params={"q": two["messageId"], "accountId": first})
        assert listed(by_id.text) == []

    async def test_phone_matches_are_paged_newest_first(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
        monkeypatch: pytest.MonkeyPatch,
    ):
        monkeypatch.setattr(messages_page, "PAGE", 2)
        account, _ = await sms_channel(app, tenant, make_channel)
        sent = [(await broadcast(client, tenant, account, "+85512000222"))["messageId"] for _ in range(5)]
        newest = sent[::-1]
        seen: list[str] = []
        url: str | None = "/portal/messages?q=%2B85512000222"
        while url is not None:
            page = await admin.get(url)
            assert page.status_code == 200, page.text
            seen += listed(page.text)
            older = re.search(r'id="message-older" href="([^"]+)"', page.text)
            url = older.group(1).replace("&amp;", "&") if older else None
        assert seen == newest

    async def test_bad_input_is_a_400_naming_the_field(self, admin: PortalClient):
        too_long = await admin.get("/portal/messages", params={"q": "1" * 201})
        assert too_long.status_code == 400
        assert "<strong>q</strong>" in too_long.text
        unknown = await admin.get(
            "/portal/messages", params={"q": "+85512000333", "before": str(uuid.uuid4())}
        )
        assert unknown.status_code == 400
        assert "<strong>before</strong>" in unknown.text
        channel = await admin.get("/portal/messages", params={"q": "x", "accountId": str(uuid.uuid4())})
        assert channel.status_code == 404
        assert "<strong>accountId</strong>" in channel.text


class TestDetail:
    async def test_the_timeline_lists_the_steps_in_order_with_the_parts(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, channel_id = await sms_channel(app, tenant, make_channel)
        sent = await broadcast(client, tenant, account, "+85512000444")
        for step in (S, D, R):
            await move(app, channel_id, [(step, True)])
        async with app.state.db.write_sessions() as session, session.begin():
            message = await session.scalar(select(Message).where(Message.public_id == sent["messageId"]))
            assert message is not None
            await record_parts(session, [(message, ("up-a", "up-b", "up-c"))])

        page = await admin.get(f"/portal/messages/{sent['messageId']}")
        assert page.status_code == 200, page.text
        assert '<ol class="timeline" id="timeline">' in page.text
        assert _STEP.findall(page.text) == ["PENDING", "SENT", "DELIVERED", "READ"]
        api = await client.get(f"/api/v1/message/{sent['messageId']}/status", headers=tenant.headers)
        causes = [item["cause"] for item in api.json()["history"]]
        timeline = page.text[page.text.index('id="timeline"') :]
        assert (
            [c for c in causes if f"<strong>{c}</strong>" in timeline]
            == causes
            == [
                "PENDING",
                "SEND",
                "DELIVERED",
                "READ",
            ]
        )
        assert "Sent as 3 parts" in page.text
        assert "Your code is 1234" in page.text

    async def test_a_failure_shows_its_cause(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, channel_id = await sms_channel(app, tenant, make_channel)
        sent = await broadcast(client, tenant, account, "+85512000555")
        async with app.state.db.write_sessions() as session, session.begin():
            message = await session.scalar(select(Message).where(Message.public_id == sent["messageId"]))
            channel = await session.get(Channel, channel_id)
            assert message is not None and channel is not None
            change = status_machine.Change(
                message,
                MessageStatus.FAIL,
                now_ms(),
                error_code="SMPP_11",
                error_message="Invalid destination",
            )
            await status_machine.apply(session, [change], {channel_id: channel})
        page = await admin.get(f"/portal/messages/{sent['messageId']}")
        assert _STEP.findall(page.text) == ["PENDING", "FAIL"]
        assert "SMPP_11" in page.text and "Invalid destination" in page.text

    async def test_a_fallback_chain_shows_its_legs(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        first, first_id = await sms_channel(app, tenant, make_channel)
        second, _ = await sms_channel(app, tenant, make_channel)
        body = {
            "phone": "+85512000999",
            "message": {"type": "text", "message": "Your code is 1234"},
            "fallback": {"channels": [{"accountId": second}]},
        }
        response = await client.post(f"/api/v1/channel/{first}/broadcast", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
        root = response.json()["messageId"]
        async with app.state.db.write_sessions() as session, session.begin():
            message = await session.scalar(select(Message).where(Message.public_id == root))
            channel = await session.get(Channel, first_id)
            assert message is not None and channel is not None
            change = status_machine.Change(message, MessageStatus.FAIL, now_ms(), error_code="E1")
            await status_machine.apply(session, [change], {first_id: channel})
        async with app.state.db.write_sessions() as session, session.begin():
            assert await fallback.run_due(session, now=now_ms(), skip_locked=False) >= 1  # as the workers do

        page = await admin.get(f"/portal/messages/{root}")
        assert page.status_code == 200, page.text
        legs = page.text[page.text.index('id="message-legs"') :]
        [leg] = listed(legs)
        assert second in legs
        shown = await admin.get(f"/portal/messages/{leg}")
        assert f'id="message-parent" href="/portal/messages/{root}"' in shown.text
        found = await admin.get("/portal/messages", params={"q": "+85512000999"})
        assert listed(found.text) == [leg, root]

    async def test_another_companys_message_is_not_found(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        new_company: Callable[..., Awaitable[Tenant]],
        sign_in_admin: Callable[[Tenant], Awaitable[PortalClient]],
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, _ = await sms_channel(app, tenant, make_channel)
        client_id = f"secret-{uuid.uuid4().hex[:8]}"
        sent = await broadcast(client, tenant, account, "+85512000666", client_id)
        other = await sign_in_admin(await new_company())
        page = await other.get(f"/portal/messages/{sent['messageId']}")
        assert page.status_code == 404
        assert "Your code" not in page.text
        for q in (sent["messageId"], client_id, "+85512000666"):
            search = await other.get("/portal/messages", params={"q": q})
            assert search.status_code == 200
            assert listed(search.text) == []
        assert (await admin.get(f"/portal/messages/{sent['messageId']}")).status_code == 200
        assert (await admin.get("/portal/messages/not-an-id")).status_code == 404
