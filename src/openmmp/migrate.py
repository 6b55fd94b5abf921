"""Schema migrations (Alembic), runnable from the CLI, `make run` and the tests alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import openmmp


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(openmmp.__file__).parent / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision`.

    Blocking, with its own event loop: from async code, call it in a thread.
    """
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
