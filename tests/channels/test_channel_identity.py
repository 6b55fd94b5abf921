"""Channels made before identities were fingerprinted get theirs when the workers start."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from tests.conftest import Tenant, bot_credentials

from openmmp.channels.tasks import fingerprint_identities
from openmmp.models import Channel


async def _fingerprints(app: Any, *accounts: str) -> list[str | None]:
    async with app.state.db.read_sessions() as session:
        rows = await session.execute(
            select(Channel.public_id, Channel.identity_fingerprint).where(Channel.public_id.in_(accounts))
        )
        found = dict(rows.all())
    return [found[account] for account in accounts]


async def test_old_channels_get_their_fingerprint_and_a_shared_account_is_left_to_the_operator(
    app: Any, tenant: Tenant, new_company, make_channel
):
    credentials = bot_credentials()
    first = await make_channel(tenant, credentials=credentials)
    other = await make_channel(await new_company())
    [stored, _] = await _fingerprints(app, first["publicId"], other["publicId"])
    assert stored is not None and credentials["authToken"] not in stored
    async with app.state.db.write_sessions() as session, session.begin():
        # As a database upgraded from before the rule: no fingerprints, and one account on two channels.
        await session.execute(
            update(Channel)
            .where(Channel.public_id.in_([first["publicId"], other["publicId"]]))
            .values(identity_fingerprint=None)
        )
        keyring = app.state.keyring
        twin = (
            await session.execute(select(Channel).where(Channel.public_id == first["publicId"]))
        ).scalar_one()
        await session.execute(
            update(Channel).where(Channel.public_id == other["publicId"]).values(credentials=twin.credentials)
        )
    async with app.state.db.write_sessions() as session, session.begin():
        assert await fingerprint_identities(session, keyring) >= 1
    fingerprints = await _fingerprints(app, first["publicId"], other["publicId"])
    assert fingerprints.count(stored) == 1  # one of the two holds it; the other is logged and left
    assert fingerprints.count(None) == 1
