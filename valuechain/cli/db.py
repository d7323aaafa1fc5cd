"""`valuechain db ...`: migrate and hash the database."""

from __future__ import annotations

import typer
from rich.table import Table

from core.runtime import get_engine
from crm.dump import combine, table_hashes
from crm.migrate import current_revision, upgrade
from valuechain.cli.common import DatabaseUrlOption, JsonOption, console, print_json, settings_for

app = typer.Typer(no_args_is_help=True)


@app.command("upgrade", help="Migrate the database to the newest schema (idempotent).")
def upgrade_cmd(database_url: str | None = DatabaseUrlOption) -> None:
    engine = get_engine(settings_for(database_url))
    upgrade(engine)
    console.print(f"database at revision {current_revision(engine)}")


@app.command("hash", help="Print a sha256 of a canonical dump of all tables (row order by key).")
def hash_cmd(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    engine = get_engine(settings_for(database_url))
    per_table = table_hashes(engine)
    total = combine(per_table)
    if as_json:
        print_json(
            {"sha256": total, "tables": {k: {"rows": c, "sha256": h} for k, (c, h) in per_table.items()}}
        )
        return
    table = Table("table", "rows", "sha256")
    for name, (count, digest) in sorted(per_table.items()):
        table.add_row(name, f"{count:,}", digest[:16])
    console.print(table)
    console.print(f"database sha256: {total}")
