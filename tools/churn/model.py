"""Training, versioning and loading of churn models.

Two training paths:

- **history** (the CRM has usage, tickets, invoices, ...): monthly point-in-time snapshots
  (month ends up to ``as_of − 90 days``), label = churned within 90 days after the
  snapshot, only accounts active at the snapshot. Time-based holdout: the last
  ``holdout`` snapshots are the test window; training uses only snapshots whose 90-day
  label window ends on or before the first test snapshot, so no training label peeks into
  the test period. The deployed model is refit on all snapshots with the same settings; the
  stored metrics are those of the holdout fit.
- **attributes** (an imported export with custom fields and a churned/active status):
  label = status churned, 5-fold *stratified* cross-validation (shuffled, seed 0) with
  imputation, categories and standardisation fitted inside each fold; reported AUC is the
  mean ± std of the fold AUCs; the deployed model is refit on all rows.

Candidates on both paths (``tools/churn/candidates.py``): L2 logistic regression (lbfgs,
``C = 0.1``, ``random_state = 0``) on standardised columns, and LightGBM boosted trees with a
fixed grid tuned on an inner split of each fit's own training rows (nested: the outer test
rows never tune anything; ``tools/churn/boosted.py``). The highest mean AUC wins; the trees
must beat the logistic model by more than 0.002, else the simpler model is kept. The chosen
model's raw log-odds are Platt-calibrated (``tools/churn/calibration.py``) on its
out-of-fold / holdout scores. With fewer than 50 positive labels or 200 labelled rows the
documented rule-based health score (``tools/churn/rules.py``) is stored instead, and every
output says so.

A model's version is a hash of its settings and of the training data (design matrix and
labels), so retraining on the same data yields the same version, and new data a new one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from crm.models import Account, ChurnModel, Invoice, Subscription, SupportTicket, UsageWeekly
from tools.churn.active import ActiveModel, load_active_model, load_model_report  # noqa: F401 (re-exported)
from tools.churn.attributes import attribute_kinds, classify_attributes
from tools.churn.boosted import BASE_PARAMS, GRID, BoostedModel, grid_description
from tools.churn.candidates import (
    CANDIDATES,
    TIE_MARGIN,
    Evaluation,
    Selection,
    candidate_fits,
    select_model,
)
from tools.churn.design import DesignConfig, LinearModel, design_matrix, fit_linear
from tools.churn.features import (
    ATTR_PREFIX,
    CATEGORICAL_FEATURES,
    CODE_SUFFIX,
    NUMERIC_FEATURES,
    AccountScope,
    FeatureTable,
    account_frame,
    active_on,
    attribute_columns,
    compute_features,
    load_attributes,
)
from tools.churn.metrics import evaluate, roc_auc
from tools.churn.population import record_population, training_population
from tools.churn.rules import RULES_VERSION, rule_probability
from tools.churn.schemas import (
    AttributeUse,
    Candidate,
    ChurnModelReport,
    EvaluationMetrics,
    Method,
    Source,
)
from tools.common import data_as_of
from tools.errors import ToolInputError

HORIZON_DAYS = 90
MIN_POSITIVES = 50
MIN_ROWS = 200
DEFAULT_C = 0.1
N_SNAPSHOTS = 12
HOLDOUT_SNAPSHOTS = 3
CV_FOLDS = 5
MAX_CATEGORIES = 20
USAGE_LOOKBACK_DAYS = 90  # a snapshot needs ~12 weeks of usage before it

HISTORY_CLIPS: dict[str, tuple[float | None, float | None]] = {
    "usage_trend": (-1.0, 2.0),
    "seat_utilisation": (0.0, 1.5),
    "days_since_interaction": (0.0, 365.0),
    "open_tickets_urgent": (0.0, 10.0),
    "open_tickets_high": (0.0, 10.0),
    "open_tickets_medium": (0.0, 10.0),
    "open_tickets_low": (0.0, 10.0),
    "csat_median": (1.0, 5.0),
    "invoices_failed_180d": (0.0, 6.0),
    "invoices_late_180d": (0.0, 6.0),
    "nps_last": (0.0, 10.0),
    "tenure_days": (0.0, 3650.0),
    "days_to_renewal": (-120.0, 730.0),
    "discount": (0.0, 1.0),
}


def _attribute_sources(
    attribute_kinds: Mapping[str, str],
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """Numeric and categorical sources of the custom fields; a code field is both (its category
    copy ``attr:<key>#code`` in the same driver group as the number)."""
    items = sorted(attribute_kinds.items())
    numeric = tuple(ATTR_PREFIX + k for k, v in items if v in ("numeric", "code"))
    categorical = tuple(ATTR_PREFIX + k for k, v in items if v == "categorical")
    codes = tuple(ATTR_PREFIX + k + CODE_SUFFIX for k, v in items if v == "code")
    groups = {ATTR_PREFIX + k + CODE_SUFFIX: ATTR_PREFIX + k for k, v in items if v == "code"}
    return numeric, categorical + codes, groups


def history_config(attribute_kinds: Mapping[str, str]) -> DesignConfig:
    attr_num, attr_cat, groups = _attribute_sources(attribute_kinds)
    return DesignConfig(
        numeric=NUMERIC_FEATURES + attr_num,
        categorical=CATEGORICAL_FEATURES + attr_cat,
        groups=groups,
        clips=HISTORY_CLIPS,
        log1p=("tenure_days",),
        log1p_auto=attr_num,
        bands={"days_to_renewal": ((0.0, 90.0),)},
        winsorize=attr_num,
        max_categories=MAX_CATEGORIES,
    )


def attributes_config(attribute_kinds: Mapping[str, str]) -> DesignConfig:
    attr_num, attr_cat, groups = _attribute_sources(attribute_kinds)
    return DesignConfig(
        numeric=attr_num,
        categorical=attr_cat,
        groups=groups,
        log1p_auto="all",
        winsorize="auto",
        max_categories=MAX_CATEGORIES,
    )


# --------------------------------------------------------------------------- data


def detect_source(session: Session, scope: AccountScope = AccountScope()) -> Source:
    """`history` when the CRM holds event history (usage, subscriptions, tickets, invoices), else `attributes`."""
    for table in (UsageWeekly, Subscription, SupportTicket, Invoice):
        rows = select(table).where(*scope.restrict(table.account_id)).limit(1)
        if session.scalar(select(func.count()).select_from(rows.subquery())):
            return "history"
    return "attributes"


def discover_attribute_kinds(
    attrs: Sequence[Mapping[str, Any]], *, exclude: Sequence[str] = ()
) -> tuple[dict[str, str], list[str], list[AttributeUse]]:
    """Per custom field: numeric, categorical, code, or excluded — and why (tools/churn/attributes.py)."""
    uses = classify_attributes(attrs, exclude=exclude)
    kinds, skipped = attribute_kinds(uses)
    return kinds, skipped, uses


def month_end(year: int, month: int) -> dt.date:
    first_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


def snapshot_dates(
    as_of: dt.date, earliest: dt.date | None, *, n: int = N_SNAPSHOTS, horizon: int = HORIZON_DAYS
) -> list[dt.date]:
    """Month ends whose label window (snapshot + horizon) ends by `as_of`, oldest first."""
    latest = as_of - dt.timedelta(days=horizon)
    year, month = latest.year, latest.month
    if month_end(year, month) > latest:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    out: list[dt.date] = []
    while len(out) < n:
        day = month_end(year, month)
        if earliest is not None and day - dt.timedelta(days=USAGE_LOOKBACK_DAYS) < earliest:
            break
        out.append(day)
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return sorted(out)


def _earliest_history(session: Session, scope: AccountScope = AccountScope()) -> dt.date | None:
    first_usage = session.scalar(
        select(func.min(UsageWeekly.week_start)).where(*scope.restrict(UsageWeekly.account_id))
    )
    if first_usage is not None:
        return first_usage
    return session.scalar(select(func.min(Account.created_at)).where(*scope.conditions()))


def history_dataset(
    session: Session,
    snapshots: Sequence[dt.date],
    attribute_kinds: Mapping[str, str],
    *,
    horizon: int = HORIZON_DAYS,
    population: AccountScope = AccountScope(),
) -> tuple[FeatureTable, np.ndarray]:
    """Stacked snapshot features and labels (churned within `horizon` days after the snapshot)."""
    tables: list[FeatureTable] = []
    labels: list[np.ndarray] = []
    dateless_churn = and_(Account.status == "churned", Account.churned_at.is_(None))
    for day in snapshots:
        scope = AccountScope(where=(*population.where, *active_on(day), ~dateless_churn))
        table = compute_features(session, day, scope, history=True, attribute_kinds=attribute_kinds)
        churned = table.numeric["account_churned_at"]
        start = float(day.toordinal())
        with np.errstate(invalid="ignore"):
            labels.append((churned > start) & (churned <= start + horizon))
        tables.append(table)
    y = np.concatenate(labels) if labels else np.zeros(0, dtype=bool)
    return FeatureTable.concat(tables), y


# --------------------------------------------------------------------------- training


def _fingerprint(payload: Mapping[str, Any], *arrays: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _top_coefficients(model: LinearModel, k: int = 12) -> list[tuple[str, float]]:
    pairs = list(zip(model.feature_names, (float(c) for c in model.coefs), strict=True))
    pairs.sort(key=lambda p: (-abs(p[1]), p[0]))
    return pairs[:k]


def _store(
    session: Session,
    *,
    version: str,
    method: Method,
    source: Source,
    as_of: dt.date | None,
    params: dict[str, Any],
    report: ChurnModelReport,
    now: dt.datetime,
) -> None:
    session.execute(update(ChurnModel).where(ChurnModel.active.is_(True)).values(active=False))
    row = session.get(ChurnModel, version)
    metrics = report.model_dump(mode="json")
    if row is None:
        session.add(
            ChurnModel(
                version=version,
                created_at=now,
                method=method,
                source=source,
                as_of=as_of,
                active=True,
                params=params,
                metrics=metrics,
            )
        )
    else:
        row.active = True
        row.metrics = metrics
    session.flush()


def _rule_fallback(
    session: Session,
    *,
    source: Source,
    as_of: dt.date | None,
    reason: str,
    table: FeatureTable,
    labels: np.ndarray,
    now: dt.datetime,
    snapshots: Sequence[dt.date] = (),
    attributes: Sequence[AttributeUse] = (),
) -> ChurnModelReport:
    probs = rule_probability(table) if source == "history" and len(table) else np.zeros(len(table))
    metrics: EvaluationMetrics | None = evaluate(labels, probs) if len(table) else None
    digest = _fingerprint(
        {"method": "rule_based", "rules": RULES_VERSION, "source": source, "reason": reason}, labels
    )
    version = f"rules-{source}-{digest[:12]}"
    report = ChurnModelReport(
        model_version=version,
        method="rule_based",
        source=source,
        as_of=as_of,
        reason=reason,
        auc=metrics.auc if metrics else None,
        brier=metrics.brier if metrics else None,
        top_decile_lift=metrics.top_decile_lift if metrics else None,
        n_train=len(table),
        positives=int(labels.sum()),
        evaluation="rule-based health score on all labelled rows (nothing is fitted)",
        features=0,
        snapshots=list(snapshots),
        calibration=metrics.calibration if metrics else [],
        calibration_method="none",
        skipped_attributes=[a.name for a in attributes if a.kind == "excluded"],
        attributes=list(attributes),
    )
    params = {"rules_version": RULES_VERSION, "reason": reason, "attribute_kinds": {}}
    _store(
        session,
        version=version,
        method="rule_based",
        source=source,
        as_of=as_of,
        params=params,
        report=report,
        now=now,
    )
    return report


def _too_little(n_rows: int, positives: int, what: str) -> str | None:
    if positives < MIN_POSITIVES or n_rows < MIN_ROWS:
        return (
            f"too little labelled history to train a model: {n_rows} {what} with {positives} churned "
            f"(need ≥ {MIN_ROWS} and ≥ {MIN_POSITIVES}); using the rule-based health score"
        )
    return None


_PREFIX: dict[str, str] = {"logistic_regression": "lr", "gradient_boosting": "gbm"}


def _selection_fields(
    selection: Selection, *, c: float, single_split: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Report fields and version settings shared by both paths, from a candidate selection."""
    chosen, metrics, deployed = selection.chosen, selection.metrics, selection.deployed
    fields: dict[str, Any] = {
        "method": chosen.method,
        "auc": chosen.auc,
        "auc_std": None if single_split else chosen.auc_std,
        "brier": metrics.calibrated.brier,
        "brier_uncalibrated": metrics.raw.brier,
        "top_decile_lift": metrics.raw.top_decile_lift,
        "fold_aucs": [] if single_split else chosen.split_aucs,
        "calibration": metrics.calibrated.calibration,
        "calibration_method": "platt",
        "calibration_fit": {
            "slope": selection.calibration.slope,
            "intercept": selection.calibration.intercept,
        },
        "candidates": selection.results,
        "choice": selection.why,
        "features": len(deployed.columns),
        "c": c if chosen.method == "logistic_regression" else None,
        "top_coefficients": _top_coefficients(deployed) if isinstance(deployed, LinearModel) else [],
        "feature_importance": deployed.importance() if isinstance(deployed, BoostedModel) else [],
    }
    settings: dict[str, Any] = {
        "method": chosen.method,
        "candidates": [r.method for r in selection.runs],
        "c": c,
        "tie_margin": TIE_MARGIN,
        "calibration": "platt",
        "features": deployed.feature_names,
    }
    if isinstance(deployed, BoostedModel):
        settings["grid"] = list(GRID)
        settings["boosting"] = {k: v for k, v in BASE_PARAMS.items() if k != "num_threads"}
    return fields, settings


def _candidate_text(names: Sequence[Candidate]) -> str:
    parts = [
        "L2 logistic regression (C fixed)" if n == "logistic_regression" else grid_description()
        for n in names
    ]
    return (
        "candidates: "
        + "; ".join(parts)
        + (
            f". Chosen: highest mean AUC; boosted trees must win by more than {TIE_MARGIN}, else the "
            "logistic model is kept"
            if len(names) > 1
            else ""
        )
    )


def _store_trained(
    session: Session,
    *,
    source: Source,
    as_of: dt.date | None,
    now: dt.datetime,
    selection: Selection,
    settings: dict[str, Any],
    table: FeatureTable,
    labels: np.ndarray,
    kinds: Mapping[str, str],
    report_fields: dict[str, Any],
) -> ChurnModelReport:
    deployed = selection.deployed
    method = selection.chosen.method
    x = design_matrix(table, deployed.columns)
    version = f"{_PREFIX[method]}-{source}-{_fingerprint(settings, x, labels)[:12]}"
    report = ChurnModelReport(model_version=version, source=source, as_of=as_of, **report_fields)
    params = {
        **deployed.to_params(),
        "attribute_kinds": dict(kinds),
        "settings": settings,
        "calibration": selection.calibration.to_params(),
    }
    _store(
        session,
        version=version,
        method=method,
        source=source,
        as_of=as_of,
        params=params,
        report=report,
        now=now,
    )
    return report


def train_history(
    session: Session,
    *,
    as_of: dt.date,
    now: dt.datetime,
    c: float = DEFAULT_C,
    n_snapshots: int = N_SNAPSHOTS,
    holdout: int = HOLDOUT_SNAPSHOTS,
    exclude_attributes: Sequence[str] = (),
    scope: AccountScope = AccountScope(),
    candidates: Sequence[Candidate] = CANDIDATES,
) -> ChurnModelReport:
    """Train on monthly point-in-time snapshots; candidates judged on a later time window."""
    snapshots = snapshot_dates(as_of, _earliest_history(session, scope), n=n_snapshots)
    attrs = load_attributes(session, scope, *_all_index(session, scope))
    kinds, skipped, uses = discover_attribute_kinds(attrs, exclude=exclude_attributes)
    table, y = history_dataset(session, snapshots, kinds, population=scope)
    reason = _too_little(len(table), int(y.sum()), "account snapshots")
    if reason:
        return _rule_fallback(
            session,
            source="history",
            as_of=as_of,
            reason=reason,
            table=table,
            labels=y,
            now=now,
            snapshots=snapshots,
            attributes=uses,
        )
    config = history_config(kinds)
    test_snaps = snapshots[-holdout:] if len(snapshots) > holdout else []
    train_snaps = [
        s for s in snapshots if test_snaps and s + dt.timedelta(days=HORIZON_DAYS) <= test_snaps[0]
    ]
    ordinals = np.array([s.toordinal() for s in snapshots])
    train_mask = np.isin(table.as_of, ordinals[[s in train_snaps for s in snapshots]])
    test_mask = np.isin(table.as_of, ordinals[[s in test_snaps for s in snapshots]])
    holdout_ok = bool(train_snaps) and y[train_mask].any() and y[test_mask].any() and (~y[train_mask]).any()
    common = {
        "n_train": len(table),
        "n_test": 0,
        "positives": int(y.sum()),
        "snapshots": snapshots,
        "train_snapshots": snapshots,
        "skipped_attributes": skipped,
        "attributes": uses,
    }
    if not holdout_ok:
        # no later window to judge candidates on: the logistic model alone, metrics in-sample
        model = fit_linear(table, y, config, c=c)
        metrics = evaluate(y, model.probability(table))
        settings = {
            "method": "logistic_regression",
            "source": "history",
            "c": c,
            "horizon_days": HORIZON_DAYS,
            "snapshots": [s.isoformat() for s in snapshots],
            "holdout": holdout,
            "features": model.feature_names,
        }
        x = design_matrix(table, model.columns)
        version = f"lr-history-{_fingerprint(settings, x, y)[:12]}"
        report = ChurnModelReport(
            model_version=version,
            method="logistic_regression",
            source="history",
            as_of=as_of,
            auc=metrics.auc,
            brier=metrics.brier,
            top_decile_lift=metrics.top_decile_lift,
            c=c,
            evaluation="no time-based holdout possible (too few snapshots): the logistic model alone "
            "(no candidate choice), metrics in-sample, no calibration",
            features=len(model.columns),
            rule_based_auc=roc_auc(y, rule_probability(table)),
            calibration=metrics.calibration,
            calibration_method="none",
            top_coefficients=_top_coefficients(model),
            **common,
        )
        params = {**model.to_params(), "attribute_kinds": kinds, "settings": settings}
        _store(
            session,
            version=version,
            method="logistic_regression",
            source="history",
            as_of=as_of,
            params=params,
            report=report,
            now=now,
        )
        return report
    train_idx, test_idx = np.flatnonzero(train_mask), np.flatnonzero(test_mask)
    evaluation = Evaluation(splits=[(train_idx, test_idx)], calibration_groups=table.as_of)
    fits = candidate_fits(candidates, linear=config, trees=config, c=c)
    selection = select_model(table, y, evaluation, fits, groups=table.ids, fixed=_fixed(c))
    fields, settings = _selection_fields(selection, c=c, single_split=True)
    settings.update(
        source="history",
        horizon_days=HORIZON_DAYS,
        snapshots=[s.isoformat() for s in snapshots],
        holdout=holdout,
    )
    common.update(n_train=len(train_idx), n_test=len(test_idx), train_snapshots=train_snaps)
    evaluation_text = (
        f"time-based holdout: every candidate trained on {len(train_snaps)} snapshots "
        f"{train_snaps[0]}..{train_snaps[-1]} and tested on {len(test_snaps)} later snapshots "
        f"{test_snaps[0]}..{test_snaps[-1]}; training label windows end before the test window; "
        f"{_candidate_text(list(fits))}; boosted-tree tuning uses an inner split of the training "
        "snapshots grouped by account; AUC and lift on raw scores; the calibration table is of "
        "Platt-calibrated probabilities, each test snapshot calibrated by a fit on the other test "
        "snapshots; the deployed model is refit on all snapshots with the same settings, its Platt calibration "
        "fitted on all holdout scores"
    )
    return _store_trained(
        session,
        source="history",
        as_of=as_of,
        now=now,
        selection=selection,
        settings=settings,
        table=table,
        labels=y,
        kinds=kinds,
        report_fields={
            **fields,
            **common,
            "evaluation": evaluation_text,
            "test_snapshots": test_snaps,
            "rule_based_auc": roc_auc(y[test_idx], rule_probability(table.take(test_idx))),
        },
    )


def _fixed(c: float) -> dict[Candidate, dict[str, Any]]:
    return {
        "logistic_regression": {"c": c},
        "gradient_boosting": {"grid": list(GRID), "learning_rate": BASE_PARAMS["learning_rate"]},
    }


def _all_index(session: Session, scope: AccountScope = AccountScope()) -> tuple[dict[str, int], int]:
    ids = session.scalars(select(Account.id).where(*scope.conditions()).order_by(Account.id)).all()
    return {a: i for i, a in enumerate(ids)}, len(ids)


def attribute_table(
    session: Session,
    as_of: dt.date | None,
    *,
    exclude: Sequence[str] = (),
    scope: AccountScope = AccountScope(),
) -> tuple[FeatureTable, np.ndarray, dict[str, str], list[AttributeUse]]:
    """All accounts' custom fields as features, the churned labels, the field kinds, and what was
    made of every field (used as what, or excluded, and why)."""
    ids, index, acc_num, acc_cat = account_frame(session, scope)
    attrs = load_attributes(session, scope, index, len(ids))
    kinds, _, uses = discover_attribute_kinds(attrs, exclude=exclude)
    numeric, categorical = attribute_columns(attrs, kinds)
    table = FeatureTable(
        ids=ids,
        as_of=np.full(len(ids), as_of.toordinal() if as_of else 0, dtype=np.int64),
        numeric={"arr": acc_num["arr"], **numeric},
        categorical={"segment": acc_cat["segment"], "status": acc_cat["status"], **categorical},
    )
    labels = np.array([s == "churned" for s in acc_cat["status"]], dtype=bool)
    return table, labels, kinds, uses


def train_attributes(
    session: Session,
    *,
    as_of: dt.date | None,
    now: dt.datetime,
    c: float = DEFAULT_C,
    folds: int = CV_FOLDS,
    exclude_attributes: Sequence[str] = (),
    scope: AccountScope = AccountScope(),
    candidates: Sequence[Candidate] = CANDIDATES,
) -> ChurnModelReport:
    """Train on custom fields with label = status churned; candidates judged by stratified k-fold CV."""
    # deferred: sklearn loads in ~0.6 s on top of the CLI; only attribute training cross-validates
    from sklearn.model_selection import StratifiedKFold

    table, y, kinds, uses = attribute_table(session, as_of, exclude=exclude_attributes, scope=scope)
    skipped = [u.name for u in uses if u.kind == "excluded"]
    reason = _too_little(len(table), int(y.sum()), "accounts")
    if reason is None and not kinds:
        reason = "no usable custom attributes to train on; using the rule-based health score"
    if reason:
        return _rule_fallback(
            session,
            source="attributes",
            as_of=as_of,
            reason=reason,
            table=table,
            labels=y,
            now=now,
            attributes=uses,
        )
    config = attributes_config(kinds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    splits = list(splitter.split(np.zeros(len(y)), y))
    fold_of = np.zeros(len(y), dtype=np.int64)
    for k, (_, test_idx) in enumerate(splits):
        fold_of[test_idx] = k
    evaluation = Evaluation(splits=splits, calibration_groups=fold_of)
    fits = candidate_fits(candidates, linear=config, trees=config, c=c)
    selection = select_model(table, y, evaluation, fits, fixed=_fixed(c))
    fields, settings = _selection_fields(selection, c=c, single_split=False)
    settings.update(source="attributes", folds=folds, attribute_kinds=kinds)
    evaluation_text = (
        f"{folds}-fold stratified cross-validation (shuffled, seed 0), the same folds for every "
        f"candidate; {_candidate_text(list(fits))}; imputation, categories, standardisation and "
        "boosted-tree tuning (an inner split of the training folds) fitted inside each fold; AUC = "
        "mean ± std of fold AUCs; lift on out-of-fold raw scores; the calibration table is of "
        "Platt-calibrated out-of-fold probabilities, each fold calibrated by a fit on the other folds; "
        "the deployed model is refit on all rows, its Platt calibration fitted on all out-of-fold scores"
    )
    return _store_trained(
        session,
        source="attributes",
        as_of=as_of,
        now=now,
        selection=selection,
        settings=settings,
        table=table,
        labels=y,
        kinds=kinds,
        report_fields={
            **fields,
            "folds": folds,
            "n_train": len(table),
            "positives": int(y.sum()),
            "evaluation": evaluation_text,
            "skipped_attributes": skipped,
            "attributes": uses,
        },
    )


def train(
    session: Session,
    *,
    now: dt.datetime,
    source: Source | None = None,
    as_of: dt.date | None = None,
    c: float = DEFAULT_C,
    exclude_attributes: Sequence[str] = (),
    candidates: Sequence[Candidate] = CANDIDATES,
) -> ChurnModelReport:
    """Train candidates (or fall back to rules), store the chosen one as the new active version.

    Args:
        session: database session (the caller commits).
        now: creation timestamp recorded on the model row (the CLI passes the wall clock).
        source: `history` or `attributes`; None detects it from what the database holds.
        as_of: end of the data; defaults to the database's data as-of date.
        c: inverse L2 regularisation strength of the logistic candidate.
        exclude_attributes: custom fields never to use (e.g. ones written after churn).
        candidates: model families to evaluate (default: logistic regression and boosted trees).

    Never the demo company and imported accounts together: with both, the imported ones only
    (`tools.churn.population`), and the report says so.
    """
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown or not candidates:
        raise ToolInputError(f"candidates must be some of {list(CANDIDATES)!r}; got {list(candidates)!r}")
    population = training_population(session)
    scope = population.scope
    source = source or detect_source(session, scope)
    if source == "history":
        day = as_of or data_as_of(session)
        report = train_history(
            session,
            as_of=day,
            now=now,
            c=c,
            exclude_attributes=exclude_attributes,
            scope=scope,
            candidates=candidates,
        )
        return record_population(session, report, population)
    if as_of is None:
        try:
            as_of = data_as_of(session)
        except ToolInputError:
            as_of = None  # an undated export: attributes are static, no date applies
    report = train_attributes(
        session,
        as_of=as_of,
        now=now,
        c=c,
        exclude_attributes=exclude_attributes,
        scope=scope,
        candidates=candidates,
    )
    return record_population(session, report, population)
