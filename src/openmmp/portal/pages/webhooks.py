"""The webhook delivery log of a channel: each event sent (or to be sent) to its webhook URL, its attempts
and the body sent, and a replay of one delivery, as the API's /channel/{accountId}/webhook routes.

Deliveries belong to a channel (the API's routes are the channel's), so every page names the channel with
`accountId`; the list shows the company's first channel with a webhook URL when none is chosen.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import orjson
from fastapi import Query, Request
from starlette.responses import Response

from openmmp.channels.service import channels
from openmmp.errors import Invalid
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import PageNumber
from openmmp.models import Channel, WebhookDelivery
from openmmp.models.webhook import DeliveryState
from openmmp.portal.web import PORTAL, CompanyEditorDep, CompanyViewerDep, portal_router, redirect, render
from openmmp.webhooks.schemas import DeliveryStateName
from openmmp.webhooks.service import webhooks

router = portal_router("/webhooks")

SIZE = 20
"""Deliveries a page shows."""
EVENT_TYPES = {1: "Message status", 2: "Inbound message", 3: "Template status", 4: "Channel status"}
AccountIdQuery = Annotated[str, Query(alias="accountId", min_length=1, max_length=36)]


def _default(owned: list[Channel]) -> Channel | None:
    """The channel a list without `accountId` shows: the first that has a webhook URL, else the first."""
    return next((c for c in owned if c.webhook_url), owned[0] if owned else None)


def _state(text: str) -> DeliveryStateName | None:
    if not text:
        return None
    try:
        return DeliveryStateName(text)
    except ValueError:
        names = ", ".join(s.value for s in DeliveryStateName)
        raise Invalid(f"must be one of {names}, or empty for any", name="state") from None


@router.get("")
async def list_deliveries(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    account_id: Annotated[str, Query(alias="accountId", max_length=36)] = "",
    state_text: Annotated[str, Query(alias="state", max_length=20)] = "",
    page: PageNumber = 1,
) -> Response:
    """`state` empty: deliveries in any state (the filter's "Any" sends it empty)."""
    state = _state(state_text)
    subject = viewer.subject
    owned = await channels.all_of(session, subject)
    channel = await channels.get(session, subject, public_id=account_id) if account_id else _default(owned)
    total, items = 0, list[WebhookDelivery]()
    if channel is not None:
        total, items = await webhooks.list(
            session,
            subject,
            channel=channel,
            state=None if state is None else DeliveryState[state.value],
            page=page,
            size=SIZE,
        )
    return render(
        request,
        "webhooks.html",
        channels=[(c.public_id, c.name) for c in owned],
        channel=channel,
        state=state.value if state else "",
        states=[s.value for s in DeliveryStateName],
        deliveries=items,
        state_names={int(s): s.name for s in DeliveryState},
        event_types=EVENT_TYPES,
        total=total,
        page=page,
        pages=max(1, -(-total // SIZE)),
    )


@router.get("/{webhook_id}")
async def detail(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    webhook_id: str,
    account_id: AccountIdQuery,
) -> Response:
    subject = viewer.subject
    channel = await channels.get(session, subject, public_id=account_id)
    found = await webhooks.get(session, subject, channel=channel, webhook_id=webhook_id)
    delivery = found.delivery
    return render(
        request,
        "webhook.html",
        channel=channel,
        delivery=delivery,
        attempts=found.attempts,
        state=DeliveryState(delivery.state).name,
        event_type=EVENT_TYPES.get(delivery.event_type, str(delivery.event_type)),
        body=orjson.dumps(orjson.loads(delivery.body), option=orjson.OPT_INDENT_2).decode(),
    )


@router.post("/{webhook_id}/replay")
async def replay(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    webhook_id: str,
    account_id: AccountIdQuery,
) -> Response:
    """Send the delivery again now, with the same webhook-id (HELD while the endpoint is not active)."""
    subject = viewer.subject
    channel = await channels.get(session, subject, public_id=account_id)
    delivery = await webhooks.replay(session, subject, channel=channel, webhook_id=webhook_id)
    held = delivery.state == DeliveryState.HELD
    notice = "Held: it goes out when the endpoint is active again" if held else "Queued to be sent again"
    url = f"{PORTAL}/webhooks/{quote(delivery.public_id)}?accountId={quote(channel.public_id)}"
    return redirect(request, url, notice=notice)
