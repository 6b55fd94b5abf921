"""SMPP 3.4 protocol data units: framing, encoding and decoding of what an ESME and an SMSC exchange.

Every PDU is a 16-octet header (command_length, command_id, command_status, sequence_number; unsigned
32-bit big-endian) and a body. Bodies covered: the three binds and their answers, submit_sm and
deliver_sm (one layout), their answers (a message id), and the empty ones (enquire_link, unbind,
generic_nack and their answers). Optional parameters (TLVs) follow a short message's mandatory fields.
Anything malformed raises `PduError` with the command_status the other side should be answered with.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import ClassVar, Self

HEADER = struct.Struct(">IIII")
RESPONSE = 0x80000000

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
BINDS = frozenset({BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER})

ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RSUBMITFAIL = 0x45
ESME_RTHROTTLED = 0x58

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

ESM_RECEIPT = 0x04
"""esm_class bits 2-5 = 0001: a deliver_sm carrying an SMSC delivery receipt."""

MAX_PDU = 64 * 1024
"""Longest PDU accepted: a short message is at most 254 octets, a message_payload at most 64 KiB."""


class PduError(ValueError):
    """A PDU that cannot be read; `status` is what to answer it with (generic_nack or its response)."""

    def __init__(self, message: str, status: int = ESME_RINVCMDLEN) -> None:
        super().__init__(message)
        self.status = status


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def octet(self) -> int:
        if self._at >= len(self._data):
            raise PduError("body ends inside a mandatory field")
        value = self._data[self._at]
        self._at += 1
        return value

    def c_string(self, limit: int) -> str:
        end = self._data.find(b"\x00", self._at)
        if end < 0 or end - self._at >= limit:
            raise PduError(f"C-octet string without its NUL within {limit} octets")
        value = self._data[self._at : end].decode("latin-1")
        self._at = end + 1
        return value

    def octets(self, count: int) -> bytes:
        if self._at + count > len(self._data):
            raise PduError("body ends inside the short message", ESME_RINVMSGLEN)
        value = self._data[self._at : self._at + count]
        self._at += count
        return value

    def rest(self) -> bytes:
        value = self._data[self._at :]
        self._at = len(self._data)
        return value


def _c_string(value: str, limit: int) -> bytes:
    encoded = value.encode("latin-1")
    if len(encoded) >= limit or b"\x00" in encoded:
        raise PduError(f"{value!r} does not fit a C-octet string of {limit} octets", ESME_RSYSERR)
    return encoded + b"\x00"


def _tlvs(data: bytes) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        if at + 4 > len(data):
            raise PduError("truncated optional parameter")
        tag, length = struct.unpack_from(">HH", data, at)
        if at + 4 + length > len(data):
            raise PduError("optional parameter longer than the PDU")
        tlvs[tag] = data[at + 4 : at + 4 + length]
        at += 4 + length
    return tlvs


def _encode_tlvs(tlvs: Mapping[int, bytes]) -> bytes:
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs.items())


@dataclass(frozen=True, slots=True)
class Bind:
    """bind_transceiver, bind_transmitter or bind_receiver."""

    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return (
            _c_string(self.system_id, 16)
            + _c_string(self.password, 9)
            + _c_string(self.system_type, 13)
            + bytes([self.interface_version, self.addr_ton, self.addr_npi])
            + _c_string(self.address_range, 41)
        )

    @classmethod
    def decode(cls, data: bytes) -> Self:
        reader = _Reader(data)
        return cls(
            system_id=reader.c_string(16),
            password=reader.c_string(9),
            system_type=reader.c_string(13),
            interface_version=reader.octet(),
            addr_ton=reader.octet(),
            addr_npi=reader.octet(),
            address_range=reader.c_string(41),
        )


class _OneString:
    """A body of one C-octet string field of at most `LIMIT` octets (its NUL included)."""

    LIMIT: ClassVar[int]

    def encode(self) -> bytes:
        return _c_string(getattr(self, fields(self)[0].name), self.LIMIT)  # type: ignore[arg-type]

    @classmethod
    def decode(cls, data: bytes) -> Self:
        return cls(_Reader(data).c_string(cls.LIMIT))  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class SystemId(_OneString):
    """A bind's answer: the SMSC's system_id."""

    system_id: str
    LIMIT: ClassVar[int] = 16


@dataclass(frozen=True, slots=True)
class MessageId(_OneString):
    """submit_sm_resp (the SMSC's id of the message) and deliver_sm_resp (empty)."""

    message_id: str = ""
    LIMIT: ClassVar[int] = 65


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """submit_sm and deliver_sm: the same mandatory fields, then optional parameters."""

    source_addr: str
    destination_addr: str
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: Mapping[int, bytes] = field(default_factory=dict)

    MAX_SHORT_MESSAGE: ClassVar[int] = 254

    def encode(self) -> bytes:
        if len(self.short_message) > self.MAX_SHORT_MESSAGE:
            raise PduError("short_message longer than 254 octets", ESME_RINVMSGLEN)
        return (
            _c_string(self.service_type, 6)
            + bytes([self.source_addr_ton, self.source_addr_npi])
            + _c_string(self.source_addr, 21)
            + bytes([self.dest_addr_ton, self.dest_addr_npi])
            + _c_string(self.destination_addr, 21)
            + bytes([self.esm_class, self.protocol_id, self.priority_flag])
            + _c_string(self.schedule_delivery_time, 17)
            + _c_string(self.validity_period, 17)
            + bytes(
                [
                    self.registered_delivery,
                    self.replace_if_present_flag,
                    self.data_coding,
                    self.sm_default_msg_id,
                    len(self.short_message),
                ]
            )
            + self.short_message
            + _encode_tlvs(self.tlvs)
        )

    @classmethod
    def decode(cls, data: bytes) -> Self:
        reader = _Reader(data)
        service_type = reader.c_string(6)
        source_addr_ton, source_addr_npi = reader.octet(), reader.octet()
        source_addr = reader.c_string(21)
        dest_addr_ton, dest_addr_npi = reader.octet(), reader.octet()
        destination_addr = reader.c_string(21)
        esm_class, protocol_id, priority_flag = reader.octet(), reader.octet(), reader.octet()
        schedule_delivery_time = reader.c_string(17)
        validity_period = reader.c_string(17)
        registered_delivery, replace_if_present_flag = reader.octet(), reader.octet()
        data_coding, sm_default_msg_id = reader.octet(), reader.octet()
        short_message = reader.octets(reader.octet())
        return cls(
            source_addr=source_addr,
            destination_addr=destination_addr,
            short_message=short_message,
            service_type=service_type,
            source_addr_ton=source_addr_ton,
            source_addr_npi=source_addr_npi,
            dest_addr_ton=dest_addr_ton,
            dest_addr_npi=dest_addr_npi,
            esm_class=esm_class,
            protocol_id=protocol_id,
            priority_flag=priority_flag,
            schedule_delivery_time=schedule_delivery_time,
            validity_period=validity_period,
            registered_delivery=registered_delivery,
            replace_if_present_flag=replace_if_present_flag,
            data_coding=data_coding,
            sm_default_msg_id=sm_default_msg_id,
            tlvs=_tlvs(reader.rest()),
        )

    @property
    def is_receipt(self) -> bool:
        return self.esm_class & 0x3C == ESM_RECEIPT

    @property
    def text_octets(self) -> bytes:
        """The message's octets: short_message, or the message_payload parameter when that is used."""
        return self.short_message or self.tlvs.get(TLV_MESSAGE_PAYLOAD, b"")


Body = Bind | SystemId | MessageId | ShortMessage | None

_BODIES: Mapping[int, type[Bind] | type[SystemId] | type[MessageId] | type[ShortMessage]] = {
    BIND_RECEIVER: Bind,
    BIND_TRANSMITTER: Bind,
    BIND_TRANSCEIVER: Bind,
    BIND_RECEIVER | RESPONSE: SystemId,
    BIND_TRANSMITTER | RESPONSE: SystemId,
    BIND_TRANSCEIVER | RESPONSE: SystemId,
    SUBMIT_SM: ShortMessage,
    DELIVER_SM: ShortMessage,
    SUBMIT_SM | RESPONSE: MessageId,
    DELIVER_SM | RESPONSE: MessageId,
}
_EMPTY = frozenset({GENERIC_NACK, UNBIND, UNBIND | RESPONSE, ENQUIRE_LINK, ENQUIRE_LINK | RESPONSE})


@dataclass(frozen=True, slots=True)
class Pdu:
    command_id: int
    sequence: int
    status: int = ESME_ROK
    body: Body = None

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE)

    def encode(self) -> bytes:
        body = self.body.encode() if self.body is not None else b""
        return HEADER.pack(HEADER.size + len(body), self.command_id, self.status, self.sequence) + body

    def answer(self, status: int = ESME_ROK, body: Body = None) -> Pdu:
        """This request's response PDU (same sequence number)."""
        return Pdu(self.command_id | RESPONSE, self.sequence, status, body)


