"""The dashboard's chart: each channel's messages by status, from the same tallies as the summary."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from openmmp.models import Channel
from openmmp.models.message import MessageStatus
from tests.billing.conftest import move, send
from tests.conftest import Tenant
from tests.portal.conftest import PortalClient
from tests.templates.conftest import sms_credentials


def _totals(page: str, name: str) -> dict[str, int]:
    """The counts printed under the channel's chart heading."""
    section = page[page.index(f">{name}</h2>") :]
    line = section[: section.index("</p>")]
    return {series: int(n) for series, n in re.findall(r"(read|delivered|sent|pending|failed) (\d+)", line)}


class TestTheChart:
    async def test_it_counts_each_status_of_the_channels_messages(
        self, app: Any, client: Any, tenant: Tenant, admin: PortalClient, make_channel: Any
    ):
        channel = await make_channel(tenant, name="Chart SMS", applicationId=3, credentials=sms_credentials())
        await send(client, tenant, channel["publicId"], 6)
        async with app.state.db.read_sessions() as session:
            channel_id = await session.scalar(
                select(Channel.id).where(Channel.public_id == channel["publicId"])
            )
        plan = [
            (MessageStatus.SENT, True),
            (MessageStatus.DELIVERED, True),
            (MessageStatus.READ, True),
            (MessageStatus.READ, True),
            (MessageStatus.FAIL, False),
        ]
        await move(app, channel_id, plan)

        page = await admin.get("/portal/")

        assert page.status_code == 200
        assert _totals(page.text, "Chart SMS") == {
            "read": 2,
            "delivered": 1,
            "sent": 1,
            "pending": 1,
            "failed": 1,
        }
        assert 'role="img"' in page.text and "2 read, 1 delivered, 1 sent, 1 pending, 1 failed" in page.text

    async def test_the_periods_and_a_bad_one(self, admin: PortalClient):
        for period in ("24h", "7d", "30d"):
            assert (await admin.get("/portal/", params={"range": period})).status_code == 200
        fragment = await admin.htmx("GET", "/portal/?range=7d")
        assert "<html" not in fragment.text and "6 hours" in fragment.text
        refused = await admin.get("/portal/", params={"range": "1y"})
        assert refused.status_code == 400 and "range" in refused.text

    async def test_another_companys_channels_are_not_drawn(
        self, tenant: Tenant, new_company: Any, sign_in_admin: Any, make_channel: Any
    ):
        await make_channel(tenant, name="Not yours")
        other = await sign_in_admin(await new_company())
        page = await other.get("/portal/")
        assert "Not yours" not in page.text
