"""Steps 1–5 of value-chain analysis, assembled from score_activities and rank results.

Nothing here recomputes a formula of those tools: shares, leaks, gaps, quadrants and the
activity-based split come from `ActivityScores`; ROI and net benefit come from `RankResult`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import cast

from crm.models import ValueChainActivity
from tools.activities import QUADRANTS, ActivityScore, ActivityScores
from tools.analysis.models import (
    PRIMARY_CATEGORIES,
    SUPPORT_CATEGORIES,
    ActivityBasedSplit,
    ActivityRef,
    AdvantageLink,
    AdvantageTotal,
    Bottleneck,
    InitiativeItem,
    InitiativeType,
    MarginLeakItem,
    PerformanceStatus,
    PrimaryActivity,
    PrimaryCategory,
    Step1PrimaryActivities,
    Step2SupportActivities,
    Step3CostsAndPerformance,
    Step4Opportunities,
    Step5CompetitiveAdvantage,
    SuggestedInitiative,
    SupportActivity,
)
from tools.ranking import RankResult

# Initiatives in these statuses no longer count as work on their activity.
DROPPED_STATUSES = frozenset({"cancelled", "rejected"})
# ... and in these, they are not part of the live portfolio (totals, narrative).
CLOSED_STATUSES = frozenset({"done", "completed", *DROPPED_STATUSES})
ADVANTAGES = ("cost", "differentiation")
SUGGEST_FOR_QUADRANTS = ("eliminate_or_restructure", "optimize")


def money(x: float) -> str:
    return f"{x:,.0f}"


def pct(x: float) -> str:
    return f"{x:.0%}"


def _category_key(category: str, order: Sequence[str]) -> int:
    return order.index(category) if category in order else len(order)


def _systems(row: ValueChainActivity | None) -> list[str]:
    return [str(s) for s in (row.systems or [])] if row is not None else []


def _status(gap: float | None) -> PerformanceStatus:
    if gap is None:
        return "no_data"
    return "below_target" if gap > 0 else "on_or_above_target"


def _names(ids: Sequence[str], by_id: dict[str, ActivityScore]) -> str:
    return ", ".join(by_id[i].name for i in ids)


# ---------------------------------------------------------------------------- step 1 and 2


def enablement(
    scores: ActivityScores, rows: dict[str, ValueChainActivity]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(primary id → enabling support ids, support id → unresolved enables ids)."""
    primaries = {s.id for s in scores.activities if s.kind == "primary"}
    enabled_by: dict[str, list[str]] = {p: [] for p in sorted(primaries)}
    unresolved: dict[str, list[str]] = {}
    for s in sorted(scores.activities, key=lambda a: a.id):
        if s.kind != "support":
            continue
        row = rows.get(s.id)
        targets = [str(t) for t in (row.enables or [])] if row is not None else []
        unresolved[s.id] = sorted({t for t in targets if t not in primaries})
        for t in sorted({t for t in targets if t in primaries}):
            enabled_by[t].append(s.id)
    return enabled_by, unresolved


def step1(
    scores: ActivityScores, rows: dict[str, ValueChainActivity], enabled_by: dict[str, list[str]]
) -> Step1PrimaryActivities:
    by_id = {s.id: s for s in scores.activities}
    primary = sorted(
        (s for s in scores.activities if s.kind == "primary"),
        key=lambda s: (_category_key(s.porter_category, PRIMARY_CATEGORIES), s.porter_category, s.id),
    )
    items = [
        PrimaryActivity(
            id=s.id,
            name=s.name,
            porter_category=s.porter_category,
            owner_team=s.owner_team,
            systems=_systems(rows.get(s.id)),
            annual_cost=s.annual_cost,
            value_score=s.value_score,
            cost_share=s.cost_share,
            value_share=s.value_share,
            value_cost_index=s.value_cost_index,
            margin_leak=s.margin_leak,
            quadrant=s.quadrant,
            performance_metric=s.performance_metric,
            performance_actual=s.performance_actual,
            performance_target=s.performance_target,
            performance_direction=s.performance_direction,
            performance_gap=s.performance_gap,
            performance_status=_status(s.performance_gap),
            enabled_by=[ActivityRef(id=i, name=by_id[i].name) for i in enabled_by.get(s.id, [])],
        )
        for s in primary
    ]
    found = {s.porter_category for s in primary}
    order = [*PRIMARY_CATEGORIES, *sorted(found - set(PRIMARY_CATEGORIES))]
    categories = [
        PrimaryCategory(
            porter_category=c,
            activity_ids=[a.id for a in items if a.porter_category == c],
            annual_cost=math.fsum(a.annual_cost for a in items if a.porter_category == c),
        )
        for c in order
    ]
    missing = [c for c in PRIMARY_CATEGORIES if c not in found]
    total = math.fsum(a.annual_cost for a in items)
    share = total / scores.total_cost if scores.total_cost > 0 else 0.0
    below = [a for a in items if a.performance_status == "below_target"]
    parts = [
        f"{len(items)} primary activit{'y' if len(items) == 1 else 'ies'} in "
        f"{len(PRIMARY_CATEGORIES) - len(missing)} of {len(PRIMARY_CATEGORIES)} Porter primary categories "
        f"cost {money(total)} ({pct(share)} of the chain)."
    ]
    if missing:
        parts.append(
            "No activity is recorded in " + ", ".join(missing) + ": the inventory may be incomplete there."
        )
    if below:
        worst = max(below, key=lambda a: (a.performance_gap or 0.0, a.id))
        parts.append(
            f"{len(below)} {'is' if len(below) == 1 else 'are'} below target; furthest behind: "
            f"{worst.name} ({pct(worst.performance_gap or 0.0)} short)."
        )
    return Step1PrimaryActivities(
        activities=items,
        categories=categories,
        missing_categories=missing,
        total_cost=total,
        cost_share_of_chain=share,
        below_target=len(below),
        summary=" ".join(parts),
    )


