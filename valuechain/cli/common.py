"""Helpers shared by CLI commands: console, JSON output, database options."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console

from valuechain.config import Settings, get_settings

console = Console(stderr=False)
err_console = Console(stderr=True)


def settings_for(database_url: str | None) -> Settings:
    """Settings with an optional `--database-url` override."""
    base = get_settings()
    if database_url:
        return base.model_copy(update={"database_url": database_url})
    return base


def print_json(payload: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Print exactly one JSON document on stdout."""
    if isinstance(payload, BaseModel):
        sys.stdout.write(payload.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def tool_errors() -> Iterator[None]:
    """Bad input to a tool exits 2 with the tool's own message; a database without the schema
    (or unreachable) exits 1 with the driver's first line and what to do about it."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from tools.errors import ToolInputError

    try:
        yield
    except ToolInputError as exc:
        raise fail(str(exc), code=2) from None
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        raise fail(f"database error ({first}); is the database initialised? Run `valuechain init`.") from None


DatabaseUrlOption = typer.Option(None, "--database-url", help="Override DATABASE_URL for this command")
JsonOption = typer.Option(False, "--json", help="Print one JSON document instead of a table")
