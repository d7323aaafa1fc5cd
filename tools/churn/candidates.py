"""Choosing the churn model: every candidate judged on the same rows, the same honest way.

Candidates: L2 logistic regression (fixed ``C``) and LightGBM boosted trees (a fixed grid
tuned inside each training fold, ``tools/churn/boosted.py``). Each is fitted on every
evaluation split's training rows and scores that split's test rows (5 stratified folds on
attribute data; the later time window on history data). The chosen candidate has the
highest mean AUC; the boosted trees must beat the logistic regression by more than
``TIE_MARGIN`` (0.002 AUC), otherwise it is a tie and the simpler logistic model is kept.

AUC and lift are computed on the raw scores (calibration is monotone and does not change
the order); Brier and the calibration table on cross-fitted Platt-calibrated probabilities
(``tools/churn/calibration.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tools.churn.boosted import BoostedModel, fit_boosted
from tools.churn.calibration import PlattScaling, cross_fitted, fit_platt
from tools.churn.design import DesignConfig, LinearModel, fit_linear, sigmoid
from tools.churn.features import FeatureTable
from tools.churn.metrics import evaluate, roc_auc
from tools.churn.schemas import Candidate, CandidateResult, EvaluationMetrics

CANDIDATES: tuple[Candidate, ...] = ("logistic_regression", "gradient_boosting")
TIE_MARGIN = 0.002

Scorer = LinearModel | BoostedModel
Fit = Callable[[FeatureTable, np.ndarray, np.ndarray | None], Scorer]


@dataclass(frozen=True)
class Evaluation:
    """Where candidates are judged: (train, test) row indexes per split, and per row the group
    a calibrator is cross-fitted over (the fold, or the test snapshot)."""

    splits: list[tuple[np.ndarray, np.ndarray]]
    calibration_groups: np.ndarray

    @property
    def test_rows(self) -> np.ndarray:
        return np.concatenate([test for _, test in self.splits])


@dataclass(frozen=True)
class CandidateRun:
    """A candidate's raw scores on the evaluation's test rows (in `Evaluation.test_rows` order)."""

    method: Candidate
    rows: np.ndarray
    raw: np.ndarray
    calibrated: np.ndarray
    split_aucs: list[float]
    settings: dict[str, Any]
    features: int
    seconds: float

    @property
    def auc(self) -> float | None:
        finite = [a for a in self.split_aucs if not math.isnan(a)]
        return float(np.mean(finite)) if finite else None

    @property
    def auc_std(self) -> float | None:
        finite = [a for a in self.split_aucs if not math.isnan(a)]
        return float(np.std(finite)) if len(finite) > 1 else None


def candidate_fits(
    names: Sequence[Candidate], *, linear: DesignConfig, trees: DesignConfig, c: float
) -> dict[Candidate, Fit]:
    """How each named candidate is fitted on some rows (`groups`: rows that belong together)."""
    fits: dict[Candidate, Fit] = {
        "logistic_regression": lambda t, y, g: fit_linear(t, y, linear, c=c),
        "gradient_boosting": lambda t, y, g: fit_boosted(t, y, trees, groups=g),
    }
    return {name: fits[name] for name in names}


def _describe(model: Scorer) -> dict[str, Any]:
    if isinstance(model, BoostedModel):
        return {**model.setting, "trees": model.trees}
    return {}


def run_candidate(
    method: Candidate,
    fit: Fit,
    table: FeatureTable,
    labels: np.ndarray,
    evaluation: Evaluation,
    *,
    groups: np.ndarray | None = None,
    fixed: Mapping[str, Any] | None = None,
) -> CandidateRun:
    """Fit on each split's training rows, score its test rows; calibrate cross-fitted."""
    started = time.perf_counter()
    raw_parts: list[np.ndarray] = []
    aucs: list[float] = []
    picked: list[dict[str, Any]] = []
    features = 0
    for train_idx, test_idx in evaluation.splits:
        model = fit(table.take(train_idx), labels[train_idx], None if groups is None else groups[train_idx])
        raw = model.logit(table.take(test_idx))
        raw_parts.append(raw)
        auc = roc_auc(labels[test_idx], raw)
        aucs.append(float(auc) if auc is not None else math.nan)
        picked.append(_describe(model))
        features = len(model.columns)
    rows = evaluation.test_rows
    raw_all = np.concatenate(raw_parts)
    calibrated = cross_fitted(raw_all, labels[rows], evaluation.calibration_groups[rows])
    settings: dict[str, Any] = dict(fixed or {})
    if any(picked):
        settings["picked_per_split"] = picked
    return CandidateRun(
        method=method,
        rows=rows,
        raw=raw_all,
        calibrated=calibrated,
        split_aucs=aucs,
        settings=settings,
        features=features,
        seconds=time.perf_counter() - started,
    )


