"""The CRM view: which CRM functional area contributes to which value-chain activity.

Convention (documented in docs/ANALYSIS.md): an activity belongs to a CRM functional area by
its Porter category — marketing and sales share `marketing_sales` (split by the activity's
name and owner team, see `_MARKETING_WORDS` / `_SALES_WORDS`; an activity matching both or
neither belongs to both), service & support has `service`, and IT/IS, the layer underneath,
has `technology_development` and `firm_infrastructure`. Inbound and outbound logistics,
operations, human resources and procurement belong to no CRM area.

Each area carries account metrics over the analysis window (the period's dates, cut at the
data's as-of date). Counts and sums are exact (integers in SQL, money summed with fsum in
Python), so SQLite and PostgreSQL give the same figures.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Date, Select, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from crm.models import Account, Invoice, NpsResponse, Opportunity, SupportTicket, UsageWeekly
from tools.activities import ActivityScore, ActivityScores
from tools.analysis.models import AreaActivity, AreaMetric, CrmArea, CrmAreaView, CrmView, MetricUnit
from tools.ranking import days_between

_MARKETING_WORDS = ("market", "campaign", "brand", "event", "demand", "advertis", "content", "lead gen")
_SALES_WORDS = ("sales", "sell", "deal", "quote", "account exec", "revenue", "partner")
USAGE_WEEKS = 4


@dataclass(frozen=True)
class _Area:
    area: CrmArea
    label: str
    contribution: str
    categories: tuple[str, ...]


AREAS: tuple[_Area, ...] = (
    _Area(
        "marketing",
        "Marketing",
        "Finds the customer value criteria, shapes the value proposition and communicates it.",
        ("marketing_sales",),
    ),
    _Area(
        "sales",
        "Sales",
        "Delivers the value proposition: turns it into won, renewed and expanded deals.",
        ("marketing_sales",),
    ),
    _Area(
        "service_support",
        "Service & support",
        "Shapes the product-service attributes customers experience; builds relationship assets and competencies.",
        ("service",),
    ),
    _Area(
        "it_is",
        "IT / IS",
        "The layer underneath: the customer record, integrations and systems the other areas run on.",
        ("technology_development", "firm_infrastructure"),
    ),
)

CONVENTION = (
    "Activities map to CRM areas by Porter category: marketing_sales → marketing and/or sales "
    "(by words in the activity's name and owner team: "
    + ", ".join(_MARKETING_WORDS)
    + " → marketing; "
    + ", ".join(_SALES_WORDS)
    + " → sales; both or neither → both), service → service & support, "
    "technology_development and firm_infrastructure → IT/IS. Account metrics cover the window "
    "from the period's first day to its last day or the data's as-of date, whichever is earlier."
)


def _sides(score: ActivityScore) -> set[CrmArea]:
    text = f"{score.name} {score.owner_team or ''}".casefold()
    marketing = any(w in text for w in _MARKETING_WORDS)
    sales = any(w in text for w in _SALES_WORDS)
    if marketing == sales:
        return {"marketing", "sales"}
    return {"marketing"} if marketing else {"sales"}


def areas_of(score: ActivityScore) -> set[CrmArea]:
    """The CRM areas an activity belongs to (empty for logistics, operations, HR, procurement)."""
    if score.porter_category == "marketing_sales":
        return _sides(score)
    return {a.area for a in AREAS if score.porter_category in a.categories}


# ---------------------------------------------------------------------------- metrics


def _ratio(num: int | float, den: int | float) -> float | None:
    return num / den if den else None


def _count(session: Session, stmt: Select[Any]) -> int:
    return int(session.scalar(stmt) or 0)


def _active_at(day: ColumnElement[dt.date]) -> ColumnElement[bool]:
    """Accounts that existed on `day` and had not churned by then."""
    return and_(
        or_(Account.created_at.is_(None), Account.created_at <= day),
        or_(Account.churned_at.is_(None), Account.churned_at > day),
    )


def _metric(name: str, label: str, value: float | None, unit: MetricUnit, description: str) -> AreaMetric:
    return AreaMetric(name=name, label=label, value=value, unit=unit, description=description)


def _marketing(
    session: Session, start: ColumnElement[dt.date], end: ColumnElement[dt.date]
) -> list[AreaMetric]:
    new_accounts = _count(
        session, select(func.count()).select_from(Account).where(Account.created_at.between(start, end))
    )
    in_window = NpsResponse.responded_at.between(start, end)
    responses = _count(session, select(func.count()).select_from(NpsResponse).where(in_window))
    promoters = _count(
        session, select(func.count()).select_from(NpsResponse).where(in_window, NpsResponse.score >= 9)
    )
    detractors = _count(
        session, select(func.count()).select_from(NpsResponse).where(in_window, NpsResponse.score <= 6)
    )
    pipeline = math.fsum(
        session.scalars(
            select(Opportunity.amount).where(
                Opportunity.type == "new",
                Opportunity.created_at.between(start, end),
                Opportunity.amount.is_not(None),
            )
        )
    )
    nps = 100.0 * (promoters - detractors) / responses if responses else None
    return [
        _metric("new_accounts", "New accounts", new_accounts, "count", "accounts created in the window"),
        _metric(
            "new_pipeline",
            "New-business pipeline created",
            pipeline,
            "currency",
            "amount of new-business opportunities created in the window",
        ),
        _metric(
            "nps", "NPS", nps, "points", "% promoters (9–10) − % detractors (0–6) of responses in the window"
        ),
        _metric("nps_responses", "NPS responses", responses, "count", "NPS responses in the window"),
    ]


def _sales(session: Session, start: ColumnElement[dt.date], end: ColumnElement[dt.date]) -> list[AreaMetric]:
    closed = Opportunity.close_date.between(start, end)
    won = _count(
        session,
        select(func.count()).select_from(Opportunity).where(closed, Opportunity.stage == "closed_won"),
    )
    lost = _count(
        session,
        select(func.count()).select_from(Opportunity).where(closed, Opportunity.stage == "closed_lost"),
    )
    won_amount = math.fsum(
        session.scalars(
            select(Opportunity.amount).where(
                closed, Opportunity.stage == "closed_won", Opportunity.amount.is_not(None)
            )
        )
    )
    arr = math.fsum(session.scalars(select(Account.arr).where(_active_at(end))))
    return [
        _metric(
            "win_rate",
            "Win rate",
            _ratio(won, won + lost),
            "ratio",
            "closed-won / (closed-won + closed-lost) opportunities closing in the window",
        ),
        _metric(
            "won_amount",
            "Won amount",
            won_amount,
            "currency",
            "amount of closed-won opportunities closing in the window (new, upsell, renewal)",
        ),
        _metric(
            "opportunities_closed",
            "Opportunities closed",
            won + lost,
            "count",
            "won and lost opportunities closing in the window",
        ),
        _metric(
            "active_arr",
            "ARR of active accounts",
            arr,
            "currency",
            "ARR of the accounts active at the end of the window",
        ),
    ]


def _service(
    session: Session, start: ColumnElement[dt.date], end: ColumnElement[dt.date]
) -> list[AreaMetric]:
    opened = SupportTicket.opened_at.between(start, end)
    resolved = and_(opened, SupportTicket.closed_at.is_not(None), SupportTicket.closed_at <= end)
    n_opened = _count(session, select(func.count()).select_from(SupportTicket).where(opened))
    n_resolved = _count(session, select(func.count()).select_from(SupportTicket).where(resolved))
    days = _count(
        session,
        select(
            func.coalesce(
                func.sum(days_between(session, SupportTicket.closed_at, SupportTicket.opened_at)), 0
            )
        ).where(resolved),
    )
    rated = and_(SupportTicket.closed_at.between(start, end), SupportTicket.csat.is_not(None))
    n_rated = _count(session, select(func.count()).select_from(SupportTicket).where(rated))
    csat_sum = _count(session, select(func.coalesce(func.sum(SupportTicket.csat), 0)).where(rated))
    active_start = _count(session, select(func.count()).select_from(Account).where(_active_at(start)))
    churned = _count(
        session, select(func.count()).select_from(Account).where(_active_at(start), Account.churned_at <= end)
    )
    return [
        _metric(
            "tickets_opened", "Tickets opened", n_opened, "count", "support tickets opened in the window"
        ),
        _metric(
            "ticket_resolution_rate",
            "Tickets resolved",
            _ratio(n_resolved, n_opened),
            "ratio",
            "share of the window's tickets closed by its end",
        ),
        _metric(
            "avg_resolution_days",
            "Average resolution time",
            _ratio(days, n_resolved),
            "days",
            "mean days from opened to closed, tickets opened and closed in the window",
        ),
        _metric(
            "avg_csat",
            "Average CSAT",
            _ratio(csat_sum, n_rated),
            "score",
            "mean CSAT (1–5) of tickets closed in the window",
        ),
        _metric(
            "logo_churn_rate",
            "Logo churn",
            _ratio(churned, active_start),
            "ratio",
            "accounts active at the window's start that churned by its end",
        ),
    ]


def _it_is(
    session: Session, start: ColumnElement[dt.date], end: ColumnElement[dt.date], end_day: dt.date
) -> list[AreaMetric]:
    due = Invoice.due_date.between(start, end)
    n_due = _count(session, select(func.count()).select_from(Invoice).where(due))
    n_bad = _count(
        session, select(func.count()).select_from(Invoice).where(due, Invoice.status.in_(("failed", "late")))
    )
    active = _count(session, select(func.count()).select_from(Account).where(_active_at(end)))
    since = literal(end_day - dt.timedelta(days=7 * USAGE_WEEKS), Date)
    recent = (
        select(UsageWeekly.account_id)
        .where(UsageWeekly.week_start > since, UsageWeekly.week_start <= end)
        .distinct()
        .subquery()
    )
    with_usage = _count(
        session,
        select(func.count())
        .select_from(Account)
        .join(recent, recent.c.account_id == Account.id)
        .where(_active_at(end)),
    )
    return [
        _metric(
            "invoice_issue_rate",
            "Failed or late invoices",
            _ratio(n_bad, n_due),
            "ratio",
            "invoices due in the window with status failed or late",
        ),
        _metric(
            "usage_data_coverage",
            "Usage data coverage",
            _ratio(with_usage, active),
            "ratio",
            f"active accounts with product-usage data in the last {USAGE_WEEKS} weeks of the window",
        ),
        _metric(
            "active_accounts", "Active accounts", active, "count", "accounts active at the end of the window"
        ),
    ]


def crm_view(*, session: Session, scores: ActivityScores, start: dt.date, end: dt.date) -> CrmView:
    """Map activities to CRM functional areas and compute each area's account metrics."""
    start_sql, end_sql = literal(start, Date), literal(end, Date)
    metrics = {
        "marketing": _marketing(session, start_sql, end_sql),
        "sales": _sales(session, start_sql, end_sql),
        "service_support": _service(session, start_sql, end_sql),
        "it_is": _it_is(session, start_sql, end_sql, end),
    }
    members: dict[CrmArea, list[ActivityScore]] = {a.area: [] for a in AREAS}
    unmapped: list[str] = []
    for s in sorted(scores.activities, key=lambda a: a.id):
        areas = areas_of(s)
        if not areas:
            unmapped.append(s.id)
        for area in areas:
            members[area].append(s)
    views = [
        CrmAreaView(
            area=a.area,
            label=a.label,
            contribution=a.contribution,
            porter_categories=list(a.categories),
            activities=[
                AreaActivity(
                    id=s.id,
                    name=s.name,
                    porter_category=s.porter_category,
                    annual_cost=s.annual_cost,
                    margin_leak=s.margin_leak,
                    quadrant=s.quadrant,
                    performance_gap=s.performance_gap,
                )
                for s in members[a.area]
            ],
            annual_cost=math.fsum(s.annual_cost for s in members[a.area]),
            margin_leak=math.fsum(s.margin_leak for s in members[a.area]),
            metrics=metrics[a.area],
        )
        for a in AREAS
    ]
    return CrmView(
        window_start=start, window_end=end, areas=views, unmapped_activities=unmapped, convention=CONVENTION
    )
