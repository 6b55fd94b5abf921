"""A campaign's contacts from a CSV or XLSX file, imported as a background task (`campaign_contacts`).

The upload is stored in the database as it arrives (tasks/uploads.py), so any worker runs the import: each
step makes sure the file is on its host's disk (written again from the database after a move to another
host), reads the next rows from the step's checkpoint (contact_file.py: flat memory, whatever the file),
stores the good ones as contacts and appends the bad ones to the task's result file, a CSV
`line,phone,error`. A phone the campaign has already (earlier in the file, in an earlier import, or
stored by this very step before a crash made it run again) is skipped by the contacts' unique index, so
a step may run twice and nothing is imported twice; the campaign's `contacts_total` grows by what each
insert actually added. Progress is the bytes read of the file's size. The summary counts the rows, the
contacts imported (the campaign's count at the end against its count when the file was uploaded: two
imports into one campaign at once count each other's contacts), the invalid rows and the duplicates.

An XLSX is converted first, once per host, to a CSV beside it (contact_file.convert_xlsx): read chunk by
chunk, the sheet itself would be parsed from its top at every step. The conversion runs in a thread of its
own, which outlives the step that started it: a large sheet takes longer than a step may (the task's
lease), so each step waits for it a while (`CONVERT_WAIT_S`) and, until it is done, commits the same
checkpoint; the steps after it read the converted copy from byte offsets, and its size becomes the task's
total. The copy appears complete or not at all, and any conversion of the same sheet writes the same
bytes: a host without it (another worker's, or one that crashed mid-conversion) converts the sheet again
and goes on from the checkpoint's offset. A checkpoint of the sheet's rows rather than offsets (a task
begun before conversions were made) goes on reading the sheet itself.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from openmmp.api_keys.auth import Subject
from openmmp.campaigns import contact_file, repository, service
from openmmp.campaigns.contact_file import ColumnMapping, ContactRow, RowError
from openmmp.errors import Invalid
from openmmp.kit.db import Database
from openmmp.models import BackgroundTask, Campaign, CampaignContact, Channel
from openmmp.models.campaign import CampaignStatus
from openmmp.settings import CampaignSettings
from openmmp.tasks import service as tasks
from openmmp.tasks import uploads
from openmmp.tasks.runner import Step, TaskFailed, TaskRun

TYPE = "campaign_contacts"
HEADER = ("line", "phone", "error")
INSERT_ROWS = 1000
"""Contacts per INSERT statement (SQLite takes at most 32,766 bound values in one)."""
CONVERT_WAIT_S = 20.0
"""How long a step waits for an XLSX's conversion before committing without progress: well within the
tasks' lease (60 s by default), past which the runner cuts a step and counts a failed try."""


