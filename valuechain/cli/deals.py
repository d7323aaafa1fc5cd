"""`valuechain deals train|report`: train and inspect the deal (win) model."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table
from rich.text import Text

from core.db import session_scope
from core.runtime import get_sessionmaker
from tools.deals.model import DealModelReport, active_deal_model, train_deal_model
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    console,
    date_option,
    fail,
    print_json,
    settings_for,
    tool_errors,
)

app = typer.Typer(no_args_is_help=True)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _print(report: DealModelReport) -> None:
    if not report.trained:
        console.print(Text(f"no deal model trained: {report.reason}"), soft_wrap=True)
        console.print(
            "deal_score and pipeline_health use the stage table (tools/pipeline/stage_probabilities.yaml)"
        )
        return
    console.print(
        Text(
            f"deal model {report.model_version} ({report.method}, {report.population} deals, as of {report.as_of}): "
            f"holdout AUC {_fmt(report.auc)}, Brier {_fmt(report.brier)} (won share {_fmt(report.base_rate)})"
        ),
        soft_wrap=True,
    )
    console.print(Text(report.reason), soft_wrap=True)
    console.print(Text(report.evaluation), soft_wrap=True)
    grid = Table("candidate", "chosen", "holdout AUC", "Brier", "Brier (raw)", "columns", "seconds")
    for c in report.candidates:
        grid.add_row(
            c.method, "yes" if c.chosen else "", _fmt(c.auc), _fmt(c.brier), _fmt(c.brier_uncalibrated),
            str(c.features), f"{c.seconds:.1f}",
        )  # fmt: skip
    console.print(grid)
    console.print(
        f"rows: {report.n_train:,} training ({report.deals_train:,} deals), "
        f"{report.n_test:,} holdout ({report.deals_test:,} deals)"
    )
    calib = Table("decile", "n", "mean predicted", "observed won", title="holdout calibration")
    for b in report.calibration:
        calib.add_row(str(b.decile), str(b.n), _fmt(b.mean_predicted), _fmt(b.observed_rate))
    console.print(calib)
    console.print("top drivers: " + ", ".join(f"{g} {w:.3f}" for g, w in report.top_drivers))
    for note in report.notes:
        console.print(Text(f"note: {note}"), soft_wrap=True)


@app.command(
    "train", help="Train the deal model on closed won/lost deals (time-based holdout) and make it active."
)
def train_cmd(
    as_of: str | None = typer.Option(
        None, "--as-of", help="Date (YYYY-MM-DD); default: the data's as-of date"
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    day = date_option(as_of, "--as-of")
    factory = get_sessionmaker(settings_for(database_url))
    with tool_errors(), session_scope(factory) as session:
        report = train_deal_model(session, now=dt.datetime.now(dt.UTC).replace(tzinfo=None), as_of=day)
    if as_json:
        print_json(report)
        return
    _print(report)


@app.command("report", help="Show the active deal model's holdout evaluation.")
def report_cmd(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    with get_sessionmaker(settings_for(database_url))() as session:
        model = active_deal_model(session)
    if model is None:
        raise fail("no deal model has been trained yet; run `valuechain deals train`")
    report = DealModelReport.model_validate(model.metrics)
    if as_json:
        print_json(report)
        return
    _print(report)
