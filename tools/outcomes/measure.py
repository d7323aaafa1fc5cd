"""What happened after an executed recommendation, or to a held-out account, point in time.

A *unit* is one executed recommendation (treated; day 0 = the day it was executed) or one
holdout row (control; day 0 = the day the account was held out). At horizon h (30 and 90
days) a unit is, as of the data's date `as_of`:

- `pending` while day 0 + h is after `as_of` (the window has not ended: not counted);
- `churned` if the account churned in (day 0, day 0 + h];
- `expanded` if it did not churn and won an opportunity closed in (day 0, day 0 + h] or its
  subscription MRR in force at day 0 + h exceeds the MRR in force at day 0;
- `retained` otherwise.

Growth actions count a *success* when an opportunity of the account was won (stage
closed_won) with a close date in (day 0, day 0 + 90], with its amount. A renewal is not an
opportunity won in this sense (it keeps the business, it does not grow it): only new-business,
upsell and untyped opportunities count, here and for `expanded`. Only data dated on or
before `as_of` is read, so a report as of a past date says what was known then.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crm.models import WON_STAGE, Account, Opportunity, Recommendation, RecommendationHoldout, Subscription

HORIZONS: tuple[int, ...] = (30, 90)
State = Literal["pending", "churned", "expanded", "retained"]
Arm = Literal["treated", "holdout"]


@dataclass
class Unit:
    """One treated or held-out (account, action) with its outcome at each horizon."""

    arm: Arm
    unit_id: int
    account_id: str
    action: str
    day0: dt.date
    segment: str | None
    approver: str | None
    states: dict[int, State] = field(default_factory=dict)
    won_amount: float | None = None
    """Total won amount in (day 0, day 0 + 90] when the 90-day window has ended (0.0 if none)."""

    def success(self) -> bool | None:
        """Growth: an opportunity was won within 90 days (None while pending)."""
        if self.won_amount is None:
            return None
        return self.won_amount > 0


def _mrr_at(subs: list[tuple[dt.date, float]], day: dt.date) -> float | None:
    """MRR of the subscription in force on `day` (latest start on or before it)."""
    best: float | None = None
    for start, mrr in subs:
        if start <= day:
            best = mrr
    return best


def load_units(
    session: Session,
    *,
    as_of: dt.date,
    actions: list[str] | None = None,
    segment: str | None = None,
    approver: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[Unit]:
    """Every executed recommendation and holdout row (day 0 ≤ as_of), with outcomes as of `as_of`.

    Filters: `actions`, the account's `segment`, the `approver` who approved (holdouts have none, so
    with an approver filter the control group is kept: it is every held-out account), day 0 in
    [since, until].
    """
    treated = select(
        Recommendation.id, Recommendation.account_id, Recommendation.action, Recommendation.executed_at,
        Recommendation.decided_by, Account.segment,
    ).join(Account, Account.id == Recommendation.account_id).where(
        Recommendation.status == "executed", Recommendation.executed_at.is_not(None)
    )
    control = select(
        RecommendationHoldout.id, RecommendationHoldout.account_id, RecommendationHoldout.action,
        RecommendationHoldout.at, Account.segment,
    ).join(Account, Account.id == RecommendationHoldout.account_id)
    if actions is not None:
        treated = treated.where(Recommendation.action.in_(actions))
        control = control.where(RecommendationHoldout.action.in_(actions))
    if segment is not None:
        treated = treated.where(Account.segment == segment)
        control = control.where(Account.segment == segment)
    if approver is not None:
        treated = treated.where(Recommendation.decided_by == approver)
    units: list[Unit] = []
    for rid, account_id, action, at, by, seg in session.execute(treated.order_by(Recommendation.id)):
        if account_id is not None and at is not None:
            units.append(Unit("treated", rid, account_id, action, at.date(), seg, by))
    for hid, account_id, action, at, seg in session.execute(control.order_by(RecommendationHoldout.id)):
        units.append(Unit("holdout", hid, account_id, action, at.date(), seg, None))
    units = [
        u for u in units
        if u.day0 <= as_of and (since is None or u.day0 >= since) and (until is None or u.day0 <= until)
    ]
    _measure(session, units, as_of)
    return units


def _measure(session: Session, units: list[Unit], as_of: dt.date) -> None:
    ids = sorted({u.account_id for u in units})
    churned: dict[str, dt.date | None] = {}
    wins: dict[str, list[tuple[dt.date, float]]] = defaultdict(list)
    subs: dict[str, list[tuple[dt.date, float]]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for aid, churned_at in session.execute(
            select(Account.id, Account.churned_at).where(Account.id.in_(chunk))
        ):
            churned[aid] = churned_at if churned_at is not None and churned_at <= as_of else None
        for oid, close, amount in session.execute(
            select(Opportunity.account_id, Opportunity.close_date, Opportunity.amount).where(
                Opportunity.account_id.in_(chunk),
                Opportunity.stage == WON_STAGE,
                or_(Opportunity.type.is_(None), Opportunity.type != "renewal"),  # keeping is not growing
                Opportunity.close_date.is_not(None),
                Opportunity.close_date <= as_of,
            )
        ):
            if oid is not None and close is not None:
                wins[oid].append((close, float(amount or 0.0)))
        for sid, begin, mrr in session.execute(
            select(Subscription.account_id, Subscription.start_date, Subscription.mrr)
            .where(Subscription.account_id.in_(chunk), Subscription.start_date <= as_of)
            .order_by(Subscription.account_id, Subscription.start_date, Subscription.id)
        ):
            subs[sid].append((begin, float(mrr)))
    for u in units:
        gone = churned.get(u.account_id)
        for h in HORIZONS:
            end = u.day0 + dt.timedelta(days=h)
            if gone is not None and u.day0 < gone <= end and gone <= as_of:
                u.states[h] = "churned"
            elif end > as_of:
                u.states[h] = "pending"
            else:
                won = any(u.day0 < close <= end for close, _ in wins[u.account_id])
                before, after = _mrr_at(subs[u.account_id], u.day0), _mrr_at(subs[u.account_id], end)
                grew = before is not None and after is not None and after > before
                u.states[h] = "expanded" if won or grew else "retained"
        end90 = u.day0 + dt.timedelta(days=90)
        if end90 <= as_of:
            u.won_amount = sum(a for close, a in wins[u.account_id] if u.day0 < close <= end90)


@dataclass
class ArmCounts:
    """Counts of one arm at 90 days: units whose window has ended, churned, and growth successes."""

    n: int = 0
    churned: int = 0
    successes: int = 0
    won_amount: float = 0.0
    pending: int = 0


def counts(units: list[Unit], horizon: int = 90) -> dict[tuple[str, Arm], ArmCounts]:
    """Per (action, arm): observed units at `horizon`, churned among them, growth wins (90 days)."""
    out: dict[tuple[str, Arm], ArmCounts] = defaultdict(ArmCounts)
    for u in units:
        c = out[(u.action, u.arm)]
        state = u.states.get(horizon, "pending")
        if state == "pending":
            c.pending += 1
            continue
        c.n += 1
        c.churned += state == "churned"
        if u.won_amount:
            c.successes += 1
            c.won_amount += u.won_amount
    return dict(out)