def step2(
    scores: ActivityScores,
    rows: dict[str, ValueChainActivity],
    enabled_by: dict[str, list[str]],
    unresolved: dict[str, list[str]],
) -> Step2SupportActivities:
    by_id = {s.id: s for s in scores.activities}
    support = sorted(
        (s for s in scores.activities if s.kind == "support"),
        key=lambda s: (_category_key(s.porter_category, SUPPORT_CATEGORIES), s.porter_category, s.id),
    )
    enables_of: dict[str, list[str]] = {s.id: [] for s in support}
    for primary_id, supporters in enabled_by.items():
        for sup in supporters:
            enables_of[sup].append(primary_id)
    items = [
        SupportActivity(
            id=s.id,
            name=s.name,
            porter_category=s.porter_category,
            owner_team=s.owner_team,
            systems=_systems(rows.get(s.id)),
            annual_cost=s.annual_cost,
            value_score=s.value_score,
            cost_share=s.cost_share,
            value_share=s.value_share,
            margin_leak=s.margin_leak,
            quadrant=s.quadrant,
            performance_metric=s.performance_metric,
            performance_gap=s.performance_gap,
            enables=[ActivityRef(id=p, name=by_id[p].name) for p in sorted(enables_of[s.id])],
            unresolved_enables=unresolved.get(s.id, []),
        )
        for s in support
    ]
    unlinked = [a.id for a in items if not a.enables]
    unsupported = [p for p, sups in enabled_by.items() if not sups]
    found = {a.porter_category for a in items}
    missing = [c for c in SUPPORT_CATEGORIES if c not in found]
    total = math.fsum(a.annual_cost for a in items)
    share = total / scores.total_cost if scores.total_cost > 0 else 0.0
    parts = [
        f"{len(items)} support activit{'y' if len(items) == 1 else 'ies'} cost {money(total)} "
        f"({pct(share)} of the chain)."
    ]
    if items:
        widest = max(items, key=lambda a: (len(a.enables), a.annual_cost, a.id))
        if widest.enables:
            parts.append(f"{widest.name} enables the most primary activities ({len(widest.enables)}).")
    if unlinked:
        parts.append(f"Enabling nothing recorded: {_names(unlinked, by_id)}.")
    if unsupported:
        parts.append(f"Primary activities no support activity enables: {_names(unsupported, by_id)}.")
    dangling = sorted({t for ts in unresolved.values() for t in ts})
    if dangling:
        parts.append(
            "Unresolved `enables` ids (not primary activities of this period): " + ", ".join(dangling) + "."
        )
    return Step2SupportActivities(
        activities=items,
        enablement=enabled_by,
        unlinked_support=unlinked,
        unsupported_primary=unsupported,
        missing_categories=missing,
        total_cost=total,
        cost_share_of_chain=share,
        summary=" ".join(parts),
    )


# ---------------------------------------------------------------------------- step 3


