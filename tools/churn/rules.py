"""The documented rule-based health score: the fallback when there is too little labelled history.

Health starts at 100 and each rule below subtracts points (the rule's "contribution"); the
score is clipped to [0, 100] and ``p_churn = (100 − health) / 100``, so
``health = 100 × (1 − p_churn)`` holds for both the rule-based and the model-based method.

| rule (driver group)      | points                                                        |
|--------------------------|---------------------------------------------------------------|
| usage_trend              | 60 × min(0.5, max(0, −trend)): −50 % usage or worse = 30      |
| seat_utilisation         | 10 when under 40 % of seats are active                        |
| open_tickets_urgent      | 10 per open urgent ticket, at most 20                         |
| open_tickets_high        | 5 per open high-priority ticket, at most 10                   |
| csat_median              | 10 when the median CSAT of the last 180 days is ≤ 3           |
| invoices_failed_180d     | 10 per failed invoice in the last 180 days, at most 20        |
| invoices_late_180d       | 5 per late invoice in the last 180 days, at most 10           |
| nps_last                 | 15 for a detractor (0–6), 5 for a passive (7–8)               |
| champion_left            | 15 when a champion left in the last 180 days                  |
| days_since_interaction   | 10 when nobody talked to the account for more than 60 days   |
| days_to_renewal          | 5 when the renewal is 0–60 days away                          |

Unknown values (no usage, no NPS response, ...) cost nothing: the rules only penalise
evidence, they never guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tools.churn.features import FeatureTable

RULES_VERSION = "rules-v1"


def _col(table: FeatureTable, name: str) -> np.ndarray:
    values = table.numeric.get(name)
    return values if values is not None else np.full(len(table), np.nan)


def _when(mask: np.ndarray, points: float) -> np.ndarray:
    return np.where(mask, points, 0.0)


def _capped(count: np.ndarray, each: float, cap: float) -> np.ndarray:
    return np.minimum(np.nan_to_num(count, nan=0.0) * each, cap)


@dataclass(frozen=True)
class Rule:
    group: str
    description: str
    points: Callable[[FeatureTable], np.ndarray]


def _usage(t: FeatureTable) -> np.ndarray:
    trend = _col(t, "usage_trend")
    return np.where(np.isnan(trend), 0.0, 60.0 * np.clip(-trend, 0.0, 0.5))


def _nps(t: FeatureTable) -> np.ndarray:
    nps = _col(t, "nps_last")
    with np.errstate(invalid="ignore"):
        return np.where(nps <= 6, 15.0, np.where(nps <= 8, 5.0, 0.0))


def _lt(t: FeatureTable, name: str, bound: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return _col(t, name) < bound


def _le(t: FeatureTable, name: str, bound: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return _col(t, name) <= bound


def _gt(t: FeatureTable, name: str, bound: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return _col(t, name) > bound


RULES: tuple[Rule, ...] = (
    Rule("usage_trend", "60 × usage decline (capped at 50 %)", _usage),
    Rule(
        "seat_utilisation",
        "under 40 % of seats active",
        lambda t: _when(_lt(t, "seat_utilisation", 0.4), 10.0),
    ),
    Rule(
        "open_tickets_urgent",
        "10 per open urgent ticket (max 20)",
        lambda t: _capped(_col(t, "open_tickets_urgent"), 10.0, 20.0),
    ),
    Rule(
        "open_tickets_high",
        "5 per open high ticket (max 10)",
        lambda t: _capped(_col(t, "open_tickets_high"), 5.0, 10.0),
    ),
    Rule("csat_median", "median CSAT ≤ 3", lambda t: _when(_le(t, "csat_median", 3.0), 10.0)),
    Rule(
        "invoices_failed_180d",
        "10 per failed invoice (max 20)",
        lambda t: _capped(_col(t, "invoices_failed_180d"), 10.0, 20.0),
    ),
    Rule(
        "invoices_late_180d",
        "5 per late invoice (max 10)",
        lambda t: _capped(_col(t, "invoices_late_180d"), 5.0, 10.0),
    ),
    Rule("nps_last", "detractor 15, passive 5", _nps),
    Rule(
        "champion_left",
        "champion left in the last 180 days",
        lambda t: _when(_col(t, "champion_left") >= 1, 15.0),
    ),
    Rule(
        "days_since_interaction",
        "no interaction for over 60 days",
        lambda t: _when(_gt(t, "days_since_interaction", 60.0), 10.0),
    ),
    Rule(
        "days_to_renewal",
        "renewal 0–60 days away",
        lambda t: _when(_le(t, "days_to_renewal", 60.0) & ~_lt(t, "days_to_renewal", 0.0), 5.0),
    ),
)


def rule_points(table: FeatureTable) -> np.ndarray:
    """Penalty points per row (rows × rules), in the order of `RULES`."""
    if not RULES:
        return np.zeros((len(table), 0))
    return np.column_stack([rule.points(table) for rule in RULES])


def health_score(table: FeatureTable) -> np.ndarray:
    """Health 0..100 per row (100 = no risk evidence)."""
    total = np.zeros(len(table))
    for rule in RULES:  # sequential sums: a row scores the same alone or in a batch
        total = total + rule.points(table)
    return np.clip(100.0 - total, 0.0, 100.0)


def rule_probability(table: FeatureTable) -> np.ndarray:
    """The rule-based churn probability ``(100 − health) / 100``."""
    return (100.0 - health_score(table)) / 100.0
