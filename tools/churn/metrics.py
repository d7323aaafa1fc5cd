"""Evaluation of churn predictions: AUC, Brier score, decile calibration, top-decile lift."""

from __future__ import annotations

import math

import numpy as np

from tools.churn.schemas import CalibrationBin, EvaluationMetrics


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Mann–Whitney AUC with ties counted half; None when only one class is present."""
    y = labels.astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    # deferred: scipy.stats loads in ~0.55 s on top of the CLI; only training evaluates AUC
    from scipy.stats import rankdata

    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def evaluate(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> EvaluationMetrics:
    """Metrics of predicted probabilities against 0/1 outcomes."""
    y = labels.astype(np.float64)
    n = int(y.size)
    positives = int(y.sum())
    base = positives / n if n else 0.0
    order = np.argsort(probs, kind="stable")
    calibration: list[CalibrationBin] = []
    if n:
        for k, chunk in enumerate(np.array_split(order, bins), start=1):
            if chunk.size == 0:
                continue
            calibration.append(
                CalibrationBin(
                    decile=k,
                    n=int(chunk.size),
                    mean_predicted=float(probs[chunk].mean()),
                    observed_rate=float(y[chunk].mean()),
                )
            )
    lift: float | None = None
    if n and positives:
        top = order[::-1][: max(1, math.ceil(n / 10))]
        lift = float(y[top].mean() / base)
    return EvaluationMetrics(
        n=n,
        positives=positives,
        base_rate=base,
        auc=roc_auc(y, probs),
        brier=float(np.mean((probs - y) ** 2)) if n else 0.0,
        top_decile_lift=lift,
        calibration=calibration,
    )
