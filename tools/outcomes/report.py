"""The attribution report: per playbook action, what was proposed, decided, executed, and whether it
worked — 90-day churn (retention) or wins (growth) of the executed vs the held-out accounts.

Intervals are 95 %: Wilson score for each arm's rate; Newcombe's hybrid score interval (1998,
method 10) for the difference treated − holdout; Katz's log interval for the risk ratio, from
which the estimated uplift (relative churn reduction, the playbook's `uplift`) is 1 − RR with
the interval [1 − RR_high, 1 − RR_low]. Counts are as of the data's date (point in time): a unit
whose 90 days have not ended is `pending` and not counted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.demo.interventions import TRUE_EFFECTS_KEY
from crm.models import Account, AppMeta, Recommendation, RecommendationEvent
from tools.common import data_as_of
from tools.errors import ToolInputError
from tools.nba import RetentionEffect, load_playbook
from tools.outcomes.learning import LearnedEffect, learn
from tools.outcomes.measure import ArmCounts, counts, load_units
from tools.outcomes.stats import newcombe_difference, risk_ratio, wilson

METHOD = (
    "95% intervals: Wilson score per arm; Newcombe hybrid score interval for the difference "
    "treated − holdout; Katz log interval for the risk ratio, uplift = 1 − RR (relative churn "
    "reduction). Treated = executed recommendations, day 0 = execution; holdout = accounts held "
    "out of the action, day 0 = when held out. Units whose 90 days have not ended are pending."
)
APPROVED_LIKE = ("approved", "in_progress", "executed", "abandoned")


class Interval(BaseModel):
    estimate: float
    low: float
    high: float


class ArmSummary(BaseModel):
    """One arm at 90 days."""

    n: int = Field(description="Units whose 90 days have ended")
    pending: int = Field(description="Units whose 90 days have not ended yet")
    events: int = Field(description="Retention: churned; growth: won an opportunity")
    rate: Interval | None
    won_amount: float


class ActionAttribution(BaseModel):
    """One action: funnel, outcomes treated vs holdout, estimated effect and the learned one."""

    action: str
    kind: Literal["retention", "growth"]
    proposals: int
    decided: int
    approved: int
    approval_rate: float | None
    rejection_reasons: dict[str, int]
    executions: int
    abandoned: int
    treated: ArmSummary
    holdout: ArmSummary
    difference: Interval | None = Field(description="Treated − holdout rate (churn or win), Newcombe")
    uplift: Interval | None = Field(description="Retention: 1 − risk ratio (Katz); growth: null")
    learned: LearnedEffect
    true_effect: float | None = Field(
        default=None,
        description="Demo data only: the simulated true effect the estimate should recover (retention: uplift; "
        "growth: p_success, compare with `difference`); null otherwise",
    )


class OutcomeFilters(BaseModel):
    segment: str | None = None
    approver: str | None = None
    period_from: dt.date | None = None
    period_to: dt.date | None = None


class OutcomeReport(BaseModel):
    """Attribution per action, as of the data's date."""

    as_of: dt.date
    filters: OutcomeFilters
    method: str
    actions: list[ActionAttribution]
    demo_truth: bool = Field(
        default=False, description="The data is a demo with simulated interventions of stated true effects"
    )


def _arm(c: ArmCounts | None, kind: str) -> ArmSummary:
    c = c or ArmCounts()
    events = c.churned if kind == "retention" else c.successes
    rate = None
    if c.n:
        low, high = wilson(events, c.n)
        rate = Interval(estimate=events / c.n, low=low, high=high)
    return ArmSummary(n=c.n, pending=c.pending, events=events, rate=rate, won_amount=c.won_amount)


