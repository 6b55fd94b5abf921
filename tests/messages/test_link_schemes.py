"""Links in a message are web links: a `javascript:` or `file:` URL is refused before anything is queued."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import Tenant, viber_credentials
from tests.messages.test_message_endpoints import launch, send

from openmmp.models import Message

BAD = [
    "javascript:alert(1)",
    "file:///etc/passwd",
    "data:text/html,hi",
    "ftp://files.example/x.png",
    "cdn.example/x",
]
PICTURE = {"type": "picture", "fileUrl": "https://cdn.example/a.png"}


def _messages(bad: str) -> list[tuple[dict[str, Any], str]]:
    return [
        ({**PICTURE, "fileUrl": bad}, "message.fileUrl"),
        ({**PICTURE, "thumbnailUrl": bad}, "message.thumbnailUrl"),
        ({"type": "richLink", "richLinkUrl": bad}, "message.richLinkUrl"),
        ({"type": "rich_card", "richCards": [{"title": "t", "image": bad}]}, "message.richCards[0].image"),
        (
            {"type": "text_with_attachment", "attachments": [{"type": "image/png", "name": "a", "url": bad}]},
            "message.attachments[0].url",
        ),
        (
            {
                "type": "text",
                "message": "hi",
                "suggestions": [{"action": "open-url", "text": "Go", "postbackData": bad}],
            },
            "message.suggestions[0]",
        ),
    ]


@pytest.mark.parametrize("bad", BAD)
async def test_a_link_that_is_not_http_is_refused_naming_its_field(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel, bad: str
):
    viber = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    await launch(app, viber)
    async with app.state.db.read_sessions() as session:
        before = (await session.execute(select(func.count()).select_from(Message))).scalar_one()
    for message, field in _messages(bad):
        response = await send(client, tenant, viber, {"phone": "85512345670", "message": message})
        assert response.status_code == 400, (field, response.text)
        names = [e["name"] for e in response.json()["errors"]]
        assert any(name.startswith(field) for name in names), (field, names)
    async with app.state.db.read_sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Message))).scalar_one() == before


async def test_an_http_link_with_a_placeholder_is_still_accepted(
    app, client: httpx.AsyncClient, tenant: Tenant, make_channel
):
    viber = await make_channel(tenant, applicationId=1, credentials=viber_credentials())
    await launch(app, viber)
    body = {
        "phone": "85512345670",
        "message": {"type": "picture", "fileUrl": "https://cdn.example/{{file}}.png"},
        "params": {"file": "receipt-7"},
    }
    response = await send(client, tenant, viber, body)
    assert response.status_code == 200, response.text
