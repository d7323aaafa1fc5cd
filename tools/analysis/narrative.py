"""The closing narrative: a few sentences assembled from the figures of all five steps.

Deterministic text (no LLM): the same result gives the same words. Each sentence is left out
when its figures are absent, so a sparse database gives a short, still-true narrative.
"""

from __future__ import annotations

from tools.analysis.models import (
    AdvantageTotal,
    Step1PrimaryActivities,
    Step2SupportActivities,
    Step3CostsAndPerformance,
    Step4Opportunities,
)
from tools.analysis.steps import money, pct


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def narrative(
    *,
    period: str,
    n: int,
    s1: Step1PrimaryActivities,
    s2: Step2SupportActivities,
    s3: Step3CostsAndPerformance,
    s4: Step4Opportunities,
    totals: list[AdvantageTotal],
    decorative: list[str],
) -> str:
    out: list[str] = [
        f"In {period} the value chain's {n} activities cost {money(s3.total_cost)}: primary activities "
        f"{pct(s1.cost_share_of_chain)}, support activities {pct(s2.cost_share_of_chain)}."
    ]
    if s3.margin_leak:
        leaders = [f"{x.name} ({money(x.margin_leak)})" for x in s3.margin_leak[:2]]
        out.append(
            f"{money(s3.total_margin_leak)} ({pct(s3.margin_leak_share_of_cost)} of cost) is spent above "
            f"the activities' share of customer value, most in {_join(leaders)}."
        )
    if s3.bottlenecks:
        b = s3.bottlenecks[0]
        out.append(f"The widest performance gap is {b.name}, {pct(b.performance_gap)} behind target.")
    waste = s3.total_non_value_added_cost + s3.total_unused_capacity_cost
    if s3.activity_based and waste > 0:
        out.append(
            f"Where cost drivers are recorded, {money(waste)} is non-value-added "
            f"(over-use {money(s3.total_non_value_added_cost)}, idle committed capacity "
            f"{money(s3.total_unused_capacity_cost)})."
        )
    if s4.initiatives:
        out.append(
            f"{s4.open_initiatives} open initiatives promise {money(s4.open_est_annual_benefit)} a year "
            f"for {money(s4.open_est_cost)}."
        )
        by = {t.advantage: t for t in totals}
        cost, diff, none = by["cost"], by["differentiation"], by["none"]
        if cost.initiatives or diff.initiatives:
            out.append(
                f"Cost advantage carries {pct(cost.share_of_benefit)} of that benefit ({cost.initiatives} "
                f"initiatives), differentiation {pct(diff.share_of_benefit)} ({diff.initiatives})."
            )
            if cost.initiatives and not diff.initiatives:
                out.append("No open initiative builds differentiation: the portfolio is all cost-cutting.")
            elif diff.initiatives and not cost.initiatives:
                out.append("No open initiative builds a cost advantage.")
        if none.initiatives:
            one = none.initiatives == 1
            out.append(
                f"{none.initiatives} open initiative{'' if one else 's'} "
                f"({money(none.est_annual_benefit)} a year) name{'s' if one else ''} no advantage and "
                f"{'is' if one else 'are'} likely decorative."
            )
        elif decorative:
            one = len(decorative) == 1
            out.append(
                f"{len(decorative)} closed initiative{'' if one else 's'} named no advantage (likely decorative)."
            )
    else:
        out.append("No initiative is recorded for this period.")
    if s4.suggestions:
        names = [f"{x.activity_name} ({x.type}, up to {money(x.addressable_cost)})" for x in s4.suggestions]
        out.append(f"Unaddressed: {_join(names)}.")
    return " ".join(out)
