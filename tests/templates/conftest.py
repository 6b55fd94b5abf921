"""Helpers of the template tests: bodies, channels with a webhook URL, and the `type: 3` webhooks queued."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from tests.cli.test_cli import env  # noqa: F401 - the CLI tests' fixture, for test_cli.py here
from tests.conftest import Tenant

API = "/api/v1/template"
HOOKS = "https://8.8.8.8/hooks"
"""A public address: the webhook guard takes it, and no worker runs here to call it."""
TEXT = {"type": "text", "message": "Hello {{name}}, your code is {{code}}"}


def form(application_id: int, account_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A CreateFormTemplateMessage of one text message with the variables `code` and `name`."""
    body: dict[str, Any] = {
        "name": "Welcome",
        "type": 1,
        "applicationId": application_id,
        "messages": [{"id": "m1", "name": "first", "status": "START", "message": TEXT}],
    }
    if account_id is not None:
        body["accountId"] = account_id
    return body | overrides


def sms_credentials() -> dict[str, Any]:
    return {
        "host": "smsc.example.com",
        "port": 2775,
        "systemId": f"t{uuid.uuid4().hex[:12]}",
        "password": "secret",
        "sourceAddr": "ACME",
    }


async def create(client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(API, json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def read(client: httpx.AsyncClient, tenant: Tenant, template_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/{template_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def template_webhooks(
    client: httpx.AsyncClient, tenant: Tenant, account_id: str
) -> list[dict[str, Any]]:
    """The bodies of the channel's `type: 3` webhook deliveries, oldest first."""
    listed = await client.get(
        f"/api/v1/channel/{account_id}/webhook/deliveries", params={"size": 100}, headers=tenant.headers
    )
    assert listed.status_code == 200, listed.text
    bodies = []
    for item in reversed(listed.json()["items"]):
        if item["eventType"] != 3:
            continue
        detail = await client.get(
            f"/api/v1/channel/{account_id}/webhook/deliveries/{item['webhookId']}", headers=tenant.headers
        )
        bodies.append(detail.json()["body"])
    return bodies


def errors(response: httpx.Response) -> list[tuple[str, str]]:
    """(name, code) of each error of a 4xx answer."""
    return [(e["name"], e["code"]) for e in response.json()["errors"]]


@pytest.fixture
def bot(
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
) -> Callable[[Tenant], Awaitable[dict[str, Any]]]:
    """A Viber Bot channel of the tenant with a webhook URL (its templates are the operator's to review)."""

    async def make(tenant: Tenant) -> dict[str, Any]:
        return await make_channel(tenant, webhookUrl=HOOKS)

    return make
