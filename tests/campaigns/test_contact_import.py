"""Uploading a campaign's contacts: the file streamed into the database, imported by a background task
step by step (any worker, any host), each phone once, invalid rows reported with their line."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openmmp.campaigns.imports import TYPE, ContactImport
from openmmp.models import BackgroundTask, Campaign, CampaignContact, Company, Upload, UploadChunk
from openmmp.settings import CampaignSettings, TaskSettings
from openmmp.tasks import uploads
from openmmp.tasks.runner import TaskRun, TaskRunner
from tests.campaigns.conftest import API
from tests.conftest import Tenant

CSV = (
    "phone,name,code\n"
    "+85512345670,Dara,111\n"
    "012 345 671,Sokha,222\n"  # national: the channel's default country (KH)
    "85512345670,Dara again,333\n"  # the same phone: a duplicate
    "not a phone,Vanna,444\n"
    '85512345672,"Lina, ""the boss""",555\n'
    "85512345673,,666\n"  # a parameter missing
)


def handler(app: Any, tmp_path: Path, rows_per_step: int = 2) -> ContactImport:
    return ContactImport(
        app.state.db, CampaignSettings(import_rows_per_step=rows_per_step), tmp_path / "imports"
    )


async def upload(
    client: httpx.AsyncClient, company: Tenant, campaign: str, body: bytes, **params: Any
) -> httpx.Response:
    headers = {**company.headers, "content-type": "text/csv"}
    return await client.post(
        f"{API}/{campaign}/contacts",
        params={"filename": "contacts.csv", **params},
        content=body,
        headers=headers,
    )


async def run_all(app: Any, tmp_path: Path, rows_per_step: int = 2) -> None:
    runner = TaskRunner(
        app.state.db, {TYPE: handler(app, tmp_path, rows_per_step)}, TaskSettings(retry_max_seconds=0.5)
    )
    while await runner.run_once():
        pass


async def contacts(app: Any, campaign: str) -> list[tuple[str, dict[str, str]]]:
    async with app.state.db.read_sessions() as session:
        statement = (
            select(CampaignContact.phone, CampaignContact.params)
            .join(Campaign, Campaign.id == CampaignContact.campaign_id)
            .where(Campaign.public_id == campaign)
            .order_by(CampaignContact.id)
        )
        return [(phone, params) for phone, params in await session.execute(statement)]


class TestImporting:
    async def test_good_rows_become_contacts_once_and_bad_ones_are_reported_by_line(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
    ):
        campaign = pending_campaign["publicId"]
        answer = await upload(campaign_client, company, campaign, CSV.encode())
        assert answer.status_code == 202, answer.text
        task = answer.json()
        assert (task["type"], task["status"], task["total"]) == ("campaign_contacts", 1, len(CSV.encode()))
        async with campaign_app.state.db.read_sessions() as session:
            task_row = (
                await session.execute(select(BackgroundTask).where(BackgroundTask.public_id == task["id"]))
            ).scalar_one()

        await run_all(campaign_app, tmp_path)

        done = (
            await campaign_client.get(f"/api/v1/background-task/{task['id']}", headers=company.headers)
        ).json()
        assert (done["status"], done["progress"]) == (3, 100), done
        assert done["summary"] == {"rows": 6, "imported": 3, "invalid": 2, "duplicates": 1}
        assert await contacts(campaign_app, campaign) == [
            ("85512345670", {"name": "Dara", "code": "111"}),
            ("85512345671", {"name": "Sokha", "code": "222"}),
            ("85512345672", {"name": 'Lina, "the boss"', "code": "555"}),
        ]
        report = await campaign_client.get(
            f"/api/v1/background-task/{task['id']}/download", headers=company.headers
        )
        rows = list(csv.reader(io.StringIO(report.text)))
        assert rows[0] == ["line", "phone", "error"]
        assert [(line, phone) for line, phone, _ in rows[1:]] == [("5", "not a phone"), ("7", "85512345673")]
        shown = (await campaign_client.get(f"{API}/{campaign}", headers=company.headers)).json()
        assert shown["totalContact"] == 3
        assert shown["progress"]["notSend"] == 3
        async with campaign_app.state.db.read_sessions() as session:
            kept = select(func.count()).select_from(Upload).where(Upload.id == task_row.params["uploadId"])
            assert (await session.execute(kept)).scalar_one() == 0
        assert list((tmp_path / "imports").glob("*")) == []

    async def test_a_second_import_adds_only_new_phones_and_a_column_mapping_picks_the_columns(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
    ):
        campaign = pending_campaign["publicId"]
        assert (await upload(campaign_client, company, campaign, CSV.encode())).status_code == 202
        await run_all(campaign_app, tmp_path)
        other = "mobile;who;ref\n85512345670;A;1\n85512345674;B;2\n"
        answer = await upload(
            campaign_client,
            company,
            campaign,
            other.encode(),
            phoneColumn="Mobile",
            param=["name=who", "code=ref"],
        )
        assert answer.status_code == 202, answer.text
        await run_all(campaign_app, tmp_path)
        done = (
            await campaign_client.get(
                f"/api/v1/background-task/{answer.json()['id']}", headers=company.headers
            )
        ).json()
        assert done["summary"] == {"rows": 2, "imported": 1, "invalid": 0, "duplicates": 1}
        assert (await contacts(campaign_app, campaign))[-1] == ("85512345674", {"name": "B", "code": "2"})

    async def test_a_step_run_again_after_a_crash_imports_nothing_twice(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
    ):
        campaign = pending_campaign["publicId"]
        answer = await upload(campaign_client, company, campaign, CSV.encode())
        async with campaign_app.state.db.read_sessions() as session:
            task = (
                await session.execute(
                    select(BackgroundTask).where(BackgroundTask.public_id == answer.json()["id"])
                )
            ).scalar_one()
        run = TaskRun(task.public_id, task.company_id, task.channel_id, task.params, None)
        importer = handler(campaign_app, tmp_path, rows_per_step=3)
        first = await importer.step(run)
        # The worker died before committing the step: another (its own disk empty) runs it again.
        for path in (tmp_path / "imports").glob("*"):
            path.unlink()
        again = await importer.step(run)
        assert again.checkpoint == first.checkpoint
        assert again.output == first.output
        shown = (await campaign_client.get(f"{API}/{campaign}", headers=company.headers)).json()
        assert shown["totalContact"] == 2
        assert [phone for phone, _ in await contacts(campaign_app, campaign)] == [
            "85512345670",
            "85512345671",
        ]


