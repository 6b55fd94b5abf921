"""The servers a worker process runs for providers that `listen` (an SMTP server taking bounces).

Each such provider's `listener` runs for the process's whole life. What arrives names its channel; it goes
through the callback receiver as a trusted callback of that channel, as what arrives on a link does:
stored once by its dedupe key, applied like any callback, and acknowledged only after its commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from openmmp.callbacks.batching import CallbackReceiver
from openmmp.callbacks.service import CallbackChannelNotFound
from openmmp.providers.base import (
    REFUSED,
    CallbackRejected,
    CallbackRequest,
    ChannelSink,
    Provider,
    ProviderContext,
)
from openmmp.providers.registry import REGISTRY

log = structlog.get_logger(__name__)


class ProviderListeners:
    def __init__(self, contexts: Mapping[str, ProviderContext], receiver: CallbackReceiver) -> None:
        self._contexts = contexts
        self._receiver = receiver

    async def run(self, stop: asyncio.Event) -> None:
        """Run every listening provider's server until `stop`; each closes before this returns."""
        providers = [p for p in REGISTRY.providers if p.listens]
        await asyncio.gather(*(self._keep(provider, stop) for provider in providers))

    async def _keep(self, provider: Provider, stop: asyncio.Event) -> None:
        listener = provider.listener(self._contexts[provider.name], self._sink(provider))
        try:
            await listener.run(stop)
        except Exception:
            log.exception("listener_failed", provider=provider.name)

    def _sink(self, provider: Provider) -> ChannelSink:
        receiver, name = self._receiver, provider.name

        async def sink(account_id: str, body: bytes) -> str:
            request = CallbackRequest(method="LISTENER", headers={}, query={}, body=body)
            try:
                return await receiver.receive(name, account_id, request, trusted=True)
            except (CallbackChannelNotFound, CallbackRejected) as exc:
                log.warning("listener_refused", provider=name, channel=account_id, reason=str(exc))
                return REFUSED

        return sink
