"""Platt scaling: turning a model's raw log-odds into probabilities that mean what they say.

``p = sigmoid(slope · z + intercept)`` with `z` the model's raw log-odds, fitted by maximum
likelihood (Newton's method, a tiny ridge) on predictions the model made for rows it was
not trained on (out of fold, or the later time window). Platt rather than isotonic: two
numbers, strictly increasing (so the ranking, AUC and lift are the model's own), and no
steps that tie many accounts at one probability. A fitted slope ≤ 0 (a model that ranks
backwards) or a one-class sample leaves the raw probabilities as they are.

Reported figures are *cross-fitted*: each fold (or test snapshot) is calibrated by a fit on
the others, so the calibration table does not grade the calibrator on its own sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tools.churn.design import sigmoid

RIDGE = 1e-6
ITERATIONS = 50


@dataclass(frozen=True)
class PlattScaling:
    """``p = sigmoid(slope · z + intercept)``; slope 1, intercept 0 is the identity."""

    slope: float = 1.0
    intercept: float = 0.0

    def probability(self, logit: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(logit, dtype=np.float64) + self.intercept)

    def to_params(self) -> dict[str, Any]:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}

    @staticmethod
    def from_params(params: Mapping[str, Any] | None) -> PlattScaling | None:
        if not params:
            return None
        return PlattScaling(slope=float(params["slope"]), intercept=float(params["intercept"]))


IDENTITY = PlattScaling()


def fit_platt(logit: np.ndarray, labels: np.ndarray) -> PlattScaling:
    """Maximum-likelihood slope and intercept of a logistic fit of `labels` on `logit`."""
    y = np.asarray(labels, dtype=np.float64)
    z = np.asarray(logit, dtype=np.float64)
    if y.size == 0 or y.min() == y.max():
        return IDENTITY
    x = np.column_stack([z, np.ones_like(z)])
    w = np.array([1.0, 0.0])
    for _ in range(ITERATIONS):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) + RIDGE * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + RIDGE * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.max(np.abs(step)) < 1e-10:
            break
    if not np.all(np.isfinite(w)) or w[0] <= 0.0:
        return IDENTITY
    return PlattScaling(slope=float(w[0]), intercept=float(w[1]))


def cross_fitted(logit: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Calibrated probabilities where each group's rows are calibrated by a fit on the other groups.

    With a single group there is nothing to hold out: the fit on all rows is used (the caller
    says so).
    """
    z = np.asarray(logit, dtype=np.float64)
    out = np.empty_like(z)
    keys = np.unique(groups)
    if keys.size < 2:
        return fit_platt(z, labels).probability(z)
    for key in keys.tolist():
        inside = groups == key
        out[inside] = fit_platt(z[~inside], labels[~inside]).probability(z[inside])
    return out