def _true_effects(session: Session) -> dict[str, float] | None:
    """The demo's stated true effects ({action: uplift or p_success}) when the generator simulated
    interventions: crm/demo/interventions.py, read from app_meta (no table of its own)."""
    raw = session.get(AppMeta, TRUE_EFFECTS_KEY)
    if raw is None:
        return None
    try:
        parsed = json.loads(raw.value)
        return {str(k): float(v["uplift"] if "uplift" in v else v["p_success"]) for k, v in parsed.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # a hand-edited row: show no truth rather than fail the report


def outcomes_report(
    *,
    session: Session,
    segment: str | None = None,
    approver: str | None = None,
    period_from: dt.date | None = None,
    period_to: dt.date | None = None,
    as_of: dt.date | None = None,
    playbook_path: str | None = None,
) -> OutcomeReport:
    """Attribution report per playbook action: proposals, approval rate, rejection reasons, executions,
    90-day churn (or wins) of treated vs holdout with 95% intervals, estimated and learned uplift.

    Args:
        segment: only accounts of this segment (SMB, Mid-Market, Enterprise).
        approver: only recommendations this user approved (the holdout is kept whole: it has no approver).
        period_from: first day (YYYY-MM-DD) of proposals and of day 0 of outcomes.
        period_to: last day (YYYY-MM-DD) of proposals and of day 0 of outcomes.
        as_of: report as of this date; defaults to the data's as-of date.
        playbook_path: a playbook YAML file to use instead of the shipped one.
    """
    if period_from and period_to and period_from > period_to:
        raise ToolInputError(f"period_from {period_from} is after period_to {period_to}")
    playbook, _, _ = load_playbook(playbook_path)
    day = as_of or data_as_of(session)
    ids = [a.id for a in playbook.actions]
    units = load_units(
        session, as_of=day, actions=ids, segment=segment, approver=approver, since=period_from, until=period_to
    )
    observed = counts(units)

    recs = select(Recommendation.id, Recommendation.action, Recommendation.status).join(
        Account, Account.id == Recommendation.account_id
    ).where(Recommendation.action.in_(ids), Recommendation.created_at < dt.datetime.combine(
        day + dt.timedelta(days=1), dt.time()))
    if segment is not None:
        recs = recs.where(Account.segment == segment)
    if approver is not None:
        recs = recs.where(Recommendation.decided_by == approver)
    if period_from is not None:
        recs = recs.where(Recommendation.created_at >= dt.datetime.combine(period_from, dt.time()))
    if period_to is not None:
        recs = recs.where(Recommendation.created_at < dt.datetime.combine(period_to + dt.timedelta(days=1), dt.time()))
    statuses: dict[str, Counter[str]] = {a: Counter() for a in ids}
    rec_ids: list[int] = []
    for rid, action, status in session.execute(recs):
        statuses[action][status] += 1
        rec_ids.append(rid)
    reasons: dict[str, Counter[str]] = {a: Counter() for a in ids}
    wanted = set(rec_ids)
    for rid, action, code in session.execute(
        select(RecommendationEvent.recommendation_id, Recommendation.action, RecommendationEvent.reason_code)
        .join(Recommendation, Recommendation.id == RecommendationEvent.recommendation_id)
        .where(RecommendationEvent.event == "rejected", Recommendation.action.in_(ids))
    ):
        if rid in wanted:
            reasons[action][code or "unspecified"] += 1

    truth = _true_effects(session)
    rows: list[ActionAttribution] = []
    for a in playbook.actions:
        kind: Literal["retention", "growth"] = "retention" if isinstance(a.effect, RetentionEffect) else "growth"
        s = statuses[a.id]
        approved = sum(s[x] for x in APPROVED_LIKE)
        decided = approved + s["rejected"]
        t, c = observed.get((a.id, "treated")), observed.get((a.id, "holdout"))
        treated, holdout = _arm(t, kind), _arm(c, kind)
        diff = newcombe_difference(treated.events, treated.n, holdout.events, holdout.n)
        uplift = None
        if kind == "retention":
            rr = risk_ratio(treated.events, treated.n, holdout.events, holdout.n)
            if rr is not None:
                uplift = Interval(estimate=1 - rr[0], low=1 - rr[2], high=1 - rr[1])
        prior = a.effect.uplift if isinstance(a.effect, RetentionEffect) else a.effect.p_success
        rows.append(
            ActionAttribution(
                action=a.id,
                kind=kind,
                proposals=sum(s.values()),
                decided=decided,
                approved=approved,
                approval_rate=approved / decided if decided else None,
                rejection_reasons=dict(sorted(reasons[a.id].items())),
                executions=s["executed"],
                abandoned=s["abandoned"],
                treated=treated,
                holdout=holdout,
                difference=Interval(estimate=diff[0], low=diff[1], high=diff[2]) if diff else None,
                uplift=uplift,
                learned=learn(
                    action=a.id, kind=kind, prior=prior, treated=t, holdout=c,
                    prior_strength=playbook.prior_strength,
                ),
                true_effect=truth.get(a.id) if truth else None,
            )
        )
    return OutcomeReport(
        as_of=day,
        filters=OutcomeFilters(segment=segment, approver=approver, period_from=period_from, period_to=period_to),
        method=METHOD,
        actions=rows,
        demo_truth=truth is not None,
    )
