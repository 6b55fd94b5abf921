"""Single sends stored together: one write transaction for the sends that arrive at once.

A single send's own statements (its idempotency check, the message row and its job) cost less than the
write transaction around them: on SQLite its BEGIN IMMEDIATE takes the database's one write lock, which
the workers need too, and on PostgreSQL its COMMIT waits for the WAL to reach the disk. Every check that
only reads (the API key, the channel, the end user's conversation, the fallback's channels) is done
before, in a read session of the request's own; what the sends that came meanwhile have left to write is
written in one transaction, each in a SAVEPOINT of its own, so one that fails rolls back only itself.
A request is answered only after the transaction holding its message has committed: the message is
durable once the answer leaves (architecture.md invariant 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.errors import AppError
from openmmp.kit.db import Database

log = structlog.get_logger(__name__)

Store = Callable[[AsyncSession], Awaitable[dict[str, Any] | AppError]]
"""One send's writes, given the batch's session: its answer, or the error it answers with."""


@dataclass
class _Send:
    store: Store
    answer: asyncio.Future[dict[str, Any] | AppError] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SendBatcher:
    def __init__(self, db: Database, *, on_commit: Callable[[], None], batch_max: int = 200) -> None:
        self._db = db
        self._on_commit = on_commit
        self._batch_max = batch_max
        self._waiting: list[_Send] = []
        self._draining: asyncio.Task[None] | None = None

    async def store(self, store: Store) -> dict[str, Any] | AppError:
        """Run `store` in the next batch's transaction; its result once that has committed."""
        send = _Send(store)
        self._waiting.append(send)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await send.answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._batch_max], self._waiting[self._batch_max :]
                await self._write(batch)
        finally:
            self._draining = None

    async def _write(self, batch: list[_Send]) -> None:
        results: list[dict[str, Any] | AppError | BaseException] = []
        try:
            async with self._db.write_sessions() as session, session.begin():
                for send in batch:
                    try:
                        async with session.begin_nested():
                            results.append(await send.store(session))
                    except Exception as exc:  # rolled back to its SAVEPOINT: only this send failed
                        results.append(exc)
        except BaseException as exc:
            # The commit failed (or we are cancelled): nothing of the batch is stored; every request says so.
            for send in batch:
                if not send.answer.done():
                    send.answer.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            log.warning("sends_batch_failed", sends=len(batch), error_type=type(exc).__name__)
            return
        for send, result in zip(batch, results, strict=True):
            if send.answer.done():
                continue
            if isinstance(result, BaseException):
                send.answer.set_exception(result)
            else:
                send.answer.set_result(result)
        self._on_commit()
