"""Renewing credentials that expire (`Provider.refreshes_credentials`: Zalo's OAuth tokens).

An upstream that refuses a channel's access token says so with `ProviderError.stale_credentials`; the
caller then asks `renew` for fresh credentials and calls again. Renewing spends the channel's refresh
token, which works once (Zalo's rotate): two workers that both find the token stale must not both spend
it, or the second is refused and the channel is left with nothing that works. So a renewal runs with the
channel's row locked (`FOR UPDATE` on PostgreSQL; SQLite's write transaction is the database's one lock),
and first looks whether the credentials are still the ones the caller saw: if another process renewed
them meanwhile, those are the answer and the upstream is not asked. The upstream's answer is stored in the
same transaction, so a token it hands out is never used before it is kept.

The lock is held for the upstream's answer, a few hundred milliseconds once a day per channel; on SQLite
that delays the other writers by as much, which their busy timeout absorbs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy import select

from openmmp.channels.credentials import validate_credentials
from openmmp.channels.service import ChannelNotFound, open_credentials, seal
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.models import Channel
from openmmp.providers.applications import Application
from openmmp.providers.base import Provider, ProviderContext, ProviderError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Renewal:
    """Renews channels' credentials, one renewal at a time per channel across every process."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring

    async def renew(
        self, channel: Channel, provider: Provider, ctx: ProviderContext
    ) -> tuple[dict[str, Any], str]:
        """Credentials newer than `channel.credentials` (the sealed ones the caller used), in clear, and
        sealed. Raises `ProviderError` when the upstream refused the renewal or could not be reached, and
        `ChannelNotFound` when the channel is gone."""
        async with self.db.write_sessions() as session, session.begin():
            statement = select(Channel).where(Channel.id == channel.id).with_for_update()
            current = (await session.execute(statement)).scalar_one_or_none()
            if current is None:
                raise ChannelNotFound("The channel no longer exists")
            if current.credentials != channel.credentials:
                # Renewed by another process since the caller read them (or edited by the company).
                return open_credentials(self.keyring, current), current.credentials
            renewed = await provider.refresh_credentials(ctx, open_credentials(self.keyring, current))
            current.credentials = seal(
                self.keyring, validate_credentials(Application(current.application_id), renewed)
            )
            sealed = current.credentials
        log.info("channel_credentials_renewed", channel=channel.public_id, provider=provider.name)
        return renewed, sealed

    async def call(
        self,
        channel: Channel,
        provider: Provider,
        ctx: ProviderContext,
        call: Callable[[dict[str, Any]], Awaitable[T]],
    ) -> T:
        """`call` with the channel's credentials; once more with renewed ones if the upstream found them
        stale. A renewal the upstream refuses is raised as that refusal."""
        try:
            return await call(open_credentials(self.keyring, channel))
        except ProviderError as exc:
            if not (exc.stale_credentials and provider.refreshes_credentials):
                raise
        credentials, _ = await self.renew(channel, provider, ctx)
        return await call(credentials)
