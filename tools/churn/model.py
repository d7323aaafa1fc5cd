"""Training, versioning and loading of churn models.

Two training paths:

- **history** (the CRM has usage, tickets, invoices, ...): monthly point-in-time snapshots
  (month ends up to ``as_of − 90 days``), label = churned within 90 days after the
  snapshot, only accounts active at the snapshot. Time-based holdout: the last
  ``holdout`` snapshots are the test window; training uses only snapshots whose 90-day
  label window ends on or before the first test snapshot, so no training label peeks into
  the test period. The stored (deployed) coefficients are refit on all snapshots with the
  same settings; the stored metrics are those of the holdout fit.
- **attributes** (an imported export with custom fields and a churned/active status):
  label = status churned, 5-fold *stratified* cross-validation (shuffled, seed 0) with
  imputation, categories and standardisation fitted inside each fold; reported AUC is the
  mean ± std of the fold AUCs; deployed coefficients are refit on all rows.

Both use L2 logistic regression (lbfgs, ``C = 0.1``, ``random_state = 0``) on standardised
columns. With fewer than 50 positive labels or 200 labelled rows the documented rule-based
health score (``tools/churn/rules.py``) is stored instead, and every output says so.

A model's version is a hash of its settings and of the training data (design matrix and
labels), so retraining on the same data yields the same version, and new data a new one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from crm.models import Account, ChurnModel, Invoice, Subscription, SupportTicket, UsageWeekly
from tools.churn.design import DesignConfig, LinearModel, design_matrix, fit_linear
from tools.churn.features import (
    ATTR_PREFIX,
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    AccountScope,
    FeatureTable,
    account_frame,
    active_on,
    attribute_columns,
    compute_features,
    is_number_like,
    load_attributes,
    parse_category,
)
from tools.churn.metrics import evaluate, roc_auc
from tools.churn.rules import RULES_VERSION, rule_probability
from tools.churn.schemas import ChurnModelReport, EvaluationMetrics, Method, Source
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

NO_MODEL_REASON = "no churn model has been trained yet; run `valuechain churn train`"


def history_config(attribute_kinds: Mapping[str, str]) -> DesignConfig:
    attr_num = tuple(ATTR_PREFIX + k for k, v in sorted(attribute_kinds.items()) if v == "numeric")
    attr_cat = tuple(ATTR_PREFIX + k for k, v in sorted(attribute_kinds.items()) if v == "categorical")
    return DesignConfig(
        numeric=NUMERIC_FEATURES + attr_num,
        categorical=CATEGORICAL_FEATURES + attr_cat,
        clips=HISTORY_CLIPS,
        log1p=("tenure_days",),
        log1p_auto=attr_num,
        bands={"days_to_renewal": ((0.0, 90.0),)},
        winsorize=attr_num,
        max_categories=MAX_CATEGORIES,
    )


def attributes_config(attribute_kinds: Mapping[str, str]) -> DesignConfig:
    return DesignConfig(
        numeric=tuple(ATTR_PREFIX + k for k, v in sorted(attribute_kinds.items()) if v == "numeric"),
        categorical=tuple(ATTR_PREFIX + k for k, v in sorted(attribute_kinds.items()) if v == "categorical"),
        log1p_auto="all",
        winsorize="auto",
        max_categories=MAX_CATEGORIES,
    )


@dataclass(frozen=True)
class ActiveModel:
    """The model that scores accounts now (a trained one, or the rule-based fallback)."""

    version: str
    method: Method
    source: Source
    as_of: dt.date | None
    reason: str | None
    linear: LinearModel | None
    attribute_kinds: dict[str, str] = field(default_factory=dict)
    auc: float | None = None

    @property
    def uses_history(self) -> bool:
        return self.source == "history"


DEFAULT_RULES = ActiveModel(
    version=RULES_VERSION,
    method="rule_based",
    source="history",
    as_of=None,
    reason=NO_MODEL_REASON,
    linear=None,
)
_CACHE: dict[str, ActiveModel] = {}


def load_active_model(session: Session) -> ActiveModel:
    """The active model, or the rule-based default.

    Parsed models are cached by (version, created_at): versions are content hashes, so the
    pair names the same parameters in any database.
    """
    head = session.execute(
        select(ChurnModel.version, ChurnModel.created_at)
        .where(ChurnModel.active.is_(True))
        .order_by(ChurnModel.created_at.desc(), ChurnModel.version)
        .limit(1)
    ).first()
    if head is None:
        return DEFAULT_RULES
    version = head[0]
    key = f"{version}@{head[1].isoformat()}"
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    row = session.get(ChurnModel, version)
    if row is None:  # pragma: no cover - deleted between the two reads
        return DEFAULT_RULES
    params = row.params or {}
    metrics = row.metrics or {}
    linear = LinearModel.from_params(params) if row.method == "logistic_regression" else None
    model = ActiveModel(
        version=row.version,
        method="logistic_regression" if row.method == "logistic_regression" else "rule_based",
        source="attributes" if row.source == "attributes" else "history",
        as_of=row.as_of,
        reason=params.get("reason"),
        linear=linear,
        attribute_kinds=dict(params.get("attribute_kinds", {})),
        auc=metrics.get("auc"),
    )
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = model
    return model


def load_model_report(session: Session, version: str | None = None) -> ChurnModelReport | None:
    """The stored training report of the active model (or of `version`)."""
    if version is None:
        version = session.scalar(
            select(ChurnModel.version)
            .where(ChurnModel.active.is_(True))
            .order_by(ChurnModel.created_at.desc(), ChurnModel.version)
            .limit(1)
        )
    row = session.get(ChurnModel, version) if version else None
    if row is None:
        return None
    return ChurnModelReport.model_validate(row.metrics)


# --------------------------------------------------------------------------- data


def detect_source(session: Session) -> Source:
    """`history` when the CRM holds event history (usage, subscriptions, tickets, invoices), else `attributes`."""
    for table in (UsageWeekly, Subscription, SupportTicket, Invoice):
        if session.scalar(select(func.count()).select_from(select(table).limit(1).subquery())):
            return "history"
    return "attributes"


def discover_attribute_kinds(
    attrs: Sequence[Mapping[str, Any]], *, exclude: Sequence[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """Decide per custom field: numeric, categorical, or skipped (empty or id-like)."""
    keys = sorted({k for a in attrs for k in a} - set(exclude))
    kinds: dict[str, str] = {}
    skipped: list[str] = []
    for key in keys:
        present = [a[key] for a in attrs if key in a and parse_category(a[key]) is not None]
        if not present:
            skipped.append(key)
            continue
        distinct = len({parse_category(v) for v in present})
        if all(is_number_like(v) for v in present):
            if distinct < 2:
                skipped.append(key)
            else:
                kinds[key] = "numeric"
        elif distinct < 2 or (distinct > MAX_CATEGORIES and distinct > 0.5 * len(present)):
            skipped.append(key)  # constant, or an identifier / free text
        else:
            kinds[key] = "categorical"
    return kinds, skipped


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


def _earliest_history(session: Session) -> dt.date | None:
    first_usage = session.scalar(select(func.min(UsageWeekly.week_start)))
    if first_usage is not None:
        return first_usage
    return session.scalar(select(func.min(Account.created_at)))


def history_dataset(
    session: Session,
    snapshots: Sequence[dt.date],
    attribute_kinds: Mapping[str, str],
    *,
    horizon: int = HORIZON_DAYS,
) -> tuple[FeatureTable, np.ndarray]:
    """Stacked snapshot features and labels (churned within `horizon` days after the snapshot)."""
    tables: list[FeatureTable] = []
    labels: list[np.ndarray] = []
    dateless_churn = and_(Account.status == "churned", Account.churned_at.is_(None))
    for day in snapshots:
        scope = AccountScope(where=(*active_on(day), ~dateless_churn))
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


def train_history(
    session: Session,
    *,
    as_of: dt.date,
    now: dt.datetime,
    c: float = DEFAULT_C,
    n_snapshots: int = N_SNAPSHOTS,
    holdout: int = HOLDOUT_SNAPSHOTS,
    exclude_attributes: Sequence[str] = (),
) -> ChurnModelReport:
    """Train on monthly point-in-time snapshots with a time-based holdout."""
    snapshots = snapshot_dates(as_of, _earliest_history(session), n=n_snapshots)
    attrs = load_attributes(session, AccountScope(), *_all_index(session))
    kinds, skipped = discover_attribute_kinds(attrs, exclude=exclude_attributes)
    table, y = history_dataset(session, snapshots, kinds)
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
        )
    config = history_config(kinds)
    test_snaps = snapshots[-holdout:] if len(snapshots) > holdout else []
    train_snaps = [
        s for s in snapshots if test_snaps and s + dt.timedelta(days=HORIZON_DAYS) <= test_snaps[0]
    ]
    ordinals = np.array([s.toordinal() for s in snapshots])
    evaluation = "no time-based holdout possible (too few snapshots); metrics are in-sample"
    train_mask = np.isin(table.as_of, ordinals[[s in train_snaps for s in snapshots]])
    test_mask = np.isin(table.as_of, ordinals[[s in test_snaps for s in snapshots]])
    holdout_ok = bool(train_snaps) and y[train_mask].any() and y[test_mask].any() and (~y[train_mask]).any()
    if holdout_ok:
        train_t, test_t = table.take(np.flatnonzero(train_mask)), table.take(np.flatnonzero(test_mask))
        eval_model = fit_linear(train_t, y[train_mask], config, c=c)
        metrics = evaluate(y[test_mask], eval_model.probability(test_t))
        rule_auc = roc_auc(y[test_mask], rule_probability(test_t))
        evaluation = (
            f"time-based holdout: trained on {len(train_snaps)} snapshots "
            f"{train_snaps[0]}..{train_snaps[-1]}, tested on {len(test_snaps)} later snapshots "
            f"{test_snaps[0]}..{test_snaps[-1]}; training label windows end before the test window; "
            "the deployed coefficients are refit on all snapshots"
        )
        n_train, n_test = int(train_mask.sum()), int(test_mask.sum())
    model = fit_linear(table, y, config, c=c)
    if not holdout_ok:
        metrics = evaluate(y, model.probability(table))
        rule_auc = roc_auc(y, rule_probability(table))
        n_train, n_test = len(table), 0
    x = design_matrix(table, model.columns)
    settings = {
        "method": "logistic_regression",
        "source": "history",
        "c": c,
        "horizon_days": HORIZON_DAYS,
        "snapshots": [s.isoformat() for s in snapshots],
        "holdout": holdout,
        "features": model.feature_names,
    }
    version = f"lr-history-{_fingerprint(settings, x, y)[:12]}"
    report = ChurnModelReport(
        model_version=version,
        method="logistic_regression",
        source="history",
        as_of=as_of,
        auc=metrics.auc,
        brier=metrics.brier,
        top_decile_lift=metrics.top_decile_lift,
        n_train=n_train,
        n_test=n_test,
        positives=int(y.sum()),
        c=c,
        evaluation=evaluation,
        features=len(model.columns),
        snapshots=snapshots,
        train_snapshots=train_snaps if holdout_ok else snapshots,
        test_snapshots=test_snaps if holdout_ok else [],
        rule_based_auc=rule_auc,
        calibration=metrics.calibration,
        top_coefficients=_top_coefficients(model),
        skipped_attributes=skipped,
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


def _all_index(session: Session) -> tuple[dict[str, int], int]:
    ids = session.scalars(select(Account.id).order_by(Account.id)).all()
    return {a: i for i, a in enumerate(ids)}, len(ids)


def attribute_table(
    session: Session, as_of: dt.date | None, *, exclude: Sequence[str] = ()
) -> tuple[FeatureTable, np.ndarray, dict[str, str], list[str]]:
    """All accounts' custom fields as features, the churned labels, the field kinds and skipped fields."""
    scope = AccountScope()
    ids, index, acc_num, acc_cat = account_frame(session, scope)
    attrs = load_attributes(session, scope, index, len(ids))
    kinds, skipped = discover_attribute_kinds(attrs, exclude=exclude)
    numeric, categorical = attribute_columns(attrs, kinds)
    table = FeatureTable(
        ids=ids,
        as_of=np.full(len(ids), as_of.toordinal() if as_of else 0, dtype=np.int64),
        numeric={"arr": acc_num["arr"], **numeric},
        categorical={"segment": acc_cat["segment"], "status": acc_cat["status"], **categorical},
    )
    labels = np.array([s == "churned" for s in acc_cat["status"]], dtype=bool)
    return table, labels, kinds, skipped