def step3(scores: ActivityScores, by_leak: RankResult, by_gap: RankResult) -> Step3CostsAndPerformance:
    by_id = {s.id: s for s in scores.activities}
    total_leak = scores.total_margin_leak
    leaks = [
        MarginLeakItem(
            rank=item.rank,
            id=item.id,
            name=item.name,
            kind=by_id[item.id].kind,
            margin_leak=float(item.value or 0.0),
            share_of_total_leak=float(item.value or 0.0) / total_leak if total_leak > 0 else 0.0,
            annual_cost=by_id[item.id].annual_cost,
            cost_share=by_id[item.id].cost_share,
            value_share=by_id[item.id].value_share,
            quadrant=by_id[item.id].quadrant,
        )
        for item in by_leak.items
        if item.value is not None and item.value > 0
    ]
    bottlenecks = [
        Bottleneck(
            rank=item.rank,
            id=item.id,
            name=item.name,
            performance_metric=by_id[item.id].performance_metric,
            performance_actual=by_id[item.id].performance_actual,
            performance_target=by_id[item.id].performance_target,
            performance_direction=by_id[item.id].performance_direction,
            performance_gap=float(item.value),
        )
        for item in by_gap.items
        if item.value is not None and item.value > 0
    ]
    no_perf = sorted(s.id for s in scores.activities if s.performance_gap is None)
    splits: list[ActivityBasedSplit] = []
    for s in sorted(scores.activities, key=lambda a: a.id):
        if s.value_added_cost is None:
            continue
        splits.append(
            ActivityBasedSplit(
                id=s.id,
                name=s.name,
                cost_driver=s.cost_driver,
                annual_cost=s.annual_cost,
                value_added_cost=s.value_added_cost,
                non_value_added_cost=s.non_value_added_cost or 0.0,
                unused_capacity_cost=s.unused_capacity_cost or 0.0,
            )
        )
    covered = math.fsum(a.annual_cost for a in splits)
    coverage = covered / scores.total_cost if scores.total_cost > 0 else 0.0
    leak_share = total_leak / scores.total_cost if scores.total_cost > 0 else 0.0
    parts = [
        f"Margin leak totals {money(total_leak)} ({pct(leak_share)} of cost) across {len(leaks)} activities."
    ]
    if leaks:
        top = leaks[:3]
        parts.append(
            "Largest: "
            + ", ".join(f"{x.name} {money(x.margin_leak)} ({pct(x.share_of_total_leak)})" for x in top)
            + "."
        )
    if bottlenecks:
        top_b = bottlenecks[:3]
        parts.append(
            f"{len(bottlenecks)} activities are behind target; largest gaps: "
            + ", ".join(f"{b.name} {pct(b.performance_gap)}" for b in top_b)
            + "."
        )
    if splits:
        parts.append(
            f"Driver data covers {len(splits)} activities ({pct(coverage)} of cost): value-added "
            f"{money(scores.total_value_added_cost)}, non-value-added {money(scores.total_non_value_added_cost)}, "
            f"unused committed capacity {money(scores.total_unused_capacity_cost)}."
        )
    else:
        parts.append("No activity carries cost-driver data, so there is no value-added split.")
    return Step3CostsAndPerformance(
        total_cost=scores.total_cost,
        total_margin_leak=total_leak,
        margin_leak_share_of_cost=leak_share,
        quadrant_counts=scores.quadrant_counts,
        margin_leak=leaks,
        bottlenecks=bottlenecks,
        activities_without_performance_data=no_perf,
        activity_based=splits,
        driver_cost_coverage=coverage,
        total_value_added_cost=scores.total_value_added_cost,
        total_non_value_added_cost=scores.total_non_value_added_cost,
        total_unused_capacity_cost=scores.total_unused_capacity_cost,
        summary=" ".join(parts),
    )


# ---------------------------------------------------------------------------- step 4


def _date(value: object) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else None


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _suggest_type(score: ActivityScore, row: ValueChainActivity | None) -> tuple[InitiativeType, str]:
    """The initiative type for an activity without one, by the first rule that applies."""
    if row is not None and row.necessary is False:
        return "eliminate", "marked unnecessary: all of its cost is non-value-added"
    if (score.unused_capacity_cost or 0.0) > 0:
        return "renegotiate", "committed capacity is left unused: shrink the commitment at renewal"
    if (score.non_value_added_cost or 0.0) > 0:
        return "streamline", "driver use above standard (AQ > SQ) is non-value-added"
    if score.quadrant == "eliminate_or_restructure":
        return "streamline", "low value for a high cost and no driver data: restructure it"
    return "automate", "high value at a high cost: keep it and lower its unit cost"


_VERB: dict[str, str] = {
    "eliminate": "Eliminate or outsource",
    "renegotiate": "Renegotiate the commitment of",
    "streamline": "Streamline",
    "automate": "Automate",
    "invest": "Invest in",
}


