"""One bound SMPP connection from OpenMMP (the ESME) to an SMSC: a window of submits in flight,
what the SMSC delivers handed on in order, enquire_link while idle, unbind on close.

`Session.open` connects (TCP_NODELAY: a PDU is a few dozen octets, and Nagle's algorithm held each one
back waiting for the previous answer's acknowledgement) and binds; a refused bind raises `BindRefused`
with the SMSC's status. `submit` sends a submit_sm once a slot of the window is free and returns the
SMSC's answer (a refusal, such as ESME_RTHROTTLED, is an answer, not an exception). deliver_sm PDUs
(receipts and mobile-originated messages) go to `on_deliver` in the order they came, each answered with
the status it returns once it returns: up to `deliver_window` of them are worked on at once (so one that
waits for a commit does not hold the next), and while that many are, nothing more is read (answers to
submits included), so a slow consumer slows the SMSC down instead of losing what it sent. When the
connection ends, every submit still waiting raises `SessionClosed`; a deliver_sm whose answer can no
longer be sent is the SMSC's to deliver again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

from openmmp.providers.smpp.pdu import (
    BIND_TRANSCEIVER,
    BINDS,
    DELIVER_SM,
    ENQUIRE_LINK,
    ESME_RINVCMDID,
    ESME_ROK,
    ESME_RSYSERR,
    GENERIC_NACK,
    SUBMIT_SM,
    UNBIND,
    Bind,
    Framer,
    MessageId,
    Pdu,
    PduError,
    ShortMessage,
    decode,
    refusal,
)

OnDeliver = Callable[[ShortMessage], Awaitable[int]]
"""Takes what the SMSC delivered; returns the deliver_sm_resp status (ESME_ROK once it is kept). Calls
start in the order the deliver_sm came (their first steps run in that order)."""

_MAX_SEQUENCE = 0x7FFFFFFF


class SessionClosed(ConnectionError):
    """The connection ended before the SMSC answered."""


class BindRefused(ConnectionError):
    """The SMSC refused the bind (wrong system_id or password, too many binds, ...)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with command_status 0x{status:08x}")
        self.status = status


async def _refuse(_message: ShortMessage) -> int:
    return ESME_RSYSERR


class Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        window: int,
        on_deliver: OnDeliver,
        enquire_link_s: float,
        response_timeout_s: float,
        deliver_window: int = 1,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._window = asyncio.Semaphore(window)
        self._on_deliver = on_deliver
        self._delivering = asyncio.Semaphore(deliver_window)
        self._deliveries: set[asyncio.Task[None]] = set()
        self._enquire_link_s = enquire_link_s
        self._response_timeout_s = response_timeout_s
        self._framer = Framer()
        self._sequence = 0
        self._waiting: dict[int, asyncio.Future[Pdu]] = {}
        self._closed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.system_id = ""
        """The SMSC's system_id, from its answer to the bind."""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        bind: Bind,
        *,
        mode: int = BIND_TRANSCEIVER,
        window: int = 10,
        on_deliver: OnDeliver = _refuse,
        deliver_window: int = 1,
        enquire_link_s: float = 30.0,
        response_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> Session:
        """Connect and bind (`mode`: one of the three bind commands). Raises OSError when the SMSC cannot
        be reached, BindRefused when it refuses the bind, TimeoutError when it does not answer.
        `deliver_window`: how many deliver_sm `on_deliver` works on at once."""
        if mode not in BINDS:
            raise ValueError("mode must be a bind command")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout_s)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = cls(
            reader,
            writer,
            window=window,
            on_deliver=on_deliver,
            enquire_link_s=enquire_link_s,
            response_timeout_s=response_timeout_s,
            deliver_window=deliver_window,
        )
        session._tasks.append(asyncio.create_task(session._read(), name="smpp-session-read"))
        try:
            answer = await asyncio.wait_for(session._request(mode, bind), connect_timeout_s)
        except BaseException:
            await session._end()
            raise
        if answer.status != ESME_ROK:
            await session._end()
            raise BindRefused(answer.status)
        session.system_id = getattr(answer.body, "system_id", "")
        session._tasks.append(asyncio.create_task(session._keep_alive(), name="smpp-session-enquire-link"))
        return session

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def submit(self, message: ShortMessage) -> Pdu:
        """Send a submit_sm once the window has room; the SMSC's answer (its status says whether it
        took the message, its body the SMSC's message id). Raises SessionClosed, or TimeoutError when
        the answer does not come in time."""
        async with self._window:
            return await asyncio.wait_for(self._request(SUBMIT_SM, message), self._response_timeout_s)

    async def close(self) -> None:
        """Unbind (waiting a little for the answer) and close the connection."""
        if not self.closed:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(self._request(UNBIND, None), 5)
        await self._end()

    async def _request(self, command_id: int, body: Bind | ShortMessage | None) -> Pdu:
        if self.closed:
            raise SessionClosed("the SMPP session is closed")
        self._sequence = self._sequence % _MAX_SEQUENCE + 1
        sequence = self._sequence
        answer: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._waiting[sequence] = answer
        try:
            self._writer.write(Pdu(command_id, sequence, body=body).encode())
            return await answer
        finally:
            self._waiting.pop(sequence, None)

    def _send(self, pdu: Pdu) -> None:
        if not self.closed:
            self._writer.write(pdu.encode())

    async def _read(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    return
                for frame in self._framer.feed(data):
                    await self._handle(frame)
        except (ConnectionError, PduError):
            return  # a stream that cannot be cut into PDUs any more is lost: close it
        finally:
            await self._end()

    async def _handle(self, frame: bytes) -> None:
        try:
            pdu = decode(frame)
        except PduError as exc:
            self._send(refusal(frame, exc))
            return
        if pdu.is_response or pdu.command_id == GENERIC_NACK:
            waiting = self._waiting.get(pdu.sequence)
            if waiting is not None and not waiting.done():
                waiting.set_result(pdu)
        elif pdu.command_id == DELIVER_SM:
            assert isinstance(pdu.body, ShortMessage)
            await self._delivering.acquire()
            task = asyncio.create_task(self._deliver(pdu, pdu.body), name="smpp-session-deliver")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        elif pdu.command_id == ENQUIRE_LINK:
            self._send(pdu.answer())
        elif pdu.command_id == UNBIND:
            self._send(pdu.answer())
            await self._end()
        else:
            self._send(Pdu(GENERIC_NACK, pdu.sequence, ESME_RINVCMDID))

    async def _deliver(self, pdu: Pdu, message: ShortMessage) -> None:
        try:
            status = await self._on_deliver(message)
        except Exception:
            status = ESME_RSYSERR
        finally:
            self._delivering.release()
        self._send(pdu.answer(status, MessageId()))

    async def _keep_alive(self) -> None:
        """An enquire_link every `enquire_link_s`; no answer in time ends the session."""
        while not self.closed:
            await asyncio.sleep(self._enquire_link_s)
            try:
                await asyncio.wait_for(self._request(ENQUIRE_LINK, None), self._response_timeout_s)
            except (ConnectionError, TimeoutError):
                await self._end()
                return

    async def _end(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(SessionClosed("the SMPP connection ended"))
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
