"""The billing CDR (api.md §4.7): a CSV row per billable message and per conversation of a period, exported as
a background task.

A message is billable once its upstream accepted it: SENT, DELIVERED or READ, or FAIL with an upstream id
(it failed after it was accepted). A row gives its ids, channel and application, its tariff type
(TRANSACTIONAL or CAMPAIGN, the traffic it was sent as), its segments (the parts of a long SMS; one for any
other), the recipient's country, its status now and its timestamps. A conversation an end user started in
the period (a BOT channel's session, what conversation-priced upstreams bill) is a row of `type`
CONVERSATION after the messages, with its channel, country and timestamps.

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

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.channels.service import channels
from openmmp.errors import Invalid
from openmmp.kit.db import Database
from openmmp.kit.phone import country_of
from openmmp.kit.time import now_ms
from openmmp.models import BackgroundTask, Channel, Conversation, Message
from openmmp.models.message import CAUSES, MessageStatus, Priority
from openmmp.tasks import service as tasks
from openmmp.tasks.runner import Step, TaskRun

TYPE = "billing_cdr"
HEADER = (
    "type",
    "id",
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
CONVERSATION_STEP = 20_000
"""Conversations one step writes."""
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
    db: Database,
    subject: Subject,
    *,
    from_date: int,
    to_date: int,
    account_id: str | None,
    application_id: int | None,
) -> BackgroundTask:
    """Queue the company's CDR of [from_date, to_date): of one channel, of its channels of one
    application, or of all. 400 naming `toDate` when it is not after `fromDate`, or `applicationId` when
    the channel is of another; 404 naming `accountId` for a channel not the company's."""
    if to_date <= from_date:
        raise Invalid("must be after fromDate", name="toDate")
    async with db.write_sessions() as session, session.begin():
        chosen = (
            [await channels.get(session, subject, public_id=account_id)]
            if account_id
            else await channels.all_of(session, subject)
        )
        if application_id is not None:
            if account_id and chosen[0].application_id != application_id:
                raise Invalid("the channel is of another application", name="applicationId")
            chosen = [c for c in chosen if c.application_id == application_id]
        low, high = (await session.execute(select(func.min(Message.id), func.max(Message.id)))).one()
        low, high = int(low or 1), int(high or 0)
        first = await _first_id_at(session, from_date - SKEW_MS, low, high)
        last = min(await _first_id_at(session, min(to_date, now_ms()) + SKEW_MS, first, high) - 1, high)
        params: dict[str, Any] = {
            "fromDate": from_date,
            "toDate": to_date,
            "channelIds": [c.id for c in chosen],
            "every": account_id is None and application_id is None,
            "after": first - 1,
            "last": last,
        }
        return await tasks.create(
            session,
            company_id=subject.company_id,
            channel_id=chosen[0].id if account_id else None,
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
        """The messages of the next id window; once past the last, the conversations, a page a step."""
        params = run.params
        start, last = int(params["after"]), int(params["last"])
        done: dict[str, Any] = dict(run.checkpoint or {"after": start, "rows": 0})
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if run.checkpoint is None:
            writer.writerow(HEADER)
        async with self.db.read_sessions() as session:
            owned = select(Channel.id, Channel.public_id, Channel.application_id).where(
                Channel.company_id == run.company_id
            )
            of = {row[0]: (row[1], row[2]) for row in await session.execute(owned)}
            # Channels made since the request count when it asked for all of them.
            channel_ids = list(of) if params["every"] else [int(c) for c in params["channelIds"]]
            if "conversation" not in done:
                upper = min(int(done["after"]) + ID_WINDOW, last)
                written = await _messages(session, run, done, upper, channel_ids, of, writer)
                done = {"after": upper, "rows": int(done["rows"]) + written}
                if upper >= last:
                    done["conversation"] = None
                return Step(checkpoint=done, processed=max(0, upper - start), output=text.getvalue().encode())
            written, key = await _conversations(session, run, done["conversation"], channel_ids, of, writer)
        done = {"after": done["after"], "rows": int(done["rows"]) + written, "conversation": key}
        finished = written < CONVERSATION_STEP
        return Step(
            checkpoint=done,
            processed=max(0, last - start),
            output=text.getvalue().encode(),
            finished=finished,
            summary={"rows": done["rows"]} if finished else None,
        )


async def _messages(
    session: AsyncSession,
    run: TaskRun,
    done: dict[str, Any],
    upper: int,
    channel_ids: list[int],
    of: dict[int, tuple[str, int]],
    writer: Any,
) -> int:
    """Write the billable messages of ids (done["after"], upper]; how many."""
    params = run.params
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
    if not params["every"]:
        statement = statement.where(Message.channel_id.in_(channel_ids))
    rows = (await session.execute(statement)).all()
    for public_id, client_id, channel_id, priority, segments, phone, status, created, updated in rows:
        account, application = of.get(channel_id, ("", 0))
        writer.writerow(
            (
                "MESSAGE",
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
    return len(rows)


async def _conversations(
    session: AsyncSession,
    run: TaskRun,
    key: list[int] | None,
    channel_ids: list[int],
    of: dict[int, tuple[str, int]],
    writer: Any,
) -> tuple[int, list[int] | None]:
    """Write the next conversations started in the period, after `key` (channel id, start, id) in the
    order of `ix_conversations_started`; how many, and the key of the last."""
    params = run.params
    statement = (
        select(
            Conversation.id,
            Conversation.public_id,
            Conversation.channel_id,
            Conversation.phone,
            Conversation.country,
            Conversation.created_at,
            Conversation.updated_at,
        )
        .where(
            Conversation.channel_id.in_(channel_ids),
            Conversation.created_at >= int(params["fromDate"]),
            Conversation.created_at < int(params["toDate"]),
        )
        .order_by(Conversation.channel_id, Conversation.created_at, Conversation.id)
        .limit(CONVERSATION_STEP)
    )
    if key is not None:
        statement = statement.where(
            tuple_(Conversation.channel_id, Conversation.created_at, Conversation.id) > tuple_(*key)
        )
    rows = (await session.execute(statement)).all() if channel_ids else []
    for _, public_id, channel_id, phone, country, created, updated in rows:
        account, application = of.get(channel_id, ("", 0))
        country = country_of(phone) if phone else (country if len(country) == 2 else "")
        writer.writerow(
            (
                "CONVERSATION",
                public_id,
                "",
                account,
                application,
                "CONVERSATION",
                0,
                country,
                "",
                "",
                created,
                updated,
            )
        )
    last = rows[-1] if rows else None
    return len(rows), [last[2], last[5], last[0]] if last else key
