"""`valuechain outcomes report`: did the approved interventions work? (issue #21, docs/OUTCOMES.md)"""

from __future__ import annotations

import typer
from rich.table import Table

from core.runtime import get_sessionmaker
from tools.outcomes.report import Interval, outcomes_report
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    console,
    date_option,
    print_json,
    settings_for,
    tool_errors,
)

app = typer.Typer(no_args_is_help=True)


def _pct(i: Interval | None) -> str:
    if i is None:
        return "—"
    return f"{i.estimate:+.1%} [{i.low:+.1%}, {i.high:+.1%}]"


def _rate(i: Interval | None, n: int) -> str:
    return "—" if i is None else f"{i.estimate:.1%} of {n}"


@app.command("report", help="Attribution per action: funnel, 90-day outcome treated vs holdout, uplift.")
def report_cmd(
    segment: str | None = typer.Option(None, "--segment", help="SMB, Mid-Market or Enterprise"),
    approver: str | None = typer.Option(None, "--approver", help="Only recommendations this user approved"),
    period_from: str | None = typer.Option(None, "--from", help="First day (YYYY-MM-DD)"),
    period_to: str | None = typer.Option(None, "--to", help="Last day (YYYY-MM-DD)"),
    as_of: str | None = typer.Option(None, "--as-of", help="Report as of this date (default: the data's)"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    settings = settings_for(database_url)
    playbook = str(settings.playbook_path) if settings.playbook_path is not None else None
    with get_sessionmaker(settings)() as session, tool_errors():
        report = outcomes_report(
            session=session,
            segment=segment,
            approver=approver,
            period_from=date_option(period_from, "--from"),
            period_to=date_option(period_to, "--to"),
            as_of=date_option(as_of, "--as-of"),
            playbook_path=playbook,
        )
    if as_json:
        print_json(report)
        return
    columns = ["action", "proposed", "approved", "executed", "90-day churn or win: treated / holdout",
               "uplift [95%] (growth: win-rate difference)"]
    if report.demo_truth:  # a demo with simulated interventions: the truth beside the estimate
        columns.append("true (demo)")
    table = Table(*columns, "learned")
    for a in report.actions:
        e = a.learned
        truth = ["—" if a.true_effect is None else f"{a.true_effect:g}"] if report.demo_truth else []
        table.add_row(
            a.action,
            str(a.proposals),
            "—" if a.approval_rate is None else f"{a.approval_rate:.0%}",
            str(a.executions),
            f"{_rate(a.treated.rate, a.treated.n)} / {_rate(a.holdout.rate, a.holdout.n)}",
            _pct(a.uplift) if a.kind == "retention" else _pct(a.difference),
            *truth,
            f"{e.learned:.3f} (prior {e.prior:g}, n {e.n_treated}/{e.n_holdout})",
        )
    console.print(table)
    rejected = {a.action: a.rejection_reasons for a in report.actions if a.rejection_reasons}
    for action, reasons in rejected.items():
        console.print(f"rejections of {action}: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    console.print(f"as of {report.as_of}. {report.method}")
