"""Get Channel Summary (api.md §4.7): a channel's messages by status over a period, from its tallies, and the
conversations started in it (a range of `ix_conversations_started`).

The counts come from `message_tallies` (messages/tallies.py), a row per channel, hour and status, never
from the messages themselves: a summary costs the same with a thousand messages or a hundred million. So
the period is counted in whole hours of the messages' creation: `fromDate` is taken down to its hour and
`toDate` up to the end of its hour, and the answer says which hours it counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import CompanyKey, Subject
from openmmp.channels.service import channels
from openmmp.conversations import repository as conversations
from openmmp.errors import Invalid, responses
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import ResponseModel
from openmmp.kit.time import MAX_EPOCH_MS
from openmmp.messages import tallies
from openmmp.models import Channel
from openmmp.models.message import MessageStatus

router = APIRouter(prefix="/summary", tags=["Summary"])

_FIELDS = {
    MessageStatus.PENDING: "pending",
    MessageStatus.SENT: "sent",
    MessageStatus.FAIL: "fail",
    MessageStatus.DELIVERED: "delivered",
    MessageStatus.READ: "read",
}


class SummaryCounts(ResponseModel):
    total: int = Field(description="Messages created in the period")
    pending: int = 0
    sent: int = 0
    fail: int = 0
    delivered: int = 0
    read: int = 0
    segments: int = Field(
        default=0,
        description="Billable units: upstream messages accepted (each part of a long SMS; one for any other)",
    )
    conversations: int = Field(default=0, description="Conversations end users started in the period")


class ApplicationSummary(SummaryCounts):
    application_id: int


class ResponseSummaryChannelRCS(SummaryCounts):
    """The messages created in the period, by their status now."""

    account_id: str | None = Field(description="The channel; null for all the company's channels")
    application_id: int | None = Field(description="Its application; null for all the company's channels")
    from_date: int = Field(description="The first hour counted (epoch ms)")
    to_date: int = Field(description="The end of the last hour counted (epoch ms, not included)")
    applications: list[ApplicationSummary] = Field(description="The same counts per application")


def _counts(
    found: dict[tuple[int, int], tuple[int, int]], started: dict[int, int], channel_ids: Sequence[int]
) -> dict[str, int]:
    counts = dict.fromkeys([*_FIELDS.values(), "total", "segments"], 0)
    for (channel_id, status), (messages, segments) in found.items():
        if channel_id in channel_ids:
            counts[_FIELDS[MessageStatus(status)]] += messages
            counts["total"] += messages
            counts["segments"] += segments
    counts["conversations"] = sum(started.get(channel_id, 0) for channel_id in channel_ids)
    return counts


async def summary(
    session: AsyncSession, subject: Subject, *, account_id: str | None, from_date: int, to_date: int
) -> ResponseSummaryChannelRCS:
    if to_date <= from_date:
        raise Invalid("must be after fromDate", name="toDate")
    chosen: list[Channel] = (
        [await channels.get(session, subject, public_id=account_id)]
        if account_id is not None
        else await channels.all_of(session, subject)
    )
    first = tallies.hour_of(from_date)
    end = tallies.hour_of(to_date - 1) + tallies.HOUR_MS
    found = await tallies.totals(session, [c.id for c in chosen], first, end)
    started = await conversations.started(session, [c.id for c in chosen], first, end)
    by_application: dict[int, list[int]] = {}
    for channel in chosen:
        by_application.setdefault(channel.application_id, []).append(channel.id)
    one = chosen[0] if account_id is not None else None
    return ResponseSummaryChannelRCS(
        account_id=one.public_id if one else None,
        application_id=one.application_id if one else None,
        from_date=first,
        to_date=end,
        applications=[
            ApplicationSummary(application_id=application, **_counts(found, started, ids))
            for application, ids in sorted(by_application.items())
        ],
        **_counts(found, started, [c.id for c in chosen]),
    )


@router.get(
    "/channel",
    summary="Get Channel Summary",
    description="The company's messages created in the period, by their status now, with the billable units "
    "(`segments`: each upstream message accepted, the parts of a long SMS each), for one channel "
    "(`accountId`) or all the company's, and per application. Counted in whole hours (UTC) of the "
    "messages' creation: `fromDate` down to its hour, `toDate` up to the end of its hour; `fromDate` and "
    "`toDate` in the answer are the hours counted. Read from per-hour tallies kept as messages change: as "
    "fast for a year of traffic as for an hour. 404 naming `accountId` for a channel not the company's; "
    "400 naming `toDate` when it is not after `fromDate`.",
    response_model=ResponseSummaryChannelRCS,
    responses=responses(400, 401, 403, 404),
)
async def channel_summary(
    subject: CompanyKey,
    session: SessionDep,
    from_date: Annotated[int, Query(alias="fromDate", ge=0, le=MAX_EPOCH_MS, description="Epoch ms")],
    to_date: Annotated[int, Query(alias="toDate", ge=1, le=MAX_EPOCH_MS, description="Epoch ms")],
    account_id: Annotated[
        str | None, Query(alias="accountId", max_length=36, description="The channel's publicId")
    ] = None,
) -> ResponseSummaryChannelRCS:
    return await summary(session, subject, account_id=account_id, from_date=from_date, to_date=to_date)
