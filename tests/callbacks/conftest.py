"""Fixtures of the callback tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update
from tests.conftest import Tenant

from openmmp.models import Channel


@pytest.fixture
async def bot(app, client: httpx.AsyncClient, tenant: Tenant, make_channel) -> dict[str, Any]:
    channel = await make_channel(tenant)
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(
            update(Channel).where(Channel.public_id == channel["publicId"]).values(status=3)
        )
    return channel
