"""The sandbox demo data: made once, and its channels brought up to date at every later start."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, update

from openmmp.demo import ensure_demo
from openmmp.models import Channel
from openmmp.models.channel import ChannelStatus
from openmmp.providers.applications import Application
from openmmp.settings import Settings
from tests.conftest import TEST_SECRET, migrated_database, running_app


@pytest.fixture(params=["sqlite", "postgresql"])
async def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> AsyncIterator[Any]:
    """A database of its own: the demo's channels hold sandbox identities (agent `demo-agent`, ...) that
    one channel only may hold, and other tests' channels may hold them in the shared database."""
    url = migrated_database(request.param, tmp_path_factory, f"demo_{worker_name}")
    settings = Settings(database_url=url, data_dir=tmp_path_factory.mktemp("demo"), secret_key=TEST_SECRET)
    async with running_app(settings) as application:
        yield application


async def test_a_later_start_gives_demo_channels_the_current_sandbox_credentials(app: Any) -> None:
    db, keyring = app.state.db, app.state.keyring
    demo = await ensure_demo(db, keyring, None)
    rcs = demo.channels[Application.RCS.name]
    viber = demo.channels[Application.VIBER.name]
    async with db.write_sessions() as session, session.begin():
        rows = await session.execute(select(Channel).where(Channel.public_id.in_([rcs, viber])))
        channels = {c.public_id: c.credentials for c in rows.scalars()}
        assert set(channels) == {rcs, viber}
        # A database from an older version: the demo agent's key file was a fake the simulator refused.
        await session.execute(
            update(Channel)
            .where(Channel.public_id == rcs)
            .values(
                credentials=keyring.encrypt(
                    json.dumps({"agentId": "demo-agent", "serviceAccountJson": "{}"})
                ),
                status=int(ChannelStatus.REJECT),
                status_cause="RBM_CREDENTIALS: refused",
            )
        )
    untouched_before = channels[viber]

    again = await ensure_demo(db, keyring, demo)

    assert again == demo
    async with db.read_sessions() as session, session.begin():
        fixed = await session.scalar(select(Channel).where(Channel.public_id == rcs))
        other = await session.scalar(select(Channel).where(Channel.public_id == viber))
    assert fixed is not None
    assert other is not None
    credentials = json.loads(keyring.decrypt(fixed.credentials))
    assert credentials["agentId"] == "demo-agent"
    assert "PRIVATE KEY" in json.loads(credentials["serviceAccountJson"])["private_key"]
    assert fixed.status != ChannelStatus.REJECT
    assert fixed.status_cause is None
    assert other.credentials == untouched_before  # unchanged credentials are not sealed again
