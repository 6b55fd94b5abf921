"""The product's SMSC simulator: a real SMPP 3.4 server on a TCP port, deciding like the other simulators.

An ESME binds (with the configured system_id and password, when set), submits, and gets receipts after
`receipt_delay_s`; the phone's last digit decides as in every sandbox (providers/simulation.py):

| digit | submit_sm answered | receipt |
|---|---|---|
| 0-7 | ESME_ROK with a message id | `stat:DELIVRD` (SMS has no read receipts) |
| 8 | ESME_RINVDSTADR: a final refusal | none |
| 9 | ESME_RMSGQFUL twice for the same destination and text, then as 0-7 | `stat:DELIVRD` |

In "rates" mode the configured rates decide instead; a message that fails later gets `stat:UNDELIV`.
Above `requests_per_second` a submit_sm is answered ESME_RTHROTTLED. `mobile_originated` makes an end
user write in: a deliver_sm to a receiver (or transceiver) bound with that system_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.simulation import (
    Outcome,
    OutcomePlanner,
    SimulatorConfig,
    TokenBucketLimiter,
    last_digit,
)
from openmmp.providers.smpp import pdu as smpp
from openmmp.providers.smpp import text as sms_text
from openmmp.providers.smpp.pdu import Bind, Framer, MessageId, Pdu, PduError, ShortMessage, SystemId, decode

_STATES = {"DELIVRD": 2, "UNDELIV": 5}
"""message_state values (SMPP 3.4 §5.2.28) of the receipts the simulator sends."""


@dataclass(frozen=True)
class SmscKnobs:
    """The SMSC simulator's own knobs (`simulate --set smpp.<name>=...`)."""

    system_id: str = ""
    """When set, binds must name it (else smpp.ESME_RINVSYSID)."""
    password: str = ""
    """When set, binds must give it (else smpp.ESME_RINVPASWD)."""
    requests_per_second: float = 0.0
    """submit_sm above this rate (per system_id) are answered smpp.ESME_RTHROTTLED; 0 is no limit."""
    receipt_delay_s: float = 0.1


@dataclass(eq=False)
class _Link:
    """One bound connection (kept in a set by identity)."""

    system_id: str
    mode: int
    writer: asyncio.StreamWriter
    sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def receives(self) -> bool:
        return self.mode != smpp.BIND_TRANSMITTER

    @property
    def transmits(self) -> bool:
        return self.mode != smpp.BIND_RECEIVER

    def send(self, pdu: Pdu) -> None:
        if not self.writer.is_closing():
            self.writer.write(pdu.encode())