def train_attributes(
    session: Session,
    *,
    as_of: dt.date | None,
    now: dt.datetime,
    c: float = DEFAULT_C,
    folds: int = CV_FOLDS,
    exclude_attributes: Sequence[str] = (),
) -> ChurnModelReport:
    """Train on custom fields with label = status churned; report stratified k-fold CV metrics."""
    # deferred: sklearn loads in ~0.6 s on top of the CLI; only attribute training cross-validates
    from sklearn.model_selection import StratifiedKFold

    table, y, kinds, skipped = attribute_table(session, as_of, exclude=exclude_attributes)
    reason = _too_little(len(table), int(y.sum()), "accounts")
    if reason is None and not kinds:
        reason = "no usable custom attributes to train on; using the rule-based health score"
    if reason:
        return _rule_fallback(
            session, source="attributes", as_of=as_of, reason=reason, table=table, labels=y, now=now
        )
    config = attributes_config(kinds)
    oof = np.zeros(len(table))
    fold_aucs: list[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
        fold_model = fit_linear(table.take(train_idx), y[train_idx], config, c=c)
        oof[test_idx] = fold_model.probability(table.take(test_idx))
        fold_auc = roc_auc(y[test_idx], oof[test_idx])
        fold_aucs.append(float(fold_auc) if fold_auc is not None else math.nan)
    metrics = evaluate(y, oof)
    model = fit_linear(table, y, config, c=c)
    x = design_matrix(table, model.columns)
    settings = {
        "method": "logistic_regression",
        "source": "attributes",
        "c": c,
        "folds": folds,
        "attribute_kinds": kinds,
        "features": model.feature_names,
    }
    version = f"lr-attributes-{_fingerprint(settings, x, y)[:12]}"
    report = ChurnModelReport(
        model_version=version,
        method="logistic_regression",
        source="attributes",
        as_of=as_of,
        auc=float(np.mean(fold_aucs)),
        auc_std=float(np.std(fold_aucs)),
        brier=metrics.brier,
        top_decile_lift=metrics.top_decile_lift,
        folds=folds,
        n_train=len(table),
        positives=int(y.sum()),
        c=c,
        evaluation=(
            f"{folds}-fold stratified cross-validation (shuffled, seed 0); imputation, categories and "
            "standardisation fitted inside each fold; AUC = mean ± std of fold AUCs; Brier, calibration "
            "and lift on out-of-fold predictions; deployed coefficients refit on all rows"
        ),
        features=len(model.columns),
        fold_aucs=fold_aucs,
        calibration=metrics.calibration,
        top_coefficients=_top_coefficients(model),
        skipped_attributes=skipped,
    )
    params = {**model.to_params(), "attribute_kinds": kinds, "settings": settings}
    _store(
        session,
        version=version,
        method="logistic_regression",
        source="attributes",
        as_of=as_of,
        params=params,
        report=report,
        now=now,
    )
    return report


def train(
    session: Session,
    *,
    now: dt.datetime,
    source: Source | None = None,
    as_of: dt.date | None = None,
    c: float = DEFAULT_C,
    exclude_attributes: Sequence[str] = (),
) -> ChurnModelReport:
    """Train (or fall back to rules), store the model as a new active version, return its report.

    Args:
        session: database session (the caller commits).
        now: creation timestamp recorded on the model row (the CLI passes the wall clock).
        source: `history` or `attributes`; None detects it from what the database holds.
        as_of: end of the data; defaults to the database's data as-of date.
        c: inverse L2 regularisation strength.
        exclude_attributes: custom fields never to use (e.g. ones written after churn).
    """
    source = source or detect_source(session)
    if source == "history":
        day = as_of or data_as_of(session)
        return train_history(session, as_of=day, now=now, c=c, exclude_attributes=exclude_attributes)
    if as_of is None:
        try:
            as_of = data_as_of(session)
        except ToolInputError:
            as_of = None  # an undated export: attributes are static, no date applies
    return train_attributes(session, as_of=as_of, now=now, c=c, exclude_attributes=exclude_attributes)
