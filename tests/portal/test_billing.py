"""The portal's billing page: the summary says what the API's Get Channel Summary says, and the CDR export
runs as the API's does, its CSV downloaded byte for byte the same; another company's export is not there."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from openmmp.billing import cdr
from openmmp.billing.cdr import CdrExport
from openmmp.kit.time import now_ms
from openmmp.messages.repository import record_parts
from openmmp.models import Message
from openmmp.models.message import MessageStatus
from openmmp.settings import TaskSettings
from openmmp.tasks.runner import TaskRunner
from tests.billing.conftest import move, send
from tests.conftest import Tenant
from tests.portal.conftest import PortalClient
from tests.portal.test_messages import sms_channel

DAY_MS = 86_400_000
S, D, F = MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.FAIL
FIGURES = ("total", "pending", "sent", "delivered", "read", "fail", "segments", "conversations")


def today() -> tuple[str, int]:
    """Today (UTC) as the page's date field and as its first millisecond."""
    midnight = now_ms() // DAY_MS * DAY_MS
    return datetime.fromtimestamp(midnight / 1000, UTC).date().isoformat(), midnight


def cell(page: str, element_id: str) -> int:
    found = re.search(rf'id="{element_id}">(\d+)<', page)
    assert found, f"no #{element_id} on the page"
    return int(found.group(1))


async def sent_and_moved(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    make_channel: Callable[..., Awaitable[dict[str, Any]]],
) -> str:
    """An SMS channel with 6 messages: 2 SENT (the first in 3 parts), 1 DELIVERED, 1 FAIL accepted upstream,
    2 PENDING; its publicId."""
    account, channel_id = await sms_channel(app, tenant, make_channel)
    await send(client, tenant, account, 6)
    await move(app, channel_id, [(S, True), (S, True), (D, True), (F, True)])
    async with app.state.db.write_sessions() as session, session.begin():
        first = await session.scalar(
            select(Message).where(Message.channel_id == channel_id).order_by(Message.id)
        )
        assert first is not None
        await record_parts(session, [(first, ("a", "b", "c"))])
    return account


async def run_tasks(app: Any) -> None:
    """Run the CDR exports to their end, step by step, as the workers would (tests run without them)."""
    runner = TaskRunner(app.state.db, {cdr.TYPE: CdrExport(app.state.db)}, TaskSettings())
    while await runner.run_once():
        pass


async def start_export(admin: PortalClient, day: str, **extra: str) -> str:
    """Ask for the CDR of `day` through the portal; the task's id (from the page it leads to)."""
    response = await admin.post("/portal/billing/cdr", {"fromDate": day, "toDate": day, **extra})
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/portal/billing/cdr/([0-9a-f-]{36})\?notice=.+", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


