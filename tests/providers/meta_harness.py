"""A channel of one of Meta's products (a Messenger Page, a WhatsApp number) at its simulator, driven
through the real provider: set up, sending, and the webhooks that came back, verified and parsed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from tests.providers.viber_harness import Sim

from openmmp.providers.base import (
    CallbackRequest,
    Outgoing,
    Provider,
    ProviderContext,
    ProviderError,
    SendOk,
    SendOutcome,
)


@dataclass
class MetaChannel:
    """One channel at the simulator; `keys` numbers its sends."""

    provider: ClassVar[Provider]
    message: ClassVar[Mapping[str, Any]]
    """What `send` sends unless told otherwise."""

    sim: Sim
    credentials: dict[str, Any]
    keys: Any

    @property
    def ctx(self) -> ProviderContext:
        base_url = f"{self.sim.base_url}/{self.provider.name}"
        return ProviderContext(self.sim.http, base_url, "http://127.0.0.1:9", sandbox=True)

    async def set_up(self) -> None:
        await self.provider.set_up(self.ctx, callback_url=self.sim.inbox.url, credentials=self.credentials)

    async def send(self, to: str, content: Mapping[str, Any] | None = None) -> SendOutcome:
        key = next(self.keys)
        message = self.message if content is None else content
        [unit] = self.provider.plan(self.ctx, self.credentials, [Outgoing(key, to, message)])
        return (await unit.call())[key]

    async def sent(self, to: str, content: Mapping[str, Any] | None = None) -> str:
        outcome = await self.send(to, content)
        assert isinstance(outcome, SendOk), outcome
        return outcome.provider_message_id

    async def refused(self, to: str, content: Mapping[str, Any] | None = None) -> ProviderError:
        outcome = await self.send(to, content)
        assert isinstance(outcome, ProviderError), outcome
        return outcome

    def events(self) -> list[Any]:
        """Every webhook so far, verified with this channel's app secret, then parsed."""
        found = []
        for item in self.sim.inbox.received:
            request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
            assert self.provider.verify(self.ctx, request, self.credentials), item.body
            found += self.provider.parse(item.body)
        return found
