"""A channel's binds to its SMSC, kept by a worker process: the `Link` of the SMS provider.

`binds` connections per channel (each a transceiver, or a transmitter beside a receiver), each connected
again after a failure with a back-off from 1 s doubling to 60 s. A send takes the next bound connection
in turn (waiting for one for up to the upstream timeout) and submits the message's parts on it, in
order. What the SMSC delivers is handed to the core's sink as a JSON body the provider's `parse` reads:
a receipt as it is, a mobile-originated message once all of its parts have come (from whichever bind).
Each deliver_sm is answered only when the sink has stored it, and with ESME_RX_T_APPN when it could
not be, so the SMSC delivers it again; the parts of a message are answered together with it, or with
ESME_RX_T_APPN when the rest does not come within `PARTS_WAIT_S`.

Outside sandbox mode the SMSC is the channel's `host` and `port`, and each address the host resolves to
is checked with the context's `target_check` at connection time (a name can change after the channel was
saved). In sandbox mode the binds go to the simulator, which says where it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from openmmp.providers.base import EventSink, Link, ProviderContext, ProviderError, SendOk, SendOutcome
from openmmp.providers.simulation import sandbox_control
from openmmp.providers.smpp import pdu as smpp
from openmmp.providers.smpp import text as sms_text
from openmmp.providers.smpp.pdu import Bind, MessageId, PduError, ShortMessage, parse_receipt
from openmmp.providers.smpp.session import BindRefused, Session, SessionClosed
from openmmp.providers.targets import checked_address

log = structlog.get_logger(__name__)

ESME_RX_T_APPN = 0x64
"""deliver_sm_resp status: a temporary error of ours; the SMSC delivers it again later."""
PARTS_WAIT_S = 60.0
"""How long the first parts of a mobile-originated message wait for the rest."""
FINAL_STATES = frozenset({"DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN"})
"""Receipt states that end a message; intermediate ones (ENROUTE, ACCEPTD) are answered and dropped."""
_CREDENTIALS_REFUSED = {
    smpp.ESME_RINVPASWD: "invalid password",
    smpp.ESME_RINVSYSID: "invalid system_id",
}
"""Bind refusals that name the channel's credentials: trying again cannot help until they change."""
_BACKOFF_FIRST_S = 1.0
_BACKOFF_MAX_S = 60.0
_DELIVER_WINDOW = 64

# Refusals a retry can help with: the SMSC is busy or briefly broken. The rest are final.
_RATE_LIMITED = frozenset({smpp.ESME_RTHROTTLED, smpp.ESME_RMSGQFUL})
_RETRYABLE = frozenset({smpp.ESME_RSYSERR, 0x0C, 0x13, 0x66})  # syserr, dup msg id, replace fail, x_r_appn
STATUS_TEXT = {
    smpp.ESME_RINVMSGLEN: "Message length is invalid",
    smpp.ESME_RSYSERR: "System error at the SMSC",
    smpp.ESME_RINVSRCADR: "Invalid source address",
    smpp.ESME_RINVDSTADR: "Invalid destination address",
    smpp.ESME_RMSGQFUL: "Message queue full",
    smpp.ESME_RSUBMITFAIL: "submit_sm failed",
    smpp.ESME_RTHROTTLED: "Throttling error: the account's rate is exceeded",
    0x45: "submit_sm failed",
    0x61: "Invalid scheduled delivery time",
    0x62: "Invalid validity period",
}


def refusal(status: int) -> ProviderError:
    """What a submit_sm_resp with a non-zero status means for the message."""
    code = f"SMPP_0x{status:02X}"
    text = STATUS_TEXT.get(status, f"Refused by the SMSC with command_status {status:#010x}")
    if status in _RATE_LIMITED:
        return ProviderError(code, text, retryable=True, rate_limited=True)
    return ProviderError(code, text, retryable=status in _RETRYABLE)


def ton_npi(address: str) -> tuple[int, int]:
    """The TON and NPI an address implies: alphanumeric (5, 0), a short code (3, 0), else international
    E.164 (1, 1)."""
    if not address.isdigit():
        return 5, 0
    if len(address) <= 8:
        return 3, 0
    return 1, 1


def validity(expire_at_ms: int | None) -> str:
    """SMPP absolute time (`YYMMDDhhmmss000+`, UTC) for an expiry, or "" for the SMSC's default."""
    if expire_at_ms is None:
        return ""
    return time.strftime("%y%m%d%H%M%S", time.gmtime(expire_at_ms / 1000)) + "000+"


