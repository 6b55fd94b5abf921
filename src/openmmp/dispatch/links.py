"""The connections a worker process keeps to `connected` upstreams (SMPP binds): one `Link` per channel.

Every `sync_seconds` the worker reads which channels of connected providers may send and keeps exactly
their links running: a new channel's link starts, and one whose channel was deleted, stopped sending or
got new credentials is stopped (and, for new credentials, started again). Dispatch asks for a channel's
link when it plans a send (`get`), which starts it at once if the sync has not yet. What arrives on a
link goes through the callback receiver as a trusted callback of the channel: stored once by its dedupe
key and applied like any callback, and acknowledged upstream only after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from openmmp.callbacks.batching import CallbackReceiver
from openmmp.channels.service import open_credentials
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.metrics import UPSTREAM_CONNECTIONS_UP, UPSTREAM_LINKS
from openmmp.models import Channel
from openmmp.models.channel import SENDING_STATUSES
from openmmp.providers.base import CallbackRequest, EventSink, Link, Provider, ProviderContext
from openmmp.providers.registry import REGISTRY

log = structlog.get_logger(__name__)

_STOP_WAIT_S = 10.0


@dataclass
class _Running:
    provider: str
    link: Link
    credentials: str
    """The channel's sealed credentials the link was made with: new ones need a new link."""
    stop: asyncio.Event
    task: asyncio.Task[None]


class Links:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        contexts: Mapping[str, ProviderContext],
        receiver: CallbackReceiver,
        *,
        sync_seconds: float,
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._contexts = contexts
        self._receiver = receiver
        self._sync_seconds = sync_seconds
        self._running: dict[int, _Running] = {}
        self._stopping: list[_Running] = []
        connected = [p for p in REGISTRY.providers if p.connected]
        self._applications = [p.application.value for p in connected]
        self._providers = [p.name for p in connected]

    def get(self, channel: Channel, provider: Provider) -> Link:
        """The channel's link, started now when it is not running (or runs on old credentials)."""
        running = self._running.get(channel.id)
        if running is not None and running.credentials == channel.credentials and not running.task.done():
            return running.link
        if running is not None:
            self._stop(channel.id)
        return self._start(channel, provider)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the links of the channels that may send until `stop`; then stop every link."""
        if not self._applications:
            return
        try:
            while not stop.is_set():
                try:
                    await self._sync()
                except Exception:
                    log.exception("links_sync_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._sync_seconds)
        finally:
            for channel_id in list(self._running):
                self._stop(channel_id)
            tasks = [running.task for running in self._stopping]
            if tasks:
                await asyncio.wait(tasks, timeout=_STOP_WAIT_S)

    async def _sync(self) -> None:
        async with self._db.read_sessions() as session:
            rows = await session.execute(
                select(Channel).where(
                    Channel.application_id.in_(self._applications),
                    Channel.status.in_([int(s) for s in SENDING_STATUSES]),
                )
            )
            wanted = {channel.id: channel for channel in rows.scalars()}
        for channel_id in [c for c in self._running if c not in wanted]:
            self._stop(channel_id)
        for channel in wanted.values():
            provider = REGISTRY.for_application(channel.application_id)
            if provider is not None:
                self.get(channel, provider)
        for name in self._providers:
            mine = [running for running in self._running.values() if running.provider == name]
            UPSTREAM_LINKS.labels(name).set(len(mine))
            UPSTREAM_CONNECTIONS_UP.labels(name).set(sum(running.link.up for running in mine))

    def _start(self, channel: Channel, provider: Provider) -> Link:
        ctx = self._contexts[provider.name]
        link = provider.link(ctx, open_credentials(self._keyring, channel), self._sink(provider, channel))
        stop = asyncio.Event()
        task = asyncio.create_task(
            self._keep(link, stop, channel.public_id), name=f"link-{channel.public_id}"
        )
        self._running[channel.id] = _Running(provider.name, link, channel.credentials, stop, task)
        log.info("link_started", channel=channel.public_id, provider=provider.name)
        return link

    def _stop(self, channel_id: int) -> None:
        running = self._running.pop(channel_id)
        running.stop.set()
        self._stopping.append(running)
        running.task.add_done_callback(lambda _: self._stopping.remove(running))

    async def _keep(self, link: Link, stop: asyncio.Event, account_id: str) -> None:
        try:
            await link.run(stop)
        except Exception:
            log.exception("link_failed", channel=account_id)

    def _sink(self, provider: Provider, channel: Channel) -> EventSink:
        receiver, name, account_id = self._receiver, provider.name, channel.public_id

        async def sink(body: bytes) -> str:
            request = CallbackRequest(method="LINK", headers={}, query={}, body=body)
            return await receiver.receive(name, account_id, request, trusted=True)

        return sink
