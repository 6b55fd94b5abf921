"""PostgreSQL LISTEN/NOTIFY wake-ups: workers hear about new work at once instead of polling for it.

Whoever commits new jobs or webhook deliveries issues `NOTIFY` inside the same transaction (PostgreSQL
delivers it on commit, once per channel per transaction). Each worker process keeps one listening
connection and wakes its loops; polling stays as the safety net, so a lost connection only slows things.
SQLite has no such thing; there the API and the workers share a process and wake each other directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import structlog
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncSession

log = structlog.get_logger(__name__)

JOBS = "openmmp_jobs"
WEBHOOKS = "openmmp_webhooks"


async def notify(session: AsyncSession, channel: str) -> None:
    """Announce new work of `channel` when the session's transaction commits (PostgreSQL only)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"NOTIFY {channel}"))


class Listener:
    """One LISTEN connection calling `handlers[channel]()` for each notification; reconnects by itself."""

    def __init__(self, database_url: str, handlers: Mapping[str, Callable[[], None]]) -> None:
        self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._handlers = dict(handlers)
        self.listening = asyncio.Event()

    def _on_notification(self, _connection: Any, _pid: int, channel: str, _payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            handler()

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            # Any failure of the connection (refused, reset, closed while LISTEN is sent, server shutting
            # down) ends in a new attempt: the worker must never stop because its listener lost one.
            try:
                connection = await asyncpg.connect(self._dsn)
            except Exception as exc:
                log.warning("listen_connect_failed", error=type(exc).__name__)
            else:
                try:
                    for channel in self._handlers:
                        await connection.add_listener(channel, self._on_notification)
                    self.listening.set()
                    delay = 0.5
                    # Whatever was committed while we were not listening is found by the next poll.
                    for handler in self._handlers.values():
                        handler()
                    while not stop.is_set() and not connection.is_closed():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), timeout=1.0)
                except Exception as exc:
                    log.warning("listen_connection_lost", error=type(exc).__name__)
                finally:
                    self.listening.clear()
                    with contextlib.suppress(Exception):
                        await connection.close()
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(10.0, delay * 2)
