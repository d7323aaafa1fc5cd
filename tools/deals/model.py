"""Training the deal model: point-in-time snapshots, a time-based holdout, the churn model's
candidates and calibration.

**Rows.** Snapshot days every `SNAPSHOT_STEP_DAYS` days back from `as_of`; each closed deal
(won or lost) contributes one row per snapshot day it was open on (created on or before the
day, closed after it), with its features as of that day (`tools.deals.features`) and its
eventual outcome as the label (won = 1).

**Holdout in time.** The latest `HOLDOUT_SHARE` of the snapshot days are the test window. Training
rows are the earlier snapshot days' rows of deals that had *closed before the window began*
(their outcome was known then); test rows are the window's rows. So the holdout grades what a
model trained on the past would have said about deals it had not seen the end of.

**Candidates and calibration** as for churn (`tools/churn/candidates.py`): L2 logistic
regression and LightGBM (grid tuned on an inner split of the training rows, grouped by deal),
chosen by holdout AUC with the 0.002 tie margin; Platt calibration cross-fitted over the test
snapshot days for the reported Brier score and calibration table; the chosen candidate is refit
on every row and its calibrator fitted on all its holdout scores. Deterministic: the same
database trains the same model, byte for byte; the version is a hash of what it learned.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm.models import DEMO_ORIGIN, DealModel
from tools.churn.boosted import BoostedModel, grid_description
from tools.churn.calibration import PlattScaling
from tools.churn.candidates import CANDIDATES, Evaluation, candidate_fits, select_model
from tools.churn.design import DesignConfig, LinearModel, design_matrix
from tools.churn.schemas import CalibrationBin, CandidateResult
from tools.deals.features import Deal, DealData, feature_table, load_deal_data, used_features
from tools.pipeline.deals import pipeline_as_of

SNAPSHOT_STEP_DAYS = 30
HOLDOUT_SHARE = 0.25
MIN_ROWS = 200
MIN_CLASS = 30
DEFAULT_C = 0.3
MAX_CATEGORIES = 20
GROUPS = {"amount_log": "amount", "amount_vs_typical": "amount_vs_typical"}
Population = Literal["demo", "imported"]


class DealModelReport(BaseModel):
    """What `valuechain deals train` reports: the chosen model and how it did on the later window."""

    trained: bool
    model_version: str | None
    method: str | None
    as_of: dt.date
    population: Population
    reason: str = Field(description="Why this model, or why none was trained")
    auc: float | None = Field(description="Holdout AUC of the chosen candidate (raw scores)")
    brier: float | None = Field(description="Holdout Brier score of the calibrated probabilities")
    base_rate: float | None = Field(description="Share of won rows in the holdout")
    n_train: int
    n_test: int
    deals_train: int
    deals_test: int
    train_window: tuple[dt.date, dt.date] | None
    test_window: tuple[dt.date, dt.date] | None
    features: list[str]
    notes: list[str]
    candidates: list[CandidateResult]
    calibration: list[CalibrationBin]
    top_drivers: list[tuple[str, float]] = Field(
        description="Driver groups by weight: |coefficient| sum (logistic) or share of gain (trees)"
    )
    evaluation: str


def snapshot_days(data: DealData, as_of: dt.date) -> list[dt.date]:
    """Every SNAPSHOT_STEP_DAYS days back from as_of to the first deal's creation, oldest first."""
    created = [d.created for d in data.deals if d.created is not None]
    if not created:
        return []
    first = min(created)
    days = []
    day = as_of
    while day > first:
        days.append(day)
        day -= dt.timedelta(days=SNAPSHOT_STEP_DAYS)
    return days[::-1]


def training_rows(data: DealData, days: list[dt.date], as_of: dt.date) -> list[tuple[Deal, dt.date]]:
    """(closed deal, day) for every snapshot day the deal was open on, by day then deal id."""
    closed = [
        d for d in data.deals if d.outcome is not None and d.created is not None and d.close is not None
    ]
    rows = []
    for day in days:
        for d in closed:
            if d.created <= day < d.close <= as_of:  # type: ignore[operator]
                rows.append((d, day))
    return rows


