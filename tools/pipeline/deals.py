"""Reading deals for the pipeline tools: open deals with owner, team, stage timing and last touch.

Everything is as of a date (the data's `as_of`): a deal created later does not exist yet, a
stage change or an interaction dated later has not happened.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, String, cast, func, or_, select
from sqlalchemy.orm import Session

from crm.models import (
    CLOSED_STAGES,
    WON_STAGE,
    Account,
    AppMeta,
    Interaction,
    Opportunity,
    OpportunityStage,
    SalesAgent,
)
from tools.common import AS_OF_KEY, data_as_of
from tools.filters import FilterColumn

FILTER_COLUMNS: dict[str, FilterColumn] = {
    "owner": Opportunity.owner,
    "team": SalesAgent.team,
    "manager": SalesAgent.manager,
    "product": Opportunity.product,
    "type": Opportunity.type,
    "stage": Opportunity.stage,
    "segment": Account.segment,
    "region": Account.region,
}
"""What pipeline questions are scoped by: the deal's own fields, its owner's team and manager,
its account's segment and region."""

_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")

STAGE_HISTORY_DAYS = 730
"""How far back won deals' stage history is read for the typical days per stage."""
MIN_STAGE_SAMPLES = 5


@dataclass(frozen=True)
class OpenDeal:
    """An open deal as the pipeline tools see it on `as_of`."""

    id: int
    ref: str  # the CRM's id, or the internal one when the CRM gave none
    account_id: str | None
    type: str | None
    stage: str
    owner: str | None
    team: str | None
    manager: str | None
    product: str | None
    amount: float | None
    created_at: dt.date | None
    expected_close_date: dt.date | None
    stage_entered: dt.date | None  # when it entered its current stage (stage history), if known
    last_touch: dt.date | None  # latest activity of any kind on or before as_of, if any is dated


@dataclass(frozen=True)
class WonDeal:
    id: int
    owner: str | None
    team: str | None
    product: str | None
    amount: float
    close_date: dt.date


def pipeline_as_of(session: Session) -> dt.date:
    """The date the pipeline is read at: the data's `as_of` when recorded, else the latest date
    in the opportunities (an export of deals alone), else the other tables' latest date."""
    if session.get(AppMeta, AS_OF_KEY) is None:
        dates = [
            session.scalar(select(func.max(column)))
            for column in (
                Opportunity.created_at,
                Opportunity.close_date,
                Opportunity.last_activity_date,
                OpportunityStage.entered_at,
            )
        ]
        found = [d for d in dates if d is not None]
        if found:
            return max(found)
    return data_as_of(session)


def _scoped(stmt: _S, where: Sequence[ColumnElement[bool]]) -> _S:
    return (
        stmt.outerjoin(SalesAgent, SalesAgent.name == Opportunity.owner)
        .outerjoin(Account, Account.id == Opportunity.account_id)
        .where(*where)
    )


def _is_open(as_of: dt.date) -> list[ColumnElement[bool]]:
    return [
        Opportunity.stage.not_in(CLOSED_STAGES),
        or_(Opportunity.created_at.is_(None), Opportunity.created_at <= as_of),
    ]


def load_open_deals(session: Session, where: Sequence[ColumnElement[bool]], as_of: dt.date) -> list[OpenDeal]:
    """Open deals matching `where` (conditions over `FILTER_COLUMNS`), ordered by internal id."""
    open_now = _is_open(as_of)
    session.flush()  # read through the connection (plain rows, no ORM layer): pending changes first
    rows = (
        session.connection()
        .execute(
            _scoped(
                select(
                    Opportunity.id,
                    Opportunity.external_id,
                    Opportunity.account_id,
                    Opportunity.type,
                    Opportunity.stage,
                    Opportunity.owner,
                    SalesAgent.team,
                    SalesAgent.manager,
                    Opportunity.product,
                    Opportunity.amount,
                    Opportunity.created_at,
                    Opportunity.expected_close_date,
                    Opportunity.last_activity_date,
                ),
                [*open_now, *where],
            ).order_by(Opportunity.id)
        )
        .all()
    )
    if not rows:
        return []
    # stage history of the open deals, up to as_of
    entered: dict[str, dict[str, dt.date]] = defaultdict(dict)
    # driven from the open deals' ids (an index search each), not a join over every history row
    open_refs = _scoped(select(Opportunity.external_id), [*open_now, *where])
    history = (
        session.connection()
        .execute(
            select(
                OpportunityStage.opportunity_id, OpportunityStage.stage, func.max(OpportunityStage.entered_at)
            )
            .where(OpportunityStage.opportunity_id.in_(open_refs), OpportunityStage.entered_at <= as_of)
            .group_by(OpportunityStage.opportunity_id, OpportunityStage.stage)
        )
        .all()
    )
    for ref, stage, day in history:
        entered[ref][stage] = day
    # the latest interaction with each open deal's account
    accounts = {r.account_id for r in rows if r.account_id is not None}
    touched: dict[str, dt.date] = {}
    if accounts:
        deal_accounts = _scoped(select(Opportunity.account_id), [*open_now, *where]).where(
            Opportunity.account_id.is_not(None)
        )
        touched = dict(
            session.connection()
            .execute(
                select(Interaction.account_id, func.max(Interaction.occurred_at))
                .where(Interaction.occurred_at <= as_of, Interaction.account_id.in_(deal_accounts))
                .group_by(Interaction.account_id)
            )
            .all()
        )
    out = []
    for r in rows:
        stages = entered.get(r.external_id, {}) if r.external_id is not None else {}
        dates = [
            d
            for d in (
                r.last_activity_date if r.last_activity_date and r.last_activity_date <= as_of else None,
                max(stages.values()) if stages else None,
                r.created_at,
                touched.get(r.account_id) if r.account_id is not None else None,
            )
            if d is not None
        ]
        out.append(
            OpenDeal(
                id=r.id,
                ref=r.external_id or str(r.id),
                account_id=r.account_id,
                type=r.type,
                stage=r.stage,
                owner=r.owner,
                team=r.team,
                manager=r.manager,
                product=r.product,
                amount=r.amount,
                created_at=r.created_at,
                expected_close_date=r.expected_close_date,
                stage_entered=stages.get(r.stage),
                last_touch=max(dates) if dates else None,
            )
        )
    return out


