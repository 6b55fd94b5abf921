"""The billing CDR (api.md §4.7): one CSV row per billable message of a period, exported as a background task.

A message is billable once its upstream accepted it: SENT, DELIVERED or READ, or FAIL with an upstream id
(it failed after it was accepted). A row gives its ids, channel and application, its tariff type
(TRANSACTIONAL or CAMPAIGN, the traffic it was sent as), its segments (the parts of a long SMS; one for any
other), the recipient's country, its status now and its timestamps.

The export walks the messages table by id, a window of `ID_WINDOW` ids per step, from a checkpoint: each
step reads one bounded range of the primary key whatever the company's share of the traffic, appends its
rows to the task's result file in the same commit as the checkpoint (tasks/runner.py), so a step run again
after a crash writes nothing twice, and memory stays flat for ten million rows as for ten. The range is
found when the request is made: the first and last ids created within the period widened by `SKEW_MS`
(ids grow with creation time, give or take the clocks of several API processes), each found by a binary
search over the primary key; each row is still checked against the period itself.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.channels.service import channels
from openmmp.errors import Invalid
from openmmp.kit.db import Database
from openmmp.kit.phone import country_of
from openmmp.kit.time import now_ms
from openmmp.models import BackgroundTask, Channel, Message
from openmmp.models.message import CAUSES, MessageStatus, Priority
from openmmp.tasks import service as tasks
from openmmp.tasks.runner import Step, TaskRun

TYPE = "billing_cdr"
HEADER = (
    "messageId",
    "clientMessageId",
    "accountId",
    "applicationId",
    "tariffType",
    "segments",
    "country",
    "status",
    "cause",
    "createdDate",
    "updatedDate",
)
ID_WINDOW = 50_000
"""Message ids one step reads."""
SKEW_MS = 300_000
"""How far creation times may run out of id order (the clocks of several API processes)."""
_BILLABLE = or_(
    Message.status.in_([int(MessageStatus.SENT), int(MessageStatus.DELIVERED), int(MessageStatus.READ)]),
    (Message.status == int(MessageStatus.FAIL)) & Message.provider_message_id.is_not(None),
)
_TARIFF = {int(Priority.TRANSACTIONAL): "TRANSACTIONAL", int(Priority.CAMPAIGN): "CAMPAIGN"}


async def _first_id_at(session: AsyncSession, at_ms: int, low: int, high: int) -> int:
    """The first id in [low, high] of a message created at `at_ms` or later (high + 1 for none), as if
    creation times grew with ids."""
    while low <= high:
        middle = (low + high) // 2
        statement = select(Message.id, Message.created_at).where(Message.id >= middle).order_by(Message.id)
        found = (await session.execute(statement.limit(1))).first()
        if found is None or found[0] > high or found[1] >= at_ms:
            high = middle - 1
        else:
            low = found[0] + 1
    return low


async def request_export(
    db: Database, subject: Subject, *, from_date: int, to_date: int, account_id: str | None
) -> BackgroundTask:
    """Queue the company's CDR of the messages created in [from_date, to_date), of one channel or all;
    400 naming `toDate` when it is not after `fromDate`, 404 naming `accountId` for another's channel."""
    if to_date <= from_date:
        raise Invalid("must be after fromDate", name="toDate")
    async with db.write_sessions() as session, session.begin():
        channel = await channels.get(session, subject, public_id=account_id) if account_id else None
        low, high = (await session.execute(select(func.min(Message.id), func.max(Message.id)))).one()
        low, high = int(low or 1), int(high or 0)
        first = await _first_id_at(session, from_date - SKEW_MS, low, high)
        last = min(await _first_id_at(session, min(to_date, now_ms()) + SKEW_MS, first, high) - 1, high)
        params: dict[str, Any] = {
            "fromDate": from_date,
            "toDate": to_date,
            "channelId": channel.id if channel else None,
            "after": first - 1,
            "last": last,
        }
        return await tasks.create(
            session,
            company_id=subject.company_id,
            channel_id=channel.id if channel else None,
            type=TYPE,
            params=params,
            total=max(0, last - first + 1),
        )


class CdrExport:
    type = TYPE
    media_type = "text/csv"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def step(self, run: TaskRun) -> Step:
        params = run.params
        start, last = int(params["after"]), int(params["last"])
        done: dict[str, Any] = dict(run.checkpoint or {"after": start, "rows": 0})
        upper = min(int(done["after"]) + ID_WINDOW, last)
        async with self.db.read_sessions() as session:
            owned = select(Channel.id, Channel.public_id, Channel.application_id).where(
                Channel.company_id == run.company_id
            )
            of = {row[0]: (row[1], row[2]) for row in await session.execute(owned)}
            statement = (
                select(
                    Message.public_id,
                    Message.client_message_id,
                    Message.channel_id,
                    Message.priority,
                    Message.segments,
                    Message.phone,
                    Message.status,
                    Message.created_at,
                    Message.updated_at,
                )
                .where(
                    Message.id > int(done["after"]),
                    Message.id <= upper,
                    Message.company_id == run.company_id,
                    Message.created_at >= int(params["fromDate"]),
                    Message.created_at < int(params["toDate"]),
                    _BILLABLE,
                )
                .order_by(Message.id)
            )
            if params["channelId"] is not None:
                statement = statement.where(Message.channel_id == int(params["channelId"]))
            rows = (await session.execute(statement)).all()
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if run.checkpoint is None:
            writer.writerow(HEADER)
        for public_id, client_id, channel_id, priority, segments, phone, status, created, updated in rows:
            account, application = of.get(channel_id, ("", 0))
            writer.writerow(
                (
                    public_id,
                    client_id,
                    account,
                    application,
                    _TARIFF.get(priority, ""),
                    segments,
                    country_of(phone) if phone else "",
                    status,
                    CAUSES[MessageStatus(status)],
                    created,
                    updated,
                )
            )
        done = {"after": upper, "rows": int(done["rows"]) + len(rows)}
        finished = upper >= last
        return Step(
            checkpoint=done,
            processed=max(0, upper - start),
            output=text.getvalue().encode(),
            finished=finished,
            summary={"rows": done["rows"]} if finished else None,
        )
