"""Helpers shared by CLI commands: console, JSON output, database options, error exits.

Exit codes: 2 for a mistake in the command (the tool's own message), 1 for a database that is
not there and for an internal error (a `DataFault` or a bug): one line with an error id on
stderr, the traceback only in the log under that id.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.settings import Settings, get_settings
from tools.common import parse_date
from tools.errors import DataFault, ToolInputError, internal_summary, new_error_id
from tools.filters import parse_filter_items

console = Console(stderr=False)
err_console = Console(stderr=True)
log = logging.getLogger("valuechain.cli")

LOG_FILE = "valuechain.log"
"""Where an internal error's traceback goes (in DATA_DIR) when logging is not set up otherwise."""
_CONTROL = (typer.Exit, typer.Abort, typer.TyperException)
"""How commands end on purpose (exit codes, usage errors): never internal errors."""


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


def _log_target() -> str:
    """Where `log` writes: a file in DATA_DIR (or the temp folder) unless logging is set up already."""
    if log.hasHandlers():
        return "the log"
    try:
        folder = get_settings().data_dir
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError):  # no writable DATA_DIR, or settings that do not load
        folder = Path(tempfile.gettempdir())
    handler = logging.FileHandler(folder / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    return str(folder / LOG_FILE)


def internal_error(exc: BaseException) -> typer.Exit:
    """Log `exc` with its traceback under a new error id; print one line naming the id; exit 1."""
    error_id = new_error_id()
    where = _log_target()
    log.error("internal error %s", error_id, exc_info=exc)
    # a data fault's message is written for the user; a bug's first line helps whoever runs the command
    first = (str(exc).splitlines() or [""])[0]
    bug = f"{type(exc).__name__}: {first}".removesuffix(": ")
    summary = internal_summary(exc) if isinstance(exc, DataFault) else bug
    err_console.print(
        f"[bold red]error:[/] internal error (id {error_id}): {escape(summary)} (traceback in {escape(where)})",
        soft_wrap=True,
    )
    return typer.Exit(1)


@contextmanager
def internal_errors() -> Iterator[None]:
    """A `DataFault` or a bug exits 1 with one line naming an error id, never a traceback."""
    try:
        yield
    except _CONTROL:
        raise
    except Exception as exc:
        raise internal_error(exc) from None


@contextmanager
def tool_errors() -> Iterator[None]:
    """Bad input to a tool exits 2 with the tool's own message; a database without the schema
    (or unreachable) exits 1 with the driver's first line and what to do about it; a data
    fault or a bug exits 1 with one line naming an error id (`internal_errors`)."""
    with internal_errors():
        try:
            yield
        except ToolInputError as exc:
            raise fail(str(exc), code=2) from None
        except (OperationalError, ProgrammingError) as exc:
            first = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            raise fail(
                f"database error ({first}); is the database initialised? Run `valuechain init`."
            ) from None


def filters_option(items: Iterable[str]) -> dict[str, str | list[str]] | None:
    """`--filter key=value[,value]` items as a tool's filters; a malformed one exits 2."""
    with tool_errors():
        return parse_filter_items(items, option="--filter")


def date_option(value: str | None, option: str) -> dt.date | None:
    """A YYYY-MM-DD option's value as a date (None stays None); anything else exits 2."""
    with tool_errors():
        return parse_date(value, name=option)


DatabaseUrlOption = typer.Option(None, "--database-url", help="Override DATABASE_URL for this command")
JsonOption = typer.Option(False, "--json", help="Print one JSON document instead of a table")
