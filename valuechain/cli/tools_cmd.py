"""`valuechain tools ...`: the deterministic tools from the command line.

A readable table by default; exactly one JSON document (the tool's pydantic model) with
--json. A mistake the caller can fix (unknown account, metric, filter, period) exits 2 with
the tool's message on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar, cast

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from core.runtime import get_sessionmaker
from tools.accounts import account_timeline, get_account, list_accounts
from tools.activities import score_activities
from tools.ranking import Entity, Order, RankResult, rank
from valuechain.cli import tools_call, tools_churn, tools_service
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    console,
    date_option,
    filters_option,
    print_json,
    settings_for,
    tool_errors,
)

app = typer.Typer(no_args_is_help=True)

T = TypeVar("T")

FilterOption = typer.Option(
    [], "--filter", "-f", help="key=value or key=v1,v2 (repeatable), e.g. segment=Enterprise"
)


@contextmanager
def _session(database_url: str | None) -> Iterator[Session]:
    with get_sessionmaker(settings_for(database_url))() as session:
        yield session


def _run(database_url: str | None, call: Callable[[Session], T]) -> T:
    """Run a tool in a read-only session; tool-input errors exit 2, a missing schema exits 1."""
    with tool_errors(), _session(database_url) as session:
        return call(session)


def _money(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _num(x: float | int | None, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


@app.command(
    "score-activities", help="Cost vs value of value-chain activities: shares, margin leak, quadrants."
)
def score_activities_cmd(
    period: str | None = typer.Option(None, "--period", help="Period to score (default: the latest)"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    result = _run(database_url, lambda s: score_activities(session=s, period=period))
    if as_json:
        print_json(result)
        return
    table = Table(title=f"Value-chain activities, period {result.period} (largest margin leak first)")
    table.add_column("id", no_wrap=True)
    table.add_column("activity", overflow="fold")
    for col in ("cost", "cost %", "value %", "index", "leak"):
        table.add_column(col, justify="right")
    table.add_column("quadrant", overflow="fold")
    for a in result.activities:
        table.add_row(
            a.id,
            a.name,
            _money(a.annual_cost),
            _pct(a.cost_share),
            _pct(a.value_share),
            _num(a.value_cost_index),
            _money(a.margin_leak),
            a.quadrant,
        )
    console.print(table)
    detail = Table(title="Performance and activity-based cost split")
    detail.add_column("id")
    detail.add_column("perf gap", justify="right")
    detail.add_column("driver", overflow="fold")
    for col in ("value-added", "non-value-added", "unused capacity"):
        detail.add_column(col, justify="right")
    for a in result.activities:
        detail.add_row(
            a.id,
            _pct(a.performance_gap),
            a.cost_driver or "—",
            _money(a.value_added_cost),
            _money(a.non_value_added_cost),
            _money(a.unused_capacity_cost),
        )
    console.print(detail)
    console.print(result.explanation)


def _value_text(result: RankResult, value: float | int | None) -> str:
    if value is None:
        return "—"
    if result.unit == "currency":
        return _money(value)
    if result.unit == "probability":
        return _pct(value)
    if result.unit in ("days", "count"):
        return f"{value:,.0f}"
    return _num(value, 3)


@app.command("rank", help="Rank accounts, activities or initiatives by a metric.")
def rank_cmd(
    entity: str = typer.Argument(..., help="accounts, activities or initiatives"),
    metric: str = typer.Argument(..., help="e.g. arr, days_to_renewal, margin_leak, roi"),
    filters: list[str] = FilterOption,
    limit: int = typer.Option(10, "--limit", "-n", help="How many to show (1–1000)"),
    order: str | None = typer.Option(
        None, "--order", help="asc or desc (default: the metric's natural order)"
    ),
    as_of: str | None = typer.Option(None, "--as-of", help="Date for day-based account metrics (YYYY-MM-DD)"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    parsed = filters_option(filters)
    day = date_option(as_of, "--as-of")
    result = _run(
        database_url,
        lambda s: rank(
            session=s,
            entity=cast(Entity, entity),
            metric=metric,
            filters=parsed,
            limit=limit,
            order=cast(Order | None, order),
            as_of=day,
        ),
    )
    if as_json:
        print_json(result)
        return
    wanted = {
        "accounts": ["segment", "arr", "band"],
        "activities": ["quadrant", "cost_share", "value_share"],
        "initiatives": ["activity_id", "type", "status"],
    }[result.entity]
    shown = [k for k in wanted if any(k in item.context for item in result.items)]
    order_word = "highest" if result.order == "desc" else "lowest"
    table = Table(title=f"{result.entity} by {result.metric} ({order_word} first)")
    table.add_column("#", justify="right")
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold", max_width=32)
    table.add_column(result.metric, justify="right", no_wrap=True)
    headers = {"cost_share": "cost %", "value_share": "value %", "activity_id": "activity"}
    for k in shown:
        table.add_column(
            headers.get(k, k), justify="right" if k in ("arr", "cost_share", "value_share") else "left"
        )
    for item in result.items:
        extras = []
        for k in shown:
            v = item.context.get(k)
            if k in ("cost_share", "value_share"):
                extras.append(_pct(v) if isinstance(v, float) else "—")
            elif k == "arr":
                extras.append(_money(v) if isinstance(v, float | int) else "—")
            else:
                extras.append("—" if v is None else str(v))
        table.add_row(str(item.rank), item.id, item.name, _value_text(result, item.value), *extras)
    console.print(table)
    console.print(result.explanation)


@app.command("account", help="One account: profile, subscription, tickets, NPS, champions, last contact.")
def account_cmd(
    account_id: str = typer.Argument(..., help="Account id, e.g. ACME-0042"),
    as_of: str | None = typer.Option(None, "--as-of", help="Look from this date (YYYY-MM-DD)"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    day = date_option(as_of, "--as-of")
    p = _run(database_url, lambda s: get_account(session=s, account_id=account_id, as_of=day))
    if as_json:
        print_json(p)
        return
    table = Table(title=f"{p.id} — {p.name}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    sub = p.subscription
    rows: list[tuple[str, str]] = [
        ("status", p.status + (f" (churned {p.churned_at})" if p.churned_at else "")),
        ("segment / region", f"{p.segment or '—'} / {p.region or '—'}"),
        ("industry / plan", f"{p.industry or '—'} / {p.plan or '—'}"),
        ("ARR", _money(p.arr)),
        ("owner", p.owner or "—"),
        ("tenure", f"{p.tenure_days} days" if p.tenure_days is not None else "—"),
        (
            "subscription",
            f"{sub.plan}, {sub.seats} seats, MRR {_money(sub.mrr)}; "
            f"renews {sub.renewal_date}, in {sub.days_to_renewal} days"
            if sub
            else "none active",
        ),
        (
            "open tickets",
            f"{p.open_tickets} ("
            + ", ".join(f"{k} {v}" for k, v in p.open_tickets_by_priority.items())
            + ")",
        ),
        ("failed/late invoices 365d", str(p.failed_or_late_invoices_365d)),
        ("last NPS", f"{p.last_nps.score} on {p.last_nps.responded_at}" if p.last_nps else "—"),
        ("champions", f"{p.champions_active} active, {p.champions_left} left"),
        (
            "last interaction",
            f"{p.last_interaction.type} on {p.last_interaction.occurred_at} ({p.last_interaction.days_ago} days ago)"
            if p.last_interaction
            else "—",
        ),
        (
            "latest usage",
            f"week {p.latest_usage.week_start}: {p.latest_usage.active_users} active users"
            + (
                f" ({_pct(p.latest_usage.seat_utilisation)} of seats)"
                if p.latest_usage.seat_utilisation
                else ""
            )
            if p.latest_usage
            else "—",
        ),
    ]
    rows += [(f"attr: {k}", str(v)) for k, v in p.attributes.items()]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    console.print(p.explanation)


@app.command("accounts", help="List accounts matching filters or a name search.")
def accounts_cmd(
    filters: list[str] = FilterOption,
    search: str | None = typer.Option(None, "--search", help="Text in the account id or name"),
    limit: int = typer.Option(50, "--limit", "-n", help="Page size (1–1000)"),
    offset: int = typer.Option(0, "--offset", help="Skip this many"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    parsed = filters_option(filters)
    result = _run(
        database_url,
        lambda s: list_accounts(session=s, filters=parsed, search=search, limit=limit, offset=offset),
    )
    if as_json:
        print_json(result)
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold", max_width=32)
    for col in ("segment", "region", "plan"):
        table.add_column(col)
    table.add_column("ARR", justify="right", no_wrap=True)
    table.add_column("owner")
    table.add_column("status")
    for a in result.items:
        table.add_row(
            a.id,
            a.name,
            a.segment or "—",
            a.region or "—",
            a.plan or "—",
            _money(a.arr),
            a.owner or "—",
            a.status,
        )
    console.print(table)
    console.print(result.explanation)


@app.command("timeline", help="An account's history: tickets, payments, NPS, interactions, renewals.")
def timeline_cmd(
    account_id: str = typer.Argument(..., help="Account id, e.g. ACME-0042"),
    limit: int = typer.Option(50, "--limit", "-n", help="How many events, newest first (1–1000)"),
    since: str | None = typer.Option(None, "--since", help="Only events on or after (YYYY-MM-DD)"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    since_day = date_option(since, "--since")
    t = _run(
        database_url,
        lambda s: account_timeline(session=s, account_id=account_id, limit=limit, since=since_day),
    )
    if as_json:
        print_json(t)
        return
    table = Table(title=f"{t.account_id} — {t.name}")
    table.add_column("date", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("ref")
    table.add_column("summary", overflow="fold")
    for e in t.events:
        table.add_row(e.date.isoformat(), e.kind, e.ref, e.summary)
    console.print(table)
    console.print(t.explanation)


# churn-risk and next-best-action live with the churn tools.
tools_churn.register(app)
tools_service.register(app)
tools_call.register(app)
