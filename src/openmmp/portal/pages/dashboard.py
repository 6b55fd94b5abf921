"""The dashboard: each channel's sent / delivered / read / failed messages over time, as a chart."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from openmmp.channels.service import channels
from openmmp.errors import Invalid
from openmmp.kit.db import SessionDep
from openmmp.kit.time import now_ms
from openmmp.messages import tallies
from openmmp.portal import charts
from openmmp.portal.web import PORTAL, CompanyViewerDep, portal_router, redirect, render, wants_fragment

router = portal_router()


@router.get("")
async def portal_root(request: Request) -> Response:
    return redirect(request, PORTAL + "/")


@router.get("/")
async def dashboard(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, range: str = "24h"
) -> Response:
    chosen = charts.RANGES.get(range)
    if chosen is None:
        raise Invalid(f"must be one of {', '.join(charts.RANGES)}", name="range")
    owned = await channels.all_of(session, viewer.subject)
    first, end = charts.window(chosen, now_ms())
    found = await tallies.by_hour(session, [c.id for c in owned], first, end)
    drawn = []
    for channel in owned:
        counts = {
            (hour, status): n for (channel_id, hour, status), n in found.items() if channel_id == channel.id
        }
        drawn.append(charts.chart(channel.name, channel.public_id, counts, chosen, first))
    drawn.sort(key=lambda c: -sum(c.totals.values()))
    busy = [c for c in drawn if sum(c.totals.values())]
    template = "_charts.html" if wants_fragment(request) else "dashboard.html"
    return render(
        request,
        template,
        charts=busy,
        quiet=[c for c in drawn if not sum(c.totals.values())],
        chosen=chosen,
        ranges=charts.RANGES.values(),
        series=charts.SERIES,
        geometry={
            "width": charts.WIDTH,
            "height": charts.HEIGHT,
            "left": charts.LEFT,
            "bottom": charts.BOTTOM,
        },
    )
