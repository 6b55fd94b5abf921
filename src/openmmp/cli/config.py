"""The settings as every command reads them: a bad one is named, never a traceback."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from openmmp.settings import Settings


def load_settings(**overrides: object) -> Settings:
    """The settings, or a clear message naming each bad one and exit status 2 (never a traceback)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        typer.echo("OpenMMP cannot start: the configuration is not valid.", err=True)
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            typer.echo(f"  {where}: {message}" if where else f"  {message}", err=True)
        raise typer.Exit(2) from None