@dataclass
class _Partial:
    """The parts of one mobile-originated message come so far, and the answer they all wait for."""

    total: int
    coding: int
    parts: dict[int, bytes] = field(default_factory=dict)
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SmppLink(Link):
    def __init__(self, ctx: ProviderContext, credentials: Mapping[str, Any], sink: EventSink) -> None:
        self._ctx = ctx
        self._credentials = credentials
        self._sink = sink
        self._sessions: list[Session] = []
        self._turn = itertools.count()
        self._changed = asyncio.Event()
        self._partials: dict[tuple[str, str, int, int], _Partial] = {}
        self._refusal_reported = False

    @property
    def up(self) -> int:
        return len(self._sessions)

    # ---- connections ----

    async def run(self, stop: asyncio.Event) -> None:
        binds = int(self._credentials.get("binds") or 1)
        try:
            await asyncio.gather(*(self._keep(n, stop) for n in range(binds)))
        finally:
            for partial in self._partials.values():
                if not partial.done.done():
                    partial.done.set_result(ESME_RX_T_APPN)

    async def _keep(self, number: int, stop: asyncio.Event) -> None:
        """Keep bind `number` up until `stop`: connect, wait for the end, connect again after a back-off."""
        delay = _BACKOFF_FIRST_S
        while not stop.is_set():
            try:
                sessions = await self._open()
            except (OSError, TimeoutError, ProviderError, BindRefused) as exc:
                log.warning(
                    "smpp_bind_failed",
                    bind=number + 1,
                    error=str(exc) if isinstance(exc, BindRefused | ProviderError) else type(exc).__name__,
                    retry_in_s=delay,
                )
                if isinstance(exc, BindRefused) and exc.status in _CREDENTIALS_REFUSED:
                    await self._credentials_refused(exc.status)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            delay = _BACKOFF_FIRST_S
            sender = sessions[0]
            self._sessions.append(sender)
            self._changed.set()
            log.info("smpp_bound", bind=number + 1, smsc=sender.system_id)
            ended = [asyncio.ensure_future(s.wait_closed()) for s in sessions]
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([*ended, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for waiter in ended:
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._sessions.remove(sender)
            for session in sessions:
                await session.close()
            if not stop.is_set():
                log.warning("smpp_bind_lost", bind=number + 1)

    async def _open(self) -> list[Session]:
        """One bind: a transceiver, or a transmitter (first) and a receiver."""
        host, port = await self._address()
        credentials = self._credentials
        bind = Bind(
            system_id=str(credentials["systemId"]),
            password=str(credentials["password"]),
            system_type=str(credentials.get("systemType") or ""),
        )
        timeout = self._ctx.http.timeout
        options: dict[str, Any] = {
            "window": int(credentials.get("window") or 10),
            "on_deliver": self._delivered,
            "deliver_window": _DELIVER_WINDOW,
            "response_timeout_s": timeout,
            "connect_timeout_s": timeout,
        }
        if credentials.get("bindMode") == "transmitter+receiver":
            sender = await Session.open(host, port, bind, mode=smpp.BIND_TRANSMITTER, **options)
            try:
                receiver = await Session.open(host, port, bind, mode=smpp.BIND_RECEIVER, **options)
            except BaseException:
                await sender.close()
                raise
            return [sender, receiver]
        return [await Session.open(host, port, bind, mode=smpp.BIND_TRANSCEIVER, **options)]

    async def _address(self) -> tuple[str, int]:
        """Where to bind: the simulator's address in sandbox mode, else the channel's checked host."""
        if self._ctx.sandbox:
            where = await sandbox_control(
                self._ctx.http, f"{self._ctx.base_url}/_sandbox/address", None, simulator="SMSC"
            )
            return str(where["host"]), int(where["port"])
        host, port = str(self._credentials["host"]), int(self._credentials["port"])
        return await checked_address(self._ctx, host, port, code="SMPP_TARGET_REFUSED"), port

    async def _session(self) -> Session:
        """The next bound connection in turn, waiting for one as long as an answer may take."""
        deadline = asyncio.get_running_loop().time() + self._ctx.http.timeout
        while True:
            live = [s for s in self._sessions if not s.closed]
            if live:
                return live[next(self._turn) % len(live)]
            self._changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise ProviderError("SMPP_NOT_BOUND", "No bind to the SMSC is up", retryable=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=left)

    async def _credentials_refused(self, status: int) -> None:
        """The SMSC refused the account itself: the channel is rejected (a `type: 4` webhook says why),
        once per link; new credentials make a new link."""
        if self._refusal_reported:
            return
        cause = f"The SMSC refused the bind: {_CREDENTIALS_REFUSED[status]} (command_status 0x{status:08X})"
        reported = await self._store({"kind": "channel", "status": "REJECT", "cause": cause, "at": _now_ms()})
        self._refusal_reported = reported == smpp.ESME_ROK

    # ---- sending ----

    async def submit(
        self, recipient: str, encoded: sms_text.Encoded, expire_at_ms: int | None
    ) -> SendOutcome:
        """Submit every part of a message on one bind, in order; its outcome (SendOk names each part)."""
        try:
            session = await self._session()
        except ProviderError as exc:
            return exc
        source = str(self._credentials["sourceAddr"])
        implied_ton, implied_npi = ton_npi(source)
        given_ton, given_npi = self._credentials.get("sourceTon"), self._credentials.get("sourceNpi")
        ton = implied_ton if given_ton is None else int(given_ton)
        npi = implied_npi if given_npi is None else int(given_npi)
        ids: list[str] = []
        for part in encoded.parts:
            message = ShortMessage(
                source_addr=source,
                destination_addr=recipient,
                short_message=part,
                source_addr_ton=ton,
                source_addr_npi=npi,
                esm_class=encoded.esm_class,
                data_coding=encoded.data_coding,
                registered_delivery=1,
                validity_period=validity(expire_at_ms),
            )
            try:
                answer = await session.submit(message)
            except SessionClosed:
                return ProviderError("SMPP_CONNECTION_LOST", "The bind to the SMSC ended", retryable=True)
            except TimeoutError:
                return ProviderError("SMPP_TIMEOUT", "The SMSC did not answer in time", retryable=True)
            if answer.status != smpp.ESME_ROK:
                return refusal(answer.status)
            message_id = answer.body.message_id if isinstance(answer.body, MessageId) else ""
            if not message_id:
                return ProviderError(
                    "SMPP_NO_MESSAGE_ID", "The SMSC accepted without a message id", retryable=False
                )
            ids.append(message_id)
        if len(ids) == 1:
            return SendOk(ids[0])
        # The whole is named by no receipt (each names a part): the first part's id and the count.
        return SendOk(f"{ids[0]}+{len(ids)}", parts=tuple(ids))

    # ---- deliveries ----

    async def _delivered(self, message: ShortMessage) -> int:
        """A deliver_sm: its answer once the sink has stored it."""
        if message.is_receipt:
            return await self._receipt(message)
        return await self._mobile_originated(message)

    async def _receipt(self, message: ShortMessage) -> int:
        try:
            receipt = parse_receipt(message)
        except PduError:
            log.warning("smpp_receipt_unreadable")
            return smpp.ESME_ROK  # nothing to keep; asking again would bring the same
        if receipt.state not in FINAL_STATES:
            return smpp.ESME_ROK
        body = {
            "kind": "receipt",
            "id": receipt.message_id,
            "stat": receipt.state,
            "err": receipt.error,
            "submit": receipt.submit_date,
            "done": receipt.done_date,
            "at": _now_ms(),
        }
        return await self._store(body)

    async def _mobile_originated(self, message: ShortMessage) -> int:
        data = message.text_octets
        part = sms_text.split_udh(data) if message.esm_class & sms_text.UDHI else None
        if part is None or part.total == 1:
            payload = part.payload if part is not None else data
            return await self._store(_mo_body(message, sms_text.decode(payload, message.data_coding)))
        key = (message.source_addr, message.destination_addr, part.reference, part.total)
        partial = self._partials.get(key)
        if partial is None:
            partial = self._partials[key] = _Partial(part.total, message.data_coding)
        partial.parts[part.number] = part.payload
        if len(partial.parts) < partial.total:
            try:
                return await asyncio.wait_for(asyncio.shield(partial.done), timeout=PARTS_WAIT_S)
            except TimeoutError:
                if self._partials.get(key) is partial:
                    del self._partials[key]
                return ESME_RX_T_APPN
        del self._partials[key]
        whole = b"".join(partial.parts[n] for n in range(1, partial.total + 1))
        status = await self._store(_mo_body(message, sms_text.decode(whole, partial.coding), partial.total))
        if not partial.done.done():
            partial.done.set_result(status)
        return status

    async def _store(self, body: dict[str, Any]) -> int:
        try:
            await self._sink(orjson.dumps(body))
        except Exception as exc:
            log.warning("smpp_delivery_not_stored", kind=body["kind"], error_type=type(exc).__name__)
            return ESME_RX_T_APPN
        return smpp.ESME_ROK


def _mo_body(message: ShortMessage, text: str, parts: int = 1) -> dict[str, Any]:
    at = _now_ms()
    seen = f"{message.source_addr}\x1f{message.destination_addr}\x1f{text}"
    digest = hashlib.sha256(seen.encode()).hexdigest()
    return {
        "kind": "mo",
        "from": message.source_addr,
        "to": message.destination_addr,
        "text": text,
        "parts": parts,
        "at": at,
        "key": f"{at}:{digest[:16]}",
    }


def _now_ms() -> int:
    return int(time.time() * 1000)
