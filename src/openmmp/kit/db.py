"""Engine, sessions and transactions for SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg).

SQLite: every connection runs in WAL mode with a busy timeout, and write transactions start with
`BEGIN IMMEDIATE` so two writers queue on the lock instead of failing half-way with "database is locked".
Read-only requests begin a plain deferred transaction and run beside the writer.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import aiosqlite
import orjson
from fastapi import Depends, Request
from sqlalchemy import event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

from openmmp.kit.metrics import DB_STATEMENTS, DB_TRANSACTIONS, children

_SQLITE_BEGIN = "openmmp_sqlite_begin"
_VERBS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "SAVEPOINT", "RELEASE", "ROLLBACK", "PRAGMA", "NOTIFY"}
)
_LOCK_WAIT_SECONDS = 30.0


def normalise_url(url: str) -> str:
    """Accept the plain driver-less URLs operators type and pick our async drivers."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _install_sqlite_pragmas(engine: AsyncEngine, *, writer: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to us: pysqlite's implicit BEGIN cannot be made IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The writer waits for the lock in `_on_begin` instead (see there); readers rarely wait at all.
        cursor.execute(f"PRAGMA busy_timeout={0 if writer else 30000}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        if mode != "IMMEDIATE":
            conn.exec_driver_sql(f"BEGIN {mode}")
            return
        # SQLite's own busy handler sleeps up to 100 ms between tries, so a process waiting for the write
        # lock held by another busy process starves. Poll every few milliseconds instead, yielding to the
        # event loop meanwhile.
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            await_only(asyncio.sleep(random.uniform(0.0005, 0.003)))


class _InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements run on the calling (event-loop) thread.

    With aiosqlite every statement is a trip to the connection's thread and back through the event loop;
    under load each trip waits for the GIL and a full turn of the loop (tens of milliseconds). SQLite
    allows one writer, so the write lock was held for many turns per transaction, and a read of a few
    statements took most of a second. Run inline, a transaction's statements follow each other without
    yielding: each takes microseconds (WAL with synchronous=NORMAL does not fsync on commit, and readers
    do not wait for the writer), so the lock is held only for the SQL itself. The thread is still
    started, for aiosqlite's connect and close.
    """

    @classmethod
    async def open(cls, database: str) -> aiosqlite.Connection:
        connection = cls(
            partial(sqlite3.connect, database, timeout=30, check_same_thread=False), iter_chunk_size=64
        )
        return await connection

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


_IDLE_BEFORE_PING_S = 5.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled PostgreSQL connection that sat idle before handing it out; drop it if it is dead.

    SQLAlchemy's `pool_pre_ping` pays a round trip on every checkout (a tenth of the API's and the
    workers' CPU under load). A connection in steady use is checked by its next statement instead: a
    disconnect there invalidates the whole pool at once, so after a database restart each process fails
    what was in flight (clients retry, sends are idempotent) and starts afresh.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checking_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < _IDLE_BEFORE_PING_S:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # the pool replaces the connection and tries again
            raise DisconnectionError("pooled connection is dead") from exc


def _json_text(value: Any) -> str:
    """JSON columns' text, written by orjson: the standard library's encoder cost a batch's sends ~5 µs
    each. Values are checked on the way in (kit/schemas.py), so none holds what only json.dumps writes."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_engine(url: str, path: str, *, pool_size: int) -> AsyncEngine:
    return create_async_engine(
        url,
        json_serializer=_json_text,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=300,
        async_creator=lambda: _InlineConnection.open(path),
    )


def _count_statements(engine: AsyncEngine) -> None:
    """Count every statement by verb, and every transaction (`openmmp_db_*_total`: what a message costs)."""
    statements = children(DB_STATEMENTS)
    verbs: dict[str, str] = {}  # statement text → verb; compiled statements are the same few strings

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = verbs.get(statement)
        if verb is None:
            first = statement.lstrip()[:10].split(None, 1)
            verb = first[0].upper() if first and first[0].upper() in _VERBS else "OTHER"
            if len(verbs) > 10_000:  # texts with expanding IN lists vary; keep the cache bounded
                verbs.clear()
            verbs[statement] = verb
        statements(verb).inc()

    @event.listens_for(engine.sync_engine, "begin")
    def _transaction(_conn: Connection) -> None:
        DB_TRANSACTIONS.inc()


_POSTGRESQL_SETTINGS = {
    # Every statement is planned for its own parameters and the table as it is now. asyncpg prepares
    # statements, and after five runs PostgreSQL may keep one generic plan for the connection's life:
    # planned while the outbox was empty (a fresh database, or statistics not gathered yet), the webhook
    # claim kept a plan that read every pending delivery for each candidate, 13 msg/s end to end instead
    # of 300 on a server without autovacuum. Planning again costs PostgreSQL tens of µs per statement.
    "plan_cache_mode": "force_custom_plan",
}


class Database:
    """One engine per process, with a session factory for writes and one for reads.

    SQLite allows one writer at a time. Rather than letting every connection of the process compete for
    the file lock (SQLite's busy handler sleeps up to 100 ms per retry, which collapses throughput), a
    process keeps exactly one write connection: writers queue for it in the pool, and only processes
    compete for the lock. Reads use their own pool and run beside the writer (WAL).
    """

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            path = parsed.database or ":memory:"
            self.engine = _sqlite_engine(self.url, path, pool_size=1)
            self.read_engine = _sqlite_engine(self.url, path, pool_size=pool_size)
            _install_sqlite_pragmas(self.engine, writer=True)
            _install_sqlite_pragmas(self.read_engine, writer=False)
            read_bind = self.read_engine.execution_options(**{_SQLITE_BEGIN: "DEFERRED"})
        else:
            self.engine = create_async_engine(
                self.url,
                json_serializer=_json_text,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_recycle=1800,
                connect_args={"server_settings": _POSTGRESQL_SETTINGS},
            )
            _ping_when_idle(self.engine)
            self.read_engine = self.engine
            read_bind = self.engine
        _count_statements(self.engine)
        if self.read_engine is not self.engine:
            _count_statements(self.read_engine)
        self.write_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = async_sessionmaker(read_bind, expire_on_commit=False)

    async def ping(self) -> None:
        """Raises when the database cannot answer `SELECT 1`."""
        async with self.read_sessions() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def request_database(request: Request) -> Database:
    """The app's database, for work that opens sessions of its own (services given no transaction)."""
    db: Database = request.app.state.db
    return db


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed when the endpoint returns, before the response is sent.

    GET and HEAD requests read; everything else may write. Services never commit (style.md habit 3).
    """
    db = request_database(request)
    factory = db.read_sessions if request.method in ("GET", "HEAD") else db.write_sessions
    async with factory() as session, session.begin():
        yield session
    for hook in getattr(request.state, "after_commit", ()):
        hook()


def after_commit(request: Request, hook: Callable[[], None]) -> None:
    """Run `hook` once the request's transaction has committed (e.g. wake the in-process workers)."""
    request.state.after_commit = [*getattr(request.state, "after_commit", ()), hook]


SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


def database_is_away(exc: Exception) -> bool:
    """The database could not be reached or used for now, as opposed to a statement that is wrong.

    OperationalError covers a refused or dropped connection (PostgreSQL) and a lock not granted in time
    (SQLite's "database is locked"); InterfaceError a connection closed under the driver; a connection
    that failed to open may surface as the driver's own OSError; PoolTimeout is every pooled connection
    busy for the whole checkout timeout.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeout | OSError)
