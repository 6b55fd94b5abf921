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

Like a real SMSC it stores and forwards what it delivers: a deliver_sm (receipt or mobile-originated) is
kept until the ESME answers it ESME_ROK; one answered with an error is sent again after
`redeliver_after_s`, and one still unanswered when its connection ends, or waiting for a receiver of its
account to bind, goes out as soon as one is bound. The shared fault injection (`POST /_sandbox/faults`)
reads in SMPP terms: `http_503` is ESME_RSYSERR, `timeout` no answer at all, `rate_limit`
ESME_RTHROTTLED and `final_error` ESME_RSUBMITFAIL (or the fault's `status`).

`smsc_app` serves it over HTTP beside its TCP port, as the `smpp` simulator: `GET /_sandbox/address`
(where to bind), `GET /_sandbox/stats`, `POST /_sandbox/faults` and `POST /_sandbox/inbound`
(`{"systemId", "phone", "text", "to"?}`: an end user writes in).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.simulation import (
    FaultInjector,
    Outcome,
    OutcomePlanner,
    SimulatorConfig,
    SimulatorStats,
    TokenBucketLimiter,
    json_response,
    knobs,
    last_digit,
    read_json,
    sandbox_error,
    socket_simulator_app,
)
from openmmp.providers.smpp import pdu as smpp
from openmmp.providers.smpp import text as sms_text
from openmmp.providers.smpp.pdu import Bind, Framer, MessageId, Pdu, PduError, ShortMessage, SystemId, decode

logger = structlog.get_logger(__name__)

_STATES = {"DELIVRD": 2, "UNDELIV": 5}
"""message_state values (SMPP 3.4 §5.2.28) of the receipts the simulator sends."""
_FAULT_STATUS = {"http_503": smpp.ESME_RSYSERR, "rate_limit": smpp.ESME_RTHROTTLED}


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
    redeliver_after_s: float = 1.0
    """How long a deliver_sm answered with an error waits before it is sent again."""
    host: str = "127.0.0.1"
    """Where `smsc_app` listens for SMPP."""
    port: int = 0
    """Its SMPP port; 0 picks a free one (`GET /_sandbox/address` says which)."""


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


@dataclass(frozen=True)
class _Delivery:
    """A deliver_sm body waiting for an ESME_ROK from a receiver of `system_id`."""

    system_id: str
    body: ShortMessage


class SmscSimulator:
    def __init__(self, config: SimulatorConfig, knobs: SmscKnobs) -> None:
        self._config = config
        self.knobs = knobs
        self._planner = OutcomePlanner(config)
        self._limiter = (
            TokenBucketLimiter(capacity=max(1, int(knobs.requests_per_second)), window_s=1.0)
            if knobs.requests_per_second > 0
            else None
        )
        self._ids = itertools.count(1)
        self._epoch = time.time_ns() // 1_000_000
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent: dict[tuple[_Link, int], _Delivery] = {}
        """deliver_sm sent and not answered yet, by link and sequence number."""
        self._held: dict[str, deque[_Delivery]] = {}
        """deliver_sm waiting for a receiver of their account to bind."""
        self.faults = FaultInjector()
        self.counts = SimulatorStats(config)
        """The counters every simulator shares (`accepted`, `acceptedByKey`, ...)."""
        # What only an SMSC counts; submits, acceptances, refusals and throttling are in `counts`.
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "binds",
                "bind_refused",
                "receipts",
                "mobile_originated",
                "redelivered",
                "held",
            ),
            0,
        )
        self.address: tuple[str, int] = ("", 0)
        """Where it listens, once started."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; the port (the one given, or a free one for 0)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        self.address = (host, int(self._server.sockets[0].getsockname()[1]))
        return self.address[1]

    async def stop(self) -> None:
        for link in list(self._links):
            link.writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def stats_json(self, *, detail: bool) -> dict[str, object]:
        """The `GET /_sandbox/stats` body: the shared counters and the SMSC's own."""
        waiting = len(self._sent) + sum(len(held) for held in self._held.values())
        return {**self.counts.as_json(detail=detail, pending_callbacks=waiting), "smpp": dict(self.stats)}

    def mobile_originated(self, system_id: str, *, source: str, destination: str, message: str) -> bool:
        """An end user at `source` writes `message` to `destination` (the sender id they reply to): a
        deliver_sm per part for a link bound with `system_id` that receives. True when one is bound now;
        otherwise it waits for one."""
        encoded = sms_text.encode(message, reference=next(self._ids) & 0xFF)
        bound = self._receiver(system_id) is not None
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
            self._deliver(_Delivery(system_id, body))
        self.stats["mobile_originated"] += 1
        return bound

    def _receiver(self, system_id: str, preferred: _Link | None = None) -> _Link | None:
        if preferred is not None and preferred.receives and preferred in self._links:
            return preferred
        return next((k for k in self._links if k.system_id == system_id and k.receives), None)

    def _deliver(self, delivery: _Delivery, preferred: _Link | None = None) -> None:
        """Send a deliver_sm to a receiver of its account, or hold it until one binds."""
        link = self._receiver(delivery.system_id, preferred)
        if link is None or link.writer.is_closing():
            self.stats["held"] += 1
            self._held.setdefault(delivery.system_id, deque()).append(delivery)
            return
        sequence = next(link.sequence)
        self._sent[(link, sequence)] = delivery
        with contextlib.suppress(ConnectionError):
            link.send(Pdu(smpp.DELIVER_SM, sequence, body=delivery.body))

    def _answered(self, link: _Link, pdu: Pdu) -> None:
        """A deliver_sm_resp: done with ESME_ROK, else sent again after `redeliver_after_s`."""
        delivery = self._sent.pop((link, pdu.sequence), None)
        if delivery is None or pdu.status == smpp.ESME_ROK:
            return
        self.stats["redelivered"] += 1

        async def again() -> None:
            await asyncio.sleep(self.knobs.redeliver_after_s)
            self._deliver(delivery)

        self._spawn(again())

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, link: _Link) -> None:
        """A connection ended: what it left unanswered goes to another receiver, or waits for one."""
        self._links.discard(link)
        for key in [key for key in self._sent if key[0] is link]:
            self.stats["redelivered"] += 1
            self._deliver(self._sent.pop(key))

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
                self._lost(link)
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
        elif pdu.command_id == smpp.DELIVER_SM | smpp.RESPONSE:
            if link is not None:
                self._answered(link, pdu)
        elif not pdu.is_response:
            writer.write(Pdu(smpp.GENERIC_NACK, pdu.sequence, smpp.ESME_RINVCMDID).encode())
        return link

    def _bind(self, pdu: Pdu, bind: Bind, link: _Link | None, writer: asyncio.StreamWriter) -> _Link | None:
        status = smpp.ESME_ROK
        if link is not None:
            status = smpp.ESME_RALYBND
        elif self.knobs.system_id and bind.system_id != self.knobs.system_id:
            status = smpp.ESME_RINVSYSID
        elif self.knobs.password and not constant_time_equals(bind.password, self.knobs.password):
            status = smpp.ESME_RINVPASWD
        if status != smpp.ESME_ROK:
            self.stats["bind_refused"] += 1
            writer.write(pdu.answer(status).encode())
            return link
        self.stats["binds"] += 1
        bound = _Link(bind.system_id, pdu.command_id, writer)
        self._links.add(bound)
        writer.write(pdu.answer(body=SystemId("OPENMMP-SIM")).encode())
        held = self._held.pop(bind.system_id, deque()) if bound.receives else deque()
        while held:
            self._deliver(held.popleft(), bound)
        return bound

    def _submit(self, link: _Link, pdu: Pdu, message: ShortMessage) -> None:
        self.counts.requests += 1
        fault = self.faults.take()
        if fault is not None:
            self.counts.faults_injected += 1
            if fault.kind == "timeout":
                return  # never answered, like an SMSC that hangs
            status = _FAULT_STATUS.get(fault.kind) or fault.status or smpp.ESME_RSUBMITFAIL
            if status == smpp.ESME_RTHROTTLED:
                self.counts.rate_limited += 1
            else:
                self.counts.reject(status)
            link.send(pdu.answer(status))
            return
        if self._limiter is not None and not self._limiter.try_acquire(link.system_id):
            self.counts.rate_limited += 1
            link.send(pdu.answer(smpp.ESME_RTHROTTLED))
            return
        outcome = self._planner.decide(
            digit=last_digit(message.destination_addr),
            attempt_key=f"{message.destination_addr}\x1f{message.short_message.hex()}",
        )
        if outcome in (Outcome.FINAL_ERROR, Outcome.RETRYABLE_ERROR):
            status = smpp.ESME_RINVDSTADR if outcome is Outcome.FINAL_ERROR else smpp.ESME_RMSGQFUL
            self.counts.reject(status)
            link.send(pdu.answer(status))
            return
        # Unique across restarts, as a real SMSC's are: the time it started, then a counter.
        message_id = f"{self._epoch:011x}{next(self._ids):05x}"
        self.counts.accept(f"{link.system_id}:{message.destination_addr}:{message.short_message.hex()}")
        link.send(pdu.answer(body=MessageId(message_id)))
        if message.registered_delivery & 0x03:
            state = "UNDELIV" if outcome is Outcome.FAILED_LATER else "DELIVRD"
            self._spawn(self._receipt(link, message, message_id, state))

    async def _receipt(self, link: _Link, message: ShortMessage, message_id: str, state: str) -> None:
        submitted = time.strftime("%y%m%d%H%M", time.gmtime())
        await asyncio.sleep(self.knobs.receipt_delay_s)
        done = time.strftime("%y%m%d%H%M", time.gmtime())
        delivered = "001" if state == "DELIVRD" else "000"
        error = "000" if state == "DELIVRD" else "001"
        receipt_text = (
            f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted} done date:{done} "
            f"stat:{state} err:{error} text:"
        )
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
        # Sent on the link that submitted when it receives, else on one of the same account's receivers.
        self._deliver(_Delivery(link.system_id, body), link)
        self.stats["receipts"] += 1


def smsc_app(config: SimulatorConfig) -> Starlette:
    """The SMSC simulator as the `smpp` simulator app: its lifespan listens for SMPP on the knobs' host
    and port, and its routes are the sandbox controls of the module's docstring."""
    simulator = SmscSimulator(config, knobs(config, "smpp", SmscKnobs))

    async def inbound(request: Request) -> Response:
        try:
            body = await read_json(request)
        except ValueError as exc:
            return sandbox_error(str(exc))
        if not isinstance(body, dict) or not all(
            isinstance(body.get(name), str) and body.get(name) for name in ("systemId", "phone", "text")
        ):
            return sandbox_error("systemId, phone and text are required strings")
        to = body.get("to")
        bound = simulator.mobile_originated(
            body["systemId"],
            source=body["phone"],
            destination=to if isinstance(to, str) else "",
            message=body["text"],
        )
        return json_response({"userId": body["phone"], "bound": bound})

    return socket_simulator_app(
        simulator,
        lambda: simulator.start(simulator.knobs.host, simulator.knobs.port),
        event="smsc_simulator_listening",
        routes=[Route("/_sandbox/inbound", inbound, methods=["POST"])],
    )
