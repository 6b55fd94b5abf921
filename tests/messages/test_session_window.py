"""A provider's customer-service window (WhatsApp's 24 hours): free-form messages only to end users who
wrote within it, templates at any time; checked when the send is accepted."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.messages.test_message_endpoints import launch, send

from openmmp.kit.time import now_ms
from openmmp.models import Channel, Conversation, InboundMessage

HOUR_MS = 3_600_000
TEXT = {"type": "text", "message": "Your card is ready"}
TEMPLATE = {"type": "fb_whatsapp_template", "whatsappTemplateParam": {"templateId": "card_ready"}}


@pytest.fixture
async def whatsapp(make_channel, tenant: Tenant, app) -> dict[str, Any]:
    credentials = {
        "phoneNumberId": str(uuid.uuid4().int % 10**15),
        "wabaId": "1001",
        "accessToken": "token-for-tests",
        "appSecret": "app-secret-for-tests",
    }
    channel = await make_channel(tenant, applicationId=11, credentials=credentials)
    await launch(app, channel)
    return channel  # type: ignore[no-any-return]


async def wrote(app: Any, channel: dict[str, Any], phone: str, hours_ago: float) -> None:
    """The end user with `phone` wrote to the channel `hours_ago` hours ago."""
    async with app.state.db.write_sessions() as session, session.begin():
        found = await session.execute(
            Channel.__table__.select().where(Channel.public_id == channel["publicId"])
        )
        row = found.one()
        conversation = Conversation(
            company_id=row.company_id, channel_id=row.id, external_id=phone, phone=phone
        )
        session.add(conversation)
        await session.flush()
        session.add(
            InboundMessage(
                company_id=row.company_id,
                channel_id=row.id,
                conversation_id=conversation.id,
                kind="message",
                content={"type": "text", "message": "hi"},
                timestamp=now_ms() - int(hours_ago * HOUR_MS),
            )
        )


async def test_free_form_goes_only_within_the_window_and_templates_always(
    client: httpx.AsyncClient, app, tenant: Tenant, whatsapp
):
    await wrote(app, whatsapp, "85512345670", hours_ago=23)
    await wrote(app, whatsapp, "85512345671", hours_ago=25)
    inside = await send(client, tenant, whatsapp, {"phone": "85512345670", "message": TEXT})
    assert inside.status_code == 200, inside.text
    for phone in ("85512345671", "85512345672"):  # wrote too long ago; never wrote
        outside = await send(client, tenant, whatsapp, {"phone": phone, "message": TEXT})
        assert outside.status_code == 400, outside.text
        [error] = outside.json()["errors"]
        assert error["name"] == "message.type"
        assert "24-hour customer-service window" in error["message"]
        template = await send(client, tenant, whatsapp, {"phone": phone, "message": TEMPLATE})
        assert template.status_code == 200, template.text