class ContactImport:
    type = TYPE
    media_type = "text/csv"

    def __init__(
        self,
        db: Database,
        settings: CampaignSettings,
        work_dir: Path,
        *,
        convert_wait_s: float = CONVERT_WAIT_S,
    ) -> None:
        self.db = db
        self.settings = settings
        self.work_dir = work_dir
        self.convert_wait_s = convert_wait_s
        self._conversions: dict[Path, asyncio.Task[None]] = {}
        """This process's conversions under way, by converted copy: a step that finds one waits for it."""

    async def step(self, run: TaskRun) -> Step:
        params = run.params
        path = self.work_dir / f"{run.public_id}.{params['kind']}"
        done: dict[str, Any] = dict(run.checkpoint or {"position": 0, "rows": 0, "invalid": 0})
        if done.get("read"):
            # The file was read to its end and that step committed: only now are its copies dropped, so a
            # step that runs again after a crash never finds the file gone.
            await self._finish(run, path)
            summary = {key: done[key] for key in ("rows", "imported", "invalid", "duplicates")}
            return Step(checkpoint=done, processed=int(done["size"]), finished=True, summary=summary)
        try:
            campaign = await self._campaign(int(params["campaignId"]))
        except TaskFailed:
            await self._finish(run, path)
            raise
        source, kind = path, params["kind"]
        # A checkpoint has "converted" from its first step on, but one of a task begun without conversions.
        if kind == "xlsx" and ("converted" in done or int(done["position"]) == 0):
            source, kind = _converted(path), "xlsx-csv"
        try:
            if kind == "xlsx-csv":
                if not await self._convert(run, path, source):
                    # Still converting: the same checkpoint again, committed before the lease runs out.
                    output = _report([], first=run.checkpoint is None)
                    return Step(checkpoint=done, processed=int(done["position"]), output=output)
                # Its positions are offsets in the copy that the checkpoint's steps read.
                size = await asyncio.to_thread(os.path.getsize, source)
                if done.setdefault("converted", size) != size:
                    raise ValueError("file: another worker converted the sheet differently: upload it again")
            elif not await asyncio.to_thread(path.exists):
                await self._materialize(run, path)
            mapping = ColumnMapping(phone=params["mapping"]["phone"], params=params["mapping"]["params"])
            chunk = await asyncio.to_thread(
                contact_file.read_chunk,
                source,
                kind,
                mapping,
                position=int(done["position"]),
                max_rows=self.settings.import_rows_per_step,
                default_region=params.get("region"),
            )
        except ValueError as exc:
            await self._finish(run, path)
            raise TaskFailed(str(exc)) from None
        await self._store(campaign.id, chunk.rows)
        done["position"] = chunk.position
        done["rows"] += len(chunk.rows) + len(chunk.errors)
        done["invalid"] += len(chunk.errors)
        if chunk.done:
            imported = await self._count(campaign.id) - int(params["before"])
            done |= {
                "read": True,
                "size": chunk.bytes_read,
                "imported": imported,
                "duplicates": done["rows"] - done["invalid"] - imported,
            }
        output = _report(chunk.errors, first=run.checkpoint is None)
        return Step(checkpoint=done, processed=chunk.bytes_read, output=output, total=done.get("converted"))

    async def _materialize(self, run: TaskRun, path: Path) -> None:
        try:
            await uploads.materialize(self.db, int(run.params["uploadId"]), path)
        except LookupError:
            raise TaskFailed("the uploaded file is no longer there") from None

    async def _convert(self, run: TaskRun, path: Path, converted: Path) -> bool:
        """Whether the XLSX at `path` is converted to `converted`, after waiting `convert_wait_s` at most
        for its conversion, started here unless under way in this process. Raises its ValueError."""
        conversion = self._conversions.get(converted)
        if conversion is None:
            if await asyncio.to_thread(converted.exists):
                return True
            if not await asyncio.to_thread(path.exists):
                await self._materialize(run, path)
            conversion = asyncio.create_task(asyncio.to_thread(contact_file.convert_xlsx, path, converted))
            self._conversions[converted] = conversion
        # Not wait_for: a step cut short (the lease) must not cancel the conversion the next one awaits.
        await asyncio.wait({conversion}, timeout=self.convert_wait_s)
        if not conversion.done():
            return False
        del self._conversions[converted]
        conversion.result()
        return True

    async def _campaign(self, campaign_id: int) -> Campaign:
        async with self.db.read_sessions() as session:
            campaign = await session.get(Campaign, campaign_id)
        if campaign is None:
            raise TaskFailed("the campaign no longer exists")
        if campaign.status in repository.CLOSED:
            raise TaskFailed(f"the campaign is {CampaignStatus(campaign.status).name}: it takes no contacts")
        return campaign

    async def _count(self, campaign_id: int) -> int:
        async with self.db.read_sessions() as session:
            statement = select(func.count()).where(CampaignContact.campaign_id == campaign_id)
            return int((await session.execute(statement)).scalar_one())

    async def _store(self, campaign_id: int, rows: list[ContactRow]) -> None:
        """The rows as contacts, in one transaction with the campaign's count of them."""
        if not rows:
            return
        async with self.db.write_sessions() as session, session.begin():
            added = 0
            for start in range(0, len(rows), INSERT_ROWS):
                batch = rows[start : start + INSERT_ROWS]
                added += await repository.add_contacts(
                    session, campaign_id, [{"phone": r.phone, "params": r.params} for r in batch]
                )
            campaign = await session.get(Campaign, campaign_id, with_for_update=True)
            if campaign is not None:
                campaign.contacts_total += added

    async def _finish(self, run: TaskRun, path: Path) -> None:
        """The file is read to its end (or cannot be read): drop its copies (the upload, this host's, the
        converted one, and what a crash left of them)."""
        converted = _converted(path)
        conversion = self._conversions.pop(converted, None)
        if conversion is not None:
            _drop_when_done(conversion, converted)
        await asyncio.to_thread(_drop_copies, path)
        await uploads.forget(self.db, int(run.params["uploadId"]))


