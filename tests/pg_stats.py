"""PostgreSQL's own counters and statistics, for tests of what a query reads (not how long it takes)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.kit.db import Database


async def analyze(db: Database, table: str) -> None:
    """Gather `table`'s statistics now (outside a transaction: in one that rolls back they are lost)."""
    async with db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql(f"ANALYZE {table}")


async def rows_read(session: AsyncSession, table: str) -> int:
    """Rows fetched from `table` plus entries returned by its indexes, so far in this transaction."""
    statement = text(
        "SELECT COALESCE(SUM(pg_stat_get_xact_tuples_returned(i.indexrelid)), 0)"
        " + pg_stat_get_xact_tuples_fetched(CAST(:table AS regclass))"
        " FROM pg_index i WHERE i.indrelid = CAST(:table AS regclass)"
    )
    return int((await session.execute(statement, {"table": table})).scalar_one())
