"""The billing CDR with real processes: an export of 400,000 messages whose worker is killed with SIGKILL
mid-way goes on from its last step after the restart, and its file has every billable message once."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from tests.e2e.conftest import Launcher
from tests.e2e.harness import System, wait_until

from openmmp.kit.db import normalise_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TOTAL = 400_000
"""Eight steps of 50,000 ids: the kill lands between two of them."""
# Stored as dispatch and callbacks leave them: READ, accepted upstream. `n` counts from 1; the INSERT's
# rows are made by the database (a recursive CTE, on SQLite and PostgreSQL alike).
SEED = """
INSERT INTO messages (public_id, company_id, channel_id, client_message_id, request_hash, phone, recipient,
                      content, status, provider_message_id, segments, priority, attempts, created_at,
                      updated_at)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :total)
SELECT 'seed-' || i, :company, :channel, 'seed-' || i, 'h', '85512345678', '85512345678', '{}', 5,
       'up-' || i, 1, 0, 1, CAST(:created AS BIGINT) + i, CAST(:created AS BIGINT) + i
FROM n
"""


async def seed(system: System, company_id: int, channel_id: int, created: int) -> None:
    engine = create_async_engine(normalise_url(system.database_url), poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            parameters = {"total": TOTAL, "company": company_id, "channel": channel_id, "created": created}
            await connection.execute(text(SEED), parameters)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def billing_system(request: pytest.FixtureRequest, launch: Launcher) -> System:
    # A task a killed worker held is taken again after its lease: 10 s rather than a minute.
    return await launch(
        launch.database(request.param, "billing"),
        workers=0 if request.param == "sqlite" else 1,
        env={"OPENMMP_TASKS__LEASE_SECONDS": "10"},
    )


async def test_an_export_killed_mid_way_goes_on_and_writes_each_row_once(billing_system: System) -> None:
    system = billing_system
    async with httpx.AsyncClient(base_url=system.api, timeout=120) as api:
        company = await system.onboard(api)
        channel = await system.viber_channel(api, company, webhooks=False)
        [[channel_id, company_id]] = await system.sql(
            "SELECT id, company_id FROM channels WHERE public_id = :p", p=channel["publicId"]
        )
        now = int(time.time() * 1000)
        await seed(system, company_id, channel_id, now - TOTAL - 1000)
        created = await api.post(
            "/api/v1/billing/cdr",
            json={"fromDate": now - 3_600_000, "toDate": now + 60_000, "accountId": channel["publicId"]},
            headers=company.headers,
        )
        assert created.status_code == 202, created.text
        url = f"/api/v1/billing/cdr/{created.json()['id']}"

        async def under_way() -> dict[str, Any] | None:
            task: dict[str, Any] = (await api.get(url, headers=company.headers)).json()
            return task if task["processed"] > 0 else None

        before = await wait_until(under_way, timeout=120, interval=0.05, what="the export's first step")
        assert before["status"] == 2, before
        await system.kill_workers()
        await system.restart_workers()

        async def done() -> dict[str, Any] | None:
            task: dict[str, Any] = (await api.get(url, headers=company.headers)).json()
            return task if task["status"] >= 3 else None

        task = await wait_until(done, timeout=300, interval=0.5, what="the export DONE")
        assert task["status"] == 3, task
        assert task["summary"] == {"rows": TOTAL}
        download = await api.get(f"{url}/download", headers=company.headers)
        assert download.status_code == 200
    ids = [row["id"] for row in csv.DictReader(io.StringIO(download.text)) if row["type"] == "MESSAGE"]
    assert len(ids) == TOTAL
    assert len(set(ids)) == TOTAL
    assert set(ids) == {f"seed-{n}" for n in range(1, TOTAL + 1)}