class TestSummary:
    async def test_the_page_says_what_the_api_says(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account = await sent_and_moved(app, client, tenant, make_channel)
        await sms_channel(app, tenant, make_channel)  # a second channel, with nothing sent
        day, midnight = today()
        for query in ({}, {"accountId": account}):
            page = await admin.get("/portal/billing", params={"fromDate": day, "toDate": day, **query})
            assert page.status_code == 200, page.text
            api = await client.get(
                "/api/v1/summary/channel",
                params={"fromDate": midnight, "toDate": midnight + DAY_MS, **query},
                headers=tenant.headers,
            )
            assert api.status_code == 200, api.text
            expected = api.json()
            assert {name: cell(page.text, f"summary-{name}") for name in FIGURES} == {
                name: expected[name] for name in FIGURES
            }
            assert (expected["total"], expected["segments"]) == (6, 6)  # 3 parts + 1 + 1 + 1 accepted
            [sms] = expected["applications"]
            row = page.text[page.text.index('id="summary-app-3"') :]
            assert f'<th scope="row">SMS</th><td>{sms["total"]}</td>' in row

    async def test_the_default_period_is_the_last_week(self, admin: PortalClient):
        page = await admin.get("/portal/billing")
        assert page.status_code == 200
        day, midnight = today()
        week_ago = datetime.fromtimestamp((midnight - 6 * DAY_MS) / 1000, UTC).date().isoformat()
        assert f'id="f-fromDate" name="fromDate" type="date" value="{week_ago}"' in page.text
        assert f'id="f-toDate" name="toDate" type="date" value="{day}"' in page.text
        assert cell(page.text, "summary-total") == 0

    async def test_bad_dates_are_a_400_naming_the_field(self, admin: PortalClient):
        cases = [
            ({"fromDate": "2026-13-01", "toDate": "2026-12-01"}, "fromDate"),
            ({"fromDate": "20261201", "toDate": "2026-12-01"}, "fromDate"),
            ({"fromDate": "1969-12-31", "toDate": "2026-12-01"}, "fromDate"),
            ({"fromDate": "2026-12-01", "toDate": "yesterday"}, "toDate"),
            ({"fromDate": "2026-12-02", "toDate": "2026-12-01"}, "toDate"),
        ]
        for dates, name in cases:
            page = await admin.get("/portal/billing", params=dates)
            assert page.status_code == 400, dates
            assert f"<strong>{name}</strong>" in page.text, dates
            export = await admin.post("/portal/billing/cdr", dates)
            assert export.status_code == 400, dates
            assert f"<strong>{name}</strong>" in export.text, dates
        missing = await admin.post("/portal/billing/cdr", {"toDate": "2026-12-01"})
        assert missing.status_code == 400
        assert "<strong>fromDate</strong>" in missing.text


class TestCdr:
    async def test_the_export_runs_and_its_csv_is_the_apis(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account = await sent_and_moved(app, client, tenant, make_channel)
        day, _ = today()
        task_id = await start_export(admin, day, accountId=account)

        waiting = await admin.get(f"/portal/billing/cdr/{task_id}")
        assert waiting.status_code == 200, waiting.text
        assert 'data-status="PENDING"' in waiting.text and 'hx-trigger="every 2s"' in waiting.text
        assert 'id="cdr-download"' not in waiting.text
        early = await admin.get(f"/portal/billing/cdr/{task_id}/download")
        assert early.status_code == 409

        await run_tasks(app)
        fragment = await admin.htmx("GET", f"/portal/billing/cdr/{task_id}")
        assert fragment.status_code == 200
        assert "<html" not in fragment.text
        assert 'data-status="DONE"' in fragment.text and "hx-trigger" not in fragment.text  # polling stops
        assert f'id="cdr-download" href="/portal/billing/cdr/{task_id}/download"' in fragment.text

        ours = await admin.get(f"/portal/billing/cdr/{task_id}/download")
        theirs = await client.get(f"/api/v1/billing/cdr/{task_id}/download", headers=tenant.headers)
        assert ours.status_code == theirs.status_code == 200
        assert ours.content == theirs.content
        assert ours.headers["content-type"].startswith("text/csv")
        assert ours.headers["content-disposition"] == theirs.headers["content-disposition"]
        lines = ours.text.splitlines()
        assert lines[0] == ",".join(cdr.HEADER)
        assert len(lines) == 1 + 4  # the accepted messages: 2 SENT, 1 DELIVERED, 1 FAIL after acceptance

        listed = await admin.get("/portal/billing")
        assert f"/portal/billing/cdr/{task_id}" in listed.text

    async def test_the_export_needs_the_csrf_token(
        self, client: httpx.AsyncClient, tenant: Tenant, admin: PortalClient
    ):
        day, _ = today()
        params = {"type": cdr.TYPE}
        before = (await client.get("/api/v1/background-task", params=params, headers=tenant.headers)).json()
        for form in ({"csrf": "forged", "fromDate": day, "toDate": day}, {"fromDate": day, "toDate": day}):
            assert (await admin.http.post("/portal/billing/cdr", data=form)).status_code == 403
        after = (await client.get("/api/v1/background-task", params=params, headers=tenant.headers)).json()
        assert after["total"] == before["total"] == 0

    async def test_another_companys_export_and_channel_are_not_found(
        self,
        app: Any,
        client: httpx.AsyncClient,
        tenant: Tenant,
        admin: PortalClient,
        new_company: Callable[..., Awaitable[Tenant]],
        sign_in_admin: Callable[[Tenant], Awaitable[PortalClient]],
        make_channel: Callable[..., Awaitable[dict[str, Any]]],
    ):
        account = await sent_and_moved(app, client, tenant, make_channel)
        day, _ = today()
        task_id = await start_export(admin, day)
        await run_tasks(app)
        other = await sign_in_admin(await new_company())
        for url in (f"/portal/billing/cdr/{task_id}", f"/portal/billing/cdr/{task_id}/download"):
            response = await other.get(url)
            assert response.status_code == 404, url
            assert "<strong>taskId</strong>" in response.text
        summary = await other.get("/portal/billing", params={"accountId": account})
        assert summary.status_code == 404
        assert "<strong>accountId</strong>" in summary.text
        export = await other.post(
            "/portal/billing/cdr", {"fromDate": day, "toDate": day, "accountId": account}
        )
        assert export.status_code == 404
        assert (await admin.get(f"/portal/billing/cdr/{task_id}/download")).status_code == 200
