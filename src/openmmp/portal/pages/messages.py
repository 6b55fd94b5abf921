"""The message log: a company's messages found by phone number, message id or clientMessageId, and one
message with its status timeline, its parts and its fallback legs.

One search box: the text is looked up as each thing it can be (a message id when it has the form of one,
a clientMessageId whatever it is, a phone number when it reads as one the way the API's `phone` fields do),
and what matches is listed together, newest first. Phone matches are paged by keyset (`before`: the
message id of the last one shown), so a number with a million messages costs a page at a time.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Query, Request
from starlette.responses import Response

from openmmp.channels.service import channels
from openmmp.errors import Invalid
from openmmp.kit.db import SessionDep
from openmmp.kit.ids import canonical_public_id
from openmmp.kit.phone import normalise_phone
from openmmp.messages import repository
from openmmp.messages.service import MessageNotFound, messages
from openmmp.models import Channel, Message
from openmmp.models.message import MessageStatus
from openmmp.portal.web import CompanyViewerDep, application_name, portal_router, render, wants_fragment

router = portal_router("/messages")

PAGE = 50
"""Messages a page of phone matches shows."""
_CLIENT_ID_MAX = 100
"""The longest clientMessageId a send takes (longer text cannot be one)."""


def _phone(text: str, region: str | None) -> str | None:
    """The text as a stored phone (E.164 digits), read as a send's `phone` is, or None if it is not one."""
    try:
        return normalise_phone(text, region)
    except ValueError:
        return None


def _row(message: Message, channel: Channel) -> dict[str, Any]:
    return {
        "message_id": message.public_id,
        "client_message_id": message.client_message_id,
        "to": message.phone or message.recipient,
        "channel": channel.name,
        "application": application_name(channel.application_id),
        "status": MessageStatus(message.status).name,
        "created_at": message.created_at,
    }


@router.get("")
async def search(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    q: Annotated[str, Query(max_length=200)] = "",
    account_id: Annotated[str, Query(alias="accountId", max_length=36)] = "",
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """The company's messages the text names, of one channel if chosen; htmx gets the results only."""
    subject = viewer.subject
    owned = await channels.all_of(session, subject)
    chosen = await channels.get(session, subject, public_id=account_id) if account_id else None
    text = q.strip()
    found: dict[int, tuple[Message, Channel]] = {}
    searched: list[str] = []
    older: str | None = None
    if text:
        if not before:
            # Exact ids name one message each: they head the first page only.
            if canonical_public_id(text) is not None:
                searched.append("message id")
                hit = await repository.find(session, subject, public_id=text)
                if hit is not None:
                    found[hit[0].id] = hit
            if len(text) <= _CLIENT_ID_MAX:
                searched.append("clientMessageId")
                hit = await repository.find(session, subject, client_message_id=text)
                if hit is not None:
                    found[hit[0].id] = hit
        region = viewer.company.country if viewer.company else None
        phone = _phone(text, region)
        if phone is not None:
            searched.append(f"phone {phone}")
            before_id = None
            if before:
                anchor = await repository.find(session, subject, public_id=before)
                if anchor is None:
                    raise Invalid("no such message of the company", name="before")
                before_id = anchor[0].id
            rows = await repository.to_phone(
                session,
                subject,
                phone,
                channel_id=chosen.id if chosen else None,
                before_id=before_id,
                limit=PAGE + 1,
            )
            if len(rows) > PAGE:
                rows = rows[:PAGE]
                older = rows[-1][0].public_id
            found.update((message.id, (message, channel)) for message, channel in rows)
    results = [
        _row(message, channel)
        for message, channel in sorted(found.values(), key=lambda hit: -hit[0].id)
        if chosen is None or channel.id == chosen.id
    ]
    return render(
        request,
        "messages_results.html" if wants_fragment(request) else "messages.html",
        q=text,
        account_id=chosen.public_id if chosen else "",
        channels=[(c.public_id, c.name) for c in owned],
        searched=searched,
        results=results,
        before=before,
        older=older,
    )


@router.get("/{public_id}")
async def detail(request: Request, session: SessionDep, viewer: CompanyViewerDep, public_id: str) -> Response:
    """The message as Get Message Status answers it, with what the answer leaves out: its content, its
    recipient, the parts it went as and the errors of its steps."""
    subject = viewer.subject
    shown = await messages.status(session, subject, message_id=public_id, client_message_id=None)
    found = await repository.find(session, subject, public_id=public_id)
    if found is None:
        raise MessageNotFound("No such message")
    message, channel = found
    timeline = [
        {
            "status": MessageStatus(step.status).name,
            "cause": step.cause,
            "timestamp": step.timestamp,
            "error": shown.error if step.status == MessageStatus.FAIL else None,
        }
        for step in shown.history
    ]
    content = message.content or {}
    text = content.get("message")
    return render(
        request,
        "message.html",
        shown=shown,
        message=message,
        channel=channel,
        application=application_name(channel.application_id),
        status=MessageStatus(shown.status).name,
        timeline=timeline,
        content_type=content.get("type", ""),
        text=text if isinstance(text, str) else None,
        content_json=orjson.dumps(content, option=orjson.OPT_INDENT_2).decode(),
        legs=[
            {
                "message_id": leg.message_id,
                "account_id": leg.public_id,
                "application": application_name(leg.application_id),
                "status": MessageStatus(leg.status).name,
                "timestamp": leg.timestamp,
            }
            for leg in shown.fallback or []
        ],
    )