def step4(
    scores: ActivityScores,
    rows: dict[str, ValueChainActivity],
    by_roi: RankResult,
    by_net: RankResult,
    due: dt.date | None,
) -> Step4Opportunities:
    by_id = {s.id: s for s in scores.activities}
    net_rank = {item.id: item.rank for item in by_net.items}
    net_value = {item.id: item.value for item in by_net.items}
    items: list[InitiativeItem] = []
    for item in by_roi.items:
        c = item.context
        activity_id = str(c["activity_id"])
        status = str(c["status"])
        items.append(
            InitiativeItem(
                id=item.id,
                description=item.name,
                activity_id=activity_id,
                activity_name=str(c["activity"]),
                activity_quadrant=by_id[activity_id].quadrant if activity_id in by_id else None,
                type=str(c["type"]),
                advantage=cast(str | None, c["advantage"]),
                owner=cast(str | None, c["owner"]),
                due=_date(c["due"]),
                status=status,
                open=status not in CLOSED_STATUSES,
                est_cost=_float(c["est_cost"]),
                est_annual_benefit=_float(c["est_annual_benefit"]),
                roi=None if item.value is None else float(item.value),
                net_benefit=_float(net_value[item.id]),
                roi_rank=item.rank,
                net_benefit_rank=net_rank[item.id],
            )
        )
    live = [i for i in items if i.open]
    covered = {i.activity_id for i in items if i.status not in DROPPED_STATUSES}
    suggestions: list[SuggestedInitiative] = []
    for s in scores.activities:  # margin-leak order: the costliest gap first
        if s.quadrant not in SUGGEST_FOR_QUADRANTS or s.id in covered:
            continue
        kind, rule = _suggest_type(s, rows.get(s.id))
        addressable = max(s.margin_leak, (s.non_value_added_cost or 0.0) + (s.unused_capacity_cost or 0.0))
        suggestions.append(
            SuggestedInitiative(
                activity_id=s.id,
                activity_name=s.name,
                quadrant=s.quadrant,
                type=kind,
                advantage="cost",
                owner=s.owner_team,
                due=due,
                addressable_cost=addressable,
                rule=rule,
                description=f"{_VERB[kind]} {s.name}: {rule}; up to {money(addressable)} a year is addressable.",
            )
        )
    parts = [
        f"{len(items)} initiatives in the period, {len(live)} open, promising "
        f"{money(math.fsum(i.est_annual_benefit for i in live))} a year for "
        f"{money(math.fsum(i.est_cost for i in live))}."
    ]
    if items and items[0].roi is not None:
        best = items[0]
        parts.append(f"Best ROI: {best.description} ({best.roi:.1f}× on {best.activity_name}).")
    if suggestions:
        parts.append(
            f"{len(suggestions)} {'activity' if len(suggestions) == 1 else 'activities'} in the optimize or "
            "eliminate_or_restructure quadrant "
            f"{'has' if len(suggestions) == 1 else 'have'} no initiative: "
            + ", ".join(f"{x.activity_name} ({x.type})" for x in suggestions)
            + "."
        )
    return Step4Opportunities(
        initiatives=items,
        open_initiatives=len(live),
        open_est_cost=math.fsum(i.est_cost for i in live),
        open_est_annual_benefit=math.fsum(i.est_annual_benefit for i in live),
        truncated=by_roi.total_matching > len(by_roi.items),
        suggestions=suggestions,
        summary=" ".join(parts),
    )


# ---------------------------------------------------------------------------- step 5


def step5_links(
    step4_result: Step4Opportunities,
) -> tuple[list[AdvantageLink], list[AdvantageTotal], list[str]]:
    links = [
        AdvantageLink(
            initiative_id=i.id,
            description=i.description,
            activity_id=i.activity_id,
            activity_name=i.activity_name,
            advantage=i.advantage,
            decorative=i.advantage not in ADVANTAGES,
            est_annual_benefit=i.est_annual_benefit,
            net_benefit=i.net_benefit,
        )
        for i in step4_result.initiatives
    ]
    live = [i for i in step4_result.initiatives if i.open]
    total_benefit = math.fsum(i.est_annual_benefit for i in live)
    totals = []
    for adv in (*ADVANTAGES, "none"):
        group = [i for i in live if (i.advantage if i.advantage in ADVANTAGES else "none") == adv]
        benefit = math.fsum(i.est_annual_benefit for i in group)
        totals.append(
            AdvantageTotal(
                advantage=adv,
                initiatives=len(group),
                est_cost=math.fsum(i.est_cost for i in group),
                est_annual_benefit=benefit,
                share_of_benefit=benefit / total_benefit if total_benefit > 0 else 0.0,
            )
        )
    decorative = [link.initiative_id for link in links if link.decorative]
    return links, totals, decorative


def quadrant_phrase(counts: dict[str, int]) -> str:
    return ", ".join(f"{q.replace('_', ' ')} {counts.get(q, 0)}" for q in QUADRANTS)


def build_step5(step4_result: Step4Opportunities, narrative: str) -> Step5CompetitiveAdvantage:
    links, totals, decorative = step5_links(step4_result)
    return Step5CompetitiveAdvantage(links=links, totals=totals, decorative=decorative, narrative=narrative)