def _design(numeric: tuple[str, ...], categorical: tuple[str, ...]) -> DesignConfig:
    return DesignConfig(
        numeric=numeric,
        categorical=categorical,
        groups=GROUPS,
        log1p_auto=("age_days", "days_in_stage", "owner_closed_deals", "account_tenure_days"),
        winsorize="auto",
        max_categories=MAX_CATEGORIES,
    )


def _fingerprint(payload: Mapping[str, Any], *arrays: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _population(session: Session) -> tuple[Population, str | None]:
    """Imported deals when there are any (never mixed with the demo's), else the demo's."""
    data = load_deal_data(session, population="import")
    if any(d.outcome is not None for d in data.deals):
        return "imported", "import"
    return "demo", DEMO_ORIGIN


def train_deal_model(session: Session, *, now: dt.datetime, as_of: dt.date | None = None) -> DealModelReport:
    """Train, evaluate and store the deal model (active from now on); see the module docstring.

    With too little closed history nothing is stored and the report says why: deal_score and
    pipeline_health then use the stage table.
    """
    as_of = as_of or pipeline_as_of(session)
    population, origin = _population(session)
    data = load_deal_data(session, population=origin)
    days = snapshot_days(data, as_of)
    n_test_days = max(1, round(HOLDOUT_SHARE * len(days)))
    test_days, train_days = days[-n_test_days:], days[:-n_test_days]
    numeric, categorical = used_features(data)
    features = [*numeric, *categorical]

    def refuse(reason: str, n_train: int = 0, n_test: int = 0) -> DealModelReport:
        return DealModelReport(
            trained=False, model_version=None, method=None, as_of=as_of, population=population, reason=reason,
            auc=None, brier=None, base_rate=None, n_train=n_train, n_test=n_test, deals_train=0, deals_test=0,
            train_window=None, test_window=None, features=features, notes=data.notes, candidates=[],
            calibration=[], top_drivers=[], evaluation="none",
        )  # fmt: skip

    if len(days) < 4:
        return refuse(
            f"too little history: {len(days)} snapshot days of {SNAPSHOT_STEP_DAYS} days (4 needed)"
        )
    window_start = test_days[0]
    rows = training_rows(data, days, as_of)
    train = [i for i, (d, day) in enumerate(rows) if day < window_start and d.close < window_start]  # type: ignore[operator]
    test = [i for i, (_, day) in enumerate(rows) if day >= window_start]
    keep = train + test
    rows = [rows[i] for i in keep]
    train_idx = np.arange(len(train))
    test_idx = np.arange(len(train), len(keep))
    labels = np.array([d.outcome for d, _ in rows], dtype=np.int64)
    for name, idx in (("training", train_idx), ("holdout", test_idx)):
        won = int(labels[idx].sum())
        if len(idx) < MIN_ROWS or won < MIN_CLASS or len(idx) - won < MIN_CLASS:
            return refuse(
                f"too little closed history for the {name} rows: {len(idx)} rows, {won} won, {len(idx) - won} lost "
                f"(at least {MIN_ROWS} rows and {MIN_CLASS} of each needed)",
                len(train_idx),
                len(test_idx),
            )
    table = feature_table(data, rows)
    groups = np.array([d.id for d, _ in rows], dtype=np.int64)
    day_group = np.array([day.toordinal() for _, day in rows], dtype=np.int64)
    evaluation = Evaluation(splits=[(train_idx, test_idx)], calibration_groups=day_group)
    config = _design(numeric, categorical)
    fits = candidate_fits(CANDIDATES, linear=config, trees=config, c=DEFAULT_C)
    selection = select_model(
        table, labels, evaluation, fits, groups=groups, fixed={"logistic_regression": {"C": DEFAULT_C}}
    )
    deployed = selection.deployed
    method = selection.chosen.method
    settings = {
        "features": features,
        "c": DEFAULT_C,
        "step_days": SNAPSHOT_STEP_DAYS,
        "holdout": HOLDOUT_SHARE,
    }
    x = design_matrix(table, deployed.columns)
    version = f"deal-{method.split('_')[0]}-{_fingerprint(settings, x, labels)[:12]}"
    if isinstance(deployed, LinearModel):
        weights: dict[str, float] = {}
        for col, coef in zip(deployed.columns, deployed.coefs, strict=True):
            weights[col.group] = weights.get(col.group, 0.0) + abs(float(coef))
        top = sorted(weights.items(), key=lambda p: (-p[1], p[0]))[:10]
    else:
        top = deployed.importance(10)
    metrics = selection.metrics.calibrated
    report = DealModelReport(
        trained=True,
        model_version=version,
        method=method,
        as_of=as_of,
        population=population,
        reason=selection.why,
        auc=selection.chosen.auc,
        brier=metrics.brier,
        base_rate=metrics.base_rate,
        n_train=len(train_idx),
        n_test=len(test_idx),
        deals_train=len(set(groups[train_idx].tolist())),
        deals_test=len(set(groups[test_idx].tolist())),
        train_window=(days[0], train_days[-1]),
        test_window=(window_start, test_days[-1]),
        features=features,
        notes=data.notes,
        candidates=selection.results,
        calibration=metrics.calibration,
        top_drivers=[(g, round(w, 6)) for g, w in top],
        evaluation=(
            f"time-based holdout: trained on {len(train_days)} snapshot days to {train_days[-1]} (deals closed "
            f"before {window_start}), tested on the {len(test_days)} days from {window_start}; candidates "
            f"logistic regression (C {DEFAULT_C}) and {grid_description()}; Platt calibration cross-fitted "
            "over the test days"
        ),
    )
    params = {
        "method": method,
        "scorer": deployed.to_params(),
        "calibration": selection.calibration.to_params(),
        "settings": settings,
        "use_amount": data.use_amount,
        "use_stage": data.use_stage,
        "population": population,
    }
    session.execute(update(DealModel).where(DealModel.active.is_(True)).values(active=False))
    row = session.get(DealModel, version)
    if row is None:
        session.add(
            DealModel(
                version=version,
                created_at=now,
                method=method,
                as_of=as_of,
                active=True,
                params=params,
                metrics=report.model_dump(mode="json"),
            )
        )
    else:
        row.active = True
        row.metrics = report.model_dump(mode="json")
    session.flush()
    return report


class LoadedDealModel:
    """The active deal model, ready to score: scorer, calibration and the data switches it learned with."""

    def __init__(self, row: DealModel) -> None:
        params = row.params
        self.version = row.version
        self.method: str = params["method"]
        self.scorer: LinearModel | BoostedModel = (
            LinearModel.from_params(params["scorer"])
            if self.method == "logistic_regression"
            else BoostedModel.from_params(params["scorer"])
        )
        self.calibration = PlattScaling.from_params(params["calibration"]) or PlattScaling()
        self.use_amount = bool(params["use_amount"])
        self.use_stage = bool(params["use_stage"])
        self.population: str = params["population"]
        self.metrics = row.metrics


_LOADED: dict[str, LoadedDealModel] = {}
_LOADED_MAX = 4


def active_deal_model(session: Session) -> LoadedDealModel | None:
    """The active deal model, or None when none has been trained.

    Building the scorer from its stored parameters takes about a second for boosted trees, more
    than scoring a deal, so loaded models are kept by version: the version is a hash of what the
    model learned, so one version always loads the same scorer. Only its metrics are read anew
    each call (a retrain that finds the same model rewrites them)."""
    found = session.execute(
        select(DealModel.version, DealModel.metrics).where(DealModel.active.is_(True)).limit(1)
    ).first()
    if found is None:
        return None
    version, metrics = found
    loaded = _LOADED.get(version)
    if loaded is None:
        row = session.get(DealModel, version)
        if row is None:  # deleted between the two reads
            return None
        loaded = LoadedDealModel(row)
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[version] = loaded
    current = copy.copy(loaded)
    current.metrics = metrics
    return current
