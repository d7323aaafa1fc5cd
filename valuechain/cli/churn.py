"""`valuechain churn train|report|score`: train and inspect the churn model, keep score snapshots."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table
from rich.text import Text

from core.db import session_scope
from core.runtime import get_sessionmaker
from tools.churn.candidates import CANDIDATES
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


def _settings_text(settings: dict[str, object]) -> str:
    """Fixed settings, and which grid setting each split's inner tuning picked."""
    parts = [f"{k} {v}" for k, v in settings.items() if k not in ("grid", "picked_per_split")]
    picked = settings.get("picked_per_split")
    if isinstance(picked, list):
        parts.append(
            "picked: "
            + "; ".join(
                f"leaves {p.get('num_leaves')}/{p.get('trees')} trees" for p in picked if isinstance(p, dict)
            )
        )
    return ", ".join(parts)


def _print_report(report: object) -> None:
    if not isinstance(report, ChurnModelReport):  # pragma: no cover - typed by the callers
        raise TypeError(type(report))
    summary = Table("", "", show_header=False)
    summary.add_row("model version", report.model_version)
    summary.add_row("method", report.method + (" (FALLBACK)" if report.method == "rule_based" else ""))
    if report.choice:
        summary.add_row("why this model", Text(report.choice))
    summary.add_row("source", report.source)
    summary.add_row("data as of", str(report.as_of or "— (undated attributes)"))
    if report.population:
        summary.add_row("population", f"{report.population} accounts")
    if report.reason:
        summary.add_row("reason", Text(report.reason))
    auc = _fmt(report.auc)
    if report.auc_std is not None:
        auc += f" ± {report.auc_std:.3f}"
    summary.add_row("AUC", auc)
    brier = _fmt(report.brier)
    if report.brier_uncalibrated is not None:
        brier += f" (uncalibrated {report.brier_uncalibrated:.3f})"
    summary.add_row("Brier", brier)
    if report.calibration_fit:
        fit = report.calibration_fit
        summary.add_row(
            "calibration", f"Platt: p = sigmoid({fit['slope']:.3f} × raw log-odds {fit['intercept']:+.3f})"
        )
    summary.add_row("top-decile lift", _fmt(report.top_decile_lift, 2))
    if report.rule_based_auc is not None:
        summary.add_row("rule-based AUC (same rows)", _fmt(report.rule_based_auc))
    rows = f"{report.n_train:,}" + (f" train / {report.n_test:,} test" if report.n_test else "")
    summary.add_row("rows", rows)
    summary.add_row("positives", f"{report.positives:,}")
    if report.c is not None:
        summary.add_row("C (inverse L2)", f"{report.c:g}")
    summary.add_row("features", str(report.features))
    summary.add_row("evaluation", Text(report.evaluation))  # plain text: no rich markup in [brackets]
    console.print(summary)
    if report.population_note:
        console.print(Text(f"note: {report.population_note}"), soft_wrap=True)
    if report.candidates:
        cands = Table(
            "candidate",
            "AUC",
            "Brier",
            "uncalibrated Brier",
            "features",
            "settings",
            "seconds",
            title="candidates (same evaluation rows)",
        )
        for cand in report.candidates:
            auc = _fmt(cand.auc, 4) + (f" ± {cand.auc_std:.4f}" if cand.auc_std is not None else "")
            cands.add_row(
                cand.method + (" (chosen)" if cand.chosen else ""),
                auc,
                _fmt(cand.brier, 4),
                _fmt(cand.brier_uncalibrated, 4),
                str(cand.features),
                Text(_settings_text(cand.settings)),
                f"{cand.seconds:.1f}",
            )
        console.print(cands)
    if report.calibration:
        cal = Table("decile", "n", "mean predicted", "observed", title="calibration (reliability by decile)")
        for b in report.calibration:
            cal.add_row(str(b.decile), f"{b.n:,}", f"{b.mean_predicted:.3f}", f"{b.observed_rate:.3f}")
        console.print(cal)
    if report.top_coefficients:
        coefs = Table("feature", "coefficient (per std)", title="largest coefficients")
        for name, coef in report.top_coefficients:
            coefs.add_row(name, f"{coef:+.3f}")
        console.print(coefs)
    if report.feature_importance:
        gains = Table("driver group", "share of split gain", title="boosted trees: feature importance")
        for name, share in report.feature_importance:
            gains.add_row(name, f"{share:.1%}")
        console.print(gains)
    if report.attributes:
        used = Table("custom field", "used as", "distinct", "why", title="custom fields")
        for a in report.attributes:
            used.add_row(Text(a.name), a.kind, f"{a.distinct:,}", Text(a.reason))
        console.print(used)


@app.command(
    "train", help="Train a churn model (history snapshots or imported attributes) and make it active."
)
def train_cmd(
    source: str | None = typer.Option(
        None, "--source", help="history | attributes; default: detected from what the database holds"
    ),
    as_of: str | None = AsOfOption,
    c: float = typer.Option(0.1, "--c", min=1e-6, help="Inverse L2 regularisation strength"),
    candidate: list[str] = typer.Option(
        [],
        "--candidate",
        help="Model family to evaluate (repeatable): logistic_regression, gradient_boosting; default: both",
    ),
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
            candidates=tuple(candidate) or CANDIDATES,  # type: ignore[arg-type]
        )
    if as_json:
        print_json(report)
        return
    _print_report(report)


@app.command(
    "report",
    help="Show the active churn model's evaluation: candidates, AUC, Brier, calibration, lift, custom fields.",
)
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