def load_won_deals(
    session: Session, where: Sequence[ColumnElement[bool]], start: dt.date, end: dt.date
) -> list[WonDeal]:
    """Won deals with an amount, closed between `start` and `end` (inclusive), matching `where`."""
    session.flush()  # read through the connection below: pending changes first
    rows = (
        session.connection()
        .execute(
            _scoped(
                select(
                    Opportunity.id,
                    Opportunity.owner,
                    SalesAgent.team,
                    Opportunity.product,
                    Opportunity.amount,
                    Opportunity.close_date,
                ),
                [
                    *where,
                    Opportunity.stage == WON_STAGE,
                    Opportunity.amount.is_not(None),
                    Opportunity.close_date.between(start, end),
                ],
            ).order_by(Opportunity.id)
        )
        .all()
    )
    return [WonDeal(r.id, r.owner, r.team, r.product, float(r.amount), r.close_date) for r in rows]


def typical_won_amounts(session: Session, as_of: dt.date) -> tuple[dict[str | None, float], float | None]:
    """Median amount of won deals closed by `as_of`: per product, and over all products."""
    session.flush()  # read through the connection below: pending changes first
    rows = (
        session.connection()
        .execute(
            select(Opportunity.product, Opportunity.amount).where(
                Opportunity.stage == WON_STAGE,
                Opportunity.amount.is_not(None),
                Opportunity.close_date <= as_of,
            )
        )
        .all()
    )
    by_product: dict[str | None, list[float]] = defaultdict(list)
    for product, amount in rows:
        by_product[product].append(float(amount or 0.0))  # not null: filtered above
    overall = statistics.median([float(a or 0.0) for _, a in rows]) if rows else None
    return {p: statistics.median(v) for p, v in by_product.items()}, overall


def typical_days_in_stage(session: Session, as_of: dt.date) -> dict[str, float]:
    """Median days won deals (closed in the last `STAGE_HISTORY_DAYS`) spent in each stage,
    from their stage history; stages with fewer than `MIN_STAGE_SAMPLES` deals are left out.

    A stage's span runs to the deal's next stage entry (by date, then row id). The rows are read
    through the connection as plain tuples with the dates as text (CAST: PostgreSQL would return dates), each distinct date
    parsed once: ORM rows with a Python date each were half the tool's time at 100k deals
    (docs/PIPELINE.md, Performance)."""
    won = select(Opportunity.external_id).where(
        Opportunity.stage == WON_STAGE,
        Opportunity.close_date.between(as_of - dt.timedelta(days=STAGE_HISTORY_DAYS), as_of),
    )
    session.flush()  # read through the connection below: pending changes first, as a query would
    rows = session.connection().execute(
        select(
            OpportunityStage.opportunity_id,
            OpportunityStage.stage,
            cast(OpportunityStage.entered_at, String),
        )
        .where(OpportunityStage.opportunity_id.in_(won), OpportunityStage.entered_at <= as_of)
        .order_by(OpportunityStage.opportunity_id, OpportunityStage.entered_at, OpportunityStage.id)
    )
    ordinals: dict[str, int] = {}
    spans: dict[str, list[int]] = defaultdict(list)
    last_ref, last_stage, last_day = None, "", 0
    for ref, stage, entered in rows:
        day = ordinals.get(entered)
        if day is None:
            day = ordinals[entered] = dt.date.fromisoformat(entered[:10]).toordinal()
        if ref == last_ref and last_stage not in CLOSED_STAGES:
            spans[last_stage].append(day - last_day)
        last_ref, last_stage, last_day = ref, stage, day
    return {s: float(statistics.median(v)) for s, v in spans.items() if len(v) >= MIN_STAGE_SAMPLES}
