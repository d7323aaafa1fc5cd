"""Gradient-boosted trees (LightGBM) as a churn-model candidate: fit, score, explain, store.

**Columns.** Numeric features as recorded (``raw``: no clipping, no imputation — LightGBM
sends unknown values down the side that fits best) and the same one-hot categories as the
logistic model (top 20 + ``__other__`` + ``__missing__``). A small integer code field
(``attributes.py``) is read as a number only: a tree splits it wherever it needs to.

**Tuning: a fixed grid, chosen on an inner split of the training rows only.** Each fit
holds out 20 % of *its own* training rows (stratified; grouped by account on history data,
so an account's snapshots never sit on both sides), trains every grid setting with early
stopping on that inner split (binary log-loss, patience 50, at most 1,000 trees), keeps the
setting with the best inner AUC (ties: the smaller trees, listed first), then refits on all
its training rows with that setting and the early-stopped number of trees. The outer test
fold (or the later time window) is never seen by any of this, so the outer AUC grades the
whole procedure, tuning included.

**Determinism.** ``seed = 0``, ``deterministic = true``, ``force_row_wise = true``, one
training thread: the same rows train the same trees, byte for byte (the model text is stored).

**Explanations.** ``pred_contrib`` (TreeSHAP) gives each column's contribution to a row's raw
log-odds plus a base value, and they add up to the raw score exactly (up to rounding);
columns are summed into the same driver groups as the logistic model's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tools.churn.design import Column, DesignConfig, column_groups, design_matrix, fit_design
from tools.churn.features import CODE_SUFFIX, FeatureTable
from tools.churn.metrics import roc_auc

GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 7, "min_child_samples": 50},
    {"num_leaves": 15, "min_child_samples": 30},
    {"num_leaves": 31, "min_child_samples": 20},
)
BASE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "binary_logloss",
    "learning_rate": 0.05,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
# Training runs many small fits: one thread each. On the shared 2-core machine the 10k-row
# bank file's boosted evaluation took 1.6 s with two OpenMP threads when it was quiet but
# 9–13 s whenever another process held a core (threads wait on each other at every boosting
# round); with one thread 1.8 s quiet, 2.1–3.0 s beside a busy process.
# Prediction is one parallel loop over rows per call and keeps two threads.
PREDICT_THREADS = 2
MAX_TREES = 1000
EARLY_STOPPING = 50
MIN_TREES = 20
FALLBACK_TREES = 100  # when the inner split has one class only (tiny data): no early stopping possible
INNER_SHARE = 0.2
PREDICT_CHUNK = 100_000


def tree_columns(table: FeatureTable, config: DesignConfig) -> list[Column]:
    """Raw numeric columns and one-hot categories (code fields' category copies left out)."""
    columns: list[Column] = []
    for source in config.numeric:
        raw = table.numeric.get(source)
        if raw is None or raw.size == 0 or np.isnan(raw).all():
            continue
        group = config.groups.get(source, source)
        columns.append(Column(name=source, group=group, source=source, kind="raw"))
    categories = tuple(c for c in config.categorical if not c.endswith(CODE_SUFFIX))
    columns += fit_design(
        table,
        DesignConfig(
            numeric=(), categorical=categories, groups=config.groups, max_categories=config.max_categories
        ),
    )
    return columns


def inner_split(
    labels: np.ndarray, groups: np.ndarray | None = None, *, share: float = INNER_SHARE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indexes (fit, validate): `share` of the groups, stratified by whether a group has a
    positive label, go to validation; rows of one group stay together."""
    y = np.asarray(labels, dtype=bool)
    keys = np.arange(y.size) if groups is None else groups
    _, inverse = np.unique(keys, return_inverse=True)
    positive = np.zeros(int(inverse.max()) + 1 if inverse.size else 0, dtype=bool)
    np.logical_or.at(positive, inverse, y)
    rng = np.random.default_rng(seed)
    valid_group = np.zeros(positive.size, dtype=bool)
    for cls in (False, True):
        members = np.flatnonzero(positive == cls)
        take = round(share * members.size)
        valid_group[rng.permutation(members)[:take]] = True
    valid = valid_group[inverse]
    return np.flatnonzero(~valid), np.flatnonzero(valid)


def _train(params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, trees: int, valid: Any = None) -> Any:
    # deferred: LightGBM loads in ~0.3 s; only training and boosted models need it
    import lightgbm as lgb

    train_set = lgb.Dataset(x, label=y.astype(np.float64))
    if valid is None:
        return lgb.train(dict(params), train_set, num_boost_round=trees)
    x_va, y_va = valid
    valid_set = lgb.Dataset(x_va, label=y_va.astype(np.float64), reference=train_set)
    return lgb.train(
        dict(params),
        train_set,
        num_boost_round=trees,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING, first_metric_only=True, verbose=False)],
    )


def fit_boosted(
    table: FeatureTable, labels: np.ndarray, config: DesignConfig, *, groups: np.ndarray | None = None
) -> BoostedModel:
    """Tune on an inner split of these rows (grid × early stopping), then refit on all of them."""
    y = np.asarray(labels, dtype=bool)
    columns = tree_columns(table, config)
    x = design_matrix(table, columns)
    fit_idx, valid_idx = inner_split(y, groups)
    trials: list[dict[str, Any]] = []
    if y[valid_idx].any() and (~y[valid_idx]).any() and y[fit_idx].any() and (~y[fit_idx]).any():
        for setting in GRID:
            booster = _train(
                {**BASE_PARAMS, **setting}, x[fit_idx], y[fit_idx], MAX_TREES, (x[valid_idx], y[valid_idx])
            )
            best = int(booster.best_iteration) or booster.current_iteration()
            raw = booster.predict(x[valid_idx], raw_score=True, num_iteration=best)
            auc = roc_auc(y[valid_idx], raw)
            trials.append({**setting, "trees": max(MIN_TREES, best), "inner_auc": auc})
        chosen = max(trials, key=lambda t: (t["inner_auc"] or 0.0, -GRID.index(_setting(t))))
    else:
        chosen = {**GRID[0], "trees": FALLBACK_TREES, "inner_auc": None}
    setting = _setting(chosen)
    booster = _train({**BASE_PARAMS, **setting}, x, y, int(chosen["trees"]))
    return BoostedModel(
        columns=tuple(columns), booster=booster, setting=setting, trees=int(chosen["trees"]), tuning=trials
    )


def _setting(trial: Mapping[str, Any]) -> dict[str, Any]:
    return {k: trial[k] for k in GRID[0]}


@dataclass(frozen=True, eq=False)
class BoostedModel:
    """A fitted LightGBM booster over `columns`, with the setting and tuning that produced it."""

    columns: tuple[Column, ...]
    booster: Any  # lightgbm.Booster
    setting: dict[str, Any]
    trees: int
    tuning: list[dict[str, Any]] = field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def _chunks(self, table: FeatureTable) -> Iterator[tuple[int, int, np.ndarray]]:
        """Design-matrix rows in chunks: raw columns are the table's own arrays (no copy)."""
        n = len(table)
        values = [c.values(table) for c in self.columns]
        for start in range(0, n, PREDICT_CHUNK):
            stop = min(n, start + PREDICT_CHUNK)
            yield start, stop, np.column_stack([v[start:stop] for v in values])

    def logit(self, table: FeatureTable) -> np.ndarray:
        """Raw log-odds per row (before calibration), predicted in chunks of 100,000 rows."""
        out = np.zeros(len(table))
        for start, stop, x in self._chunks(table):
            out[start:stop] = self.booster.predict(x, raw_score=True, num_threads=PREDICT_THREADS)
        return out

    def contributions(self, table: FeatureTable) -> np.ndarray:
        """Per row: each column's TreeSHAP contribution to the raw log-odds, then the base value
        (rows × (columns + 1)); a row's values sum to its raw log-odds."""
        out = np.zeros((len(table), len(self.columns) + 1))
        for start, stop, x in self._chunks(table):
            out[start:stop] = self.booster.predict(x, pred_contrib=True, num_threads=PREDICT_THREADS)
        return out

    def group_contributions(self, table: FeatureTable) -> tuple[list[str], np.ndarray]:
        """Driver groups and their log-odds contributions per row (rows × groups); base value left out."""
        groups, position = column_groups(self.columns)
        contrib = self.contributions(table)
        sums = np.zeros((len(groups), len(table)))
        for j in range(len(self.columns)):  # columns added in order: a row's sums never depend on the batch
            sums[position[j]] += contrib[:, j]
        return groups, sums.T

    def importance(self, k: int = 12) -> list[tuple[str, float]]:
        """Driver groups by their share of the trees' total split gain, largest first."""
        gain = np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=np.float64)
        groups, position = column_groups(self.columns)
        per_group = np.zeros(len(groups))
        np.add.at(per_group, np.asarray(position, dtype=np.int64), gain)
        total = float(per_group.sum()) or 1.0
        pairs = sorted(
            zip(groups, (float(v) / total for v in per_group), strict=True), key=lambda p: (-p[1], p[0])
        )
        return pairs[:k]

    def to_params(self) -> dict[str, Any]:
        return {
            "features": self.feature_names,
            "columns": [c.to_json() for c in self.columns],
            "setting": self.setting,
            "trees": self.trees,
            "tuning": self.tuning,
            "booster": self.booster.model_to_string(),
        }

    @staticmethod
    def from_params(params: Mapping[str, Any]) -> BoostedModel:
        import lightgbm as lgb  # deferred: see _train

        return BoostedModel(
            columns=tuple(Column.from_json(c) for c in params["columns"]),
            booster=lgb.Booster(model_str=params["booster"]),
            setting=dict(params["setting"]),
            trees=int(params["trees"]),
            tuning=list(params.get("tuning", [])),
        )


def boosted_design(model: BoostedModel, table: FeatureTable) -> np.ndarray:
    """The full design matrix (for fingerprints and tests)."""
    return design_matrix(table, model.columns)


def grid_description(grid: Sequence[Mapping[str, Any]] = GRID) -> str:
    settings = "; ".join(", ".join(f"{k} {v}" for k, v in s.items()) for s in grid)
    return (
        f"LightGBM grid ({settings}), learning rate {BASE_PARAMS['learning_rate']}, early stopping "
        f"(patience {EARLY_STOPPING}, ≤ {MAX_TREES} trees) on a {INNER_SHARE:.0%} inner split of each "
        "fit's own training rows"
    )
