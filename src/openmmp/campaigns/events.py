"""A campaign's progress as server-sent events (`GET /api/v1/bulk-campaign/{campaignId}/events`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Request

from openmmp.api_keys.auth import Subject
from openmmp.campaigns import repository, service
from openmmp.campaigns.service import CampaignNotFound
from openmmp.kit.db import request_database
from openmmp.settings import Settings

KEEP_ALIVE_S = 15.0
"""A comment at least this often keeps proxies from closing a quiet stream."""


async def progress_events(request: Request, subject: Subject, campaign_id: str) -> AsyncIterator[bytes]:
    """`event: progress` with the campaign (Get bulk campaign's answer) now and at each change; ends once
    the campaign is DONE or CANCELLED with nothing left in queue, or when it is gone, or the client is."""
    db = request_database(request)
    settings: Settings = request.app.state.settings
    interval = settings.campaigns.events_interval_seconds
    last = b""
    quiet = 0.0
    while True:
        try:
            async with db.read_sessions() as session:
                shown = await service.get(session, subject, campaign_id)
                progress = await service.progress(session, shown.campaign, settings)
        except CampaignNotFound:
            return
        data = service.response(shown, progress).model_dump_json(by_alias=True).encode()
        if data != last:
            yield b"event: progress\ndata: " + data + b"\n\n"
            last, quiet = data, 0.0
        elif quiet >= KEEP_ALIVE_S:
            yield b": keep-alive\n\n"
            quiet = 0.0
        if shown.campaign.status in repository.CLOSED and progress.in_queue == 0:
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(interval)
        quiet += interval
