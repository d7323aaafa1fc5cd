"""`valuechain churn train|report|score`: train and inspect the churn model, keep score snapshots."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table
from rich.text import Text

from core.db import session_scope
from core.runtime import get_sessionmaker
from tools.churn.model import load_model_report, train
from tools.churn.schemas import ChurnModelReport
from tools.churn.scoring import write_score_snapshot
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

AsOfOption = typer.Option(None, "--as-of", help="Date (YYYY-MM-DD); default: the data's as-of date")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _print_report(report: object) -> None:
    if not isinstance(report, ChurnModelReport):  # pragma: no cover - typed by the callers
        raise TypeError(type(report))
    summary = Table("", "", show_header=False)
    summary.add_row("model version", report.model_version)
    summary.add_row("method", report.method + (" (FALLBACK)" if report.method == "rule_based" else ""))
    summary.add_row("source", report.source)
    summary.add_row("data as of", str(report.as_of or "— (undated attributes)"))
    if report.reason:
        summary.add_row("reason", report.reason)
    auc = _fmt(report.auc)
    if report.auc_std is not None:
        auc += f" ± {report.auc_std:.3f}"
    summary.add_row("AUC", auc)
    summary.add_row("Brier", _fmt(report.brier))
    summary.add_row("top-decile lift", _fmt(report.top_decile_lift, 2))
    if report.rule_based_auc is not None:
        summary.add_row("rule-based AUC (same rows)", _fmt(report.rule_based_auc))
    rows = f"{report.n_train:,}" + (f" train / {report.n_test:,} test" if report.n_test else "")
    summary.add_row("rows", rows)
    summary.add_row("positives", f"{report.positives:,}")
    if report.c is not None:
        summary.add_row("C (inverse L2)", f"{report.c:g}")
    summary.add_row("features", str(report.features))
    summary.add_row("evaluation", report.evaluation)
    console.print(summary)
    if report.calibration:
        cal = Table("decile", "n", "mean predicted", "observed", title="calibration")
        for b in report.calibration:
            cal.add_row(str(b.decile), f"{b.n:,}", f"{b.mean_predicted:.3f}", f"{b.observed_rate:.3f}")
        console.print(cal)
    if report.top_coefficients:
        coefs = Table("feature", "coefficient (per std)", title="largest coefficients")
        for name, coef in report.top_coefficients:
            coefs.add_row(name, f"{coef:+.3f}")
        console.print(coefs)


@app.command(
    "train", help="Train a churn model (history snapshots or imported attributes) and make it active."
)
def train_cmd(
    source: str | None = typer.Option(
        None, "--source", help="history | attributes; default: detected from what the database holds"
    ),
    as_of: str | None = AsOfOption,
    c: float = typer.Option(0.1, "--c", min=1e-6, help="Inverse L2 regularisation strength"),
    exclude_attribute: list[str] = typer.Option(
        [], "--exclude-attribute", help="Custom field never to use (repeatable)"
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    if source not in (None, "history", "attributes"):
        raise fail(f"--source must be history or attributes; got {source!r}", code=2)
    day = date_option(as_of, "--as-of")
    factory = get_sessionmaker(settings_for(database_url))
    with tool_errors(), session_scope(factory) as session:
        report = train(
            session,
            now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            source=source,  # type: ignore[arg-type]
            as_of=day,
            c=c,
            exclude_attributes=exclude_attribute,
        )
    if as_json:
        print_json(report)
        return
    _print_report(report)


@app.command("report", help="Show the active churn model's evaluation: AUC, Brier, calibration, lift.")
def report_cmd(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    with get_sessionmaker(settings_for(database_url))() as session:
        report = load_model_report(session)
    if report is None:
        raise fail("no churn model has been trained yet; run `valuechain churn train`")
    if as_json:
        print_json(report)
        return
    _print_report(report)


@app.command("score", help="Keep a churn-score snapshot of every active account as of a date (churn_scores).")
def score_cmd(
    as_of: str | None = AsOfOption,
    rebuild: bool = typer.Option(
        False,
        "--rebuild",
        help="Read the churn features from the event tables and rebuild the kept feature state "
        "(after changing event rows outside `valuechain import`)",
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    day = date_option(as_of, "--as-of")
    with tool_errors(), session_scope(get_sessionmaker(settings_for(database_url))) as session:
        result = write_score_snapshot(session, as_of=day, rebuild=rebuild)
    if as_json:
        print_json(result)
        return
    console.print(
        f"kept {result.accounts:,} scores as of {result.as_of} with {result.model_version} "
        f"({result.method}); replaced {result.replaced:,} earlier rows"
    )
    console.print(", ".join(f"{k}: {v:,}" for k, v in result.band_counts.items()))
    how = {
        "built": "read from the event tables; feature state kept for the next run",
        "advanced": "kept feature state moved on with the rows dated since it",
        "current": "kept feature state already at this date",
        "read": "read from the event tables",
    }[result.features]
    note = f" ({result.features_note})" if result.features_note else ""
    console.print(Text(f"features: {how}{note}"), soft_wrap=True)
