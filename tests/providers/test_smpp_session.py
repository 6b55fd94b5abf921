"""An SMPP session from OpenMMP to an SMSC, over real sockets: a window of submits, receipts in order,
refusals as answers, and what a broken or hostile SMSC does to it."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from tests.e2e.harness import wait_until

from openmmp.providers.simulation import SimulatorConfig
from openmmp.providers.smpp import pdu as smpp
from openmmp.providers.smpp.pdu import (
    Bind,
    Framer,
    MessageId,
    Pdu,
    ShortMessage,
    SystemId,
    decode,
    parse_receipt,
)
from openmmp.providers.smpp.session import BindRefused, Session, SessionClosed
from openmmp.providers.smpp.smsc import SmscKnobs, SmscSimulator

BIND = Bind("openmmp", "secret")


def _message(n: int) -> ShortMessage:
    return ShortMessage("OpenMMP", f"85512{n:06d}", short_message=b"Your code is 4711", registered_delivery=1)


async def test_with_another_smsc_a_window_of_submits_gets_every_id_and_every_receipt(
    shared_smsc: int,
) -> None:
    receipts: list[ShortMessage] = []
    all_in = asyncio.Event()

    async def keep(message: ShortMessage) -> int:
        receipts.append(message)
        if len(receipts) == 40:
            all_in.set()
        return smpp.ESME_ROK

    session = await Session.open("127.0.0.1", shared_smsc, BIND, window=4, on_deliver=keep)
    answers = await asyncio.gather(*(session.submit(_message(n)) for n in range(40)))
    assert {a.status for a in answers} == {smpp.ESME_ROK}
    ids = {a.body.message_id for a in answers if isinstance(a.body, MessageId)}
    assert len(ids) == 40
    await asyncio.wait_for(all_in.wait(), timeout=10)
    assert {parse_receipt(r).message_id for r in receipts} == ids
    await session.close()
    assert session.closed


Handler = Callable[[Pdu, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_smsc(
    handle: Handler, *, bind_status: int = smpp.ESME_ROK
) -> AsyncIterator[tuple[int, list[Pdu]]]:
    """An SMSC of our own codec on a free port: binds answered with `bind_status`, unbinds answered,
    every other PDU handed to `handle`. Yields the port and every PDU it received."""
    received: list[Pdu] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                for frame in framer.feed(data):
                    pdu = decode(frame)
                    received.append(pdu)
                    if pdu.command_id == smpp.BIND_TRANSCEIVER:
                        writer.write(
                            pdu.answer(bind_status, SystemId("FAKE") if not bind_status else None).encode()
                        )
                    elif pdu.command_id == smpp.UNBIND:
                        writer.write(pdu.answer().encode())
                    else:
                        await handle(pdu, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()


async def test_a_refused_bind_raises_with_the_smscs_status() -> None:
    async def ignore(_pdu: Pdu, _writer: asyncio.StreamWriter) -> None:
        return None

    async with fake_smsc(ignore, bind_status=smpp.ESME_RINVPASWD) as (port, _):
        with pytest.raises(BindRefused) as refused:
            await Session.open("127.0.0.1", port, BIND)
    assert refused.value.status == smpp.ESME_RINVPASWD


async def test_a_throttled_submit_is_an_answer_and_the_window_bounds_what_is_in_flight() -> None:
    in_flight = 0
    most = 0

    async def slow(pdu: Pdu, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        if pdu.command_id != smpp.SUBMIT_SM:
            return
        in_flight += 1
        most = max(most, in_flight)

        async def answer() -> None:
            nonlocal in_flight
            await asyncio.sleep(0.02)
            in_flight -= 1
            assert isinstance(pdu.body, ShortMessage)
            status = smpp.ESME_RTHROTTLED if pdu.body.destination_addr.endswith("7") else smpp.ESME_ROK
            writer.write(pdu.answer(status, MessageId(f"m{pdu.sequence}") if not status else None).encode())

        asyncio.get_running_loop().create_task(answer())

    async with fake_smsc(slow) as (port, _):
        session = await Session.open("127.0.0.1", port, BIND, window=3)
        answers = await asyncio.gather(*(session.submit(_message(n)) for n in range(12)))
        await session.close()
    assert most == 3
    assert [a.status for a in answers] == [
        smpp.ESME_RTHROTTLED if n % 10 == 7 else smpp.ESME_ROK for n in range(12)
    ]


async def test_submits_waiting_when_the_connection_drops_raise_session_closed() -> None:
    async def hang_up(pdu: Pdu, writer: asyncio.StreamWriter) -> None:
        if pdu.command_id == smpp.SUBMIT_SM:
            writer.close()

    async with fake_smsc(hang_up) as (port, _):
        session = await Session.open("127.0.0.1", port, BIND)
        with pytest.raises(SessionClosed):
            await session.submit(_message(1))
        await asyncio.wait_for(session.wait_closed(), 5)
        with pytest.raises(SessionClosed):
            await session.submit(_message(2))


async def test_an_unknown_command_is_nacked_and_an_enquire_link_answered() -> None:
    answered = asyncio.Event()

    async def probe(pdu: Pdu, writer: asyncio.StreamWriter) -> None:
        if pdu.command_id == smpp.SUBMIT_SM:
            writer.write(struct.pack(">IIII", 16, 0x00000777, 0, 900))
            writer.write(Pdu(smpp.ENQUIRE_LINK, 901).encode())
            writer.write(pdu.answer(smpp.ESME_ROK, MessageId("x")).encode())
        elif pdu.command_id in (smpp.GENERIC_NACK, smpp.ENQUIRE_LINK | smpp.RESPONSE) and pdu.sequence == 901:
            answered.set()

    async with fake_smsc(probe) as (port, received):
        session = await Session.open("127.0.0.1", port, BIND)
        answer = await session.submit(_message(1))
        await asyncio.wait_for(answered.wait(), 5)
        await session.close()
    assert answer.status == smpp.ESME_ROK
    nack = next(p for p in received if p.command_id == smpp.GENERIC_NACK)
    assert (nack.sequence, nack.status) == (900, smpp.ESME_RINVCMDID)
    assert any(p.command_id == smpp.ENQUIRE_LINK | smpp.RESPONSE and p.sequence == 901 for p in received)


async def test_an_idle_session_sends_enquire_links_and_ends_when_they_go_unanswered() -> None:
    answer_them = True

    async def links(pdu: Pdu, writer: asyncio.StreamWriter) -> None:
        if pdu.command_id == smpp.ENQUIRE_LINK and answer_them:
            writer.write(pdu.answer().encode())

    async with fake_smsc(links) as (port, received):
        session = await Session.open("127.0.0.1", port, BIND, enquire_link_s=0.05, response_timeout_s=0.2)
        await asyncio.sleep(0.3)
        assert sum(p.command_id == smpp.ENQUIRE_LINK for p in received) >= 2
        assert not session.closed
        answer_them = False
        await asyncio.wait_for(session.wait_closed(), 5)


async def test_a_delivery_that_waits_does_not_hold_the_next_one_within_the_deliver_window() -> None:
    simulator = SmscSimulator(SimulatorConfig(), SmscKnobs())
    port = await simulator.start()
    release, started, answered = asyncio.Event(), [], asyncio.Event()

    async def slow_first(message: ShortMessage) -> int:
        started.append(message.source_addr)
        if message.source_addr.endswith("1"):
            await release.wait()  # the first waits, as for a commit
        else:
            answered.set()
        return smpp.ESME_ROK

    try:
        session = await Session.open("127.0.0.1", port, BIND, on_deliver=slow_first, deliver_window=2)
        for phone in ("85512345671", "85512345672"):
            simulator.mobile_originated("openmmp", source=phone, destination="ACME", message="hi")
        await asyncio.wait_for(answered.wait(), timeout=5)
        assert started == ["85512345671", "85512345672"]  # handed on in the order they came
        assert simulator.stats_json(detail=False)["callbacksPending"] == 1  # the second is answered
        release.set()
        await wait_until(
            lambda: not simulator.stats_json(detail=False)["callbacksPending"], timeout=5, what="answers"
        )
        await session.close()
    finally:
        await simulator.stop()
