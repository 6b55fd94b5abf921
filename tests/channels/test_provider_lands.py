"""A provider that lands takes over the channels saved while its application could not send."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import delete, select, update
from tests.conftest import Tenant

from openmmp.channels.tasks import KIND, queue_setup_at_start
from openmmp.models import Channel, Job
from openmmp.models.channel import ChannelStatus

OLD_CAUSE = "Sending on TELEGRAM is not available in this version of OpenMMP yet"
"""What the version before Telegram's provider said of its channels."""


async def _state(app: Any, account: str) -> tuple[int, str | None, int]:
    async with app.state.db.read_sessions() as session:
        channel = (await session.execute(select(Channel).where(Channel.public_id == account))).scalar_one()
        jobs = (
            await session.execute(select(Job.id).where(Job.kind == KIND, Job.channel_id == channel.id))
        ).all()
        return channel.status, channel.status_cause, len(jobs)


async def test_a_channel_saved_before_its_provider_landed_is_set_up_at_the_next_start(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, make_channel
):
    waiting = await make_channel(tenant, applicationId=5, credentials={"botToken": "123:waiting"})
    held = await make_channel(tenant, applicationId=5, credentials={"botToken": "123:held"})
    async with app.state.db.write_sessions() as session, session.begin():
        for account, cause in ((waiting, OLD_CAUSE), (held, "Held by the operator")):
            await session.execute(
                update(Channel)
                .where(Channel.public_id == account["publicId"])
                .values(status=ChannelStatus.REQUEST, status_cause=cause)
            )
        # Saved by the earlier version, which queued them no set-up.
        ids = select(Channel.id).where(Channel.public_id.in_([waiting["publicId"], held["publicId"]]))
        await session.execute(delete(Job).where(Job.kind == KIND, Job.channel_id.in_(ids.scalar_subquery())))
    async with app.state.db.write_sessions() as session, session.begin():
        await queue_setup_at_start(session, sandbox=False)
    assert await _state(app, waiting["publicId"]) == (ChannelStatus.PROCESSING, None, 1)
    assert await _state(app, held["publicId"]) == (ChannelStatus.REQUEST, "Held by the operator", 0)
