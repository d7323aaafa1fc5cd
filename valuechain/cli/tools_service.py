"""`valuechain tools service-queue`: open tickets ranked by p_sla_breach × customer lifetime value.

The `tools` command group registers it with `register(app)`.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from core.runtime import get_sessionmaker
from tools.service_queue.queue import service_queue
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    console,
    date_option,
    fail,
    filters_option,
    print_json,
    settings_for,
    tool_errors,
)


def service_queue_cmd(
    filters: list[str] = typer.Option(
        [], "--filter", "-f",
        help="key=value[,value] on priority/category/segment/region/plan/industry/owner/status (repeatable)",
    ),
    limit: int = typer.Option(10, "--limit", "-n", help="Tickets to list (0–200)"),
    sla: str | None = typer.Option(None, "--sla", help='SLA hours per priority as JSON, e.g. \'{"urgent": 24}\''),
    as_of: str | None = typer.Option(None, "--as-of", help="Date (YYYY-MM-DD) whose end is the clock"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Open support tickets ranked by the chance of missing their SLA × the customer's lifetime value."""
    try:
        sla_hours = json.loads(sla) if sla else None
    except json.JSONDecodeError as exc:
        raise fail(f"--sla takes a JSON object like '{{\"urgent\": 24}}'; got {sla!r}", code=2) from exc
    if sla_hours is not None and not isinstance(sla_hours, dict):
        raise fail(f"--sla takes a JSON object like '{{\"urgent\": 24}}'; got {sla!r}", code=2)
    with get_sessionmaker(settings_for(database_url))() as session, tool_errors():
        result = service_queue(
            session=session,
            filters=filters_option(filters),
            limit=limit,
            sla_hours=sla_hours,
            as_of=date_option(as_of, "--as-of"),
        )
    if as_json:
        print_json(result)
        return
    table = Table(title=f"Service queue at the end of {result.inputs.as_of}")
    for name in ("#", "ticket", "account", "priority", "category", "deadline", "time left",
                 "p(breach)", "CLV", "score", "why"):
        table.add_column(name, no_wrap=name not in ("account", "why"), overflow="fold")
    for q in result.items:
        left = f"{q.hours_left:,.0f} h"
        table.add_row(
            str(q.rank), str(q.ticket_id), f"{q.account_name} ({q.account_id})", q.priority, q.category or "—",
            q.deadline.strftime("%Y-%m-%d %H:%M"), left if not q.breached else f"[red]{left}[/]",
            f"{q.p_sla_breach:.0%}", f"{q.clv:,.0f}", f"{q.score:,.0f}", q.why,
        )
    console.print(table)
    console.print(result.explanation)


def register(app: typer.Typer) -> None:
    app.command("service-queue", help="Open tickets ranked by SLA-breach risk × customer lifetime value.")(
        service_queue_cmd
    )
