"""Account tools: `get_account`, `list_accounts`, `account_timeline` (SPEC §5.5).

Every figure is as of a date (default: the data's as-of date): events after it are ignored,
so the answer does not depend on the day the tool runs.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from crm.models import (
    Account,
    Contact,
    Interaction,
    Invoice,
    NpsResponse,
    Opportunity,
    Subscription,
    SupportTicket,
    UsageWeekly,
)
from tools.account_metrics import ACCOUNT_DEFAULT_FILTERS, ACCOUNT_FILTERS
from tools.common import byte_order, data_as_of, require_account
from tools.errors import ToolInputError
from tools.filters import Normalised, conditions, describe, normalise_filters
from tools.projection import pick

PRIORITIES = ("urgent", "high", "medium", "low")
MAX_LIMIT = 1000

# ---------------------------------------------------------------------------- get_account


class SubscriptionInfo(BaseModel):
    id: int
    plan: str
    seats: int
    mrr: float
    start_date: dt.date
    renewal_date: dt.date
    discount: float
    days_to_renewal: int


class NpsInfo(BaseModel):
    score: int
    responded_at: dt.date


class InteractionInfo(BaseModel):
    type: str
    occurred_at: dt.date
    sentiment: float | None
    days_ago: int


class UsageInfo(BaseModel):
    week_start: dt.date
    active_users: int
    sessions: int
    features_adopted: int
    seat_utilisation: float | None


class ChampionInfo(BaseModel):
    name: str
    role: str | None
    left_at: dt.date | None


class AccountInputs(BaseModel):
    account_id: str
    as_of: dt.date


class AccountSummary(BaseModel):
    """An account's profile fields, as `list_accounts` returns them."""

    id: str
    name: str
    segment: str | None
    industry: str | None
    region: str | None
    plan: str | None
    arr: float
    owner: str | None
    status: str
    created_at: dt.date | None


class AccountProfile(AccountSummary):
    """One account: profile, active subscription and the counts a CSM looks at first."""

    churned_at: dt.date | None
    tenure_days: int | None
    attributes: dict[str, Any]
    subscription: SubscriptionInfo | None
    days_to_renewal: int | None
    open_tickets: int
    open_tickets_by_priority: dict[str, int]
    failed_or_late_invoices_365d: int
    last_nps: NpsInfo | None
    champions: list[ChampionInfo]
    champions_active: int
    champions_left: int
    contacts: int
    last_interaction: InteractionInfo | None
    latest_usage: UsageInfo | None
    as_of: dt.date
    explanation: str
    inputs: AccountInputs


def active_subscription(session: Session, account_id: str) -> Subscription | None:
    """The active subscription renewing soonest (ties by id), or None."""
    return session.scalars(
        select(Subscription)
        .where(Subscription.account_id == account_id, Subscription.status == "active")
        .order_by(Subscription.renewal_date, Subscription.id)
        .limit(1)
    ).first()


def _resolve_as_of(session: Session, as_of: dt.date | None) -> dt.date:
    return as_of if as_of is not None else data_as_of(session)


