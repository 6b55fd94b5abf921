"""A sandbox end user writing to a channel whose set-up the simulator does not have (yet) is refused.

The simulators forget every service's callback URL and every bot's webhook when they restart; the
channel's set-up, run again when the workers start, registers them. In between, a user's message would
go nowhere: the provider says so (a retryable `SIMULATOR_NOT_SET_UP`, answered 503 by the sandbox route)
instead of answering as if it had been delivered.
"""

from __future__ import annotations

import pytest
from tests.providers.viber_harness import Sim

from openmmp.providers.base import ProviderContext, ProviderError, SandboxUser
from openmmp.providers.viber.provider import ViberProvider
from openmmp.providers.viber_bot.client import ViberBotClient
from openmmp.providers.viber_bot.provider import ViberBotProvider

SERVICE = 5150
TOKEN = "sandbox-bot-token-before-set-up"


def _ctx(sim: Sim, path: str) -> ProviderContext:
    return ProviderContext(sim.http, f"{sim.base_url}/{path}", "http://127.0.0.1:9", sandbox=True)


async def test_viber_bm_refuses_until_the_service_is_registered(sim: Sim) -> None:
    provider, ctx = ViberProvider(), _ctx(sim, "viber")
    user = SandboxUser(name="Dara", text="hello", phone="85512345678", user_id=None)
    with pytest.raises(ProviderError) as refused:
        await provider.sandbox_inbound(ctx, {"serviceId": SERVICE}, user)
    assert (refused.value.code, refused.value.retryable) == ("SIMULATOR_NOT_SET_UP", True)
    assert sim.inbox.events("message") == []

    await sim.register_service(SERVICE)
    written = await provider.sandbox_inbound(ctx, {"serviceId": SERVICE}, user)
    assert written.user_id == "85512345678"
    await sim.inbox.wait_events("message", 1)


@pytest.mark.parametrize("phone", [None, "85512345678"])
async def test_viber_bot_refuses_until_its_webhook_is_set(sim: Sim, phone: str | None) -> None:
    provider, ctx = ViberBotProvider(), _ctx(sim, "viber-bot")
    user = SandboxUser(name="Dara", text="hello", phone=phone, user_id=None)
    with pytest.raises(ProviderError) as refused:
        await provider.sandbox_inbound(ctx, {"authToken": TOKEN}, user)
    assert (refused.value.code, refused.value.retryable) == ("SIMULATOR_NOT_SET_UP", True)
    assert sim.inbox.events("message") == []

    await ViberBotClient(sim.http, sim.bot_url + "/").set_webhook(auth_token=TOKEN, url=sim.inbox.url)
    written = await provider.sandbox_inbound(ctx, {"authToken": TOKEN}, user)
    assert written.user_id
    await sim.inbox.wait_events("message", 1)
