"""Provider callbacks applied together: one write transaction for the callbacks that arrive at once.

A write transaction costs more than a callback's own statements (on SQLite its BEGIN IMMEDIATE takes the
one write lock; on PostgreSQL its COMMIT waits for the WAL to reach the disk). Callbacks come in floods
(two or three per message sent), so the requests waiting meanwhile are applied in one transaction. Each
is verified first (an unknown channel or a bad signature is answered before anything is written);
delivery reports in a row — read watermarks that name their user included — are then stored and applied
together, set-based, in one SAVEPOINT (a handful of statements for all of them), and any other callback
in a SAVEPOINT of its own. Should the reports' SAVEPOINT fail, each of them is applied again alone, so a
callback that fails rolls back only its own work and answers as it would alone. Every request still
gets its answer only after the transaction holding its event has committed: a 200 means the raw event
is stored.

On PostgreSQL the reports' messages, and the unread messages of the watermarks' users, are locked in one
statement (FOR UPDATE, in id order, so two batches cannot deadlock each other) for the rest of the
transaction, like a lone report's: a dispatcher reconciling the same message waits and then sees its
status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.callbacks.service import (
    Prepared,
    account_of,
    apply_prepared,
    apply_reports,
    challenge,
    naming_parts,
    prepare,
)
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.models import Channel
from openmmp.providers.base import CallbackReply, CallbackRequest, ProviderContext
from openmmp.settings import CallbackSettings

log = structlog.get_logger(__name__)


@dataclass
class _Callback:
    provider: str
    account_id: str
    request: CallbackRequest
    context: dict[str, Any]
    """The request's log context (request id), so what `receive` logs names its request."""
    trusted: bool
    """It came on a connection of ours to the upstream (a `Link`), not over HTTP: nothing to verify."""
    answer: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class CallbackReceiver:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        contexts: Mapping[str, ProviderContext],
        settings: CallbackSettings,
        *,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_commit`: called after each batch's commit (to wake the webhook deliverers)."""
        self._db = db
        self._on_commit = on_commit
        self._keyring = keyring
        self._contexts = contexts
        self._settings = settings
        self._window_ms = int(settings.event_retention_days * 86_400_000)
        self._waiting: list[_Callback] = []
        self._draining: asyncio.Task[None] | None = None

    async def challenge(self, provider: str, account_id: str, request: CallbackRequest) -> CallbackReply:
        """`service.challenge` over a read-only session (a handshake changes nothing)."""
        async with self._db.read_sessions() as session:
            return await challenge(
                session,
                self._keyring,
                self._contexts,
                provider=provider,
                account_id=account_id,
                request=request,
            )

    async def account_of(self, provider: str, request: CallbackRequest) -> str:
        """`service.account_of` over a read-only session: the channel a callback to the provider's one
        URL is for."""
        async with self._db.read_sessions() as session:
            return await account_of(session, self._keyring, provider_name=provider, request=request)

    async def receive(
        self, provider: str, account_id: str, request: CallbackRequest, *, trusted: bool = False
    ) -> str:
        """Verify, store and apply one callback: its outcome, or the exception it raised (see
        `service.prepare` and `service.apply_prepared`). Its write transaction is shared with the
        callbacks that arrive meanwhile (at most `batch_max`). `trusted`: an event that arrived on a
        provider's `Link` (a connection of ours), stored and applied without a signature to check."""
        callback = _Callback(provider, account_id, request, structlog.contextvars.get_contextvars(), trusted)
        self._waiting.append(callback)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await callback.answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                size = self._settings.batch_max
                batch, self._waiting = self._waiting[:size], self._waiting[size:]
                await self._apply(batch)
        finally:
            self._draining = None

    async def _apply(self, batch: list[_Callback]) -> None:
        outcomes: dict[int, str | BaseException] = {}
        # The batch's channels, looked up once. A callback rolled back to its SAVEPOINT may have changed
        # one (its state is then expired and must be read again): the cache is emptied after a failure.
        channels: dict[str, Channel | None] = {}
        try:
            async with self._db.write_sessions() as session, session.begin():
                # Delivery reports in a row are applied together (`apply_reports`); anything else
                # alone, after the reports before it, so that each message's reports keep their order.
                run: list[tuple[_Callback, Prepared]] = []
                for callback in batch:
                    # Statements run inline (kit/db.py): without a turn of the loop between callbacks, a
                    # batch of hundreds would hold every other request (a status read) for its whole time.
                    await asyncio.sleep(0)
                    with structlog.contextvars.bound_contextvars(**callback.context):
                        try:
                            prepared = await prepare(
                                session,
                                self._keyring,
                                self._contexts,
                                provider=callback.provider,
                                account_id=callback.account_id,
                                request=callback.request,
                                channels=channels,
                                trusted=callback.trusted,
                            )
                        except Exception as exc:  # refused before anything was written
                            outcomes[id(callback)] = exc
                            continue
                    if prepared.reports_only:
                        run.append((callback, prepared))
                        continue
                    await self._apply_reports(session, run, outcomes, channels)
                    run = []
                    await self._apply_alone(session, callback, prepared, outcomes, channels)
                await self._apply_reports(session, run, outcomes, channels)
        except BaseException as exc:
            # The commit failed (or we are cancelled): nothing of the batch is stored; every request says so.
            for callback in batch:
                _answer(callback, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._on_commit()
        for callback in batch:
            _answer(callback, outcomes[id(callback)])

    async def _apply_reports(
        self,
        session: AsyncSession,
        run: list[tuple[_Callback, Prepared]],
        outcomes: dict[int, str | BaseException],
        channels: dict[str, Channel | None],
    ) -> None:
        """Delivery reports of several callbacks in one SAVEPOINT; should that fail, each alone. Those
        that name a part of a message (a long SMS) are applied alone: they concern none of the others'
        messages, so the order of each message's reports holds."""
        if not run:
            return
        alone = await naming_parts(session, [prepared for _, prepared in run])
        if alone:
            for callback, prepared in [item for n, item in enumerate(run) if n in alone]:
                await self._apply_alone(session, callback, prepared, outcomes, channels)
            run = [item for n, item in enumerate(run) if n not in alone]
            if not run:
                return
        try:
            async with session.begin_nested():
                answers = await apply_reports(session, [prepared for _, prepared in run])
        except Exception:
            log.exception("callback_reports_together_failed", callbacks=len(run))
            channels.clear()
            for callback, prepared in run:
                await self._apply_alone(session, callback, prepared, outcomes, channels)
            return
        for (callback, _), answer in zip(run, answers, strict=True):
            outcomes[id(callback)] = answer

    async def _apply_alone(
        self,
        session: AsyncSession,
        callback: _Callback,
        prepared: Prepared,
        outcomes: dict[int, str | BaseException],
        channels: dict[str, Channel | None],
    ) -> None:
        """One callback in its own SAVEPOINT: its answer as if it were alone."""
        with structlog.contextvars.bound_contextvars(**callback.context):
            try:
                async with session.begin_nested():
                    outcomes[id(callback)] = await apply_prepared(
                        session, prepared, replay_window_ms=self._window_ms
                    )
            except Exception as exc:
                outcomes[id(callback)] = exc
                channels.clear()


def _answer(callback: _Callback, outcome: str | BaseException) -> None:
    if callback.answer.done():  # the request went away meanwhile (client disconnected)
        return
    if isinstance(outcome, BaseException):
        callback.answer.set_exception(outcome)
    else:
        callback.answer.set_result(outcome)
