"""`valuechain demo`: generate the deterministic demo company; `valuechain demo remove`: delete it."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table

from core.runtime import get_engine
from crm.demo import (
    DEFAULT_AS_OF,
    DemoDatabaseNotEmptyError,
    database_has_data,
    demo_rows,
    generate_demo,
    remove_demo,
)
from crm.migrate import upgrade
from tools.common import parse_date
from tools.errors import ToolInputError
from valuechain.cli.common import DatabaseUrlOption, JsonOption, console, fail, print_json, settings_for

app = typer.Typer(invoke_without_command=True, no_args_is_help=False)


@app.callback()
def demo(
    ctx: typer.Context,
    accounts: int = typer.Option(2000, "--accounts", min=1, help="Number of accounts"),
    seed: int = typer.Option(7, "--seed", min=0, help="Random seed: same seed, same database"),
    as_of: str = typer.Option(
        DEFAULT_AS_OF.isoformat(), "--as-of", help="Last date of generated history (YYYY-MM-DD)"
    ),
    reset: bool = typer.Option(
        False, "--reset", help="Delete existing CRM data, recommendations and churn models first"
    ),
    interventions: bool = typer.Option(
        True, "--interventions/--no-interventions",
        help="Simulate recommendations, decisions, executions, holdouts and their true effects (docs/OUTCOMES.md)",
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Generate the demo company into an empty database (or a reset one with --reset).

    `valuechain demo remove` deletes it again and keeps imported data.
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        as_of_date = parse_date(as_of, name="--as-of")
    except ToolInputError as exc:
        raise fail(str(exc)) from None
    engine = get_engine(settings_for(database_url))
    upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    if not reset and database_has_data(engine):
        raise fail(
            f"database {where!r} already holds CRM data; nothing was changed. "
            "Re-run with --reset to delete the CRM data (accounts and their history, value-chain "
            "activities, initiatives, recommendations, churn models) and generate again, or "
            "point --database-url at an empty database."
        )
    try:
        summary = generate_demo(
            engine, accounts=accounts, seed=seed, as_of=as_of_date, progress=not as_json, reset=reset,
            interventions=interventions,
        )
    except DemoDatabaseNotEmptyError as exc:  # another writer filled it since the check
        raise fail(str(exc)) from None
    payload = {
        "database_url": where,
        "accounts": summary.accounts,
        "seed": summary.seed,
        "as_of": summary.as_of.isoformat(),
        "history": "trimmed" if summary.trimmed else "full",
        "active": summary.active,
        "churned": summary.churned,
        "seconds": round(summary.seconds, 2),
        "rows": summary.rows,
    }
    if as_json:
        print_json(payload)
        return
    table = Table("table", "rows", title=f"demo company in {where}")
    for name, count in summary.rows.items():
        table.add_row(name, f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{summary.total_rows:,}[/]")
    console.print(table)
    console.print(
        f"{summary.accounts:,} accounts ({summary.active:,} active, {summary.churned:,} churned), "
        f"seed {summary.seed}, history to {summary.as_of} "
        f"({'trimmed' if summary.trimmed else 'full'}), {summary.seconds:.1f} s"
    )


@app.command("remove")
def remove(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete the demo company and everything hanging off it, in one transaction; keep imported data.

    Deletes demo accounts with their history and churn scores, demo value-chain activities and
    their initiatives, recommendations about them, churn models trained while the demo was in
    the database, the kept churn feature state and the demo's app_meta keys. Keeps imported
    rows, users, API keys and conversation logs. `valuechain init` does not load the demo again.
    """
    engine = get_engine(settings_for(database_url))
    upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        found = demo_rows(conn)
    if found.present and not yes:
        if as_json:
            raise fail("--json asks no question: add --yes to delete the demo company", code=2)
        typer.confirm(
            f"Delete {found.describe()} from {where!r}, with everything hanging off them?", abort=True
        )
    removal = remove_demo(engine, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    payload = {
        "database_url": where,
        "removed": bool(removal.rows),
        "rows": removal.rows,
        "total": removal.total,
        "active_churn_model": removal.active_model,
    }
    if as_json:
        print_json(payload)
        return
    if not removal.rows:
        console.print(f"no demo company in {where}; nothing was changed")
        return
    table = Table("table", "rows deleted", title=f"demo company removed from {where}")
    for name, count in removal.rows.items():
        if count:
            table.add_row(name, f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{removal.total:,}[/]")
    console.print(table)
    if removal.active_model is None:
        console.print(
            "no churn model left: train one on your data with `valuechain churn train` "
            "(after importing it: docs/IMPORT.md)"
        )
    else:
        console.print(f"active churn model: {removal.active_model}")
