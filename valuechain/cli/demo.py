"""`valuechain demo`: generate the deterministic demo company."""

from __future__ import annotations

import typer
from rich.table import Table

from core.runtime import get_engine
from crm.demo import DEFAULT_AS_OF, DemoDatabaseNotEmptyError, database_has_data, generate_demo
from crm.migrate import upgrade
from tools.common import parse_date
from tools.errors import ToolInputError
from valuechain.cli.common import DatabaseUrlOption, JsonOption, console, fail, print_json, settings_for


def demo(
    accounts: int = typer.Option(2000, "--accounts", min=1, help="Number of accounts"),
    seed: int = typer.Option(7, "--seed", min=0, help="Random seed: same seed, same database"),
    as_of: str = typer.Option(
        DEFAULT_AS_OF.isoformat(), "--as-of", help="Last date of generated history (YYYY-MM-DD)"
    ),
    reset: bool = typer.Option(
        False, "--reset", help="Delete existing CRM data, recommendations and churn models first"
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Generate the demo company into an empty database (or a reset one with --reset)."""
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
            engine, accounts=accounts, seed=seed, as_of=as_of_date, progress=not as_json, reset=reset
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
