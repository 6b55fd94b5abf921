"""The product's SMSC simulator, driven by OpenMMP's SMPP session over a real socket: binds checked,
sandbox outcomes by the last digit, throttling, receipts, and end users writing in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from openmmp.providers.simulation import SimulatorConfig
from openmmp.providers.smpp import pdu as smpp
from openmmp.providers.smpp import text as sms_text
from openmmp.providers.smpp.pdu import Bind, MessageId, ShortMessage, parse_receipt
from openmmp.providers.smpp.session import BindRefused, Session
from openmmp.providers.smpp.smsc import SmscKnobs, SmscSimulator


class Inbox:
    """What the SMSC delivered to a session, with a way to wait for a count of it."""

    def __init__(self) -> None:
        self.messages: list[ShortMessage] = []
        self._changed = asyncio.Event()

    async def keep(self, message: ShortMessage) -> int:
        self.messages.append(message)
        self._changed.set()
        return smpp.ESME_ROK

    async def wait_for(self, count: int) -> list[ShortMessage]:
        while len(self.messages) < count:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), timeout=5)
        return self.messages


@pytest.fixture
async def smsc() -> AsyncIterator[tuple[SmscSimulator, int]]:
    simulator = SmscSimulator(
        SimulatorConfig(), SmscKnobs(system_id="acme", password="s3cret", receipt_delay_s=0.01)
    )
    port = await simulator.start()
    yield simulator, port
    await simulator.stop()


def _sms(destination: str, content: str = "Your code is 4711", receipt: int = 1) -> ShortMessage:
    return ShortMessage("ACME", destination, short_message=content.encode(), registered_delivery=receipt)


async def test_binds_need_the_configured_account(smsc: tuple[SmscSimulator, int]) -> None:
    simulator, port = smsc
    with pytest.raises(BindRefused) as wrong_password:
        await Session.open("127.0.0.1", port, Bind("acme", "nope"))
    with pytest.raises(BindRefused) as wrong_account:
        await Session.open("127.0.0.1", port, Bind("other", "s3cret"))
    assert (wrong_password.value.status, wrong_account.value.status) == (
        smpp.ESME_RINVPASWD,
        smpp.ESME_RINVSYSID,
    )
    session = await Session.open("127.0.0.1", port, Bind("acme", "s3cret"))
    assert session.system_id == "OPENMMP-SIM"
    await session.close()
    assert simulator.stats["binds"] == 1 and simulator.stats["bind_refused"] == 2


async def test_the_last_digit_decides_and_receipts_name_the_smscs_ids(
    smsc: tuple[SmscSimulator, int],
) -> None:
    _, port = smsc
    inbox = Inbox()
    session = await Session.open("127.0.0.1", port, Bind("acme", "s3cret"), on_deliver=inbox.keep)
    delivered = await session.submit(_sms("85512345670"))
    never_read = await session.submit(_sms("85512345677"))
    refused = await session.submit(_sms("85512345678"))
    retried = [await session.submit(_sms("85512345679")) for _ in range(3)]
    quiet = await session.submit(_sms("85512345671", receipt=0))
    assert [delivered.status, never_read.status, refused.status, quiet.status] == [
        smpp.ESME_ROK,
        smpp.ESME_ROK,
        smpp.ESME_RINVDSTADR,
        smpp.ESME_ROK,
    ]
    assert [a.status for a in retried] == [smpp.ESME_RMSGQFUL, smpp.ESME_RMSGQFUL, smpp.ESME_ROK]
    ids = {a.body.message_id for a in (delivered, never_read, retried[2]) if isinstance(a.body, MessageId)}
    receipts = await inbox.wait_for(3)
    await asyncio.sleep(0.05)  # no receipt comes for the message that asked for none
    assert len(inbox.messages) == 3
    assert all(r.is_receipt for r in receipts)
    assert {parse_receipt(r).message_id for r in receipts} == ids
    assert {parse_receipt(r).state for r in receipts} == {"DELIVRD"}
    await session.close()


async def test_submits_above_the_rate_are_throttled() -> None:
    simulator = SmscSimulator(SimulatorConfig(), SmscKnobs(requests_per_second=5, receipt_delay_s=0.01))
    port = await simulator.start()
    try:
        session = await Session.open("127.0.0.1", port, Bind("any", "any"), window=20)
        answers = await asyncio.gather(*(session.submit(_sms(f"8551200000{n % 7}")) for n in range(20)))
        await session.close()
    finally:
        await simulator.stop()
    statuses = [a.status for a in answers]
    assert statuses.count(smpp.ESME_ROK) == 5
    assert statuses.count(smpp.ESME_RTHROTTLED) == 15 == simulator.counts.rate_limited


async def test_an_end_user_writes_in_to_a_bound_receiver(smsc: tuple[SmscSimulator, int]) -> None:
    simulator, port = smsc
    # Written while nothing of the account is bound: kept, and delivered first once a receiver binds.
    assert not simulator.mobile_originated("acme", source="85512345670", destination="ACME", message="hi")
    inbox = Inbox()
    session = await Session.open("127.0.0.1", port, Bind("acme", "s3cret"), on_deliver=inbox.keep)
    long_reply = "Привет! " * 12  # UCS-2, two parts
    assert simulator.mobile_originated("acme", source="85512345670", destination="ACME", message="STOP")
    assert simulator.mobile_originated("acme", source="85512345670", destination="ACME", message=long_reply)
    held, first, *parts = await inbox.wait_for(4)
    assert sms_text.decode(held.short_message, held.data_coding) == "hi"
    assert not first.is_receipt
    assert (first.source_addr, first.destination_addr) == ("85512345670", "ACME")
    assert sms_text.decode(first.short_message, first.data_coding) == "STOP"
    assert all(p.esm_class & sms_text.UDHI and p.data_coding == sms_text.UCS2 for p in parts)
    assert "".join(sms_text.decode(p.short_message[6:], p.data_coding) for p in parts) == long_reply
    await session.close()


async def test_a_delivery_answered_with_an_error_or_left_unanswered_comes_again() -> None:
    simulator = SmscSimulator(SimulatorConfig(), SmscKnobs(receipt_delay_s=0.01, redeliver_after_s=0.05))
    port = await simulator.start()
    answers = iter([0x64, smpp.ESME_ROK])  # ESME_RX_T_APPN first: "not now"
    inbox = Inbox()

    async def temporarily_refuse(message: ShortMessage) -> int:
        await inbox.keep(message)
        return next(answers)

    try:
        session = await Session.open("127.0.0.1", port, Bind("acme", "x"), on_deliver=temporarily_refuse)
        simulator.mobile_originated("acme", source="85512345670", destination="ACME", message="YES")
        await inbox.wait_for(2)
        assert simulator.stats["redelivered"] == 1
        await session.close()

        # A receiver that never answers, then drops: what it held goes to the next receiver of the account.
        stuck = asyncio.Event()

        async def never(_: ShortMessage) -> int:
            await stuck.wait()
            return smpp.ESME_ROK

        silent = await Session.open("127.0.0.1", port, Bind("acme", "x"), on_deliver=never)
        simulator.mobile_originated("acme", source="85512345671", destination="ACME", message="NO")
        await asyncio.sleep(0.05)
        await silent.close()
        later = Inbox()
        session = await Session.open("127.0.0.1", port, Bind("acme", "x"), on_deliver=later.keep)
        [again] = await later.wait_for(1)
        assert sms_text.decode(again.short_message, again.data_coding) == "NO"
        stuck.set()
        await session.close()
    finally:
        await simulator.stop()


async def test_the_shared_faults_read_as_smpp_answers(smsc: tuple[SmscSimulator, int]) -> None:
    simulator, port = smsc
    session = await Session.open("127.0.0.1", port, Bind("acme", "s3cret"), response_timeout_s=0.2)
    answers = []
    for kind in ("http_503", "rate_limit", "final_error"):
        simulator.faults.configure({"kind": kind})
        answers.append((await session.submit(_sms("85512345670"))).status)
    assert answers == [smpp.ESME_RSYSERR, smpp.ESME_RTHROTTLED, smpp.ESME_RSUBMITFAIL]
    simulator.faults.configure({"kind": "timeout"})
    with pytest.raises(TimeoutError):
        await session.submit(_sms("85512345670"))
    assert (await session.submit(_sms("85512345670"))).status == smpp.ESME_ROK
    await session.close()


async def test_a_transmitter_cannot_receive_and_a_receiver_cannot_submit(
    smsc: tuple[SmscSimulator, int],
) -> None:
    simulator, port = smsc
    receiver = await Session.open("127.0.0.1", port, Bind("acme", "s3cret"), mode=smpp.BIND_RECEIVER)
    refused = await receiver.submit(_sms("85512345670"))
    assert refused.status == smpp.ESME_RINVBNDSTS
    transmitter = await Session.open("127.0.0.1", port, Bind("acme", "s3cret"), mode=smpp.BIND_TRANSMITTER)
    await receiver.close()
    assert not simulator.mobile_originated("acme", source="85512345670", destination="ACME", message="hi")
    await transmitter.close()
