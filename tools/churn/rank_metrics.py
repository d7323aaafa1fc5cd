"""Account metrics for `rank`: churn_probability, arr_at_risk and health.

`tools.ranking` imports `CHURN_METRICS` (this module never imports ranking). When the
churn_scores snapshot of the active model and date covers the filtered accounts, ranking
sorts the kept values (`stored`) and only the shown accounts get features and a top driver;
otherwise the three metrics share one bulk scoring of the filtered accounts per ranking call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tools.account_metrics import AccountMetric, AccountMetricContext, MetricValue, Scalar, StoredValues
from tools.churn.active import load_active_model
from tools.churn.features import AccountScope
from tools.churn.scoring import Assessment, assess, band_of, explain_rows
from tools.churn.snapshots import StoredScores, stored_scores

_last: tuple[AccountMetricContext, Assessment] | None = None


def _assessment(ctx: AccountMetricContext) -> Assessment:
    """Score the filtered set once per ranking call (the same context object is passed twice)."""
    global _last
    if _last is not None and _last[0] is ctx:
        return _last[1]
    result = assess(ctx.session, as_of=ctx.as_of, scope=AccountScope(where=tuple(ctx.conditions)))
    _last = (ctx, result)
    return result


def _values(ctx: AccountMetricContext, values: np.ndarray) -> dict[str, MetricValue]:
    result = _assessment(ctx)
    return dict(zip((str(i) for i in result.table.ids), (float(v) for v in values), strict=True))


def _probability(ctx: AccountMetricContext) -> Mapping[str, MetricValue]:
    return _values(ctx, _assessment(ctx).probability)


def _arr_at_risk(ctx: AccountMetricContext) -> Mapping[str, MetricValue]:
    result = _assessment(ctx)
    return _values(ctx, result.table.numeric["arr"] * result.probability)


def _health(ctx: AccountMetricContext) -> Mapping[str, MetricValue]:
    return _values(ctx, _assessment(ctx).health)


def _stored(
    values: Callable[[StoredScores], np.ndarray],
) -> Callable[[AccountMetricContext], StoredValues | None]:
    def hook(ctx: AccountMetricContext) -> StoredValues | None:
        model = load_active_model(ctx.session)
        kept = stored_scores(ctx.session, day=ctx.as_of, model=model, where=ctx.conditions)
        if kept is None:
            return None
        return StoredValues(ids=[str(a) for a in kept.ids], values=values(kept))

    return hook


def _context(ctx: AccountMetricContext, shown: Sequence[str]) -> Mapping[str, Mapping[str, Scalar]]:
    """Churn figures and the top driver of each shown account (the last use of the cached scores;
    when the ranking read a snapshot, only the shown accounts are scored)."""
    global _last
    if _last is not None and _last[0] is ctx:
        result = _last[1]
    else:
        result = assess(ctx.session, as_of=ctx.as_of, scope=AccountScope(ids=tuple(shown)))
    _last = None  # do not keep a large feature table alive between calls
    position = {str(a): i for i, a in enumerate(result.table.ids)}
    rows = [position[a] for a in shown if a in position]
    explained = explain_rows(result.model, result.table.take(rows), top_drivers=1)
    out: dict[str, dict[str, Scalar]] = {}
    for k, i in enumerate(rows):
        prob = float(result.probability[i])
        drivers = explained[k][0]
        out[str(result.table.ids[i])] = {
            "churn_probability": prob,
            "band": band_of(prob),
            "arr_at_risk": float(result.table.numeric["arr"][i]) * prob,
            "health": float(result.health[i]),
            "top_driver": drivers[0].phrase if drivers else None,
            "churn_method": result.model.method,
            "churn_model_version": result.model.version,
        }
    return out


CHURN_METRICS = (
    AccountMetric(
        "churn_probability",
        "probability of churning within 90 days (churn model, or the rule-based fallback)",
        "desc",
        "probability",
        compute=_probability,
        context=_context,
        stored=_stored(lambda kept: kept.probability),
    ),
    AccountMetric(
        "arr_at_risk",
        "arr × churn_probability",
        "desc",
        "currency",
        compute=_arr_at_risk,
        context=_context,
        stored=_stored(lambda kept: kept.arr * kept.probability),
    ),
    AccountMetric(
        "health",
        "100 × (1 − churn_probability); the rule-based health score under the fallback",
        "asc",
        "points",
        compute=_health,
        context=_context,
        stored=_stored(lambda kept: 100.0 * (1.0 - kept.probability)),
    ),
)