class SmscSimulator:
    def __init__(self, config: SimulatorConfig, knobs: SmscKnobs) -> None:
        self._config = config
        self._knobs = knobs
        self._planner = OutcomePlanner(config)
        self._limiter = (
            TokenBucketLimiter(capacity=max(1, int(knobs.requests_per_second)), window_s=1.0)
            if knobs.requests_per_second > 0
            else None
        )
        self._ids = itertools.count(1)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[str, int] = dict.fromkeys(
            ("binds", "bind_refused", "submit_sm", "throttled", "refused", "receipts", "mobile_originated"), 0
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; the port (the one given, or a free one for 0)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for link in list(self._links):
            link.writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def mobile_originated(self, system_id: str, *, source: str, destination: str, message: str) -> bool:
        """An end user at `source` writes `message` to `destination` (the sender id they reply to):
        a deliver_sm to a link bound with `system_id` that receives. False when there is none."""
        link = next((k for k in self._links if k.system_id == system_id and k.receives), None)
        if link is None:
            return False
        encoded = sms_text.encode(message, reference=next(self._ids) & 0xFF)
        for part in encoded.parts:
            body = ShortMessage(
                source_addr=source,
                destination_addr=destination,
                short_message=part,
                source_addr_ton=1,
                source_addr_npi=1,
                esm_class=encoded.esm_class,
                data_coding=encoded.data_coding,
            )
            link.send(Pdu(smpp.DELIVER_SM, next(link.sequence), body=body))
        self.stats["mobile_originated"] += 1
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer()
        link: _Link | None = None
        try:
            while data := await reader.read(65536):
                for frame in framer.feed(data):
                    link = self._handle(frame, link, writer)
                    if writer.is_closing():
                        return
        except (ConnectionError, PduError):
            return
        finally:
            if link is not None:
                self._links.discard(link)
            writer.close()

    def _handle(self, frame: bytes, link: _Link | None, writer: asyncio.StreamWriter) -> _Link | None:
        try:
            pdu = decode(frame)
        except PduError as exc:
            writer.write(smpp.refusal(frame, exc).encode())
            return link
        if pdu.command_id in smpp.BINDS:
            assert isinstance(pdu.body, Bind)
            return self._bind(pdu, pdu.body, link, writer)
        if pdu.command_id == smpp.ENQUIRE_LINK:
            writer.write(pdu.answer().encode())
        elif pdu.command_id == smpp.UNBIND:
            writer.write(pdu.answer().encode())
            writer.close()
        elif pdu.command_id == smpp.SUBMIT_SM:
            if link is None or not link.transmits:
                writer.write(pdu.answer(smpp.ESME_RINVBNDSTS).encode())
            else:
                assert isinstance(pdu.body, ShortMessage)
                self._submit(link, pdu, pdu.body)
        elif not pdu.is_response:
            writer.write(Pdu(smpp.GENERIC_NACK, pdu.sequence, smpp.ESME_RINVCMDID).encode())
        return link

    def _bind(self, pdu: Pdu, bind: Bind, link: _Link | None, writer: asyncio.StreamWriter) -> _Link | None:
        status = smpp.ESME_ROK
        if link is not None:
            status = smpp.ESME_RALYBND
        elif self._knobs.system_id and bind.system_id != self._knobs.system_id:
            status = smpp.ESME_RINVSYSID
        elif self._knobs.password and not constant_time_equals(bind.password, self._knobs.password):
            status = smpp.ESME_RINVPASWD
        if status != smpp.ESME_ROK:
            self.stats["bind_refused"] += 1
            writer.write(pdu.answer(status).encode())
            return link
        self.stats["binds"] += 1
        bound = _Link(bind.system_id, pdu.command_id, writer)
        self._links.add(bound)
        writer.write(pdu.answer(body=SystemId("OPENMMP-SIM")).encode())
        return bound

    def _submit(self, link: _Link, pdu: Pdu, message: ShortMessage) -> None:
        self.stats["submit_sm"] += 1
        if self._limiter is not None and not self._limiter.try_acquire(link.system_id):
            self.stats["throttled"] += 1
            link.send(pdu.answer(smpp.ESME_RTHROTTLED))
            return
        outcome = self._planner.decide(
            digit=last_digit(message.destination_addr),
            attempt_key=f"{message.destination_addr}\x1f{message.short_message.hex()}",
        )
        if outcome in (Outcome.FINAL_ERROR, Outcome.RETRYABLE_ERROR):
            self.stats["refused"] += 1
            link.send(
                pdu.answer(smpp.ESME_RINVDSTADR if outcome is Outcome.FINAL_ERROR else smpp.ESME_RMSGQFUL)
            )
            return
        message_id = f"{next(self._ids):016x}"
        link.send(pdu.answer(body=MessageId(message_id)))
        if message.registered_delivery & 0x03:
            state = "UNDELIV" if outcome is Outcome.FAILED_LATER else "DELIVRD"
            task = asyncio.get_running_loop().create_task(self._receipt(link, message, message_id, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _receipt(self, link: _Link, message: ShortMessage, message_id: str, state: str) -> None:
        submitted = time.strftime("%y%m%d%H%M", time.gmtime())
        await asyncio.sleep(self._knobs.receipt_delay_s)
        done = time.strftime("%y%m%d%H%M", time.gmtime())
        delivered = "001" if state == "DELIVRD" else "000"
        error = "000" if state == "DELIVRD" else "001"
        receipt_text = (
            f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted} done date:{done} "
            f"stat:{state} err:{error} text:"
        )
        # Sent on the link that submitted when it receives, else on one of the same account's receivers.
        target = link if link.receives and link in self._links else None
        target = target or next(
            (k for k in self._links if k.system_id == link.system_id and k.receives), None
        )
        if target is None:
            return
        body = ShortMessage(
            source_addr=message.destination_addr,
            destination_addr=message.source_addr,
            short_message=receipt_text.encode("latin-1"),
            esm_class=smpp.ESM_RECEIPT,
            tlvs={
                smpp.TLV_RECEIPTED_MESSAGE_ID: message_id.encode() + b"\x00",
                smpp.TLV_MESSAGE_STATE: bytes([_STATES[state]]),
            },
        )
        with contextlib.suppress(ConnectionError):
            target.send(Pdu(smpp.DELIVER_SM, next(target.sequence), body=body))
            self.stats["receipts"] += 1
