"""`valuechain import <table> FILE --mapping M.yaml`: load a CRM export, all rows or none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from core.runtime import get_engine
from crm.importer import COMMANDS, ImportReport, MappingError, import_csv, load_mapping, table_spec
from crm.migrate import upgrade
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    console,
    err_console,
    print_json,
    settings_for,
)

app = typer.Typer(no_args_is_help=True)

SHOWN_ERRORS = 20

_DESCRIPTIONS = {
    "accounts": "accounts (unmapped columns go to attributes, numbers typed)",
    "contacts": "contacts of existing accounts",
    "subscriptions": "subscriptions of existing accounts",
    "usage": "weekly usage (usage_weekly) of existing accounts",
    "tickets": "support tickets (support_tickets) of existing accounts",
    "invoices": "invoices of existing accounts",
    "interactions": "interactions (email/call/meeting/qbr) with existing accounts",
    "nps": "NPS responses (nps_responses) of existing accounts",
    "opportunities": "opportunities (deals) keyed by the CRM's id; prospects may have no account",
    "opportunity-stages": "stage history (opportunity_stages) of existing opportunities",
    "sales-team": "sales agents (sales_agents): manager, team, quarterly quota",
    "activities": "value-chain activities (value_chain_activities), incl. cost-driver fields",
    "initiatives": "initiatives on existing value-chain activities",
}


def _render(report: ImportReport) -> None:
    """Readable summary on stdout; errors on stderr."""
    name = Path(report.file).name
    if report.ok:
        if report.dry_run:
            console.print(
                f"[green]valid:[/] {report.rows_read:,} rows of {name} fit {report.table}; "
                "nothing written (dry run)",
                soft_wrap=True,
            )
        else:
            console.print(
                f"[green]imported[/] {name} into {report.table} in {report.seconds:.2f} s: "
                f"{report.rows_read:,} rows read, {report.rows_inserted:,} inserted, "
                f"{report.rows_updated:,} updated",
                soft_wrap=True,
            )
        if report.blank_lines_skipped:
            console.print(f"{report.blank_lines_skipped:,} blank lines skipped")
        if report.attribute_types:
            grid = Table("attribute column", "type", title=f"attributes ({len(report.attribute_types)})")
            for column, kind in report.attribute_types.items():
                grid.add_row(Text(column), kind)
            console.print(grid)
        for issue in report.warnings:
            console.print(
                Text(f"warning: line {issue.line}, column {issue.column!r}: {issue.message}"), soft_wrap=True
            )
        if report.ignored_columns:
            console.print(
                Text(f"ignored columns (not mapped): {', '.join(report.ignored_columns)}"), soft_wrap=True
            )
        if report.keep_demo and report.demo_accounts:
            console.print(
                Text(
                    f"kept next to the demo company ({report.demo_accounts:,} demo accounts): "
                    "`valuechain churn train` learns from the imported accounts only; "
                    "`valuechain demo remove` deletes the demo"
                ),
                soft_wrap=True,
            )
        if report.churn_state_dropped:
            console.print(
                Text(
                    f"churn feature state dropped ({report.churn_state_dropped}): the next "
                    "`valuechain churn score` reads the event tables from scratch"
                ),
                soft_wrap=True,
            )
        return
    if report.demo_refused:  # before the file was read: the one error says why and what to do
        err_console.print("[bold red]import refused:[/]", Text(report.errors[0].message), soft_wrap=True)
        return
    noun = "error" if report.error_count == 1 else "errors"
    err_console.print(
        f"[bold red]import failed:[/] {report.error_count:,} {noun} in {name}; nothing was written",
        highlight=False,
    )
    for issue in report.errors[:SHOWN_ERRORS]:
        where = f"line {issue.line}" if issue.line is not None else "mapping/file"
        if issue.column:
            where += f", column {issue.column!r}"
        err_console.print(Text(f"  {where}: {issue.message}"), soft_wrap=True)
    if report.error_count > SHOWN_ERRORS:
        err_console.print(f"  ... and {report.error_count - SHOWN_ERRORS:,} more (--json lists them all)")


def _make_command(command: str) -> Callable[..., None]:
    spec = table_spec(command)

    def run(
        file: Path = typer.Argument(..., help="CSV file; the first line names the columns"),
        mapping: Path = typer.Option(..., "--mapping", "-m", help="Column-mapping YAML (docs/IMPORT.md)"),
        upsert: bool = typer.Option(
            False, "--upsert", help="Update rows whose key already exists instead of refusing the file"
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Check the file against the mapping and the database; write nothing"
        ),
        keep_demo: bool = typer.Option(
            False,
            "--keep-demo",
            help="Import even though the database holds the demo company (refused otherwise; "
            "`valuechain demo remove` deletes the demo). Churn training then uses the imported accounts only",
        ),
        database_url: str | None = DatabaseUrlOption,
        as_json: bool = JsonOption,
    ) -> None:
        try:
            parsed = load_mapping(mapping)
        except MappingError as exc:
            report = ImportReport(table=spec.name, file=str(file), mapping=str(mapping), ok=False)
            for problem in exc.problems:
                report.add_error(None, None, f"{mapping}: {problem}")
        else:
            engine = get_engine(settings_for(database_url))
            upgrade(engine)
            report = import_csv(
                engine,
                table=command,
                path=file,
                mapping=parsed,
                mapping_name=str(mapping),
                upsert=upsert,
                dry_run=dry_run,
                keep_demo=keep_demo,
            )
        if as_json:
            print_json(report)
        else:
            _render(report)
        if not report.ok:
            raise typer.Exit(1)

    run.__doc__ = (
        f"Import {_DESCRIPTIONS[command]} from a CSV file.\n\n"
        "All rows or none: any error (listed with its line) leaves the database unchanged."
    )
    run.__name__ = f"import_{command}"
    return run


for _command in COMMANDS:
    app.command(_command)(_make_command(_command))
