"""The SMS provider's link to a real SMSC (the product's simulator over TCP): parts submitted and
reported one by one, replies put together from their parts, deliveries answered only once stored,
binds kept up across an SMSC restart, and a host the operator has not allowed never connected to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from tests.e2e.harness import wait_until

from openmmp.kit.http import HttpClient
from openmmp.providers.base import (
    ChannelEvent,
    InboundEvent,
    Outgoing,
    ProviderContext,
    ProviderError,
    SendOk,
    StatusEvent,
)
from openmmp.providers.simulation import SimulatorConfig
from openmmp.providers.smpp.provider import SmppProvider
from openmmp.providers.smpp.smsc import SmscKnobs, SmscSimulator
from openmmp.webhooks.guard import upstream_target_check

PROVIDER = SmppProvider()
LONG = "Your parcel 4711 is ready at the post office on Norodom Boulevard. " * 4  # GSM-7, 2 parts


class Sink:
    """Where the link hands what arrives: kept as bodies; `refuse` fails that many calls first."""

    def __init__(self, refuse: int = 0) -> None:
        self.bodies: list[bytes] = []
        self.refused: list[bytes] = []
        self._refuse = refuse

    async def __call__(self, body: bytes) -> str:
        if self._refuse > 0:
            self._refuse -= 1
            self.refused.append(body)
            raise ConnectionError("the database is away")
        self.bodies.append(body)
        return "applied"

    def events(self) -> list[Any]:
        return [event for body in self.bodies for event in PROVIDER.parse(body)]


@pytest.fixture
async def smsc() -> AsyncIterator[SmscSimulator]:
    simulator = SmscSimulator(SimulatorConfig(), SmscKnobs(receipt_delay_s=0.01, redeliver_after_s=0.05))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(timeout=1.0)
    yield client
    await client.aclose()


def credentials(port: int, **more: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "systemId": "acme",
        "password": "pw",
        "sourceAddr": "ACME",
        **more,
    }


@asynccontextmanager
async def running(
    http: HttpClient, creds: dict[str, Any], sink: Callable[[bytes], Awaitable[str]], **ctx: Any
) -> AsyncIterator[Any]:
    context = ProviderContext(http=http, base_url="", public_url="http://127.0.0.1:9", sandbox=False, **ctx)
    link = PROVIDER.link(context, creds, sink)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    try:
        yield context, link
    finally:
        stop.set()
        await task


async def send(context: ProviderContext, creds: dict[str, Any], link: Any, phone: str, text: str) -> Any:
    message = Outgoing(4711, phone, {"type": "text", "message": text})
    [unit] = PROVIDER.plan(context, creds, [message], link)
    return (await unit.call())[4711]


async def test_a_long_text_goes_in_parts_and_each_part_is_reported(smsc: SmscSimulator, http: HttpClient):
    creds, sink = credentials(smsc.address[1]), Sink()
    async with running(http, creds, sink) as (context, link):
        await wait_until(lambda: link.up, timeout=5, what="bound")
        outcome = await send(context, creds, link, "85512345670", LONG)
        assert isinstance(outcome, SendOk)
        assert len(outcome.parts) == 2
        assert outcome.provider_message_id == f"{outcome.parts[0]}+2"  # the whole, named by no receipt
        await wait_until(lambda: len(sink.events()) == 2, timeout=5, what="a receipt per part")
    reports = sink.events()
    assert all(isinstance(e, StatusEvent) and e.status == "DELIVERED" for e in reports)
    assert {e.provider_message_id for e in reports} == set(outcome.parts)


async def test_a_reply_in_parts_reaches_the_core_whole(smsc: SmscSimulator, http: HttpClient):
    creds, sink = credentials(smsc.address[1]), Sink()
    reply = "Да, подтверждаю заказ. " * 5  # UCS-2, 2 parts
    async with running(http, creds, sink) as (_, link):
        await wait_until(lambda: link.up, timeout=5, what="bound")
        smsc.mobile_originated("acme", source="85512345670", destination="ACME", message=reply)
        await wait_until(lambda: sink.bodies, timeout=5, what="the reply")
    [event] = sink.events()
    assert isinstance(event, InboundEvent)
    assert (event.message["message"], event.contact.phone) == (reply, "85512345670")
    assert orjson.loads(sink.bodies[0])["parts"] == 2


async def test_what_cannot_be_stored_is_delivered_again_by_the_smsc(smsc: SmscSimulator, http: HttpClient):
    creds, sink = credentials(smsc.address[1]), Sink(refuse=1)
    async with running(http, creds, sink) as (context, link):
        await wait_until(lambda: link.up, timeout=5, what="bound")
        outcome = await send(context, creds, link, "85512345670", "Your code is 4711")
        await wait_until(lambda: sink.bodies, timeout=5, what="the receipt, again")
    assert isinstance(outcome, SendOk)
    [refused] = sink.refused
    [stored] = sink.bodies
    assert [e.dedupe_key for e in PROVIDER.parse(refused)] == [e.dedupe_key for e in PROVIDER.parse(stored)]
    assert smsc.stats["redelivered"] == 1


async def test_the_binds_come_back_after_the_smsc_restarts(http: HttpClient):
    first = SmscSimulator(SimulatorConfig(), SmscKnobs(receipt_delay_s=0.01))
    port = await first.start()
    creds, sink = credentials(port, binds=2), Sink()
    async with running(http, creds, sink) as (context, link):
        await wait_until(lambda: link.up == 2, timeout=5, what="two binds")
        await first.stop()
        await wait_until(lambda: link.up == 0, timeout=5, what="binds lost")
        second = SmscSimulator(SimulatorConfig(), SmscKnobs(receipt_delay_s=0.01))
        await second.start(port=port)
        try:
            await wait_until(lambda: link.up == 2, timeout=10, what="binds back")
            outcome = await send(context, creds, link, "85512345670", "back again")
            assert isinstance(outcome, SendOk)
        finally:
            await second.stop()


async def test_a_transmitter_and_a_receiver_can_stand_in_for_a_transceiver(
    smsc: SmscSimulator, http: HttpClient
):
    creds, sink = credentials(smsc.address[1], bindMode="transmitter+receiver"), Sink()
    async with running(http, creds, sink) as (context, link):
        await wait_until(lambda: link.up, timeout=5, what="bound")
        outcome = await send(context, creds, link, "85512345670", "Your code is 4711")
        await wait_until(lambda: sink.bodies, timeout=5, what="the receipt on the receiver")
    assert isinstance(outcome, SendOk)
    assert smsc.stats["binds"] == 2


async def test_an_smsc_host_that_is_not_allowed_is_never_connected_to(smsc: SmscSimulator):
    impatient = HttpClient(timeout=0.3)
    creds, sink = credentials(smsc.address[1]), Sink()
    try:
        async with running(impatient, creds, sink, target_check=upstream_target_check([])) as (context, link):
            outcome = await send(context, creds, link, "85512345670", "never sent")
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("SMPP_NOT_BOUND", True)
        assert smsc.stats["binds"] == 0
        async with running(impatient, creds, sink, target_check=upstream_target_check(["127.0.0.1"])) as (
            context,
            link,
        ):
            await wait_until(lambda: link.up, timeout=5, what="bound once allowed")
    finally:
        await impatient.aclose()


async def test_an_account_the_smsc_refuses_rejects_the_channel_once(http: HttpClient):
    strict = SmscSimulator(SimulatorConfig(), SmscKnobs(system_id="acme", password="right"))
    port = await strict.start()
    creds, sink = credentials(port, password="wrong"), Sink()
    try:
        async with running(http, creds, sink) as (_, link):
            await wait_until(lambda: strict.stats["bind_refused"] >= 2, timeout=10, what="two refusals")
            assert not link.up
    finally:
        await strict.stop()
    [event] = sink.events()  # reported once, not at every try
    assert isinstance(event, ChannelEvent)
    assert event.status == "REJECT"
    assert event.cause == "The SMSC refused the bind: invalid password (command_status 0x0000000E)"