def choose(runs: Sequence[CandidateRun]) -> tuple[CandidateRun, str]:
    """The chosen run and why: highest mean AUC; boosted trees must win by more than TIE_MARGIN."""
    by_name = {r.method: r for r in runs}
    linear = by_name.get("logistic_regression")
    boosted = by_name.get("gradient_boosting")
    if linear is None or boosted is None:
        only = runs[0]
        return only, f"{only.method}: the only candidate evaluated"
    la, ba = linear.auc, boosted.auc
    if ba is None or la is None:
        return (
            linear,
            "logistic_regression: an AUC could not be computed for every candidate; simpler model kept",
        )
    if ba > la + TIE_MARGIN:
        return boosted, (
            f"gradient_boosting: highest mean AUC ({ba:.4f} vs logistic {la:.4f}; "
            f"more than the {TIE_MARGIN} tie margin)"
        )
    if ba > la:
        return linear, (
            f"logistic_regression: boosted trees {ba:.4f} vs logistic {la:.4f} is within the "
            f"{TIE_MARGIN} tie margin; the simpler model is kept"
        )
    return linear, f"logistic_regression: highest mean AUC ({la:.4f} vs boosted trees {ba:.4f})"


@dataclass(frozen=True)
class RunMetrics:
    """A run's metrics: ranking ones from raw scores, probability ones calibrated."""

    raw: EvaluationMetrics
    calibrated: EvaluationMetrics


def run_metrics(run: CandidateRun, labels: np.ndarray) -> RunMetrics:
    y = labels[run.rows]
    return RunMetrics(raw=evaluate(y, sigmoid(run.raw)), calibrated=evaluate(y, run.calibrated))


def candidate_result(run: CandidateRun, labels: np.ndarray, *, chosen: bool) -> CandidateResult:
    metrics = run_metrics(run, labels)
    return CandidateResult(
        method=run.method,
        chosen=chosen,
        auc=run.auc,
        auc_std=run.auc_std,
        fold_aucs=run.split_aucs if len(run.split_aucs) > 1 else [],
        brier=metrics.calibrated.brier,
        brier_uncalibrated=metrics.raw.brier,
        top_decile_lift=metrics.raw.top_decile_lift,
        features=run.features,
        settings=run.settings,
        seconds=round(run.seconds, 3),
    )


@dataclass(frozen=True)
class Selection:
    """Every candidate's run, the chosen one refit on all rows, and its calibration."""

    runs: list[CandidateRun]
    chosen: CandidateRun
    why: str
    deployed: Scorer
    calibration: PlattScaling
    metrics: RunMetrics
    results: list[CandidateResult]


def select_model(
    table: FeatureTable,
    labels: np.ndarray,
    evaluation: Evaluation,
    fits: Mapping[Candidate, Fit],
    *,
    groups: np.ndarray | None = None,
    fixed: Mapping[Candidate, Mapping[str, Any]] | None = None,
) -> Selection:
    """Evaluate every candidate, choose, refit the chosen one on all rows, fit its calibration
    on its evaluation scores (all of them: the deployed calibrator)."""
    runs = [
        run_candidate(name, fit, table, labels, evaluation, groups=groups, fixed=(fixed or {}).get(name))
        for name, fit in fits.items()
    ]
    chosen, why = choose(runs)
    deployed = fits[chosen.method](table, labels, groups)
    calibration = fit_platt(chosen.raw, labels[chosen.rows])
    return Selection(
        runs=runs,
        chosen=chosen,
        why=why,
        deployed=deployed,
        calibration=calibration,
        metrics=run_metrics(chosen, labels),
        results=[candidate_result(r, labels, chosen=r is chosen) for r in runs],
    )
