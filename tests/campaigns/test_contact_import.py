"""Uploading a campaign's contacts: the file streamed into the database, imported by a background task
step by step (any worker, any host), each phone once, invalid rows reported with their line."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import func, select, update

from openmmp.campaigns import contact_file
from openmmp.campaigns.contact_file import convert_xlsx
from openmmp.campaigns.imports import TYPE, ContactImport
from openmmp.models import BackgroundTask, Campaign, CampaignContact, Company, Upload, UploadChunk
from openmmp.models.task import TaskStatus
from openmmp.settings import CampaignSettings, TaskSettings
from openmmp.tasks import uploads
from openmmp.tasks.runner import Step, TaskFailed, TaskRun, TaskRunner
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


# The CSV above as a spreadsheet holds it: a blank row above the header, numbers typed as numbers, a
# blank row between the others, a cell over two lines and a date.
SHEET: list[list[object]] = [
    [],
    ["phone", "name", "code"],
    [85512345670, "Dara", 111],  # 3
    ["012 345 671", "Sokha", 222.0],  # 4
    [85512345670.0, "Dara again", 333],  # 5
    ["not a phone", "Vanna", 444],  # 6
    [None, None, None],  # 7
    [85512345672, 'Lina, "the boss"\nof all', dt.date(2024, 5, 1)],  # 8
    [85512345673, None, 666],  # 9
]
SHEET_CONTACTS = [
    ("85512345670", {"name": "Dara", "code": "111"}),
    ("85512345671", {"name": "Sokha", "code": "222"}),
    ("85512345672", {"name": 'Lina, "the boss"\nof all', "code": "2024-05-01"}),
]
SHEET_REPORT = [
    ["line", "phone", "error"],
    ["6", "not a phone", "phone: 'not a phone' is not a valid phone number"],
    ["9", "85512345673", "parameter 'name' (column 'name'): missing"],
]
SHEET_SUMMARY = {"rows": 6, "imported": 3, "invalid": 2, "duplicates": 1}


def sheet() -> bytes:
    book = openpyxl.Workbook(write_only=True)
    contacts = book.create_sheet("Contacts")
    for row in SHEET:
        contacts.append(row)
    file = io.BytesIO()
    book.save(file)
    return file.getvalue()


@pytest.fixture
async def by_hand(campaign_app: Any) -> AsyncIterator[list[str]]:
    """The tasks a test steps by hand, ended FAIL after it as a runner ends a task, so that no later test's
    runner takes one up: its upload may be gone, and SQLite may then give that upload's id to another's."""
    task_ids: list[str] = []
    yield task_ids
    async with campaign_app.state.db.write_sessions() as session, session.begin():
        await session.execute(
            update(BackgroundTask)
            .where(BackgroundTask.public_id.in_(task_ids))
            .values(status=int(TaskStatus.FAIL))
        )


def handler(app: Any, tmp_path: Path, rows_per_step: int = 2, **options: Any) -> ContactImport:
    return ContactImport(
        app.state.db, CampaignSettings(import_rows_per_step=rows_per_step), tmp_path / "imports", **options
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
        by_hand: list[str],
    ):
        campaign = pending_campaign["publicId"]
        answer = await upload(campaign_client, company, campaign, CSV.encode())
        by_hand.append(answer.json()["id"])
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


class Workbooks:
    """openpyxl's workbook loads, each of which parses the sheet from its top: counted, and held when
    `hold` is set until `go` is (a conversion under way)."""

    def __init__(self) -> None:
        self.loads = 0
        self.hold = False
        self.go = threading.Event()
        self._load = openpyxl.load_workbook

    def load_workbook(self, *args: Any, **kwargs: Any) -> Any:
        self.loads += 1
        book = self._load(*args, **kwargs)
        if self.hold:
            assert self.go.wait(30)
        return book


@pytest.fixture
def workbooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Workbooks]:
    counter = Workbooks()
    monkeypatch.setattr(openpyxl, "load_workbook", counter.load_workbook)
    yield counter
    counter.go.set()  # no conversion stays held past its test


async def upload_sheet(client: httpx.AsyncClient, company: Tenant, campaign: str) -> str:
    answer = await upload(client, company, campaign, sheet(), filename="contacts.xlsx")
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def task_run(app: Any, task_id: str, checkpoint: dict[str, Any] | None = None) -> TaskRun:
    async with app.state.db.read_sessions() as session:
        task = (
            await session.execute(select(BackgroundTask).where(BackgroundTask.public_id == task_id))
        ).scalar_one()
    return TaskRun(task.public_id, task.company_id, task.channel_id, task.params, checkpoint)


def report(steps: list[Step]) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(s.output for s in steps).decode())))


class TestSpreadsheets:
    """An XLSX is converted to a CSV once per import (per host), then read in steps from byte offsets: the
    contacts and the report are those of reading the sheet itself, with the sheet's row numbers."""

    async def test_an_xlsx_is_parsed_once_whatever_its_steps_and_imports_as_its_rows_say(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
        workbooks: Workbooks,
    ):
        campaign = pending_campaign["publicId"]
        task_id = await upload_sheet(campaign_client, company, campaign)
        assert workbooks.loads == 1  # the upload's check of its first rows
        workbooks.loads = 0

        await run_all(campaign_app, tmp_path, rows_per_step=1)

        async with campaign_app.state.db.read_sessions() as session:
            task = (
                await session.execute(select(BackgroundTask).where(BackgroundTask.public_id == task_id))
            ).scalar_one()
        assert task.step == 7  # 6 rows, one a step, and the step that ends the task
        # Without the conversion, each step parsed the sheet from its top to reach its rows: 7 loads here.
        assert workbooks.loads == 1
        done = (
            await campaign_client.get(f"/api/v1/background-task/{task_id}", headers=company.headers)
        ).json()
        assert (done["status"], done["progress"], done["summary"]) == (3, 100, SHEET_SUMMARY)
        (tmp_path / "check").mkdir()
        (tmp_path / "check" / "c.xlsx").write_bytes(sheet())
        convert_xlsx(tmp_path / "check" / "c.xlsx", tmp_path / "check" / "c.csv")
        assert (
            done["total"] == (tmp_path / "check" / "c.csv").stat().st_size
        )  # progress in the converted copy
        assert await contacts(campaign_app, campaign) == SHEET_CONTACTS
        answer = await campaign_client.get(
            f"/api/v1/background-task/{task_id}/download", headers=company.headers
        )
        assert list(csv.reader(io.StringIO(answer.text))) == SHEET_REPORT
        assert list((tmp_path / "imports").glob("*")) == []

    async def test_a_host_without_the_converted_copy_converts_again_and_imports_nothing_twice(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
        workbooks: Workbooks,
        by_hand: list[str],
    ):
        """Every other step runs on a host whose disk has neither copy, and runs twice (a crash before its
        commit): the positions of one conversion hold in the next, and progress never goes back."""
        campaign = pending_campaign["publicId"]
        task_id = await upload_sheet(campaign_client, company, campaign)
        by_hand.append(task_id)
        workbooks.loads = 0
        importer = handler(campaign_app, tmp_path, rows_per_step=2)
        steps: list[Step] = []
        checkpoint: dict[str, Any] | None = None
        while not (steps and steps[-1].finished):
            if len(steps) % 2:
                for path in (tmp_path / "imports").glob("*"):
                    path.unlink()
                run = await task_run(campaign_app, task_id, checkpoint)
                first = await importer.step(run)
                again = await importer.step(run)
                assert (again.checkpoint, again.output, again.processed) == (
                    first.checkpoint,
                    first.output,
                    first.processed,
                )
            else:
                again = await importer.step(await task_run(campaign_app, task_id, checkpoint))
            steps.append(again)
            checkpoint = again.checkpoint
        assert len(steps) == 4  # 3 steps of 2 rows (the 3rd finds the end), and the one that ends the task
        assert workbooks.loads == 2  # the first step's conversion, and the second's again
        total = steps[0].total
        assert total is not None and all(s.total in (None, total) for s in steps)
        processed = [s.processed for s in steps]
        assert processed == sorted(processed) and processed[-1] == total
        assert await contacts(campaign_app, campaign) == SHEET_CONTACTS
        assert report(steps) == SHEET_REPORT
        assert steps[-1].summary == SHEET_SUMMARY
        assert list((tmp_path / "imports").glob("*")) == []

    async def test_a_conversion_cut_short_by_a_crash_is_done_again_and_its_part_dropped(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
    ):
        campaign = pending_campaign["publicId"]
        task_id = await upload_sheet(campaign_client, company, campaign)
        # What a worker killed mid-conversion left: the sheet's copy and the first rows of its conversion.
        imports = tmp_path / "imports"
        imports.mkdir()
        (imports / f"{task_id}.xlsx").write_bytes(sheet())
        convert_xlsx(imports / f"{task_id}.xlsx", tmp_path / "whole.csv")
        lines = (tmp_path / "whole.csv").read_bytes().split(b"\r\n")
        (imports / f"{task_id}.xlsx.csv.x1y2z3.part").write_bytes(b"\r\n".join(lines[:3]))

        await run_all(campaign_app, tmp_path, rows_per_step=2)

        done = (
            await campaign_client.get(f"/api/v1/background-task/{task_id}", headers=company.headers)
        ).json()
        assert (done["status"], done["summary"]) == (3, SHEET_SUMMARY)
        assert await contacts(campaign_app, campaign) == SHEET_CONTACTS
        assert list(imports.glob("*")) == []

    async def test_a_long_conversion_spans_steps_that_commit_without_progress(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
        workbooks: Workbooks,
        by_hand: list[str],
    ):
        """A sheet converts for longer than a step may take: each step waits a while, and a step cut short
        (the lease) leaves the conversion running for the next, which finds it rather than starting
        another."""
        campaign = pending_campaign["publicId"]
        task_id = await upload_sheet(campaign_client, company, campaign)
        by_hand.append(task_id)
        workbooks.loads = 0
        workbooks.hold = True
        importer = handler(campaign_app, tmp_path, rows_per_step=100, convert_wait_s=0.01)
        waiting = await importer.step(await task_run(campaign_app, task_id))
        assert (waiting.checkpoint, waiting.processed, waiting.finished) == (
            {"position": 0, "rows": 0, "invalid": 0},
            0,
            False,
        )
        assert report([waiting]) == SHEET_REPORT[:1]
        run = await task_run(campaign_app, task_id, waiting.checkpoint)
        assert (await importer.step(run)).checkpoint == waiting.checkpoint
        importer.convert_wait_s = 30
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(importer.step(run), 0.5)
        workbooks.go.set()
        read = await importer.step(run)
        assert workbooks.loads == 1
        assert read.checkpoint["read"] and read.checkpoint["rows"] == 6
        assert report([waiting, read]) == SHEET_REPORT
        ended = await importer.step(await task_run(campaign_app, task_id, read.checkpoint))
        assert ended.finished and ended.summary == SHEET_SUMMARY
        assert await contacts(campaign_app, campaign) == SHEET_CONTACTS
        assert list((tmp_path / "imports").glob("*")) == []

    async def test_a_conversion_still_running_when_the_import_fails_leaves_no_copy(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
        workbooks: Workbooks,
        monkeypatch: pytest.MonkeyPatch,
        by_hand: list[str],
    ):
        campaign = pending_campaign["publicId"]
        task_id = await upload_sheet(campaign_client, company, campaign)
        by_hand.append(task_id)
        converted = tmp_path / "imports" / f"{task_id}.xlsx.csv"
        wrote = threading.Event()

        def convert(source: Path, target: Path) -> None:
            convert_xlsx(source, target)
            if target.exists():
                wrote.set()

        monkeypatch.setattr(contact_file, "convert_xlsx", convert)
        workbooks.hold = True
        importer = handler(campaign_app, tmp_path, convert_wait_s=0.01)
        waiting = await importer.step(await task_run(campaign_app, task_id))
        async with campaign_app.state.db.write_sessions() as session, session.begin():
            row = (await session.execute(select(Campaign).where(Campaign.public_id == campaign))).scalar_one()
            row.status = 9
        with pytest.raises(TaskFailed, match="the campaign is CANCELLED"):
            await importer.step(await task_run(campaign_app, task_id, waiting.checkpoint))
        assert list((tmp_path / "imports").glob("*")) == []
        # The conversion had the sheet open already: it goes on to the end, and what it wrote is dropped.
        workbooks.go.set()
        assert await asyncio.to_thread(wrote.wait, 30)
        for _ in range(500):
            if not converted.exists():
                break
            await asyncio.sleep(0.01)
        assert list((tmp_path / "imports").glob("*")) == []

    async def test_a_task_begun_before_conversions_goes_on_reading_the_sheet_by_its_rows(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
        by_hand: list[str],
    ):
        """Its checkpoint counts the sheet's rows (2 read) rather than bytes of a converted copy."""
        campaign = pending_campaign["publicId"]
        task_id = await upload_sheet(campaign_client, company, campaign)
        by_hand.append(task_id)
        importer = handler(campaign_app, tmp_path, rows_per_step=100)
        read = await importer.step(
            await task_run(campaign_app, task_id, {"position": 2, "rows": 2, "invalid": 0})
        )
        assert "converted" not in read.checkpoint
        assert (read.checkpoint["position"], read.checkpoint["rows"]) == (7, 6)
        assert report([read]) == SHEET_REPORT[1:]
        assert list((tmp_path / "imports").glob("*")) == [tmp_path / "imports" / f"{task_id}.xlsx"]
        assert await contacts(campaign_app, campaign) == [
            ("85512345670", {"name": "Dara again", "code": "333"}),
            SHEET_CONTACTS[2],
        ]

    async def test_a_converted_copy_unlike_the_one_the_checkpoint_read_fails_the_import(
        self,
        campaign_app: Any,
        campaign_client: httpx.AsyncClient,
        company: Tenant,
        pending_campaign,
        tmp_path,
        by_hand: list[str],
    ):
        campaign = pending_campaign["publicId"]
        task_id = await upload_sheet(campaign_client, company, campaign)
        by_hand.append(task_id)
        importer = handler(campaign_app, tmp_path, rows_per_step=2)
        first = await importer.step(await task_run(campaign_app, task_id))
        with (tmp_path / "imports" / f"{task_id}.xlsx.csv").open("ab") as converted:
            converted.write(b"10,85512345679,Extra,1\r\n")
        with pytest.raises(TaskFailed, match="converted the sheet differently"):
            await importer.step(await task_run(campaign_app, task_id, first.checkpoint))
        assert list((tmp_path / "imports").glob("*")) == []
