"""Templates end to end: saved, reviewed (by the operator, or by Meta's simulator), then sent by id with
Broadcast Template Message to one subscriber or a group, every parameter checked before anything goes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.harness import READ_OR_FAIL, System, final_status, wait_until
from tests.e2e.test_whatsapp import whatsapp_credentials

from openmmp.webhooks.schemas import TemplateWebhook

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CARD = {"type": "text", "message": "Hello {{name}}, your card {{card}} is ready"}


def template_events(system: System, account: str, template: str) -> list[tuple[int, Any]]:
    """The `type: 3` webhooks of a template, each signed and as the OpenAPI document describes: (status,
    cause) in order of arrival."""
    found = [
        d
        for d in system.receiver.deliveries
        if d.body.get("type") == 3
        and d.body["publicId"] == account
        and d.body["template"]["publicId"] == template
    ]
    assert all(d.signature_ok for d in found)
    for delivery in found:
        TemplateWebhook.model_validate(delivery.body)
    return [(d.body["template"]["status"], d.body["template"]["cause"]) for d in found]


async def approved_template(api: httpx.AsyncClient, system: System, company: Tenant, account: str) -> str:
    body = {
        "name": "Card ready",
        "type": 1,
        "applicationId": 1,
        "accountId": account,
        "messages": [{"id": "m1", "name": "ready", "status": "START", "message": CARD}],
    }
    created = await api.post("/api/v1/template", json=body, headers=company.headers)
    assert created.status_code == 201, created.text
    template = str(created.json()["publicId"])
    assert created.json()["status"] == 1  # REQUEST: the operator reviews it
    refused = await api.post(
        f"/api/v1/channel/{account}/broadcast-template",
        json={"templateId": template, "phone": "85512345670", "params": {"name": "Dara", "card": "4711"}},
        headers=company.headers,
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["name"] == "templateId"
    approved = await api.post(
        f"/api/v1/template/{template}/approve", json={}, headers={"apiKey": system.partner_key}
    )
    assert approved.status_code == 200, approved.text
    return template


async def test_an_approved_template_reaches_one_subscriber_and_a_group(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    account = (await system.viber_channel(api, company))["publicId"]
    template = await approved_template(api, system, company, account)
    await wait_until(
        lambda: [s for s, _ in template_events(system, account, template)] == [1, 2] or None,
        timeout=30,
        what="the template's REQUEST and APPROVED webhooks",
    )
    url = f"/api/v1/channel/{account}/broadcast-template"

    one = await api.post(
        url,
        json={"templateId": template, "phone": "85512345670", "params": {"name": "Dara", "card": "4711"}},
        headers=company.headers,
    )
    assert one.status_code == 200, one.text
    status = await final_status(api, company, one.json()["messageId"], READ_OR_FAIL)
    assert (status["status"], status["cause"]) == (5, "READ")

    subscribers = [
        {
            "phone": f"8551234567{n}",
            "params": {"name": f"Client {n}", "card": f"47{n}"},
            "clientMessageId": f"t-{n}",
        }
        for n in range(1, 4)
    ]
    group = await api.post(
        url,
        json={"templateId": template, "subscribers": subscribers, "requestId": "r-1"},
        headers=company.headers,
    )
    assert group.status_code == 200, group.text
    sent = group.json()
    assert (sent["requestId"], sent["templateId"]) == ("r-1", template)
    assert [m["phone"] for m in sent["messages"]] == [s["phone"] for s in subscribers]
    for message in sent["messages"]:
        assert (await final_status(api, company, message["messageId"], READ_OR_FAIL))["status"] == 5

    # A replay of the group sends nothing again: each subscriber's clientMessageId answers its first send.
    again = await api.post(
        url,
        json={"templateId": template, "subscribers": subscribers, "requestId": "r-1"},
        headers=company.headers,
    )
    assert [m["messageId"] for m in again.json()["messages"]] == [m["messageId"] for m in sent["messages"]]


async def test_one_bad_subscriber_stops_the_whole_group_before_anything_is_queued(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    account = (await system.viber_channel(api, company))["publicId"]
    template = await approved_template(api, system, company, account)
    before = await system.statuses(account)
    subscribers = [
        {"phone": "85512345670", "params": {"name": "Dara", "card": "4711"}},
        {"phone": "85512345671", "params": {"name": "Sokha"}},
        {"phone": "85512345672", "params": {"name": "Vanna", "card": "1", "pin": "0000"}},
        {"phone": "not a phone", "params": {"name": "Bopha", "card": "2"}},
    ]
    refused = await api.post(
        f"/api/v1/channel/{account}/broadcast-template",
        json={"templateId": template, "subscribers": subscribers},
        headers=company.headers,
    )
    assert refused.status_code == 400, refused.text
    assert [e["name"] for e in refused.json()["errors"]] == [
        "subscribers[1].params.card",
        "subscribers[2].params.pin",
    ]
    fixed = [*subscribers[:1], {**subscribers[1], "params": {"name": "Sokha", "card": "9"}}, subscribers[3]]
    refused_phone = await api.post(
        f"/api/v1/channel/{account}/broadcast-template",
        json={"templateId": template, "subscribers": fixed},
        headers=company.headers,
    )
    assert refused_phone.status_code == 400, refused_phone.text
    assert refused_phone.json()["errors"][0]["name"].startswith("subscribers[2].")
    assert await system.statuses(account) == before  # nothing was queued either time

    single = await api.post(
        f"/api/v1/channel/{account}/broadcast-template",
        json={"templateId": template, "phone": "85512345670", "params": {"name": "Dara"}},
        headers=company.headers,
    )
    assert single.status_code == 400
    assert single.json()["errors"][0]["name"] == "params.card"


async def test_a_whatsapp_template_approved_by_meta_reaches_read(
    api: httpx.AsyncClient, system: System, company: Tenant
):
    account = (await system.channel(api, company, 11, whatsapp_credentials()))["publicId"]
    form = {
        "name": "card_ready",
        "accountId": account,
        "category": "UTILITY",
        "language": "en_US",
        "components": [
            {
                "type": "BODY",
                "text": "Hello {{1}}, your card {{2}} is ready",
                "example": {"body_text": [["Dara", "4711"]]},
            }
        ],
    }
    created = await api.post("/api/v1/template", json=form, headers=company.headers)
    assert created.status_code == 201, created.text
    template = created.json()["publicId"]
    events = await wait_until(
        lambda: [s for s, _ in template_events(system, account, template) if s == 2] or None,
        timeout=30,
        what="Meta's approval as a type 3 webhook",
    )
    assert events == [2]
    bad_value = {"phone": "85512345672", "params": {"1": "Dara\nand Sokha", "2": "4711"}}
    refused = await api.post(
        f"/api/v1/channel/{account}/broadcast-template",
        json={"templateId": template, "subscribers": [bad_value]},
        headers=company.headers,
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["name"] == "subscribers[0].params.1"  # Meta refuses new lines
    sent = await api.post(
        f"/api/v1/channel/{account}/broadcast-template",
        json={"templateId": template, "phone": "85512345671", "params": {"1": "Dara", "2": "4711"}},
        headers=company.headers,
    )
    assert sent.status_code == 200, sent.text
    status = await final_status(api, company, sent.json()["messageId"], READ_OR_FAIL)
    assert (status["status"], status["cause"]) == (5, "READ")
