"""Callbacks to an upstream's one URL (`Provider.routes_by_account`): Apple posts every business of the MSP
to `/callbacks/apple`, and the channel is the one holding the business the request names."""

from __future__ import annotations

import base64
import gzip
import os
import time
import uuid
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from tests.conftest import Tenant

from openmmp.models import Channel, Conversation, InboundMessage
from openmmp.providers.apple import auth
from openmmp.providers.apple.simulator import APPLE_ISSUER


def business() -> dict[str, str]:
    return {
        "businessId": str(uuid.uuid4()),
        "mspId": f"msp-{uuid.uuid4().hex[:8]}",
        "secret": base64.b64encode(os.urandom(32)).decode(),
    }


def apple_post(
    credentials: dict[str, str], text: str, *, secret: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A user's message as Apple posts it to the MSP: gzip body, a JWT for the MSP, the business named."""
    user = f"urn:mbid:{uuid.uuid4().hex}"
    body = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "sourceId": user,
        "destinationId": credentials["businessId"],
        "type": "text",
        "body": text,
    }
    key = auth.msp_key(secret or credentials["secret"])
    token = auth.sign({"iss": APPLE_ISSUER, "aud": credentials["mspId"], "iat": int(time.time())}, key)
    headers = {
        "authorization": f"Bearer {token}",
        "id": body["id"],
        "source-id": user,
        "destination-id": credentials["businessId"],
        "content-type": "application/json",
        "content-encoding": "gzip",
    }
    return gzip.compress(orjson.dumps(body)), headers


async def inbound_texts(app: Any, account: str) -> list[tuple[str, str]]:
    async with app.state.db.read_sessions() as session:
        statement = (
            select(Conversation.external_id, InboundMessage.content)
            .join(Conversation, Conversation.id == InboundMessage.conversation_id)
            .join(Channel, Channel.id == InboundMessage.channel_id)
            .where(Channel.public_id == account)
            .order_by(InboundMessage.id)
        )
        return [(user, content["message"]) for user, content in (await session.execute(statement)).all()]


async def test_each_business_reaches_its_own_channel_through_the_one_url(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, new_company: Any, make_channel: Any
) -> None:
    mine, theirs = business(), business()
    other = await new_company("Other bank")
    my_channel = await make_channel(tenant, applicationId=4, credentials=mine)
    their_channel = await make_channel(other, applicationId=4, credentials=theirs)

    for credentials, text in ((mine, "to my bank"), (theirs, "to their bank")):
        body, headers = apple_post(credentials, text)
        response = await client.post("/callbacks/apple", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "inbound"

    assert [text for _, text in await inbound_texts(app, my_channel["publicId"])] == ["to my bank"]
    assert [text for _, text in await inbound_texts(app, their_channel["publicId"])] == ["to their bank"]


async def test_naming_a_business_proves_nothing_without_its_secret(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, make_channel: Any
) -> None:
    credentials = business()
    channel = await make_channel(tenant, applicationId=4, credentials=credentials)
    forged = base64.b64encode(os.urandom(32)).decode()

    body, headers = apple_post(credentials, "forged", secret=forged)
    response = await client.post("/callbacks/apple", content=body, headers=headers)

    assert response.status_code == 401, response.text
    assert await inbound_texts(app, channel["publicId"]) == []


async def test_an_account_no_channel_holds_and_other_providers_are_404(
    client: httpx.AsyncClient, tenant: Tenant, make_channel: Any
) -> None:
    body, headers = apple_post(business(), "nobody's")
    unknown = await client.post("/callbacks/apple", content=body, headers=headers)
    nameless = await client.post(
        "/callbacks/apple", content=body, headers={k: v for k, v in headers.items() if k != "destination-id"}
    )
    elsewhere = await client.post(
        "/callbacks/viber-bot", content=b"{}", headers={"content-type": "application/json"}
    )
    nowhere = await client.post(
        "/callbacks/nope", content=b"{}", headers={"content-type": "application/json"}
    )

    for response in (unknown, nameless, elsewhere, nowhere):
        assert response.status_code == 404, response.text
        assert response.json()["errors"][0]["code"] == "RESOURCE_NOT_FOUND"
