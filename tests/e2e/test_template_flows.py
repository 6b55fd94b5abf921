"""A conversation flow end to end: a CONVERSATION template started by Broadcast Template Message on a Viber
Bot channel, moved on by the sandbox end user's replies through the simulator's signed callbacks, across a
SIGKILL of the process that runs the workers (on PostgreSQL the reply even arrives while it is dead)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.e2e.conftest import Launcher
from tests.e2e.harness import System, final_status, wait_until
from tests.e2e.test_rcs import rcs_credentials
from tests.templates.test_flows import BANK

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(params=["sqlite", "postgresql"])
async def flow_system(request: pytest.FixtureRequest, launch: Launcher) -> System:
    return await launch(
        launch.database(request.param, "template_flows"), workers=0 if request.param == "sqlite" else 1
    )


async def flow_at(api: httpx.AsyncClient, company: Tenant, message_id: str, step_id: str) -> dict[str, Any]:
    async def there() -> dict[str, Any] | None:
        found: dict[str, Any] = (
            await api.get(f"/api/v1/template/flow/{message_id}", headers=company.headers)
        ).json()
        return found if found["step"] == step_id else None

    state: dict[str, Any] = await wait_until(there, timeout=60, what=f"the flow at {step_id}")
    return state


async def test_a_conversation_flow_completes_across_a_sigkill(flow_system: System):
    system = flow_system
    async with httpx.AsyncClient(base_url=system.api, timeout=60) as api:
        company = await system.onboard(api)
        token = f"bot-{random.randrange(10**12)}"
        account = (await system.channel(api, company, 10, {"authToken": token, "senderName": "E2E Bank"}))[
            "publicId"
        ]
        inbound = f"/sandbox/viber-bot/{account}/inbound"
        phone = f"85512{random.randrange(10**6):06d}"
        # The end user shares their number with the bot: the bank can now reach them by phone.
        shared = await api.post(
            inbound, json={"name": "Dara", "text": "hi", "phone": f"+{phone}"}, headers=company.headers
        )
        assert shared.status_code == 200, shared.text
        user = shared.json()["userId"]
        await wait_until(
            lambda: [d for d in system.receiver.deliveries if d.body.get("type") == 2] or None,
            timeout=30,
            what="the end user's first message",
        )

        body = {"name": "Bank bot", "type": 2, "applicationId": 10, "accountId": account, "messages": BANK}
        created = await api.post("/api/v1/template", json=body, headers=company.headers)
        assert created.status_code == 201, created.text
        template = created.json()["publicId"]
        approved = await api.post(
            f"/api/v1/template/{template}/approve", json={}, headers={"apiKey": system.partner_key}
        )
        assert approved.status_code == 200, approved.text

        started = await api.post(
            f"/api/v1/channel/{account}/broadcast-template",
            json={"templateId": template, "phone": f"+{phone}", "params": {"name": "Dara"}},
            headers=company.headers,
        )
        assert started.status_code == 200, started.text
        first = started.json()["messageId"]
        await flow_at(api, company, first, "start")

        async def reply(text: str) -> None:
            response = await api.post(
                inbound, json={"name": "Dara", "text": text, "userId": user}, headers=company.headers
            )
            assert response.status_code == 200, response.text

        await reply("ACC-42")
        state = await flow_at(api, company, first, "menu")
        assert state["answers"] == {"account": "ACC-42"}

        await system.kill_workers()
        if system.separate_workers:
            await reply("2")  # the API records it; the dead worker's successor moves the flow on
            await system.restart_workers()
        else:
            await system.restart_workers()
            await reply("2")
        state = await flow_at(api, company, first, "card")
        assert state["status"] == "COMPLETE"
        assert state["answers"] == {"account": "ACC-42", "choice": "2"}
        assert len(state["messages"]) == 3
        # Every step was a send that reached the simulator and a final status.
        for message_id in state["messages"]:
            assert (await final_status(api, company, message_id))["status"] in (3, 4, 5)
        [row] = await system.sql(
            "SELECT count(*) FROM template_flows WHERE template_public_id = :t", t=template
        )
        assert row[0] == 1


async def test_an_rcs_flow_started_by_phone_runs_on_the_users_replies(
    api: httpx.AsyncClient, system: System, company: Tenant, launched_channel
):
    """RCS reaches end users by phone: the flow starts before they ever wrote, and their first reply binds
    it to their conversation."""
    account = (await launched_channel(2, rcs_credentials()))["publicId"]
    body = {"name": "Bank bot", "type": 2, "applicationId": 2, "accountId": account, "messages": BANK}
    created = await api.post("/api/v1/template", json=body, headers=company.headers)
    assert created.status_code == 201, created.text
    template = created.json()["publicId"]
    approved = await api.post(
        f"/api/v1/template/{template}/approve", json={}, headers={"apiKey": system.partner_key}
    )
    assert approved.status_code == 200, approved.text
    phone = f"85512{random.randrange(10**6):06d}"
    started = await api.post(
        f"/api/v1/channel/{account}/broadcast-template",
        json={"templateId": template, "phone": f"+{phone}", "params": {"name": "Dara"}},
        headers=company.headers,
    )
    assert started.status_code == 200, started.text
    first = started.json()["messageId"]
    state = await flow_at(api, company, first, "start")
    assert (state["phone"], state["to"]) == (phone, None)
    for text in ("ACC-7", "1"):
        written = await api.post(
            f"/sandbox/{account}/inbound",
            json={"name": "Dara", "text": text, "phone": f"+{phone}"},
            headers=company.headers,
        )
        assert written.status_code == 200, written.text
    state = await flow_at(api, company, first, "balance")
    assert state["status"] == "COMPLETE"
    assert state["answers"] == {"account": "ACC-7", "choice": "1"}
    assert state["to"] is not None
