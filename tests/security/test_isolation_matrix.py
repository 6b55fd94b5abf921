"""Tenant isolation, route by route: company B using company A's real ids learns and changes nothing.

The matrix below has one probe per operation that takes an id in its path, enumerated from the app
itself (normal and sandbox mode): an operation added without a probe fails `TestTheMatrixIsComplete`.
Each tenant probe is made by B twice, with A's real ids and with ids that exist nowhere; both must be
the same 404 with the api.md error body, so B cannot tell A's objects from nothing. Ids carried in
queries and bodies (clientMessageId, a conversation's `to`, a delivery under B's own channel, a
provider's message token) are probed the same way. Afterwards every row of A is as it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from tests.callbacks.test_routed_callbacks import apple_post, business
from tests.conftest import Tenant
from tests.security.conftest import operations

from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import Campaign, Channel, Company, Job, Message, Template, TemplateFlow
from openmmp.models.base import Base
from openmmp.models.message import MessageStatus
from openmmp.tasks import service as tasks

TEXT = {"type": "text", "message": "Hello"}
API = "/api/v1"


@dataclass(frozen=True)
class Ids:
    """The ids a probe uses: A's real ones, or ones that exist nowhere."""

    account: str  # A's Viber Bot channel
    viber_account: str  # A's Viber Business Messages channel
    message: str
    client_message: str
    conversation: str
    webhook: str
    key: str
    user: str  # A's end user, as Viber knows them
    provider_token: str  # the upstream's token of A's message
    task: str  # A's background task
    template: str  # A's message template
    campaign: str  # A's bulk campaign
    cdr: str  # A's billing CDR request (a background task)

    @classmethod
    def nowhere(cls) -> Ids:
        ids = cls(**{f.name: str(uuid.uuid4()) for f in fields(cls)})
        return replace(ids, user=f"user-{uuid.uuid4().hex}", provider_token=str(uuid.uuid4().int % 10**18))


@dataclass
class World:
    client: httpx.AsyncClient
    sandbox_client: httpx.AsyncClient
    a: Tenant
    b: Tenant
    a_ids: Ids
    a_token: str
    b_account: str  # B's own Viber Bot channel, launched
    b_token: str
    b_conversation: str  # one of B's end users
    a_service_id: int  # A's Viber BM service
    a_business: dict[str, str]  # A's Apple channel's credentials

    def as_b(
        self, method: str, url: str, body: Any = None, *, sandbox: bool = False
    ) -> Awaitable[httpx.Response]:
        http = self.sandbox_client if sandbox else self.client
        return http.request(method, url, json=body, headers=self.b.headers)


