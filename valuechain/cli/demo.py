"""`valuechain demo`: generate the demo company."""

from __future__ import annotations

import datetime as dt

import typer

from crm.demo import generate_demo
from crm.migrate import upgrade
from valuechain.cli.common import DatabaseUrlOption, console, settings_for
from valuechain.runtime import get_engine


def demo(
    accounts: int = typer.Option(2000, "--accounts", min=1, help="Number of accounts"),
    seed: int = typer.Option(7, "--seed", help="Random seed: same seed, same database"),
    as_of: str = typer.Option("2026-09-30", "--as-of", help="Last date of generated history"),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Generate the demo company into an empty database."""
    engine = get_engine(settings_for(database_url))
    upgrade(engine)
    generate_demo(engine, accounts=accounts, seed=seed, as_of=dt.date.fromisoformat(as_of))
    console.print("done")