def _converted(path: Path) -> Path:
    """Where the XLSX copy at `path` is converted to."""
    return path.with_name(f"{path.name}.csv")


def _drop_when_done(conversion: asyncio.Task[None], converted: Path) -> None:
    """Drop what a conversion writes once it ends: its thread cannot be stopped, and its import is over."""

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio logs no error of a result no one needs
        converted.unlink(missing_ok=True)

    conversion.add_done_callback(ended)


def _drop_copies(path: Path) -> None:
    """Delete the copy at `path`, its converted copy, and their temporary files (`uploads.materialize`'s,
    `contact_file.convert_xlsx`'s) that a crash left."""
    for copy in (path, _converted(path), *path.parent.glob(f"{path.name}*.part")):
        copy.unlink(missing_ok=True)


def _report(errors: list[RowError], *, first: bool) -> bytes:
    if not errors and not first:
        return b""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if first:
        writer.writerow(HEADER)
    writer.writerows((e.line, e.phone, e.error) for e in errors)
    return text.getvalue().encode()


async def start_import(
    db: Database,
    subject: Subject,
    campaign_id: str,
    *,
    filename: str,
    content_type: str | None,
    body: AsyncIterator[bytes],
    mapping: ColumnMapping,
    work_dir: Path,
) -> BackgroundTask:
    """Store the uploaded file and queue its import into the company's campaign (a PENDING task).

    The file's format and the mapping are checked against its first rows before anything is queued: a
    400 names `file` or `phoneColumn` / `param`. 404 for another company's campaign; 400 for a campaign
    that is DONE or CANCELLED.
    """
    async with db.read_sessions() as session:
        shown = await service.get(session, subject, campaign_id)
        channel = await session.get(Channel, shown.campaign.channel_id)
    if shown.campaign.status in repository.CLOSED:
        status = CampaignStatus(shown.campaign.status).name
        raise Invalid(f"the campaign is {status}: it takes no contacts", name="campaignId")
    try:
        kind = contact_file.kind_of(filename, content_type)
    except ValueError as exc:
        raise Invalid(str(exc).removeprefix("file: "), name="file") from None
    upload = await uploads.receive(db, company_id=subject.company_id, filename=filename, kind=kind, body=body)
    region = channel.settings.get("defaultCountry") if channel is not None else None
    probe = work_dir / f"probe-{upload.public_id}.{kind}"
    try:
        await uploads.materialize(db, upload.id, probe)
        await asyncio.to_thread(
            contact_file.read_chunk, probe, kind, mapping, position=0, max_rows=1, default_region=region
        )
    except ValueError as exc:
        await uploads.forget(db, upload.id)
        field, _, message = str(exc).partition(": ")
        name = {"mapping.phone": "phoneColumn"}.get(
            field, "param" if field.startswith("mapping.") else "file"
        )
        raise Invalid(message or field, name=name) from None
    finally:
        await asyncio.to_thread(probe.unlink, missing_ok=True)
    params = {
        "campaignId": shown.campaign.id,
        "uploadId": upload.id,
        "kind": kind,
        "mapping": {"phone": mapping.phone, "params": mapping.params},
        "region": region,
        "before": shown.campaign.contacts_total,
    }
    async with db.write_sessions() as session, session.begin():
        return await tasks.create(
            session,
            company_id=subject.company_id,
            channel_id=shown.campaign.channel_id,
            type=TYPE,
            params=params,
            total=upload.size,
        )
