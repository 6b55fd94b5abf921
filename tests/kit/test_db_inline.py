"""SQLite statements run on the event loop's thread: a transaction does not yield between statements.

Through aiosqlite's thread each statement waited for a turn of the loop, so under load the one write
lock was held for many turns per transaction (see kit/db.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from openmmp.kit.db import Database


async def _turns_during(db: Database, *, write: bool) -> int:
    turns = 0
    stop = asyncio.Event()

    async def spin() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    spinner = asyncio.create_task(spin())
    await asyncio.sleep(0)
    factory = db.write_sessions if write else db.read_sessions
    try:
        async with factory() as session, session.begin():
            await session.execute(text("SELECT 1"))  # connects and begins: may wait for the loop
            before = turns
            for n in range(50):
                if write:
                    await session.execute(text("INSERT INTO t (x) VALUES (:x)"), {"x": n})
                else:
                    await session.execute(text("SELECT count(*) FROM t WHERE x >= :x"), {"x": n})
            return turns - before
    finally:
        stop.set()
        await spinner


async def test_sqlite_transactions_run_their_statements_without_yielding(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'inline.db'}")
    try:
        async with db.write_sessions() as session, session.begin():
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
        assert await _turns_during(db, write=True) == 0
        assert await _turns_during(db, write=False) == 0
        async with db.read_sessions() as session:
            assert await session.scalar(text("SELECT count(*) FROM t")) == 50
    finally:
        await db.dispose()


class TestTheAiosqliteInternalsItReplaces:
    """kit/db.py overrides aiosqlite's private `Connection._execute` and reads `_running` and `_connection`.

    An upgrade of aiosqlite that renames or reshapes them would silently put every statement back on
    aiosqlite's thread (or break it); these checks fail loudly first.
    """

    def test_the_private_method_it_overrides_exists_with_the_same_shape(self):
        import inspect

        import aiosqlite

        from openmmp.kit.db import _InlineConnection

        original = aiosqlite.Connection._execute
        assert inspect.iscoroutinefunction(original)
        assert list(inspect.signature(original).parameters) == ["self", "fn", "args", "kwargs"]
        assert list(inspect.signature(_InlineConnection._execute).parameters) == [
            "self",
            "fn",
            "args",
            "kwargs",
        ]
        # Every public statement method goes through it: if one stopped calling it, ours would be bypassed.
        for name in ("execute", "commit", "rollback", "cursor"):
            assert "_execute" in inspect.getsource(getattr(aiosqlite.Connection, name)), name

    async def test_the_state_it_reads_is_there_on_an_open_connection(self, tmp_path: Path):
        from openmmp.kit.db import _InlineConnection

        connection = await _InlineConnection.open(str(tmp_path / "state.db"))
        try:
            assert connection._running is True
            assert connection._connection is not None
            cursor = await connection.execute("SELECT 41 + 1")
            assert await cursor.fetchone() == (42,)
        finally:
            await connection.close()
        assert not connection._running
        with pytest.raises(ValueError, match="connection"):
            await connection.execute("SELECT 1")