def get_account(*, session: Session, account_id: str, as_of: dt.date | None = None) -> AccountProfile:
    """Look up one account: profile, active subscription, open tickets, NPS, champions, last contact.

    Returns segment, plan, ARR, owner, status, custom attributes, the active subscription and
    days to renewal, open tickets by priority, failed/late invoices in the last 365 days, the
    last NPS response, champions (and how many left), the last interaction and the latest usage
    week — all as of the data's date.

    Args:
        account_id: the account id, e.g. "ACME-0042".
        as_of: date to look from (YYYY-MM-DD); defaults to the data's as-of date.
    """
    a = require_account(session, account_id.strip())
    day = _resolve_as_of(session, as_of)
    sub = active_subscription(session, a.id)
    days_to_renewal = (sub.renewal_date - day).days if sub else None
    open_rows = session.execute(
        select(SupportTicket.priority, func.count())
        .where(
            SupportTicket.account_id == a.id,
            SupportTicket.opened_at <= day,
            or_(SupportTicket.closed_at.is_(None), SupportTicket.closed_at > day),
        )
        .group_by(SupportTicket.priority)
    ).all()
    by_priority = {p: 0 for p in PRIORITIES}
    for priority, count in open_rows:
        by_priority[priority] = by_priority.get(priority, 0) + count
    by_priority = dict(sorted(by_priority.items(), key=lambda kv: (_priority_rank(kv[0]), kv[0])))
    bad_invoices = (
        session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(
                Invoice.account_id == a.id,
                Invoice.status.in_(("failed", "late")),
                Invoice.due_date <= day,
                Invoice.due_date > day - dt.timedelta(days=365),
            )
        )
        or 0
    )
    nps = session.scalars(
        select(NpsResponse)
        .where(NpsResponse.account_id == a.id, NpsResponse.responded_at <= day)
        .order_by(NpsResponse.responded_at.desc(), NpsResponse.id.desc())
        .limit(1)
    ).first()
    contacts = list(
        session.scalars(
            select(Contact)
            .where(Contact.account_id == a.id, or_(Contact.created_at.is_(None), Contact.created_at <= day))
            .order_by(Contact.id)
        )
    )
    champions = [c for c in contacts if c.is_champion]
    left = [c for c in champions if c.left_at is not None and c.left_at <= day]
    last = session.scalars(
        select(Interaction)
        .where(Interaction.account_id == a.id, Interaction.occurred_at <= day)
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(1)
    ).first()
    usage = session.scalars(
        select(UsageWeekly)
        .where(UsageWeekly.account_id == a.id, UsageWeekly.week_start <= day)
        .order_by(UsageWeekly.week_start.desc())
        .limit(1)
    ).first()
    tenure_end = a.churned_at if a.churned_at is not None and a.churned_at < day else day
    tenure = (tenure_end - a.created_at).days if a.created_at else None
    open_total = sum(by_priority.values())

    bits = [f"{a.id} ({a.name}): {a.status} {a.segment or 'unsegmented'} account, ARR {a.arr:,.0f}"]
    if sub:
        bits.append(f"{sub.plan} plan renewing {sub.renewal_date} ({days_to_renewal} days)")
    else:
        bits.append("no active subscription")
    bits.append(f"{open_total} open ticket{'s' if open_total != 1 else ''}")
    if nps:
        bits.append(f"last NPS {nps.score} on {nps.responded_at}")
    bits.append(f"{len(champions) - len(left)} active champion(s), {len(left)} left")
    if last:
        bits.append(f"last interaction {(day - last.occurred_at).days} days ago ({last.type})")
    explanation = "; ".join(bits) + f"; as of {day}."

    return AccountProfile(
        id=a.id,
        name=a.name,
        segment=a.segment,
        industry=a.industry,
        region=a.region,
        plan=a.plan,
        arr=a.arr,
        owner=a.owner,
        status=a.status,
        created_at=a.created_at,
        churned_at=a.churned_at,
        tenure_days=tenure,
        attributes=dict(sorted((a.attributes or {}).items())),
        subscription=SubscriptionInfo(
            id=sub.id,
            plan=sub.plan,
            seats=sub.seats,
            mrr=sub.mrr,
            start_date=sub.start_date,
            renewal_date=sub.renewal_date,
            discount=sub.discount,
            days_to_renewal=(sub.renewal_date - day).days,
        )
        if sub
        else None,
        days_to_renewal=days_to_renewal,
        open_tickets=open_total,
        open_tickets_by_priority=by_priority,
        failed_or_late_invoices_365d=bad_invoices,
        last_nps=NpsInfo(score=nps.score, responded_at=nps.responded_at) if nps else None,
        champions=[ChampionInfo(name=c.name, role=c.role, left_at=c.left_at) for c in champions],
        champions_active=len(champions) - len(left),
        champions_left=len(left),
        contacts=len(contacts),
        last_interaction=InteractionInfo(
            type=last.type,
            occurred_at=last.occurred_at,
            sentiment=last.sentiment,
            days_ago=(day - last.occurred_at).days,
        )
        if last
        else None,
        latest_usage=UsageInfo(
            week_start=usage.week_start,
            active_users=usage.active_users,
            sessions=usage.sessions,
            features_adopted=usage.features_adopted,
            seat_utilisation=usage.active_users / sub.seats if sub and sub.seats else None,
        )
        if usage
        else None,
        as_of=day,
        explanation=explanation,
        inputs=AccountInputs(account_id=a.id, as_of=day),
    )


