"""Channel set-up jobs: tell the upstream where to call back once a channel's credentials are saved.

Viber Bot: `set_webhook` to `/callbacks/viber-bot/{accountId}` (Viber pings it before answering, which is
why this runs after the channel is committed). Viber BM in sandbox: register the service's callback URL
with the simulator. The channel is PROCESSING until this succeeds, then LAUNCH; REJECT with the cause when
the upstream refuses for good.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select

from openmmp.channels.service import open_credentials
from openmmp.dispatch.retry import backoff_ms
from openmmp.errors import AppError
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.http import HttpClient
from openmmp.kit.time import now_ms
from openmmp.models import Channel
from openmmp.models.channel import Application, ChannelStatus
from openmmp.providers.base import ProviderError
from openmmp.providers.viber_bot.client import ViberBotClient
from openmmp.queue.sql import Claimer, acknowledge, reschedule
from openmmp.sandbox import register_viber_service
from openmmp.settings import Settings

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 6


class ChannelSetup:
    def __init__(self, db: Database, http: HttpClient, keyring: Keyring, settings: Settings) -> None:
        self.db = db
        self.http = http
        self.keyring = keyring
        self.settings = settings
        self.claimer = Claimer(kind="channel_setup", lease_ms=60_000, skip_locked=not db.is_sqlite)

    async def _setup(self, channel: Channel) -> None:
        credentials = open_credentials(self.keyring, channel)
        public = self.settings.resolved_public_url
        if channel.application_id == Application.VIBER_BOT:
            client = ViberBotClient(self.http, self.settings.provider_base_url("viber-bot"))
            await client.set_webhook(
                auth_token=credentials["authToken"], url=f"{public}/callbacks/viber-bot/{channel.public_id}"
            )
        elif channel.application_id == Application.VIBER and self.settings.sandbox:
            await register_viber_service(
                self.http,
                self.settings.provider_base_url("viber"),
                service_id=int(credentials["serviceId"]),
                callback_url=f"{public}/callbacks/viber/{channel.public_id}",
            )

    async def run_once(self) -> int:
        now = now_ms()
        async with self.db.write_sessions() as session, session.begin():
            jobs = await self.claimer.claim(session, limit=20, now=now)
            if not jobs:
                return 0
            ids = [j.channel_id for j in jobs]
            channels = {
                c.id: c for c in (await session.execute(select(Channel).where(Channel.id.in_(ids)))).scalars()
            }
        results: dict[int, tuple[int, str | None] | None] = {}
        for job in jobs:
            channel = channels.get(job.channel_id or -1)
            if channel is None:
                results[job.id] = (ChannelStatus.REJECT, None)
                continue
            try:
                await self._setup(channel)
                results[job.id] = (ChannelStatus.LAUNCH, None)
            except (ProviderError, AppError) as exc:
                final = isinstance(exc, ProviderError) and not exc.retryable
                log.warning("channel_setup_failed", channel=channel.public_id, error=str(exc), final=final)
                results[job.id] = (
                    (ChannelStatus.REJECT, str(exc)[:500])
                    if final or job.attempts + 1 >= MAX_ATTEMPTS
                    else None
                )
        async with self.db.write_sessions() as session, session.begin():
            done, retries = [], []
            for job in jobs:
                result = results[job.id]
                if result is None:
                    retries.append(
                        (job.id, now_ms() + backoff_ms(job.attempts + 1, base_s=1, max_s=60), True)
                    )
                    continue
                done.append(job.id)
                channel = channels.get(job.channel_id or -1)
                if channel is not None:
                    fresh = await session.get(Channel, channel.id)
                    if fresh is not None and fresh.status == ChannelStatus.PROCESSING:
                        fresh.status, fresh.status_cause = result
            await reschedule(session, retries)
            await acknowledge(session, done)
        return len(jobs)
