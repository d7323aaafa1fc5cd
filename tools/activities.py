"""The `score_activities` tool: cost versus customer value of value-chain activities (SPEC §5.1).

Formulas, for the n activities of one period with cost C_i and value score v_i:

- cost_share_i = C_i / ΣC, value_share_i = v_i / Σv (0 for every activity when the total is 0)
- value_cost_index_i = value_share_i / cost_share_i (null when C_i = 0)
- margin_leak_i = max(0, C_i − ΣC · value_share_i)
- performance_gap_i = (target − actual) / |target| (higher_is_better) or
  (actual − target) / |target| (lower_is_better); positive = underperforming; null without data
  or with a zero target
- quadrant: "high" means share ≥ 1/n, compared as n·C_i ≥ ΣC so that ties are exact
- activity-based split from the cost driver (SQ, AQ, SP, necessary):
  necessary, AQ ≥ SQ: value_added = SQ·SP, non_value_added = (AQ − SQ)·SP, unused = 0;
  necessary, AQ < SQ (committed capacity left unused): value_added = AQ·SP, non_value_added = 0,
  unused_capacity = (SQ − AQ)·SP; unnecessary: value_added = 0, non_value_added = AQ·SP, unused = 0.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.models import ValueChainActivity
from tools.common import activity_periods
from tools.errors import ToolInputError, unknown
from tools.projection import MAX_ROWS, pick

Quadrant = Literal["invest_and_scale", "optimize", "eliminate_or_restructure", "maintain"]
QUADRANTS: tuple[Quadrant, ...] = ("invest_and_scale", "optimize", "eliminate_or_restructure", "maintain")
Direction = Literal["higher_is_better", "lower_is_better"]
DIRECTIONS: tuple[Direction, ...] = ("higher_is_better", "lower_is_better")


class ActivityScore(BaseModel):
    """Cost, value, margin leak, performance and activity-based split of one activity."""

    id: str
    name: str
    kind: str
    porter_category: str
    owner_team: str | None
    annual_cost: float
    value_score: float
    cost_share: float
    value_share: float
    value_cost_index: float | None
    margin_leak: float
    performance_metric: str | None
    performance_actual: float | None
    performance_target: float | None
    performance_direction: str | None
    performance_gap: float | None
    quadrant: Quadrant
    cost_driver: str | None
    value_added_cost: float | None
    non_value_added_cost: float | None
    unused_capacity_cost: float | None


class ScoreActivitiesInputs(BaseModel):
    period: str
    period_defaulted: bool


class ActivityScores(BaseModel):
    """All activities of one period scored on cost versus value, biggest margin leak first."""

    period: str
    n: int
    total_cost: float
    total_value_score: float
    total_margin_leak: float
    total_value_added_cost: float
    total_non_value_added_cost: float
    total_unused_capacity_cost: float
    quadrant_counts: dict[Quadrant, int]
    activities: list[ActivityScore]
    explanation: str
    inputs: ScoreActivitiesInputs


def _share(part: float, total: float) -> float:
    return part / total if total > 0 else 0.0


def performance_gap(actual: float | None, target: float | None, direction: str | None) -> float | None:
    """Relative shortfall against target; positive means underperforming, null without data."""
    if actual is None or target is None or target == 0 or direction not in DIRECTIONS:
        return None
    if direction == "higher_is_better":
        return (target - actual) / abs(target)
    return (actual - target) / abs(target)


def quadrant_of(*, high_value: bool, high_cost: bool) -> Quadrant:
    if high_value:
        return "optimize" if high_cost else "invest_and_scale"
    return "eliminate_or_restructure" if high_cost else "maintain"


def abm_split(
    *, sq: float | None, aq: float | None, sp: float | None, necessary: bool | None
) -> tuple[float | None, float | None, float | None]:
    """(value_added, non_value_added, unused_capacity) cost from the driver; nulls without data.

    An activity whose `necessary` flag is unknown is treated as necessary. Committed capacity
    (SQ) that was not used (AQ < SQ) is reported as unused capacity, not hidden in value-added.
    """
    if aq is None or sp is None:
        return None, None, None
    if necessary is False:
        return 0.0, aq * sp, 0.0
    if sq is None:
        return None, None, None
    if aq >= sq:
        return sq * sp, (aq - sq) * sp, 0.0
    return aq * sp, 0.0, (sq - aq) * sp


def resolve_period(session: Session, period: str | None) -> tuple[str, bool]:
    """The requested period (validated) or the latest one; (period, defaulted)."""
    periods = activity_periods(session)
    if not periods:
        raise ToolInputError("there are no value-chain activities in the database; load or import them first")
    if period is None:
        return periods[-1], True
    if period in periods:
        return period, False
    matches = [p for p in periods if p.casefold() == period.strip().casefold()]
    if len(matches) == 1:
        return matches[0], False
    raise unknown("period", period, reversed(periods), "value-chain activities")


def score_rows(rows: list[ValueChainActivity]) -> list[ActivityScore]:
    n = len(rows)
    total_cost = math.fsum(r.annual_cost for r in rows)
    total_value = math.fsum(r.value_score for r in rows)
    scores: list[ActivityScore] = []
    for r in rows:
        cost_share = _share(r.annual_cost, total_cost)
        value_share = _share(r.value_score, total_value)
        # ΣC·v_i/Σv rather than ΣC·value_share_i: one rounding fewer, exact on round numbers.
        fair_cost = total_cost * r.value_score / total_value if total_value > 0 else 0.0
        index = value_share / cost_share if r.annual_cost != 0 and cost_share != 0 else None
        va, nva, unused = abm_split(
            sq=r.std_quantity, aq=r.actual_quantity, sp=r.std_price, necessary=r.necessary
        )
        scores.append(
            ActivityScore(
                id=r.id,
                name=r.name,
                kind=r.kind,
                porter_category=r.porter_category,
                owner_team=r.owner_team,
                annual_cost=r.annual_cost,
                value_score=r.value_score,
                cost_share=cost_share,
                value_share=value_share,
                value_cost_index=index,
                margin_leak=max(0.0, r.annual_cost - fair_cost),
                performance_metric=r.perf_metric,
                performance_actual=r.perf_actual,
                performance_target=r.perf_target,
                performance_direction=r.perf_direction,
                performance_gap=performance_gap(r.perf_actual, r.perf_target, r.perf_direction),
                # share ≥ 1/n  ⇔  n·x ≥ total (no division, so equal shares tie exactly)
                quadrant=quadrant_of(
                    high_value=total_value > 0 and n * r.value_score >= total_value,
                    high_cost=total_cost > 0 and n * r.annual_cost >= total_cost,
                ),
                cost_driver=r.cost_driver,
                value_added_cost=va,
                non_value_added_cost=nva,
                unused_capacity_cost=unused,
            )
        )
    scores.sort(key=lambda s: (-s.margin_leak, s.id))
    return scores


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _explain(
    period: str, defaulted: bool, scores: list[ActivityScore], total_cost: float, leak: float
) -> str:
    n = len(scores)
    when = f"{period} (latest period)" if defaulted else period
    parts = [f"{n} activit{'y' if n == 1 else 'ies'} in {when}, total cost {_money(total_cost)}."]
    if total_cost == 0:
        parts.append("Total cost is zero, so cost shares are 0 and nothing leaks margin.")
    if scores and math.fsum(s.value_score for s in scores) == 0:
        parts.append("Every value score is zero, so all spend counts as margin leak.")
    leaking = [s for s in scores if s.margin_leak > 0]
    if leaking:
        top = ", ".join(f"{s.name} {_money(s.margin_leak)}" for s in leaking[:3])
        pct = leak / total_cost if total_cost else 0.0
        parts.append(
            f"Margin leak (spend above each activity's share of customer value) totals "
            f"{_money(leak)} ({pct:.0%} of cost); largest: {top}."
        )
    elif total_cost > 0:
        parts.append("No activity spends more than its share of customer value.")
    counts = Counter(s.quadrant for s in scores)
    parts.append("Quadrants: " + ", ".join(f"{q} {counts[q]}" for q in QUADRANTS) + ".")
    return " ".join(parts)


def score_activities(*, session: Session, period: str | None = None) -> ActivityScores:
    """Score value-chain activities on cost versus customer value and show where margin is lost.

    For each activity in the period: cost_share = C/ΣC, value_share = v/Σv, value_cost_index =
    value_share/cost_share, margin_leak = max(0, C − ΣC·value_share), performance_gap (positive =
    below target), quadrant (invest_and_scale, optimize, eliminate_or_restructure, maintain; high
    = share ≥ 1/n) and, where a cost driver is recorded, value-added / non-value-added / unused
    committed-capacity cost. Sorted by margin_leak, largest first.

    Args:
        period: the period to score, e.g. "2026"; defaults to the latest period in the data.
    """
    resolved, defaulted = resolve_period(session, period)
    rows = list(
        session.scalars(
            select(ValueChainActivity)
            .where(ValueChainActivity.period == resolved)
            .order_by(ValueChainActivity.id)
        )
    )
    scores = score_rows(rows)
    total_cost = math.fsum(s.annual_cost for s in scores)
    leak = math.fsum(s.margin_leak for s in scores)
    counts = Counter(s.quadrant for s in scores)
    return ActivityScores(
        period=resolved,
        n=len(scores),
        total_cost=total_cost,
        total_value_score=math.fsum(s.value_score for s in scores),
        total_margin_leak=leak,
        total_value_added_cost=math.fsum(s.value_added_cost or 0.0 for s in scores),
        total_non_value_added_cost=math.fsum(s.non_value_added_cost or 0.0 for s in scores),
        total_unused_capacity_cost=math.fsum(s.unused_capacity_cost or 0.0 for s in scores),
        quadrant_counts={q: counts[q] for q in QUADRANTS},
        activities=scores,
        explanation=_explain(resolved, defaulted, scores, total_cost, leak),
        inputs=ScoreActivitiesInputs(period=resolved, period_defaulted=defaulted),
    )


def project_scores(r: ActivityScores) -> dict[str, Any]:
    """What the model reads of `score_activities`: totals and the top activities by margin leak."""
    return {
        "period": r.period,
        "total_cost": r.total_cost,
        "total_margin_leak": r.total_margin_leak,
        "activities_by_margin_leak": [
            pick(a, "id", "name", "cost_share", "value_share", "value_cost_index", "margin_leak", "quadrant")
            for a in r.activities[:MAX_ROWS]
        ],
        "more": max(0, len(r.activities) - MAX_ROWS),
    }
