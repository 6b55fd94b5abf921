"""The worker process role: dispatch, webhook delivery, channel set-up and the periodic sweeps.

Runs inside `openmmp serve` (the default) or alone as `openmmp worker`, any number of times over one
database: every piece claims its work with a lease, so workers never step on each other.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from openmmp.callbacks.service import reconcile
from openmmp.channels.tasks import ChannelSetup
from openmmp.dispatch.flows import Dispatcher
from openmmp.dispatch.limits import Limiter, LocalLimiter
from openmmp.dispatch.senders import Clients
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.http import HttpClient
from openmmp.messages.tasks import expire_sent
from openmmp.providers.viber.client import ViberClient
from openmmp.providers.viber_bot.client import ViberBotClient
from openmmp.queue.notify import JOBS, WEBHOOKS, Listener
from openmmp.queue.redis_limiter import RedisLimiter
from openmmp.settings import Settings
from openmmp.webhooks.tasks import WebhookDeliverer, webhooks_allow_private

log = structlog.get_logger(__name__)


class Workers:
    def __init__(
        self,
        db: Database,
        http: HttpClient,
        keyring: Keyring,
        settings: Settings,
        limiter: Limiter | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        clients = Clients(
            viber=ViberClient(http, settings.provider_base_url("viber")),
            viber_bot=ViberBotClient(http, settings.provider_base_url("viber-bot")),
        )
        self.deliverer = WebhookDeliverer(
            db, http, keyring, settings.webhooks, allow_private=webhooks_allow_private(settings)
        )
        # Limits shared across processes live in Redis when configured; else each process keeps its own.
        self._redis_limiter = (
            RedisLimiter(settings.redis_url) if limiter is None and settings.redis_url else None
        )
        chosen = limiter or self._redis_limiter or LocalLimiter()
        self.dispatcher = Dispatcher(db, keyring, settings, clients, chosen, on_commit=self.deliverer.wake)
        self.setup = ChannelSetup(db, http, keyring, settings)

    def wake(self) -> None:
        """New sends or events were committed by this process."""
        self.dispatcher.wake()
        self.deliverer.wake()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("workers_started", shared_limits=self._redis_limiter is not None)
        loops = [self.dispatcher.run(stop), self.deliverer.run(stop), self._periodic(stop)]
        if not self.db.is_sqlite:
            handlers = {JOBS: self.dispatcher.wake, WEBHOOKS: self.deliverer.wake}
            loops.append(Listener(self.db.url, handlers).run(stop))
        try:
            await asyncio.gather(*loops)
        finally:
            if self._redis_limiter is not None:
                await self._redis_limiter.aclose()
        log.info("workers_stopped")

    async def _periodic(self, stop: asyncio.Event) -> None:
        dispatch = self.settings.dispatch
        while not stop.is_set():
            try:
                while await self.setup.run_once():
                    pass
                async with self.db.write_sessions() as session, session.begin():
                    changed = await expire_sent(session)
                    changed += await reconcile(
                        session, max_age_ms=int(dispatch.unmatched_callback_max_age_seconds * 1000)
                    )
                if changed:
                    self.deliverer.wake()
            except Exception:
                log.exception("periodic_round_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=dispatch.sweep_interval_seconds)