def signed(body: dict[str, Any], key: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Viber-Content-Signature": signature, "content-type": "application/json"}


def callback(
    w: World, provider: str, account: str, body: dict[str, Any], key: str
) -> Awaitable[httpx.Response]:
    raw, headers = signed(body, key)
    return w.client.post(f"/callbacks/{provider}/{account}", content=raw, headers=headers)


def delivered(ids: Ids) -> dict[str, Any]:
    """A delivery report of A's message, as Viber would send it."""
    return {
        "event": "delivered",
        "timestamp": now_ms(),
        "message_token": ids.provider_token,
        "user_id": ids.user,
        "seq": 1,
        "dest": "85512345670",
    }


Probe = Callable[[World, Ids], Awaitable[httpx.Response]]
CHANNEL = f"{API}/channel/{{accountId}}"
TEMPLATE = f"{API}/template/{{templateId}}"
RCS = f"{API}/rcs/{{accountId}}"
CONSENT = f"{API}/zalo/{{accountId}}/consent"
# Valid bodies for the RCS agent routes: a body refused as invalid would answer 400 before any lookup.
AGENT = {
    "displayName": "Evil",
    "description": "Evil",
    "logoUri": "https://evil.example/l.png",
    "heroUri": "https://evil.example/h.png",
    "color": "#000000",
    "phoneNumbers": [{"number": "+85523430999"}],
    "privacyUri": "https://evil.example/p",
    "termsConditionsUri": "https://evil.example/t",
    "billingCategory": "CONVERSATIONAL",
    "agentUseCase": "TRANSACTIONAL",
    "hostingRegion": "ASIA_PACIFIC",
}
VERIFICATION = {
    "partnerName": "Evil",
    "partnerEmailAddress": "e@evil.example",
    "brandContactName": "Evil",
    "brandContactEmailAddress": "e@evil.example",
    "brandWebsiteUrl": "https://evil.example",
}
QUESTIONNAIRE = {
    "contacts": [{"name": "E", "title": "E", "email": "e@evil.example"}],
    "optinDescription": "x",
    "triggerDescription": "x",
    "interactionsDescription": "x",
    "optoutDescription": "x",
    "agentAccessInstructions": "x",
}
LAUNCH_INDONESIA = {
    "questionnaire": QUESTIONNAIRE,
    "carriers": ["telkomsel"],
    "companyRegistrationNumber": "1234567890123",
    "taxId": "012345678901234",
    "picName": "E",
    "picPhone": "+6281234567890",
}
LAUNCH_INDIA = {
    "questionnaire": QUESTIONNAIRE,
    "carriers": ["jio"],
    "dltPrincipalEntityId": "1101234567890123456",
    "gstin": "27AAPFU0939F1ZV",
    "brandRegisteredAddress": "x",
}


def template_form(account_id: str | None = None) -> dict[str, Any]:
    """A valid CreateFormTemplateMessage (a body refused as invalid would answer 400 before any lookup)."""
    body: dict[str, Any] = {
        "name": "Evil",
        "type": 1,
        "applicationId": 10,
        "messages": [{"id": "m", "name": "m", "status": "START", "message": TEXT}],
    }
    return body | ({"accountId": account_id} if account_id else {})


def _template(method: str, url: str, body: Any = None) -> Probe:
    """B on a route of A's template (`url` after the templateId)."""
    return lambda w, i: w.as_b(method, f"{API}/template/{i.template}{url}", body)


def _rcs(method: str, url: str, body: Any = None) -> Probe:
    """B on an RCS agent route of A's channel (`url` after the accountId)."""
    return lambda w, i: w.as_b(method, f"{API}/rcs/{i.account}{url}", body)


# Operations of a company's API key: B with A's ids must get what B gets for ids that exist nowhere: 404.
TENANT: dict[tuple[str, str], Probe] = {
    ("GET", CHANNEL): lambda w, i: w.as_b("GET", f"{API}/channel/{i.account}"),
    ("POST", CHANNEL): lambda w, i: w.as_b(
        "POST",
        f"{API}/channel/{i.account}",
        {
            "name": "pwned",
            "credentials": {"authToken": "attacker-token-1", "senderName": "Evil"},
            "webhookUrl": "https://8.8.8.8/evil",
            "settings": {"defaultCountry": "US"},
        },
    ),
    ("GET", f"{CHANNEL}/status"): lambda w, i: w.as_b("GET", f"{API}/channel/{i.account}/status"),
    ("POST", f"{CHANNEL}/webhook"): lambda w, i: w.as_b(
        "POST", f"{API}/channel/{i.account}/webhook", {"url": "https://8.8.8.8/evil"}
    ),
    ("GET", f"{CHANNEL}/webhook/deliveries"): lambda w, i: w.as_b(
        "GET", f"{API}/channel/{i.account}/webhook/deliveries"
    ),
    ("GET", f"{CHANNEL}/webhook/deliveries/{{webhookId}}"): lambda w, i: w.as_b(
        "GET", f"{API}/channel/{i.account}/webhook/deliveries/{i.webhook}"
    ),
    ("POST", f"{CHANNEL}/webhook/deliveries/{{webhookId}}/replay"): lambda w, i: w.as_b(
        "POST", f"{API}/channel/{i.account}/webhook/deliveries/{i.webhook}/replay"
    ),
    ("POST", f"{CHANNEL}/webhook/replay"): lambda w, i: w.as_b(
        "POST", f"{API}/channel/{i.account}/webhook/replay", {}
    ),
    ("POST", f"{CHANNEL}/broadcast"): lambda w, i: w.as_b(
        "POST", f"{API}/channel/{i.account}/broadcast", {"to": i.conversation, "message": TEXT}
    ),
    ("POST", f"{CHANNEL}/broadcast/batch"): lambda w, i: w.as_b(
        "POST",
        f"{API}/channel/{i.account}/broadcast/batch",
        {"messages": [{"to": i.conversation, "message": TEXT}]},
    ),
    ("POST", f"{CHANNEL}/conversation"): lambda w, i: w.as_b(
        "POST", f"{API}/channel/{i.account}/conversation", {"to": i.conversation, "message": TEXT}
    ),
    ("GET", f"{API}/message/{{messageId}}/status"): lambda w, i: w.as_b(
        "GET", f"{API}/message/{i.message}/status"
    ),
    ("DELETE", f"{API}/onboard/api-key/{{publicId}}"): lambda w, i: w.as_b(
        "DELETE", f"{API}/onboard/api-key/{i.key}"
    ),
    ("POST", RCS): _rcs("POST", "", {"name": "pwned", "agent": AGENT}),
    ("GET", f"{RCS}/status"): _rcs("GET", "/status"),
    ("POST", f"{RCS}/test"): _rcs("POST", "/test", {"phones": ["85512345671"]}),
    ("GET", f"{RCS}/capabilities"): _rcs("GET", "/capabilities?phone=85512345671"),
    ("POST", f"{RCS}/capabilities"): _rcs("POST", "/capabilities", {"phones": ["85512345671"]}),
    ("POST", f"{RCS}/verification"): _rcs("POST", "/verification", VERIFICATION),
    ("POST", f"{RCS}/launch"): _rcs(
        "POST", "/launch", {"regions": ["asia-pacific"], "questionnaire": QUESTIONNAIRE}
    ),
    ("POST", f"{RCS}/launch/indonesia"): _rcs("POST", "/launch/indonesia", LAUNCH_INDONESIA),
    ("POST", f"{RCS}/launch/india"): _rcs("POST", "/launch/india", LAUNCH_INDIA),
    ("POST", f"{CHANNEL}/broadcast-template"): lambda w, i: w.as_b(
        "POST",
        f"{API}/channel/{i.account}/broadcast-template",
        {"templateId": str(uuid.uuid4()), "phone": "85512345670", "params": {}},
    ),
    ("GET", f"{API}/background-task/{{taskId}}"): lambda w, i: w.as_b(
        "GET", f"{API}/background-task/{i.task}"
    ),
    ("GET", f"{API}/background-task/{{taskId}}/download"): lambda w, i: w.as_b(
        "GET", f"{API}/background-task/{i.task}/download"
    ),
    ("GET", f"{API}/billing/cdr/{{taskId}}"): lambda w, i: w.as_b("GET", f"{API}/billing/cdr/{i.cdr}"),
    ("GET", f"{API}/billing/cdr/{{taskId}}/download"): lambda w, i: w.as_b(
        "GET", f"{API}/billing/cdr/{i.cdr}/download"
    ),
    ("GET", f"{API}/template/flow/{{messageId}}"): lambda w, i: w.as_b(
        "GET", f"{API}/template/flow/{i.message}"
    ),
    ("POST", CONSENT): lambda w, i: w.as_b(
        "POST",
        f"{API}/zalo/{i.account}/consent",
        {"phone": "84987654321", "callType": "audio", "reasonCode": 101},
    ),
    ("GET", CONSENT): lambda w, i: w.as_b("GET", f"{API}/zalo/{i.account}/consent?phone=84987654321"),
    ("GET", f"{API}/bulk-campaign/{{campaignId}}"): lambda w, i: w.as_b(
        "GET", f"{API}/bulk-campaign/{i.campaign}"
    ),
    ("GET", f"{API}/bulk-campaign/{{campaignId}}/events"): lambda w, i: w.as_b(
        "GET", f"{API}/bulk-campaign/{i.campaign}/events"
    ),
    ("POST", f"{API}/bulk-campaign/{{campaignId}}/broadcast"): lambda w, i: w.as_b(
        "POST",
        f"{API}/bulk-campaign/{i.campaign}/broadcast",
        {"broadcastType": 2, "contacts": [{"phone": "85512345670", "params": {}}]},
    ),
    ("POST", f"{API}/bulk-campaign/{{campaignId}}/pause"): lambda w, i: w.as_b(
        "POST", f"{API}/bulk-campaign/{i.campaign}/pause"
    ),
    ("POST", f"{API}/bulk-campaign/{{campaignId}}/resume"): lambda w, i: w.as_b(
        "POST", f"{API}/bulk-campaign/{i.campaign}/resume"
    ),
    ("POST", f"{API}/bulk-campaign/{{campaignId}}/cancel"): lambda w, i: w.as_b(
        "POST", f"{API}/bulk-campaign/{i.campaign}/cancel"
    ),
    ("POST", f"{API}/bulk-campaign/{{campaignId}}/message"): lambda w, i: w.as_b(
        "POST", f"{API}/bulk-campaign/{i.campaign}/message", {"phone": "85512345670", "params": {}}
    ),
    ("POST", f"{API}/bulk-campaign/{{campaignId}}/contacts"): lambda w, i: w.client.post(
        f"{API}/bulk-campaign/{i.campaign}/contacts",
        params={"filename": "contacts.csv"},
        content=b"phone,name,code\n85512345670,A,1\n",
        headers={**w.b.headers, "content-type": "text/csv"},
    ),
    ("GET", TEMPLATE): _template("GET", ""),
    ("POST", TEMPLATE): _template("POST", "", template_form()),
    ("DELETE", TEMPLATE): _template("DELETE", ""),
    ("POST", f"{TEMPLATE}/preview"): _template("POST", "/preview", {"params": {}}),
    ("POST", f"{TEMPLATE}/approve"): _template("POST", "/approve"),
    ("POST", f"{TEMPLATE}/reject"): _template("POST", "/reject", {"cause": "Evil"}),
    ("POST", "/sandbox/{accountId}/inbound"): lambda w, i: w.as_b(
        "POST", f"/sandbox/{i.account}/inbound", {"name": "Evil", "text": "hi"}, sandbox=True
    ),
    ("POST", "/sandbox/{provider}/{accountId}/inbound"): lambda w, i: w.as_b(
        "POST", f"/sandbox/viber-bot/{i.account}/inbound", {"name": "Evil", "text": "hi"}, sandbox=True
    ),
}

# Ids in queries and bodies, and A's objects under B's own channel, with what B must get: the answer
# for an id that exists nowhere (a 404; a `to` is a 400 naming it; a batch item is refused in a 200).
NOT_FOUND, BAD_TO, ITEM_REFUSED, ACKNOWLEDGED = "404", "400 on to", "item refused", "acknowledged"
BODY_IDS: dict[str, tuple[Probe, str]] = {
    "status by A's clientMessageId": (
        lambda w, i: w.client.get(
            f"{API}/message/status", params={"clientMessageId": i.client_message}, headers=w.b.headers
        ),
        NOT_FOUND,
    ),
    "A's delivery under B's channel": (
        lambda w, i: w.as_b("GET", f"{API}/channel/{w.b_account}/webhook/deliveries/{i.webhook}"),
        NOT_FOUND,
    ),
    "replay of A's delivery under B's channel": (
        lambda w, i: w.as_b("POST", f"{API}/channel/{w.b_account}/webhook/deliveries/{i.webhook}/replay"),
        NOT_FOUND,
    ),
    "reply on B's channel to A's conversation": (
        lambda w, i: w.as_b(
            "POST", f"{API}/channel/{w.b_account}/conversation", {"to": i.conversation, "message": TEXT}
        ),
        BAD_TO,
    ),
    "broadcast on B's channel to A's conversation": (
        lambda w, i: w.as_b(
            "POST", f"{API}/channel/{w.b_account}/broadcast", {"to": i.conversation, "message": TEXT}
        ),
        BAD_TO,
    ),
    "batch on B's channel to A's conversation": (
        lambda w, i: w.as_b(
            "POST",
            f"{API}/channel/{w.b_account}/broadcast/batch",
            {"messages": [{"to": i.conversation, "message": TEXT}]},
        ),
        ITEM_REFUSED,
    ),
    "approved templates of A's channel": (
        lambda w, i: w.client.get(
            f"{API}/template/approved", params={"accountId": i.account}, headers=w.b.headers
        ),
        NOT_FOUND,
    ),
    "a template for A's channel": (
        lambda w, i: w.as_b("POST", f"{API}/template", template_form(i.account)),
        NOT_FOUND,
    ),
    "B's signed callback on B's channel naming A's message and user": (
        lambda w, i: callback(w, "viber-bot", w.b_account, delivered(i), w.b_token),
        ACKNOWLEDGED,
    ),
}


def assert_outcome(response: httpx.Response, expected: str, what: str) -> None:
    if expected == NOT_FOUND:
        assert_not_found(response, what)
    elif expected == BAD_TO:
        assert response.status_code == 400, (what, response.text)
        assert [(e["name"], e["code"]) for e in response.json()["errors"]] == [("to", "INVALID")], what
    elif expected == ITEM_REFUSED:
        assert response.status_code == 200, (what, response.text)
        [item] = response.json()["messages"]
        assert [(e["name"], e["code"]) for e in item["errors"]] == [("to", "INVALID")], what
    else:
        assert response.status_code == 200, (what, response.text)
        assert response.json()["status"] == "ok", what


# Public by construction, proven by the upstream's signature: B can only sign with its own bot token,
# which A's channel refuses (401). An account id that exists nowhere is a 404 there, so whoever can POST
# learns whether a channel id exists (ids are random UUIDs; nothing else is revealed or changed).
CALLBACK = "/callbacks/{provider}/{accountId}"
CALLBACKS: dict[tuple[str, str], list[Probe]] = {
    ("POST", CALLBACK): [
        lambda w, i: callback(w, "viber-bot", i.account, delivered(i), w.b_token),
        lambda w, i: callback(w, "viber", i.viber_account, delivered(i), w.b_token),
    ],
    # Apple's one URL: naming A's business, signed with a secret that is not A's.
    ("POST", "/callbacks/{provider}"): [lambda w, i: _apple_to_one_url(w)],
}


def _apple_to_one_url(w: World) -> Awaitable[httpx.Response]:
    body, headers = apple_post(w.a_business, "hi", secret=base64.b64encode(os.urandom(32)).decode())
    return w.client.post("/callbacks/apple", content=body, headers=headers)


# A verification handshake (GET) reveals nothing either: an upstream without one is a 405 for any id.
HANDSHAKES: dict[tuple[str, str], list[Probe]] = {
    ("GET", CALLBACK): [
        lambda w, i: w.client.get(f"/callbacks/viber-bot/{i.account}", params={"hub.challenge": "x"}),
        lambda w, i: w.client.get(f"/callbacks/viber/{i.viber_account}", params={"hub.challenge": "x"}),
    ],
}

# The end of a sign-up is public as well, proven by the token a company's key asked for, which names
# that company: B can bring its own (it makes B's channel) or one it made up, which is a 401 whatever A has.
SIGNUP = "/onboard/{provider}/callback"
SIGNUPS: dict[tuple[str, str], list[Probe]] = {
    ("GET", SIGNUP): [
        lambda w, i: w.client.get(
            "/onboard/whatsapp/callback",
            params={"state": i.account, "code": "c", "waba_id": "1", "phone_number_id": "2"},
        ),
    ],
}


def normalised(response: httpx.Response, ids: Ids) -> tuple[int, Any]:
    """The response with the probe's ids blanked, so answers for A's ids and for no ids compare."""
    text = response.text
    for value in {getattr(ids, f.name) for f in fields(ids)}:
        text = text.replace(value, "<id>")
    text = re.sub(r'"(messageId|createdDate|timestamp)":\s*("[^"]*"|\d+)', r'"\1": "<x>"', text)
    try:
        return response.status_code, json.loads(text)
    except ValueError:
        return response.status_code, text


def assert_not_found(response: httpx.Response, what: str) -> None:
    assert response.status_code == 404, (what, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"errors"}, (what, body)
    [error] = body["errors"]
    assert set(error) == {"name", "code", "message"}, (what, error)
    assert error["code"] == "RESOURCE_NOT_FOUND", (what, error)


async def snapshot(app: Any, company_public_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table that belongs to the company (by company, channel, message or delivery)."""
    async with app.state.db.read_sessions() as session:
        company_id = (
            await session.execute(select(Company.id).where(Company.public_id == company_public_id))
        ).scalar_one()
        owned: dict[str, list[int]] = {"company_id": [company_id]}
        for link, owner in (
            ("channel_id", "channels"),
            ("message_id", "messages"),
            ("delivery_id", "webhook_deliveries"),
        ):
            rows = Base.metadata.tables[owner]
            owned[link] = list(
                (await session.execute(select(rows.c.id).where(rows.c.company_id == company_id))).scalars()
            )
        found: dict[str, list[tuple[Any, ...]]] = {}
        for table in Base.metadata.sorted_tables:
            if table.name == "companies":
                condition = table.c.id == company_id
            else:
                column = next((c for c in owned if c in table.c), None)
                if column is None:
                    continue
                condition = table.c[column].in_(owned[column])
            ordered = select(table).where(condition).order_by(*table.primary_key.columns)
            found[table.name] = [tuple(row) for row in await session.execute(ordered)]
        return found


async def launch(app: Any, *account_ids: str) -> None:
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(update(Channel).where(Channel.public_id.in_(account_ids)).values(status=3))


@pytest.fixture
async def world(
    app: Any, client: httpx.AsyncClient, sandbox_client: httpx.AsyncClient, new_company, make_channel
) -> World:
    a, b = await new_company("Victim A"), await new_company("Attacker B")
    a_token, b_token = f"a-bot-{uuid.uuid4().hex}", f"b-bot-{uuid.uuid4().hex}"
    a_bot = await make_channel(
        a, credentials={"authToken": a_token, "senderName": "A bot"}, webhookUrl="https://8.8.8.8/a-hooks"
    )
    a_service_id = uuid.uuid4().int % 10**9 + 1
    a_viber = await make_channel(
        a, applicationId=1, credentials={"serviceId": a_service_id}, settings={"defaultCountry": "KH"}
    )
    b_bot = await make_channel(b, credentials={"authToken": b_token, "senderName": "B bot"})
    a_business = business()
    await make_channel(a, applicationId=4, credentials=a_business)
    await launch(app, a_bot["publicId"], a_viber["publicId"], b_bot["publicId"])

    a_user, b_user = f"a-user-{uuid.uuid4().hex}", f"b-user-{uuid.uuid4().hex}"
    await _write(client, a_bot["publicId"], a_token, a_user)
    await _write(client, b_bot["publicId"], b_token, b_user)
    deliveries = (
        await client.get(f"{API}/channel/{a_bot['publicId']}/webhook/deliveries", headers=a.headers)
    ).json()
    [inbound] = deliveries["items"]
    detail = await client.get(
        f"{API}/channel/{a_bot['publicId']}/webhook/deliveries/{inbound['webhookId']}", headers=a.headers
    )
    conversation = detail.json()["body"]["from"]
    b_conversation = await _conversation_of(app, b_bot["publicId"], b_user)

    client_message = f"a-order-{uuid.uuid4().hex}"
    reply = await client.post(
        f"{API}/channel/{a_bot['publicId']}/conversation",
        json={"to": conversation, "message": TEXT, "clientMessageId": client_message},
        headers=a.headers,
    )
    assert reply.status_code == 200, reply.text
    provider_token = str(uuid.uuid4().int % 10**18)
    await _mark_sent(app, reply.json()["messageId"], provider_token)
    key = await client.post(f"{API}/onboard/api-key", json={"name": "a-backend"}, headers=a.headers)
    assert key.status_code == 201, key.text

    template = await client.post(f"{API}/template", json=template_form(a_bot["publicId"]), headers=a.headers)
    assert template.status_code == 201, template.text

    async with app.state.db.write_sessions() as session, session.begin():
        a_company = await session.scalar(select(Company).where(Company.public_id == a.company_id))
        assert a_company is not None
        task = await tasks.create(session, company_id=a_company.id, type="phone_check", params={"phones": []})
        cdr = await tasks.create(session, company_id=a_company.id, type="billing_cdr", params={})
        # A conversation flow A's reply started (as a CONVERSATION template's START message would).
        message = await session.scalar(select(Message).where(Message.public_id == reply.json()["messageId"]))
        assert message is not None
        session.add(
            TemplateFlow(
                company_id=a_company.id,
                channel_id=message.channel_id,
                conversation_id=message.conversation_id,
                template_public_id=template.json()["publicId"],
                message_id=message.public_id,
                api_key_id=0,
                steps=[],
                params={},
                step="start",
                sent=[message.public_id],
            )
        )
        a_template = await session.scalar(
            select(Template).where(Template.public_id == template.json()["publicId"])
        )
        assert a_template is not None
        a_campaign = Campaign(
            company_id=a_company.id, channel_id=message.channel_id, template_id=a_template.id, name="A's"
        )
        session.add(a_campaign)
    ids = Ids(
        account=a_bot["publicId"],
        viber_account=a_viber["publicId"],
        message=reply.json()["messageId"],
        client_message=client_message,
        conversation=conversation,
        webhook=inbound["webhookId"],
        key=key.json()["publicId"],
        user=a_user,
        provider_token=provider_token,
        task=task.public_id,
        cdr=cdr.public_id,
        template=template.json()["publicId"],
        campaign=a_campaign.public_id,
    )
    return World(
        client,
        sandbox_client,
        a,
        b,
        ids,
        a_token,
        b_bot["publicId"],
        b_token,
        b_conversation,
        a_service_id,
        a_business,
    )


async def _write(client: httpx.AsyncClient, account: str, token: str, user: str) -> None:
    body = {
        "event": "message",
        "timestamp": now_ms(),
        "message_token": uuid.uuid4().int % 10**18,
        "sender": {
            "id": user,
            "name": "Dara",
            "avatar": "",
            "country": "KH",
            "language": "km",
            "api_version": 10,
        },
        "message": {"type": "text", "text": "hi"},
    }
    raw, headers = signed(body, token)
    response = await client.post(f"/callbacks/viber-bot/{account}", content=raw, headers=headers)
    assert response.status_code == 200, response.text


async def _conversation_of(app: Any, account: str, user: str) -> str:
    from openmmp.models import Conversation

    async with app.state.db.read_sessions() as session:
        statement = (
            select(Conversation.public_id)
            .join(Channel, Channel.id == Conversation.channel_id)
            .where(Channel.public_id == account, Conversation.external_id == user)
        )
        return str((await session.execute(statement)).scalar_one())


async def _mark_sent(app: Any, message_id: str, provider_token: str) -> None:
    """Record the message SENT with the upstream's token, as the dispatcher does."""
    async with app.state.db.write_sessions() as session, session.begin():
        message = (await session.execute(select(Message).where(Message.public_id == message_id))).scalar_one()
        channel = await session.get(Channel, message.channel_id)
        assert channel is not None
        change = status_machine.Change(
            message, MessageStatus.SENT, now_ms(), provider_message_id=provider_token
        )
        await status_machine.apply(session, [change], {channel.id: channel})


class TestTheMatrixIsComplete:
    def test_every_operation_with_an_id_in_its_path_has_a_probe(self):
        with_ids = {op.key: op for op in operations() if op.path_params}
        probed = TENANT.keys() | CALLBACKS.keys() | HANDSHAKES.keys() | SIGNUPS.keys()
        assert sorted(with_ids.keys() - probed) == [], (
            "operations without an isolation probe: add them to TENANT"
        )
        assert sorted(probed - with_ids.keys()) == [], "probes of operations that no longer exist"

    def test_tenant_probes_are_authenticated_and_callback_probes_are_not(self):
        by_key = {op.key: op for op in operations()}
        assert [k for k in TENANT if not by_key[k].authenticated] == []
        assert [k for k in CALLBACKS | HANDSHAKES | SIGNUPS if by_key[k].authenticated] == []


class TestCompanyBWithCompanyAsIds:
    async def test_every_operation_answers_404_as_for_ids_that_exist_nowhere(self, app, world: World):
        before = await snapshot(app, world.a.company_id)
        assert all(
            before[t] for t in ("channels", "messages", "webhook_deliveries", "conversations", "api_keys")
        )
        for key, probe in TENANT.items():
            real = await probe(world, world.a_ids)
            nowhere = Ids.nowhere()
            assert_not_found(real, f"{key} with A's ids")
            assert normalised(real, world.a_ids) == normalised(await probe(world, nowhere), nowhere), key
        assert await snapshot(app, world.a.company_id) == before

    async def test_ids_in_queries_and_bodies_reveal_nothing_either(self, app, world: World):
        before = await snapshot(app, world.a.company_id)
        for name, (probe, expected) in BODY_IDS.items():
            real = await probe(world, world.a_ids)
            nowhere = Ids.nowhere()
            assert_outcome(real, expected, name)
            assert normalised(real, world.a_ids) == normalised(await probe(world, nowhere), nowhere), name
        assert await snapshot(app, world.a.company_id) == before

    async def test_a_callback_signed_with_bs_token_is_refused_on_as_channels(self, app, world: World):
        before = await snapshot(app, world.a.company_id)
        for key, probes in CALLBACKS.items():
            for probe in probes:
                response = await probe(world, world.a_ids)
                assert response.status_code == 401, (key, response.text)
                assert response.json()["errors"][0]["code"] == "NOT_AUTHENTICATE", key
        assert await snapshot(app, world.a.company_id) == before

    async def test_a_handshake_answers_as_for_ids_that_exist_nowhere(self, app, world: World):
        before = await snapshot(app, world.a.company_id)
        nowhere = Ids.nowhere()
        for key, probes in HANDSHAKES.items():
            for probe in probes:
                real = await probe(world, world.a_ids)
                assert normalised(real, world.a_ids) == normalised(await probe(world, nowhere), nowhere), key
        assert await snapshot(app, world.a.company_id) == before

    async def test_the_end_of_a_signup_with_a_made_up_token_is_refused(self, app, world: World):
        before = await snapshot(app, world.a.company_id)
        for key, probes in SIGNUPS.items():
            for probe in probes:
                response = await probe(world, world.a_ids)
                assert response.status_code == 401, (key, response.text)
                assert response.json()["errors"][0]["name"] == "state", key
        assert await snapshot(app, world.a.company_id) == before

    async def test_as_client_message_id_is_free_for_b(self, app, world: World):
        """clientMessageId is unique per company: B reusing A's is a new message, never a 409 or A's answer."""
        before = await snapshot(app, world.a.company_id)
        body = {"to": world.b_conversation, "message": TEXT, "clientMessageId": world.a_ids.client_message}
        response = await world.as_b("POST", f"{API}/channel/{world.b_account}/conversation", body)
        assert response.status_code == 200, response.text
        sent = response.json()
        assert sent["clientMessageId"] == world.a_ids.client_message
        assert (sent["messageId"], sent["publicId"]) != (world.a_ids.message, world.a_ids.account)
        status = await world.client.get(
            f"{API}/message/status",
            params={"clientMessageId": world.a_ids.client_message},
            headers=world.b.headers,
        )
        assert status.json()["messageId"] == sent["messageId"]
        assert await snapshot(app, world.a.company_id) == before


class TestAnUpstreamIdentityBelongsToOneChannel:
    """B tries to act as A upstream: with A's Viber service or A's bot token. Nothing of A changes, B gets
    no channel and nothing is asked of the upstream (no set-up job)."""

    async def _bs_channels(self, w: World) -> list[dict[str, Any]]:
        listed = await w.client.get(f"{API}/channel", params={"size": 100}, headers=w.b.headers)
        return list(listed.json()["items"])

    async def _setup_jobs(self, app: Any) -> int:
        async with app.state.db.read_sessions() as session:
            found = await session.execute(
                select(func.count()).select_from(Job).where(Job.kind == "channel_setup")
            )
            return int(found.scalar_one())

    async def test_a_company_cannot_bind_an_operator_assigned_viber_service_with_its_own_key(
        self, app: Any, world: World
    ):
        before, channels = await snapshot(app, world.a.company_id), await self._bs_channels(world)
        body = {"name": "pwned", "applicationId": 1, "credentials": {"serviceId": world.a_service_id}}
        response = await world.as_b("POST", f"{API}/channel", body)
        assert response.status_code == 403, response.text
        assert response.json()["errors"][0]["name"] == "credentials.serviceId"
        assert await snapshot(app, world.a.company_id) == before
        assert await self._bs_channels(world) == channels

    async def test_not_even_the_partner_binds_a_viber_service_that_another_channel_holds(
        self, app: Any, world: World, partner: Tenant
    ):
        before, channels = await snapshot(app, world.a.company_id), await self._bs_channels(world)
        body = {
            "name": "pwned",
            "applicationId": 1,
            "credentials": {"serviceId": world.a_service_id},
            "companyId": world.b.company_id,
        }
        response = await world.client.post(f"{API}/channel", json=body, headers=partner.headers)
        assert response.status_code == 409, response.text
        assert response.json()["errors"][0] == {
            "name": "credentials.serviceId",
            "code": "EXISTED",
            "message": "already used by another channel",
        }
        assert await snapshot(app, world.a.company_id) == before
        assert await self._bs_channels(world) == channels

    async def test_a_bot_token_of_another_channel_is_409_and_nothing_is_asked_upstream(
        self, app: Any, world: World
    ):
        before, channels, jobs = (
            await snapshot(app, world.a.company_id),
            await self._bs_channels(world),
            await self._setup_jobs(app),
        )
        body = {
            "name": "pwned",
            "applicationId": 10,
            "credentials": {"authToken": world.a_token, "senderName": "B"},
        }
        response = await world.as_b("POST", f"{API}/channel", body)
        assert response.status_code == 409, response.text
        assert response.json()["errors"][0]["name"] == "credentials.authToken"
        assert await snapshot(app, world.a.company_id) == before
        assert await self._bs_channels(world) == channels
        assert await self._setup_jobs(app) == jobs

    async def test_moving_ones_own_bot_onto_anothers_token_is_409_and_changes_nothing(
        self, app: Any, world: World
    ):
        before = await snapshot(app, world.a.company_id)
        body = {"credentials": {"authToken": world.a_token, "senderName": "B"}}
        response = await world.as_b("POST", f"{API}/channel/{world.b_account}", body)
        assert response.status_code == 409, response.text
        assert await snapshot(app, world.a.company_id) == before
        # B's channel still answers to B's own token (its credentials did not change).
        raw, headers = signed({"event": "webhook", "timestamp": now_ms(), "message_token": 9}, world.b_token)
        answer = await world.client.post(
            f"/callbacks/viber-bot/{world.b_account}", content=raw, headers=headers
        )
        assert answer.status_code == 200, answer.text

    async def test_a_partner_creates_channels_only_for_the_companies_it_onboarded(
        self, world: World, new_company
    ):
        stranger_partner = await new_company("Not a partner")
        body = {
            "name": "x",
            "applicationId": 1,
            "credentials": {"serviceId": uuid.uuid4().int % 10**9 + 1},
            "companyId": world.b.company_id,
        }
        response = await world.client.post(f"{API}/channel", json=body, headers=stranger_partner.headers)
        assert response.status_code == 404, response.text
        assert response.json()["errors"][0]["name"] == "companyId"