def project_account(r: AccountProfile) -> dict[str, Any]:
    """What the model reads of `get_account`: the profile's headline fields, last NPS score, latest usage."""
    out = pick(
        r, "id", "name", "segment", "industry", "region", "plan", "arr", "owner", "status",
        "tenure_days", "days_to_renewal", "open_tickets", "failed_or_late_invoices_365d",
        "champions_active", "champions_left",
    )
    out["last_nps"] = r.last_nps.score if r.last_nps else None
    out["latest_usage"] = r.latest_usage
    return out


def _priority_rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


# ---------------------------------------------------------------------------- list_accounts


class ListAccountsInputs(BaseModel):
    filters: dict[str, list[str]]
    search: str | None
    limit: int
    offset: int


class AccountList(BaseModel):
    """A page of accounts sorted by id, with the total that match."""

    items: list[AccountSummary]
    total: int
    limit: int
    offset: int
    filters: dict[str, list[str]]
    explanation: str
    inputs: ListAccountsInputs


def _check_page(limit: int, offset: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ToolInputError(f"limit must be between 1 and {MAX_LIMIT}; got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise ToolInputError(f"offset must be 0 or more; got {offset!r}")


def list_accounts(
    *,
    session: Session,
    filters: dict[str, str | list[str]] | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AccountList:
    """List accounts matching filters or a name search, sorted by id, one page at a time.

    Args:
        filters: e.g. {"segment": "Enterprise", "region": ["EMEA", "NA"]}; keys: segment,
            region, plan, industry, owner, status (default "active"; give
            ["active", "churned"] for all).
        search: case-insensitive text to find in the account id or name, e.g. "acme".
        limit: page size (1–1000).
        offset: how many matching accounts to skip.
    """
    _check_page(limit, offset)
    norm: Normalised = normalise_filters(
        session, filters, ACCOUNT_FILTERS, entity="accounts", defaults=ACCOUNT_DEFAULT_FILTERS
    )
    conds = conditions(norm, ACCOUNT_FILTERS)
    term = search.strip() if search else None
    if term and "\x00" in term:  # SQLite's LIKE stops at a NUL: the pattern would match every account
        raise ToolInputError("search may not contain a NUL character")
    if term:
        needle = term.lower()
        conds.append(
            or_(
                func.lower(Account.name).contains(needle, autoescape=True),
                func.lower(Account.id).contains(needle, autoescape=True),
            )
        )
    total = session.scalar(select(func.count()).select_from(Account).where(*conds)) or 0
    rows = session.execute(
        select(
            Account.id,
            Account.name,
            Account.segment,
            Account.industry,
            Account.region,
            Account.plan,
            Account.arr,
            Account.owner,
            Account.status,
            Account.created_at,
        )
        .where(*conds)
        .order_by(byte_order(session, Account.id))
        .limit(limit)
        .offset(offset)
    ).all()
    items = [AccountSummary.model_validate(r._asdict()) for r in rows]
    where = describe(norm) + (f', name or id contains "{term}"' if term else "")
    shown = f"{offset + 1}–{offset + len(items)}" if items else "none"
    explanation = f"{total:,} accounts match ({where}); showing {shown}, sorted by id."
    return AccountList(
        items=items,
        total=total,
        limit=limit,
        offset=offset,
        filters=norm,
        explanation=explanation,
        inputs=ListAccountsInputs(filters=norm, search=term, limit=limit, offset=offset),
    )


# ---------------------------------------------------------------------------- account_timeline

EventKind = Literal[
    "account_created",
    "account_churned",
    "contact_left",
    "interaction",
    "invoice_failed",
    "invoice_late",
    "nps_response",
    "opportunity_created",
    "opportunity_lost",
    "opportunity_won",
    "subscription_renewed",
    "subscription_started",
    "ticket_closed",
    "ticket_opened",
]


class TimelineEvent(BaseModel):
    date: dt.date
    kind: EventKind
    ref: str
    summary: str
    data: dict[str, str | int | float | bool | None]


class TimelineInputs(BaseModel):
    account_id: str
    limit: int
    since: dt.date | None
    as_of: dt.date


class AccountTimeline(BaseModel):
    """An account's events, newest first (ties by kind, then id)."""

    account_id: str
    name: str
    events: list[TimelineEvent]
    total: int
    counts: dict[str, int]
    as_of: dt.date
    explanation: str
    inputs: TimelineInputs


def project_timeline(r: AccountTimeline) -> dict[str, Any]:
    """What the model reads of `account_timeline`: date, kind and summary of each event."""
    return {
        **pick(r, "account_id", "name", "total"),
        "events": [pick(e, "date", "kind", "summary") for e in r.events],
    }


def _events(
    session: Session, account_id: str, since: dt.date | None, day: dt.date
) -> list[tuple[int, TimelineEvent]]:
    """(source id, event) pairs for the account between `since` and `day` inclusive."""
    out: list[tuple[int, TimelineEvent]] = []

    def add(
        source_id: int, date: dt.date | None, kind: EventKind, ref: str, summary: str, **data: Any
    ) -> None:
        if date is None or date > day or (since is not None and date < since):
            return
        out.append((source_id, TimelineEvent(date=date, kind=kind, ref=ref, summary=summary, data=data)))

    a = session.get(Account, account_id)
    if a is not None:
        add(0, a.created_at, "account_created", f"account {a.id}", "became a customer")
        add(0, a.churned_at, "account_churned", f"account {a.id}", "churned")

    for t in session.scalars(select(SupportTicket).where(SupportTicket.account_id == account_id)):
        ref = f"ticket {t.id}"
        add(
            t.id,
            t.opened_at,
            "ticket_opened",
            ref,
            f"{t.priority} {t.category or ''} ticket opened".replace("  ", " "),
            priority=t.priority,
            category=t.category,
        )
        add(
            t.id,
            t.closed_at,
            "ticket_closed",
            ref,
            f"{t.priority} ticket closed" + (f", CSAT {t.csat}" if t.csat else ""),
            priority=t.priority,
            csat=t.csat,
            days_open=(t.closed_at - t.opened_at).days if t.closed_at else None,
        )

    for inv in session.scalars(
        select(Invoice).where(Invoice.account_id == account_id, Invoice.status.in_(("failed", "late")))
    ):
        ref = f"invoice {inv.id}"
        if inv.status == "failed":
            add(
                inv.id,
                inv.due_date,
                "invoice_failed",
                ref,
                f"payment of {inv.amount:,.2f} failed",
                amount=inv.amount,
                due_date=inv.due_date.isoformat(),
            )
        else:
            paid = inv.paid_at if inv.paid_at is not None and inv.paid_at <= day else None
            late_days = (paid - inv.due_date).days if paid else None
            summary = f"payment of {inv.amount:,.2f} late" + (f" by {late_days} days" if late_days else "")
            add(
                inv.id,
                inv.due_date,
                "invoice_late",
                ref,
                summary,
                amount=inv.amount,
                paid_at=paid.isoformat() if paid else None,
                days_late=late_days,
            )

    for r in session.scalars(select(NpsResponse).where(NpsResponse.account_id == account_id)):
        add(
            r.id,
            r.responded_at,
            "nps_response",
            f"nps {r.id}",
            f"NPS {r.score}",
            score=r.score,
            contact_id=r.contact_id,
        )

    for i in session.scalars(select(Interaction).where(Interaction.account_id == account_id)):
        sentiment = f" (sentiment {i.sentiment:+.2f})" if i.sentiment is not None else ""
        add(
            i.id,
            i.occurred_at,
            "interaction",
            f"interaction {i.id}",
            f"{i.type}{sentiment}",
            type=i.type,
            sentiment=i.sentiment,
        )

    for c in session.scalars(
        select(Contact).where(Contact.account_id == account_id, Contact.left_at.is_not(None))
    ):
        who = f"{c.name}" + (f", {c.role}" if c.role else "") + (" (champion)" if c.is_champion else "")
        add(
            c.id,
            c.left_at,
            "contact_left",
            f"contact {c.id}",
            f"{who} left",
            is_champion=c.is_champion,
            role=c.role,
        )

    for o in session.scalars(select(Opportunity).where(Opportunity.account_id == account_id)):
        ref = f"opportunity {o.external_id or o.id}"
        add(
            o.id,
            o.created_at,
            "opportunity_created",
            ref,
            f"{_deal(o)} opened",
            type=o.type,
            amount=o.amount,
            stage=o.stage,
        )
        if o.stage in ("closed_won", "closed_lost"):
            kind: EventKind = "opportunity_won" if o.stage == "closed_won" else "opportunity_lost"
            add(
                o.id,
                o.close_date,
                kind,
                ref,
                f"{_deal(o)} {o.stage.split('_')[1]}",
                type=o.type,
                amount=o.amount,
            )

    subs = list(
        session.scalars(
            select(Subscription)
            .where(Subscription.account_id == account_id)
            .order_by(Subscription.start_date, Subscription.id)
        )
    )
    for n, s in enumerate(subs):
        kind = "subscription_started" if n == 0 else "subscription_renewed"
        add(
            s.id,
            s.start_date,
            kind,
            f"subscription {s.id}",
            f"{s.plan}, {s.seats} seats, MRR {s.mrr:,.2f}, renews {s.renewal_date}",
            plan=s.plan,
            seats=s.seats,
            mrr=s.mrr,
            renewal_date=s.renewal_date.isoformat(),
        )
    return out


def _deal(o: Opportunity) -> str:
    """`upsell opportunity of 5,000.00`; the kind and the amount are left out when the CRM has none."""
    kind = f"{o.type} opportunity" if o.type else "opportunity"
    return kind if o.amount is None else f"{kind} of {o.amount:,.2f}"


def account_timeline(
    *,
    session: Session,
    account_id: str,
    limit: int = 50,
    since: dt.date | None = None,
    as_of: dt.date | None = None,
) -> AccountTimeline:
    """Show an account's history as one dated list of events, newest first.

    Events: tickets opened/closed, failed or late payments, NPS responses, interactions,
    contacts who left, opportunities opened/won/lost, subscription starts and renewals.

    Args:
        account_id: the account id, e.g. "ACME-0042".
        limit: how many events to return (1–1000), newest first; `total` counts them all.
        since: only events on or after this date (YYYY-MM-DD).
        as_of: ignore events after this date; defaults to the data's as-of date.
    """
    a = require_account(session, account_id.strip())
    _check_page(limit, 0)
    day = _resolve_as_of(session, as_of)
    if since is not None and since > day:
        raise ToolInputError(f"since ({since}) is after the as-of date ({day}); nothing to show")
    pairs = _events(session, a.id, since, day)
    # Newest first; same day: by kind, then by the source row's id.
    pairs.sort(key=lambda p: (-p[1].date.toordinal(), p[1].kind, p[0]))
    events = [e for _, e in pairs]
    counts = Counter(e.kind for e in events)
    shown = events[:limit]
    span = f"from {since} " if since else ""
    explanation = (
        f"{len(events)} events for {a.id} ({a.name}) {span}up to {day}; showing the {len(shown)} newest."
    )
    if counts:
        explanation += " By kind: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "."
    return AccountTimeline(
        account_id=a.id,
        name=a.name,
        events=shown,
        total=len(events),
        counts=dict(sorted(counts.items())),
        as_of=day,
        explanation=explanation,
        inputs=TimelineInputs(account_id=a.id, limit=limit, since=since, as_of=day),
    )


# ---------------------------------------------------------------------------- scope values


def scope_values(*, session: Session, keys: tuple[str, ...], limit: int = 40) -> dict[str, list[str]]:
    """The values of each account field in `keys` that accounts in the data hold, sorted (at most
    `limit` per field): what a user can scope a question by, e.g. {"segment": ["Enterprise", ...]}.

    Args:
        keys: account filter fields, e.g. ("segment", "region").
        limit: values listed per field at most.
    """
    out: dict[str, list[str]] = {}
    for key in keys:
        column = ACCOUNT_FILTERS[key]
        values = session.scalars(select(column).where(column.is_not(None), column != "").distinct())
        out[key] = sorted(str(v) for v in values)[:limit]
    return out
