"""The `value_chain_analysis` tool: the five steps of value-chain analysis for one period."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.models import ValueChainActivity
from tools.activities import score_activities
from tools.analysis.crm_view import crm_view
from tools.analysis.models import AnalysisInputs, ValueChainAnalysis
from tools.analysis.narrative import narrative
from tools.analysis.periods import next_period_end, period_bounds
from tools.analysis.steps import build_step5, enablement, step1, step2, step3, step4, step5_links
from tools.common import data_as_of
from tools.ranking import MAX_LIMIT, rank


def _window(period: str, as_of: dt.date) -> tuple[dt.date, dt.date]:
    """The account-metric window: the period's dates cut at as_of; the trailing year if unreadable."""
    bounds = period_bounds(period)
    if bounds is None:
        return as_of - dt.timedelta(days=364), as_of
    start, end = bounds
    return start, min(end, as_of)


def value_chain_analysis(*, session: Session, period: str | None = None) -> ValueChainAnalysis:
    """Run the five steps of value-chain analysis for one period, as one report.

    1. primary activities (owner, systems, cost, value, performance vs target); 2. support
    activities and the primary activities each enables; 3. costs and performance: margin leak
    ranking, bottlenecks (largest performance gaps), value-added / non-value-added split;
    4. opportunities: initiatives by ROI and net benefit, plus suggested ones for optimize and
    eliminate_or_restructure activities without any; 5. competitive advantage: each initiative
    tied to cost or differentiation, the rest flagged as likely decorative, and a narrative.
    Also maps CRM functional areas (marketing, sales, service & support, IT/IS) to activities
    with their account metrics. Figures come from score_activities and rank.

    Args:
        period: the period to analyse, e.g. "2026"; defaults to the latest period in the data.
    """
    scores = score_activities(session=session, period=period)
    resolved = scores.period
    as_of = data_as_of(session)
    rows = {
        r.id: r
        for r in session.scalars(select(ValueChainActivity).where(ValueChainActivity.period == resolved))
    }
    limit = max(1, min(scores.n, MAX_LIMIT))
    by_leak = rank(
        session=session, entity="activities", metric="margin_leak", filters={"period": resolved}, limit=limit
    )
    by_gap = rank(
        session=session,
        entity="activities",
        metric="performance_gap",
        filters={"period": resolved},
        limit=limit,
    )
    by_roi = rank(
        session=session, entity="initiatives", metric="roi", filters={"period": resolved}, limit=MAX_LIMIT
    )
    by_net = rank(
        session=session,
        entity="initiatives",
        metric="net_benefit",
        filters={"period": resolved},
        limit=MAX_LIMIT,
    )

    enabled_by, unresolved = enablement(scores, rows)
    s1 = step1(scores, rows, enabled_by)
    s2 = step2(scores, rows, enabled_by, unresolved)
    s3 = step3(scores, by_leak, by_gap)
    s4 = step4(scores, rows, by_roi, by_net, next_period_end(resolved))
    _, totals, decorative = step5_links(s4)
    text = narrative(
        period=resolved, n=scores.n, s1=s1, s2=s2, s3=s3, s4=s4, totals=totals, decorative=decorative
    )
    s5 = build_step5(s4, text)
    start, end = _window(resolved, as_of)
    view = crm_view(session=session, scores=scores, start=start, end=end)

    when = f"{resolved} (latest period)" if scores.inputs.period_defaulted else resolved
    explanation = (
        f"Five-step value-chain analysis of {scores.n} activities in {when}, data as of {as_of}: "
        f"{len(s1.activities)} primary, {len(s2.activities)} support, margin leak "
        f"{s3.total_margin_leak:,.0f} of {s3.total_cost:,.0f}, {len(s3.bottlenecks)} behind target, "
        f"{len(s4.initiatives)} initiatives ({len(s5.decorative)} likely decorative), "
        f"{len(s4.suggestions)} suggested. Figures from score_activities and rank."
    )
    return ValueChainAnalysis(
        period=resolved,
        as_of=as_of,
        n_activities=scores.n,
        total_cost=scores.total_cost,
        step1_primary=s1,
        step2_support=s2,
        step3_costs=s3,
        step4_opportunities=s4,
        step5_advantage=s5,
        crm_view=view,
        explanation=explanation,
        inputs=AnalysisInputs(period=resolved, period_defaulted=scores.inputs.period_defaulted, as_of=as_of),
    )
