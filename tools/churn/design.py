"""From raw features to the standardised design matrix of the logistic model, and back to drivers.

A model is a list of :class:`Column` (each one derived from one raw feature: the value itself
with clipping and median imputation, a missing-value indicator, ``log1p``, or a one-hot
category), the training means and scales, the coefficients and the intercept. Everything is
plain data, stored as JSON in ``churn_models.params``.

Scoring streams over columns (``logit += coef_j · (x_j − mean_j) / scale_j``), so a million
accounts never materialise a full design matrix, and every row's arithmetic is the same
whether it is scored alone or in a batch (no BLAS reductions whose order could change).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from tools.churn.features import FeatureTable

ColumnKind = Literal["num", "raw", "missing", "log1p", "between", "onehot"]
OTHER = "__other__"
MISSING = "__missing__"


@dataclass(frozen=True)
class Column:
    """One column of the design matrix, derived from the raw feature `source`."""

    name: str
    group: str
    source: str
    kind: ColumnKind
    fill: float = 0.0
    lo: float | None = None
    hi: float | None = None
    category: str | None = None
    known: tuple[str, ...] = ()

    def values(self, table: FeatureTable) -> np.ndarray:
        n = len(table)
        if self.kind == "onehot":
            cats = table.categorical.get(self.source)
            if cats is None:
                cats = np.full(n, None, dtype=object)
            if self.category == MISSING:
                return np.array([c is None for c in cats], dtype=np.float64)
            if self.category == OTHER:
                known = set(self.known)
                return np.array([c is not None and c not in known for c in cats], dtype=np.float64)
            return (cats == self.category).astype(np.float64)
        raw = table.numeric.get(self.source)
        if raw is None:
            raw = np.full(n, np.nan)
        if self.kind == "raw":  # as recorded, NaN kept (the boosted trees route unknowns themselves)
            return raw
        if self.kind == "missing":
            return np.isnan(raw).astype(np.float64)
        if self.kind == "between":  # unknown values are outside every band
            with np.errstate(invalid="ignore"):
                inside = (raw >= (self.lo if self.lo is not None else -np.inf)) & (
                    raw <= (self.hi if self.hi is not None else np.inf)
                )
            return inside.astype(np.float64)
        x = np.where(np.isnan(raw), self.fill, raw)
        if self.lo is not None or self.hi is not None:
            x = np.clip(
                x, self.lo if self.lo is not None else -np.inf, self.hi if self.hi is not None else np.inf
            )
        if self.kind == "log1p":
            return np.log1p(np.maximum(x, 0.0))
        return x

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["known"] = list(self.known)
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Column:
        return Column(
            name=str(data["name"]),
            group=str(data["group"]),
            source=str(data["source"]),
            kind=data["kind"],
            fill=float(data.get("fill", 0.0)),
            lo=data.get("lo"),
            hi=data.get("hi"),
            category=data.get("category"),
            known=tuple(data.get("known", ())),
        )


@dataclass(frozen=True)
class DesignConfig:
    """How raw features become columns.

    `log1p` lists sources that always get a log1p column; sources in `log1p_auto` ("all" for
    every numeric source) get one when non-negative with more than 10 distinct values.
    `winsorize` sources are clipped to their training 1st..99th percentiles.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    groups: Mapping[str, str] = field(default_factory=dict)
    clips: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    log1p: tuple[str, ...] = ()
    log1p_auto: tuple[str, ...] | Literal["all"] = ()
    bands: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    winsorize: tuple[str, ...] | Literal["auto"] = ()
    max_categories: int = 20


def _group(config: DesignConfig, source: str) -> str:
    return config.groups.get(source, source)


