"""SMPP 3.4 PDUs: bytes as the specification lays them out, framing, refusals, receipts, and a session
with an SMSC written by someone else (the shared benchmark's simulator) over a real socket."""

from __future__ import annotations

import asyncio
import struct

import pytest

from openmmp.providers.smpp import pdu
from openmmp.providers.smpp.pdu import (
    BIND_TRANSCEIVER,
    DELIVER_SM,
    ENQUIRE_LINK,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVMSGLEN,
    ESME_RTHROTTLED,
    RESPONSE,
    SUBMIT_SM,
    TLV_RECEIPTED_MESSAGE_ID,
    Bind,
    Framer,
    MessageId,
    Pdu,
    PduError,
    ShortMessage,
    SystemId,
    decode,
    parse_receipt,
)


def test_a_bind_transceiver_is_laid_out_as_the_specification_says() -> None:
    encoded = Pdu(BIND_TRANSCEIVER, 1, body=Bind("esme", "secret")).encode()
    body = b"esme\x00secret\x00\x00\x34\x00\x00\x00"
    assert encoded == struct.pack(">IIII", 16 + len(body), 0x09, 0, 1) + body
    assert decode(encoded) == Pdu(BIND_TRANSCEIVER, 1, body=Bind("esme", "secret"))


def test_a_submit_sm_round_trips_with_its_optional_parameters() -> None:
    message = ShortMessage(
        source_addr="OpenMMP",
        destination_addr="85512345678",
        short_message=b"Hello",
        source_addr_ton=5,
        esm_class=0x40,
        registered_delivery=1,
        data_coding=8,
        tlvs={0x0424: b"", 0x1400: b"\x01\x02"},
    )
    encoded = Pdu(SUBMIT_SM, 7, body=message).encode()
    assert encoded[16:36] == b"\x00\x05\x00OpenMMP\x00\x01\x0185512345678"[:20]
    assert decode(encoded) == Pdu(SUBMIT_SM, 7, body=message)


def test_answers_keep_the_sequence_and_an_error_answer_may_have_no_body() -> None:
    request = Pdu(SUBMIT_SM, 42, body=ShortMessage("a", "b"))
    assert request.answer(body=MessageId("abc")) == Pdu(SUBMIT_SM | RESPONSE, 42, 0, MessageId("abc"))
    throttled = struct.pack(">IIII", 16, SUBMIT_SM | RESPONSE, ESME_RTHROTTLED, 42)
    assert decode(throttled) == Pdu(SUBMIT_SM | RESPONSE, 42, ESME_RTHROTTLED)
    assert decode(Pdu(ENQUIRE_LINK, 3).encode()) == Pdu(ENQUIRE_LINK, 3)


def _truncated_short_message() -> bytes:
    """A submit_sm whose sm_length says 5 octets and whose body holds 2 of them."""
    body = Pdu(SUBMIT_SM, 1, body=ShortMessage("a", "b", short_message=b"hello")).encode()[16:-3]
    return struct.pack(">IIII", 16 + len(body), SUBMIT_SM, 0, 1) + body


@pytest.mark.parametrize(
    ("frame", "status"),
    [
        (b"\x00\x00\x00\x10\x00\x00", ESME_RINVCMDLEN),  # shorter than a header
        (struct.pack(">IIII", 20, ENQUIRE_LINK, 0, 1), ESME_RINVCMDLEN),  # length says more
        (struct.pack(">IIII", 16, 0x00000777, 0, 1), ESME_RINVCMDID),
        (struct.pack(">IIII", 20, BIND_TRANSCEIVER, 0, 1) + b"esme", ESME_RINVCMDLEN),  # no NUL
        (_truncated_short_message(), ESME_RINVMSGLEN),
    ],
)
def test_a_malformed_pdu_is_refused_with_the_status_to_answer(frame: bytes, status: int) -> None:
    with pytest.raises(PduError) as refused:
        decode(frame)
    assert refused.value.status == status


