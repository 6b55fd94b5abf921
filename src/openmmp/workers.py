"""The worker process role: dispatch, webhook delivery, channel set-up and the periodic sweeps.

The composition root of the workers (as `app.py` is the API's): it builds each provider's context from
the settings and wires the domains' loops together. Runs inside `openmmp serve` (the default) or alone as
`openmmp worker`, any number of times over one database: every piece claims its work with a lease, so
workers never step on each other. At every start it queues each channel's set-up again (an upstream, or
the sandbox's in-process simulator, may have forgotten it).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from openmmp.callbacks.service import prune_events, reconcile
from openmmp.channels.tasks import ChannelSetup, fingerprint_identities, queue_setup_at_start
from openmmp.dispatch.flows import Dispatcher
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.http import HttpClient
from openmmp.kit.limits import Limiter, LocalLimiter
from openmmp.messages.tasks import expire_sent
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
        self.keyring = keyring
        self.settings = settings
        contexts = settings.provider_contexts(http)
        self.deliverer = WebhookDeliverer(
            db, http, keyring, settings.webhooks, allow_private=webhooks_allow_private(settings)
        )
        # Limits shared across processes live in Redis when configured; else each process keeps its own.
        self._redis_limiter = (
            RedisLimiter(settings.redis_url) if limiter is None and settings.redis_url else None
        )
        chosen = limiter or self._redis_limiter or LocalLimiter()
        self.dispatcher = Dispatcher(db, keyring, settings, contexts, chosen, on_commit=self.deliverer.wake)
        self.setup = ChannelSetup(db, keyring, contexts, settings.channel_setup)

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
                async with self.db.write_sessions() as session, session.begin():
                    fingerprinted = await fingerprint_identities(session, self.keyring)
                    queued = await queue_setup_at_start(session, sandbox=self.settings.sandbox)
                log.info("channels_started", setups_queued=queued, identities_fingerprinted=fingerprinted)
                break
            except Exception:
                log.exception("channel_setup_queue_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=dispatch.sweep_interval_seconds)
        while not stop.is_set():
            try:
                while await self.setup.run_once():
                    pass
                async with self.db.write_sessions() as session, session.begin():
                    changed = await expire_sent(session)
                    changed += await reconcile(
                        session, max_age_ms=int(dispatch.unmatched_callback_max_age_seconds * 1000)
                    )
                    await prune_events(session, self.settings.callbacks)
                if changed:
                    self.deliverer.wake()
            except Exception:
                log.exception("periodic_round_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=dispatch.sweep_interval_seconds)
