"""The portal's webhook log: a channel's deliveries with their attempts and body, and a replay that queues
one again as the API's replay does; another company's delivery is not there."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import select

from openmmp.kit.time import now_ms
from openmmp.models import WebhookDelivery
from openmmp.models.message import MessageStatus
from openmmp.webhooks import repository as webhooks_repository
from tests.billing.conftest import move
from tests.conftest import Tenant
from tests.portal.conftest import PortalClient
from tests.portal.test_messages import broadcast, sms_channel

HOUR_MS = 3_600_000


async def failed_delivery(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
) -> tuple[str, str, str]:
    """A message's SENT webhook whose one attempt got a 500 (recorded as the deliverer records it, its
    next attempt an hour away); (accountId, webhook id, message id)."""
    url = f"https://hooks.example.com/{uuid.uuid4().hex}"
    account, channel_id = await sms_channel(app, tenant, make_channel, webhookUrl=url)
    sent = await broadcast(client, tenant, account, "+85512000777")
    await move(app, channel_id, [(MessageStatus.SENT, True)])
    async with app.state.db.write_sessions() as session, session.begin():
        delivery = await session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.channel_id == channel_id)
        )
        assert delivery is not None
        now = now_ms()
        await webhooks_repository.record(
            session,
            delivered=[],
            failed=[
                {
                    "id": delivery.id,
                    "attempts": 1,
                    "next_attempt_at": now + HOUR_MS,
                    "lease_until": 0,
                    "last_status_code": 500,
                    "last_error": "HTTP 500",
                }
            ],
            given_up=[],
            attempts=[
                {
                    "delivery_id": delivery.id,
                    "url": url,
                    "attempted_at": now,
                    "status_code": 500,
                    "latency_ms": 12.4,
                    "response_excerpt": "upstream says no",
                    "error": "HTTP 500",
                }
            ],
        )
        webhook_id = delivery.public_id
    return account, webhook_id, sent["messageId"]


async def api_delivery(
    client: httpx.AsyncClient, tenant: Tenant, account: str, webhook_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/channel/{account}/webhook/deliveries/{webhook_id}", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


class TestDeliveries:
    async def test_the_list_and_the_detail_show_the_attempts_and_the_body(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, webhook_id, message_id = await failed_delivery(app, client, tenant, make_channel)
        listing = await admin.get("/portal/webhooks")  # the channel with a webhook URL is the default
        assert listing.status_code == 200, listing.text
        assert webhook_id in listing.text
        assert "Message status" in listing.text and "HTTP 500" in listing.text
        assert "1 delivery" in listing.text
        filtered = await admin.get("/portal/webhooks", params={"accountId": account, "state": "DELIVERED"})
        assert webhook_id not in filtered.text
        assert "0 deliveries" in filtered.text
        pending = await admin.get("/portal/webhooks", params={"accountId": account, "state": "PENDING"})
        assert webhook_id in pending.text

        detail = await admin.get(f"/portal/webhooks/{webhook_id}", params={"accountId": account})
        assert detail.status_code == 200, detail.text
        page = detail.text
        table = page[page.index('id="webhook-attempt-log"') :]
        assert "HTTP 500" in table and "upstream says no" in table and "12 ms" in table
        body = page[page.index('id="webhook-body"') :]
        assert message_id in body and "&#34;cause&#34;: &#34;SEND&#34;" in body
        assert 'id="replay"' in page

    async def test_replay_queues_the_delivery_again_as_the_api_shows(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, webhook_id, _ = await failed_delivery(app, client, tenant, make_channel)
        before = await api_delivery(client, tenant, account, webhook_id)
        assert (before["attempts"], before["nextAttemptDate"] > now_ms()) == (1, True)
        asked = now_ms()
        response = await admin.post(f"/portal/webhooks/{webhook_id}/replay?accountId={account}")
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith(f"/portal/webhooks/{webhook_id}?accountId={account}")
        after = await api_delivery(client, tenant, account, webhook_id)
        assert after["state"] == "PENDING"
        assert after["attempts"] == 0  # a fresh retry cycle, due now
        assert asked <= after["nextAttemptDate"] <= now_ms()
        assert len(after["attemptLog"]) == 1  # the log keeps the history
        shown = await admin.get(response.headers["location"])
        assert "Queued to be sent again" in shown.text

    async def test_replay_needs_the_csrf_token(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, webhook_id, _ = await failed_delivery(app, client, tenant, make_channel)
        url = f"/portal/webhooks/{webhook_id}/replay?accountId={account}"
        assert (await admin.http.post(url, data={"csrf": "forged"})).status_code == 403
        assert (await admin.http.post(url)).status_code == 403
        assert (await api_delivery(client, tenant, account, webhook_id))["attempts"] == 1  # not replayed

    async def test_another_companys_delivery_is_not_found(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        new_company: Callable[..., Awaitable[Tenant]],
        sign_in_admin: Callable[[Tenant], Awaitable[PortalClient]],
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account, webhook_id, _ = await failed_delivery(app, client, tenant, make_channel)
        stranger = await new_company()
        own_account, _ = await sms_channel(app, stranger, make_channel)
        other = await sign_in_admin(stranger)
        for account_id in (account, own_account):
            detail = await other.get(f"/portal/webhooks/{webhook_id}", params={"accountId": account_id})
            assert detail.status_code == 404
            assert "upstream says no" not in detail.text
            replay = await other.post(f"/portal/webhooks/{webhook_id}/replay?accountId={account_id}")
            assert replay.status_code == 404
        listing = await other.get("/portal/webhooks", params={"accountId": account})
        assert listing.status_code == 404
        assert (await api_delivery(client, tenant, account, webhook_id))["attempts"] == 1

    async def test_bad_queries_are_400_naming_the_field(self, admin: PortalClient):
        assert "<strong>state</strong>" in (await admin.get("/portal/webhooks?state=LOST")).text
        assert (await admin.get("/portal/webhooks?page=0")).status_code == 400
        missing = await admin.get(f"/portal/webhooks/{uuid.uuid4()}")
        assert missing.status_code == 400
        assert "<strong>accountId</strong>" in missing.text