def test_a_refused_request_gets_its_own_response_and_an_unknown_command_a_generic_nack() -> None:
    truncated = _truncated_short_message()
    with pytest.raises(PduError) as refused:
        decode(truncated)
    assert pdu.refusal(truncated, refused.value) == Pdu(SUBMIT_SM | RESPONSE, 1, ESME_RINVMSGLEN)
    unknown = struct.pack(">IIII", 16, 0x00000777, 0, 9)
    with pytest.raises(PduError) as refused:
        decode(unknown)
    assert pdu.refusal(unknown, refused.value) == Pdu(pdu.GENERIC_NACK, 9, ESME_RINVCMDID)


def test_the_framer_cuts_a_stream_however_it_arrives() -> None:
    stream = b"".join(Pdu(ENQUIRE_LINK, n).encode() for n in range(1, 4))
    framer = Framer()
    frames = [f for byte in stream for f in framer.feed(bytes([byte]))]
    assert [decode(f).sequence for f in frames] == [1, 2, 3]
    assert Framer().feed(stream) == frames
    with pytest.raises(PduError):
        Framer().feed(struct.pack(">I", 10_000_000))


def test_a_receipt_names_its_message_state_and_error() -> None:
    receipt = ShortMessage(
        "85512345678",
        "OpenMMP",
        short_message=b"id:0123abc sub:001 dlvrd:000 submit date:2612061010 done date:2612061011 "
        b"stat:UNDELIV err:034 text:Hello",
        esm_class=0x04,
    )
    assert receipt.is_receipt
    assert parse_receipt(receipt) == pdu.Receipt("0123abc", "UNDELIV", "034", "2612061011", "2612061010")
    with_tlv = ShortMessage(
        "a",
        "b",
        short_message=b"id:x stat:DELIVRD",
        esm_class=0x04,
        tlvs={TLV_RECEIPTED_MESSAGE_ID: b"7F00\x00"},
    )
    assert parse_receipt(with_tlv) == pdu.Receipt("7F00", "DELIVRD", "000", "")
    with pytest.raises(PduError):
        parse_receipt(ShortMessage("a", "b", short_message=b"no receipt here", esm_class=0x04))


async def _read(reader: asyncio.StreamReader, framer: Framer, pending: list[bytes]) -> Pdu:
    while not pending:
        pending.extend(framer.feed(await asyncio.wait_for(reader.read(65536), timeout=10)))
    return decode(pending.pop(0))


async def test_a_session_with_another_smsc_binds_submits_and_gets_the_receipt(shared_smsc: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", shared_smsc)
    try:
        framer, pending = Framer(), []
        writer.write(Pdu(BIND_TRANSCEIVER, 1, body=Bind("openmmp", "secret")).encode())
        bound = await _read(reader, framer, pending)
        assert (bound.command_id, bound.status, bound.sequence) == (BIND_TRANSCEIVER | RESPONSE, 0, 1)
        assert isinstance(bound.body, SystemId)
        message = ShortMessage(
            "OpenMMP", "85512345678", short_message=b"Your code is 4711", registered_delivery=1
        )
        writer.write(Pdu(SUBMIT_SM, 2, body=message).encode())
        accepted = await _read(reader, framer, pending)
        assert (accepted.command_id, accepted.status, accepted.sequence) == (SUBMIT_SM | RESPONSE, 0, 2)
        assert isinstance(accepted.body, MessageId) and accepted.body.message_id
        delivered = await _read(reader, framer, pending)
        assert delivered.command_id == DELIVER_SM
        assert isinstance(delivered.body, ShortMessage) and delivered.body.is_receipt
        receipt = parse_receipt(delivered.body)
        assert (receipt.message_id, receipt.state) == (accepted.body.message_id, "DELIVRD")
        writer.write(delivered.answer(body=MessageId()).encode())
        writer.write(Pdu(pdu.UNBIND, 3).encode())
        unbound = await _read(reader, framer, pending)
        assert (unbound.command_id, unbound.sequence) == (pdu.UNBIND | RESPONSE, 3)
    finally:
        writer.close()
