"""Migrations run up, down and up again on both databases."""

import asyncio

import pytest
from sqlalchemy import inspect

from openmmp import migrate
from openmmp.kit.db import Database
from openmmp.models import Base
from tests.conftest import POSTGRES_URL, recreate_postgres_database, run_sync


async def _tables(url: str) -> set[str]:
    db = Database(url)
    try:
        async with db.engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_downgrade_upgrade(kind: str, tmp_path, worker_name: str):
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    else:
        if not POSTGRES_URL:
            pytest.skip("OPENMMP_TEST_DATABASE_URL is not set")
        url = recreate_postgres_database(f"migrations_{worker_name}")
    run_sync(lambda: asyncio.to_thread(migrate.upgrade, url))
    assert set(Base.metadata.tables) <= run_sync(lambda: _tables(url))
    run_sync(lambda: asyncio.to_thread(migrate.downgrade, url, "base"))
    assert run_sync(lambda: _tables(url)) <= {"alembic_version"}
    run_sync(lambda: asyncio.to_thread(migrate.upgrade, url))
    assert set(Base.metadata.tables) <= run_sync(lambda: _tables(url))
