"""`valuechain tools churn-risk` and `valuechain tools next-best-action`.

The `tools` command group registers these with `register(app)`.
"""

from __future__ import annotations

import typer
from rich.table import Table

from core.runtime import get_sessionmaker
from tools.churn.scoring import churn_risk
from tools.nba import next_best_action
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


def churn_risk_cmd(
    account_id: str | None = typer.Argument(None, help="One account id; omit to rank accounts"),
    filters: list[str] = typer.Option(
        [], "--filter", help="key=value[,value] on segment/region/plan/industry/owner/status (repeatable)"
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Date (YYYY-MM-DD); default: the data's as-of date"
    ),
    limit: int = typer.Option(20, "--limit", help="Accounts to list"),
    bands: str = typer.Option("0.2,0.5", "--bands", help="Band thresholds: medium_from,high_from"),
    top_drivers: int = typer.Option(3, "--top-drivers", help="Drivers per account"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Churn probability, band, ARR at risk and drivers for one account or a filtered ranking."""
    try:
        low, high = (float(v) for v in bands.split(","))
    except ValueError as exc:
        raise fail(f"--bands takes two probabilities like 0.2,0.5; got {bands!r}", code=2) from exc
    with get_sessionmaker(settings_for(database_url))() as session, tool_errors():
        result = churn_risk(
            session=session,
            account_id=account_id,
            filters=filters_option(filters),
            as_of=date_option(as_of, "--as-of"),
            limit=limit,
            band_thresholds=(low, high),
            top_drivers=top_drivers,
        )
    if as_json:
        print_json(result)
        return
    model = result.model
    if model.method == "rule_based":
        console.print(f"[bold yellow]rule-based health score (fallback):[/] {model.reason}")
    if account_id is not None and result.accounts:
        a = result.accounts[0]
        head = Table(show_header=False, box=None)
        head.add_row("account", f"{a.account_id} — {a.name} ({a.segment or 'no segment'}, {a.status})")
        head.add_row("p(churn in 90 days)", f"{a.probability:.1%} ({a.band})")
        head.add_row("ARR / at risk", f"{a.arr:,.0f} / {a.arr_at_risk:,.0f}")
        head.add_row("health", f"{a.health:.0f} / 100")
        console.print(head)
        drivers = Table("driver", "contribution", "evidence", title="drivers (risk up, then down)")
        for d in [*a.drivers, *a.protective]:
            unit = "pts" if d.unit == "health_points" else "log-odds"
            drivers.add_row(d.feature, f"{d.contribution:+.2f} {unit}", d.phrase)
        console.print(drivers)
    else:
        table = Table("account", "segment", "p(churn)", "band", "ARR", "at risk", "top driver")
        table.columns[0].no_wrap = True
        for a in result.accounts:
            table.add_row(
                a.account_id,
                a.segment or "",
                f"{a.probability:.1%}",
                a.band,
                f"{a.arr:,.0f}",
                f"{a.arr_at_risk:,.0f}",
                a.drivers[0].phrase if a.drivers else "",
            )
        console.print(table)
    console.print(result.explanation)


def next_best_action_cmd(
    account_id: str = typer.Argument(..., help="The account id"),
    limit: int = typer.Option(3, "--limit", help="Actions to return"),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Date (YYYY-MM-DD); default: the data's as-of date"
    ),
    playbook: str | None = typer.Option(
        None, "--playbook", help="Playbook YAML to use instead of the shipped one (default: PLAYBOOK_PATH)"
    ),
    cooldown_days: int = typer.Option(
        30, "--cooldown-days", help="Suppress actions proposed/approved this recently"
    ),
    rejection_days: int = typer.Option(
        90, "--rejection-days", help="Suppress actions rejected this recently"
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Rank playbook actions for one account by expected value, with evidence and suppressions."""
    settings = settings_for(database_url)
    if playbook is None and settings.playbook_path is not None:
        playbook = str(settings.playbook_path)
    with get_sessionmaker(settings)() as session, tool_errors():
        result = next_best_action(
            session=session,
            account_id=account_id,
            limit=limit,
            as_of=date_option(as_of, "--as-of"),
            playbook_path=playbook,
            cooldown_days=cooldown_days,
            rejection_days=rejection_days,
        )
    if as_json:
        print_json(result)
        return
    table = Table("#", "action", "kind", "activity", "EV", "cost", "evidence")
    table.columns[1].no_wrap = True
    for rank, a in enumerate(result.actions, start=1):
        table.add_row(
            str(rank),
            a.action,
            a.kind,
            a.activity,
            f"{a.expected_value:,.0f}",
            f"{a.cost:,.0f}",
            "; ".join(dict.fromkeys(e.phrase for e in a.evidence)),
        )
    console.print(table)
    if result.suppressed:
        sup = Table("suppressed action", "eligible", "reason")
        for s in result.suppressed:
            sup.add_row(s.action, "yes" if s.eligible else "no", s.reason)
        console.print(sup)
    console.print(result.explanation)


def register(app: typer.Typer) -> None:
    """Add the churn tools to a `tools` command group."""
    app.command("churn-risk")(churn_risk_cmd)
    app.command("next-best-action")(next_best_action_cmd)