def fit_design(table: FeatureTable, config: DesignConfig) -> list[Column]:
    """Choose the columns (imputation values, categories) from training rows only."""
    columns: list[Column] = []
    for source in config.numeric:
        raw = table.numeric.get(source)
        if raw is None or raw.size == 0 or np.isnan(raw).all():
            continue
        lo, hi = config.clips.get(source, (None, None))
        seen = raw[~np.isnan(raw)]
        wants_clip = config.winsorize == "auto" or source in config.winsorize
        if source not in config.clips and wants_clip and np.unique(seen).size > 10:
            # heavy tails would dominate a linear model: clip to the training 1st..99th percentiles
            lo, hi = (float(q) for q in np.quantile(seen, [0.01, 0.99]))
        seen = np.clip(seen, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
        fill = float(np.median(seen))
        group = _group(config, source)
        columns.append(Column(name=source, group=group, source=source, kind="num", fill=fill, lo=lo, hi=hi))
        if np.isnan(raw).any():
            columns.append(Column(name=f"{source}__missing", group=group, source=source, kind="missing"))
        auto = config.log1p_auto == "all" or source in config.log1p_auto
        wants_log = source in config.log1p or (auto and seen.min() >= 0 and np.unique(seen).size > 10)
        if wants_log:
            columns.append(
                Column(
                    name=f"{source}__log1p", group=group, source=source, kind="log1p", fill=fill, lo=lo, hi=hi
                )
            )
        for band_lo, band_hi in config.bands.get(source, ()):
            columns.append(
                Column(
                    name=f"{source}__in_{band_lo:g}_{band_hi:g}",
                    group=group,
                    source=source,
                    kind="between",
                    lo=band_lo,
                    hi=band_hi,
                )
            )
    for source in config.categorical:
        cats = table.categorical.get(source)
        if cats is None or cats.size == 0:
            continue
        counts = Counter(c for c in cats if c is not None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        known = tuple(sorted(k for k, _ in ranked[: config.max_categories]))
        group = _group(config, source)
        for cat in known:
            columns.append(
                Column(name=f"{group}={cat}", group=group, source=source, kind="onehot", category=cat)
            )
        if len(ranked) > len(known):
            columns.append(
                Column(
                    name=f"{group}={OTHER}",
                    group=group,
                    source=source,
                    kind="onehot",
                    category=OTHER,
                    known=known,
                )
            )
        if any(c is None for c in cats):
            columns.append(
                Column(name=f"{group}={MISSING}", group=group, source=source, kind="onehot", category=MISSING)
            )
    return columns


def design_matrix(table: FeatureTable, columns: Sequence[Column]) -> np.ndarray:
    """The (rows × columns) matrix of raw column values (before standardisation)."""
    if not columns:
        return np.zeros((len(table), 0))
    return np.column_stack([c.values(table) for c in columns])


@dataclass(frozen=True)
class LinearModel:
    """A fitted logistic model over standardised columns."""

    columns: tuple[Column, ...]
    means: np.ndarray
    scales: np.ndarray
    coefs: np.ndarray
    intercept: float

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def logit(self, table: FeatureTable) -> np.ndarray:
        """Log-odds per row, accumulated column by column (memory ∝ rows, not rows × columns)."""
        out = np.full(len(table), self.intercept, dtype=np.float64)
        for j, col in enumerate(self.columns):
            out += self.coefs[j] * ((col.values(table) - self.means[j]) / self.scales[j])
        return out

    def probability(self, table: FeatureTable) -> np.ndarray:
        return sigmoid(self.logit(table))

    def contributions(self, table: FeatureTable) -> np.ndarray:
        """Per row and column: ``coef_j · (x_j − mean_j) / scale_j`` (log-odds)."""
        x = design_matrix(table, self.columns)
        return self.coefs * ((x - self.means) / self.scales)

    def group_contributions(self, table: FeatureTable) -> tuple[list[str], np.ndarray]:
        """Driver groups and their log-odds contributions per row (rows × groups)."""
        groups, position = column_groups(self.columns)
        # one group per row of `sums` (contiguous), columns added in order: the same sums as
        # adding up `contributions(table)` column by column, without its rows × columns matrix
        sums = np.zeros((len(groups), len(table)))
        for j, col in enumerate(self.columns):
            sums[position[j]] += self.coefs[j] * ((col.values(table) - self.means[j]) / self.scales[j])
        return groups, sums.T

    def to_params(self) -> dict[str, Any]:
        return {
            "features": self.feature_names,
            "columns": [c.to_json() for c in self.columns],
            "means": [float(v) for v in self.means],
            "scales": [float(v) for v in self.scales],
            "coefs": [float(v) for v in self.coefs],
            "intercept": float(self.intercept),
        }

    @staticmethod
    def from_params(params: Mapping[str, Any]) -> LinearModel:
        return LinearModel(
            columns=tuple(Column.from_json(c) for c in params["columns"]),
            means=np.asarray(params["means"], dtype=np.float64),
            scales=np.asarray(params["scales"], dtype=np.float64),
            coefs=np.asarray(params["coefs"], dtype=np.float64),
            intercept=float(params["intercept"]),
        )


def column_groups(columns: Sequence[Column]) -> tuple[list[str], list[int]]:
    """The distinct groups of `columns` in first-seen order, and each column's group position."""
    groups: list[str] = []
    index: dict[str, int] = {}
    position: list[int] = []
    for col in columns:
        if col.group not in index:
            index[col.group] = len(groups)
            groups.append(col.group)
        position.append(index[col.group])
    return groups, position


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training means and scales; constant columns are reported in `keep` = False."""
    means = x.mean(axis=0) if x.size else np.zeros(x.shape[1])
    scales = x.std(axis=0) if x.size else np.ones(x.shape[1])
    keep = scales > 1e-12
    return means, np.where(keep, scales, 1.0), keep


def fit_linear(table: FeatureTable, labels: np.ndarray, config: DesignConfig, *, c: float) -> LinearModel:
    """Fit columns, standardisation and an L2 logistic regression (lbfgs, fixed C and seed)."""
    # deferred: sklearn loads in ~0.6 s on top of the CLI; only training fits, scoring never does
    from sklearn.linear_model import LogisticRegression

    columns = fit_design(table, config)
    x = design_matrix(table, columns)
    means, scales, keep = standardise(x)
    columns = [col for col, k in zip(columns, keep, strict=True) if k]
    x, means, scales = x[:, keep], means[keep], scales[keep]
    z = (x - means) / scales
    clf = LogisticRegression(C=c, solver="lbfgs", max_iter=5000, tol=1e-8, random_state=0)
    clf.fit(z, labels.astype(np.int64))
    return LinearModel(
        columns=tuple(columns),
        means=means,
        scales=scales,
        coefs=np.asarray(clf.coef_[0], dtype=np.float64),
        intercept=float(clf.intercept_[0]),
    )


def finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value