def decode(frame: bytes) -> Pdu:
    """One whole PDU (as `Framer` cuts them) into a `Pdu`. Raises PduError for anything malformed;
    an error response's body may be absent (SMPP allows it), a request's may not."""
    if len(frame) < HEADER.size:
        raise PduError("shorter than a PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError("command_length does not match the PDU")
    data = frame[HEADER.size :]
    if command_id in _EMPTY:
        return Pdu(command_id, sequence, status)
    kind = _BODIES.get(command_id)
    if kind is None:
        raise PduError(f"unknown command_id 0x{command_id:08x}", ESME_RINVCMDID)
    if not data and command_id & RESPONSE and status != ESME_ROK:
        return Pdu(command_id, sequence, status)
    return Pdu(command_id, sequence, status, kind.decode(data))


def refusal(frame: bytes, error: PduError) -> Pdu:
    """The answer to a whole PDU that `decode` refused with `error`: the request's own response with the
    error's status, or a generic_nack for an unknown command or a broken response."""
    _length, command_id, _status, sequence = HEADER.unpack_from(frame)
    if command_id & RESPONSE or error.status == ESME_RINVCMDID:
        return Pdu(GENERIC_NACK, sequence, error.status)
    return Pdu(command_id | RESPONSE, sequence, error.status)


class Framer:
    """Cuts a byte stream into whole PDUs by their command_length."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The PDUs completed by `data`. Raises PduError for a length no PDU can have (the stream is
        then lost: the connection must be closed)."""
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from(">I", self._buffer)
            if not HEADER.size <= length <= MAX_PDU:
                raise PduError(f"command_length {length} is no PDU's")
            if len(self._buffer) < length:
                break
            frames.append(bytes(self._buffer[:length]))
            del self._buffer[:length]
        return frames


_RECEIPT_FIELDS = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "id": r"\bid:(\S+)",
        "stat": r"\bstat:([A-Za-z]+)",
        "err": r"\berr:(\w+)",
        "submit": r"\bsubmit date:(\d{10,12})",
        "done": r"\bdone date:(\d{10,12})",
    }.items()
}


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an SMSC delivery receipt says: the message's id at the SMSC, its final state, an error code."""

    message_id: str
    state: str
    error: str
    done_date: str
    submit_date: str = ""


def parse_receipt(message: ShortMessage) -> Receipt:
    """The receipt in a deliver_sm (`is_receipt`): the receipted_message_id parameter wins over the text's
    `id:`. Raises PduError when it names no message or no state."""
    text = message.text_octets.decode("latin-1")
    found = {name: pattern.search(text) for name, pattern in _RECEIPT_FIELDS.items()}
    receipted = message.tlvs.get(TLV_RECEIPTED_MESSAGE_ID, b"").rstrip(b"\x00").decode("latin-1")
    message_id = receipted or (found["id"][1] if found["id"] else "")
    if not message_id or not found["stat"]:
        raise PduError("delivery receipt without id and stat", ESME_RSYSERR)
    return Receipt(
        message_id=message_id,
        state=found["stat"][1].upper(),
        error=found["err"][1] if found["err"] else "000",
        done_date=found["done"][1] if found["done"] else "",
        submit_date=found["submit"][1] if found["submit"] else "",
    )