class TestRefusals:
    @pytest.mark.parametrize(
        ("body", "params", "name"),
        [
            (b"mobile,name\n85512345670,A\n", {}, "phoneColumn"),
            (b"phone,name\n85512345670,A\n", {"param": "name=nope"}, "param"),
            (b"phone,name\n85512345670,A\n", {"param": "name"}, "param"),
            (b"\xff\xfephone\n", {}, "file"),
            (b"phone\n1\n", {"filename": "contacts.xls"}, "file"),
        ],
    )
    async def test_a_file_or_mapping_that_cannot_be_read_is_a_400_at_once(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        body: bytes,
        params: dict[str, str],
        name: str,
    ):
        async def uploads() -> int:
            async with campaign_app.state.db.read_sessions() as session:
                return int((await session.execute(select(func.count()).select_from(Upload))).scalar_one())

        before = await uploads()
        answer = await upload(campaign_client, company, pending_campaign["publicId"], body, **params)
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"][0]["name"] == name
        assert await uploads() == before  # nothing of the refused file is kept

    async def test_another_companys_or_a_cancelled_campaign(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        campaign_partner: Tenant,
        pending_campaign,
    ):
        campaign = pending_campaign["publicId"]
        stranger = await campaign_client.post(
            "/api/v1/onboard",
            json={
                "company": {"name": "Stranger", "country": "KH"},
                "admin": {"name": "A", "email": "s@example.com"},
            },
            headers=campaign_partner.headers,
        )
        other = Tenant(stranger.json()["companyPublicId"], stranger.json()["apiKey"])
        assert (await upload(campaign_client, other, campaign, CSV.encode())).status_code == 404
        async with campaign_app.state.db.write_sessions() as session, session.begin():
            row = (await session.execute(select(Campaign).where(Campaign.public_id == campaign))).scalar_one()
            row.status = 9
        cancelled = await upload(campaign_client, company, campaign, CSV.encode())
        assert (cancelled.status_code, cancelled.json()["errors"][0]["name"]) == (400, "campaignId")


class TestLeftovers:
    async def test_uploads_cut_short_or_left_by_their_task_are_pruned_and_recent_ones_kept(
        self, campaign_app: Any, company: Tenant
    ):
        db = campaign_app.state.db
        async with db.read_sessions() as session:
            company_id = (
                await session.execute(select(Company.id).where(Company.public_id == company.company_id))
            ).scalar_one()

        async def cut_short() -> AsyncIterator[bytes]:
            yield b"x" * (uploads.PIECE_BYTES + 10)
            raise ConnectionResetError("the client went away")

        with pytest.raises(ConnectionResetError):
            await uploads.receive(db, company_id=company_id, filename="c.csv", kind="csv", body=cut_short())

        async def whole() -> AsyncIterator[bytes]:
            yield b"phone\n85512345670\n"

        left = await uploads.receive(db, company_id=company_id, filename="c.csv", kind="csv", body=whole())
        async with db.read_sessions() as session:
            mine = list(
                (await session.execute(select(Upload.id).where(Upload.company_id == company_id))).scalars()
            )
        assert len(mine) == 2
        async with db.write_sessions() as session, session.begin():
            await uploads.prune(session, created_before=left.created_at - 1_000, limit=1000)
        assert await remaining(db, mine) == mine  # both newer than the cut-off
        async with db.write_sessions() as session, session.begin():
            await uploads.prune(session, created_before=left.created_at + 1, limit=1000)
        assert await remaining(db, mine) == []
        async with db.read_sessions() as session:
            pieces = select(func.count()).select_from(UploadChunk).where(UploadChunk.upload_id.in_(mine))
            assert (await session.execute(pieces)).scalar_one() == 0


async def remaining(db: Any, ids: list[int]) -> list[int]:
    async with db.read_sessions() as session:
        return list(
            (await session.execute(select(Upload.id).where(Upload.id.in_(ids)).order_by(Upload.id))).scalars()
        )
