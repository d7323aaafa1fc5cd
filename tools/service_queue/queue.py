"""The `service_queue` tool: open support tickets ranked by p_sla_breach × customer lifetime value.

Definitions (docs/SERVICE_QUEUE.md works an example by hand):

* **clock**: the end of the data's as-of day (midnight after it), never the wall clock. A
  ticket is *open* when opened on or before the as-of day and not closed by then.
* **opened / closed moment**: `opened_time` / `closed_time` when the export has the time of
  day, else noon of `opened_at` / `closed_at` (a day's precision).
* **SLA**: hours per priority from `sla.yaml` (override per call with `sla_hours`);
  deadline = opened + SLA; hours_left = deadline − clock (negative = breached).
* **p_sla_breach**: 1 once breached; otherwise P(T > SLA | T > age), T the resolution time,
  from the Kaplan–Meier survival of the tickets opened in the last `history_days` days
  (tickets still open are censored at their age; `survival.py`). The estimate comes from the
  ticket's priority and category when that cell has at least `min_resolved` resolved tickets
  and at least `min_at_risk` tickets still unresolved at this ticket's age; else from its
  priority alone under the same test; else from all tickets (said so: `basis`).
* **CLV** = ARR × expected remaining lifetime. With p the churn model's 90-day churn
  probability and a constant churn hazard λ = −ln(1 − p) / (90/365) per year, the expected
  remaining lifetime is 1/λ years, capped at `lifetime_cap_years` (10 by default; p = 0 gives
  the cap). A churned account has none left (CLV 0).
* **score** = p_sla_breach × CLV: the customer value exposed to a missed SLA. Ranked by score
  descending, ties by ticket id.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, Field
from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from core.contract import CrmDateTime
from crm.models import Account, AppMeta, SupportTicket
from tools.churn.features import AccountScope
from tools.churn.model import HORIZON_DAYS
from tools.churn.scoring import assess
from tools.common import AS_OF_KEY, data_as_of
from tools.errors import DataFault, ToolInputError
from tools.filters import FilterColumn, conditions, describe, normalise_filters
from tools.service_queue.survival import Survival

SLA_FILE = Path(__file__).with_name("sla.yaml")
PRIORITIES = ("urgent", "high", "medium", "low")
DEFAULT_HISTORY_DAYS = 365
MIN_RESOLVED = 30
MIN_AT_RISK = 5
LIFETIME_CAP_YEARS = 10.0
MAX_LIMIT = 200
NOON = dt.time(12, 0)

FILTER_COLUMNS: dict[str, FilterColumn] = {
    "priority": SupportTicket.priority,
    "category": SupportTicket.category,
    "segment": Account.segment,
    "region": Account.region,
    "plan": Account.plan,
    "industry": Account.industry,
    "owner": Account.owner,
    "status": Account.status,
}
"""What a service queue is scoped by: the ticket's priority and category, its account's fields."""
DEFAULT_FILTERS = {"status": ["active"]}

Basis = Literal["priority_category", "priority", "all", "breached"]


class QueuedTicket(BaseModel):
    """One open ticket: its SLA clock, the chance it breaches, what the customer is worth, and why."""

    rank: int
    ticket_id: int
    account_id: str
    account_name: str
    priority: str
    category: str | None
    opened: CrmDateTime = Field(description="opened_time, or noon of opened_at when only the day is known")
    time_known: bool = Field(description="false: only the day was known and noon was assumed")
    age_hours: float
    sla_hours: float
    deadline: CrmDateTime = Field(description="opened + sla_hours")
    hours_left: float = Field(description="deadline − clock; negative = breached that many hours ago")
    breached: bool
    p_sla_breach: float = Field(description="1 when breached, else P(resolution > SLA | still open at its age)")
    basis: Basis = Field(description="the tickets p_sla_breach was estimated from")
    basis_label: str = Field(description='e.g. "high/bug tickets", "high tickets", "tickets of any priority"')
    basis_resolved: int | None = Field(description="resolved tickets in that basis")
    basis_at_risk: int | None = Field(description="tickets in that basis still unresolved at this age")
    arr: float
    churn_probability: float | None = Field(description="90-day churn probability (churn model)")
    expected_lifetime_years: float = Field(description="min(cap, (90/365) / −ln(1 − churn_probability))")
    clv: float = Field(description="arr × expected_lifetime_years")
    score: float = Field(description="p_sla_breach × clv")
    why: str


class ServiceQueueInputs(BaseModel):
    as_of: dt.date
    clock: CrmDateTime = Field(description="the end of the as-of day: ages and hours left count to it")
    filters: dict[str, list[str]]
    limit: int
    sla_hours: dict[str, float]
    sla_source: str
    history_days: int
    history_tickets: int = Field(description="tickets opened in the history window (resolved or not)")
    history_resolved: int
    min_resolved: int
    min_at_risk: int
    lifetime_cap_years: float
    churn_horizon_days: int
    churn_method: str
    churn_model_version: str | None


class ServiceQueue(BaseModel):
    """Open tickets ranked by p_sla_breach × customer lifetime value, with the reasoning per row."""

    items: list[QueuedTicket]
    open_tickets: int
    breached: int = Field(description="open tickets already past their SLA")
    likely_to_breach: int = Field(description="open tickets not yet past it with p_sla_breach ≥ 0.5")
    clv_exposed: float = Field(description="Σ score over every open ticket in the selection")
    explanation: str
    inputs: ServiceQueueInputs


# --------------------------------------------------------------------------- SLA table


@lru_cache(maxsize=4)
def _read_sla(path: Path) -> tuple[tuple[str, float], ...]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    table = doc.get("sla_hours")
    if not isinstance(table, dict) or not all(
        isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in table.values()
    ):
        raise DataFault(f"{path}: `sla_hours` must map priorities to positive hours")
    return tuple((str(k), float(v)) for k, v in table.items())


def sla_table(overrides: Mapping[str, Any] | None = None, path: Path = SLA_FILE) -> dict[str, float]:
    """The SLA hours per priority: the shipped table with `overrides` on top (validated)."""
    table = dict(_read_sla(path))
    for key, value in (overrides or {}).items():
        priority = str(key).strip().lower()
        if priority not in PRIORITIES:
            raise ToolInputError(f'sla_hours: unknown priority "{key}"; valid: {", ".join(PRIORITIES)}')
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
            raise ToolInputError(f"sla_hours.{priority} must be a positive number of hours; got {value!r}")
        table[priority] = float(value)
    return table


def expected_lifetime_years(p_churn: float, cap: float = LIFETIME_CAP_YEARS) -> float:
    """Expected remaining lifetime under a constant hazard fitted to a 90-day churn probability."""
    p = min(max(p_churn, 0.0), 1.0)
    if p <= 0.0:
        return cap
    if p >= 1.0:
        return 0.0
    return min(cap, (HORIZON_DAYS / 365.0) / -math.log1p(-p))


# --------------------------------------------------------------------------- data


def queue_as_of(session: Session) -> dt.date:
    """The data's as-of date (app_meta); without one, the later of the data's latest date and the
    latest day a ticket was opened or closed (an export of tickets alone has no other date)."""
    meta = session.get(AppMeta, AS_OF_KEY)
    if meta is not None and meta.value.strip():
        return data_as_of(session)
    t = SupportTicket
    latest = [d for d in session.execute(select(func.max(t.opened_at), func.max(t.closed_at))).one() if d is not None]
    try:
        latest.append(data_as_of(session))
    except ToolInputError:
        if not latest:
            raise
    return max(latest)


@dataclass(frozen=True)
class _History:
    """Tickets opened in the history window: hours to resolution (or open so far) and groups."""

    hours: np.ndarray
    resolved: np.ndarray
    priority: np.ndarray
    category: np.ndarray

    def survival(self, mask: np.ndarray) -> Survival:
        return Survival.fit(self.hours[mask], self.resolved[mask])


def _moment(day: dt.date, at: dt.datetime | None) -> dt.datetime:
    return at if at is not None else dt.datetime.combine(day, NOON)


def _hours(delta: dt.timedelta) -> float:
    return delta.total_seconds() / 3600.0


def _moments(days: list[str], times: list[str | None]) -> np.ndarray:
    """`_moment` over stored text at once, as microseconds: the time when recorded, else the
    day's noon."""
    text = [t if t is not None else f"{d[:10]} {NOON.isoformat()}" for d, t in zip(days, times, strict=True)]
    return np.array(text, dtype="datetime64[us]").astype(np.int64)


def _load_history(session: Session, as_of: dt.date, clock: dt.datetime, days: int) -> _History:
    """Hours each ticket of the window took (resolved by `as_of`) or has been open on `clock`.

    The rows are read through the connection as text (CAST: PostgreSQL would return dates) and numpy parses and subtracts
    the times at once: a Python datetime per ticket was most of `service_queue`'s time at 100k
    tickets (docs/SERVICE_QUEUE.md, Performance). The hours are the same floats as
    `timedelta.total_seconds() / 3600` (whole microseconds ÷ 10⁶ ÷ 3600)."""
    t = SupportTicket
    as_text = [cast(c, String) for c in (t.opened_at, t.opened_time, t.closed_at, t.closed_time)]
    # The window holds most tickets: reading the table in id order beats an index search plus a
    # look-up and a sort per row (half the time at 100k tickets), so the bound is put on
    # coalesce(opened_at), which no index serves. opened_at is never blank: the same rows.
    opened_day = func.coalesce(t.opened_at, t.opened_at)
    session.flush()  # read through the connection below: pending changes first, as a query would
    rows = session.connection().execute(
        select(t.priority, t.category, *as_text)
        .where(opened_day <= as_of, opened_day > as_of - dt.timedelta(days=days))
        .order_by(t.id)
    ).all()
    if not rows:
        empty = np.empty(0)
        return _History(
            hours=empty, resolved=np.zeros(0, dtype=bool), priority=empty.astype(object), category=empty.astype(object)
        )
    priority, category, opened_at, opened_time, closed_at, closed_time = (list(c) for c in zip(*rows, strict=True))
    opened = _moments(opened_at, opened_time)
    resolved = np.array([c is not None and c[:10] <= as_of.isoformat() for c in closed_at], dtype=bool)
    ended = np.full(len(rows), np.datetime64(clock, "us").astype(np.int64))
    if resolved.any():
        picked = np.flatnonzero(resolved)
        ended[picked] = _moments([closed_at[i] for i in picked], [closed_time[i] for i in picked])
    hours = np.maximum(0.0, (ended - opened) / 1e6 / 3600.0)
    return _History(
        hours=hours,
        resolved=resolved,
        priority=np.array(priority, dtype=object),
        category=np.array([c if c is not None else "" for c in category], dtype=object),
    )


@dataclass
class _Estimate:
    p: float
    basis: Basis
    label: str
    resolved: int | None
    at_risk: int | None


class _Estimator:
    """p_sla_breach with the fallback from priority and category, to priority, to all tickets."""

    def __init__(self, history: _History, min_resolved: int, min_at_risk: int) -> None:
        self.history = history
        self.min_resolved = min_resolved
        self.min_at_risk = min_at_risk
        self._fits: dict[tuple[str, str] | tuple[str] | tuple[()], Survival] = {}
        # each ticket's priority and category as small integers: a cell's tickets are then picked
        # by comparing integers, not strings over every ticket of the history
        self._codes = [self._encode(history.priority), self._encode(history.category)]

    @staticmethod
    def _encode(values: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
        return index, codes

    def _fit(self, key: tuple[str, str] | tuple[str] | tuple[()]) -> Survival:
        if key not in self._fits:
            h = self.history
            mask = np.ones(len(h.hours), dtype=bool)
            for value, (index, codes) in zip(key, self._codes, strict=False):
                mask &= codes == index.get(value, -1)
            self._fits[key] = h.survival(mask)
        return self._fits[key]

    def estimate(self, priority: str, category: str | None, age: float, sla: float) -> _Estimate:
        if age > sla:
            return _Estimate(1.0, "breached", "past its SLA", None, None)
        levels: list[tuple[Basis, tuple[str, str] | tuple[str] | tuple[()], str]] = []
        if category:
            levels.append(("priority_category", (priority, category), f"{priority}/{category} tickets"))
        levels.append(("priority", (priority,), f"{priority} tickets"))
        levels.append(("all", (), "tickets of any priority"))
        for basis, key, label in levels:
            fit = self._fit(key)
            at_risk = fit.at_risk(age)
            enough = fit.resolved >= self.min_resolved and at_risk >= self.min_at_risk
            if enough or basis == "all":  # all tickets: the last resort, however few
                p = fit.breach_probability(age, sla)
                # None: no ticket in the history stayed open this long, nothing says it will be in time
                return _Estimate(1.0 if p is None else p, basis, label, fit.resolved, at_risk)
        raise RuntimeError("the list of levels ends with all tickets")


# --------------------------------------------------------------------------- the tool


def _fmt_hours(h: float) -> str:
    h = abs(h)
    if h < 48:
        return f"{h:.0f} h"
    return f"{h / 24:.1f} days"


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _pct(p: float) -> str:
    """44%; 0.4% below one percent, so a small risk never reads as none."""
    return f"{p:.1%}" if 0 < p < 0.01 else f"{p:.0%}"


def _why(row: QueuedTicket, min_resolved: int) -> str:
    if row.breached:
        clock = f"breached {_fmt_hours(row.hours_left)} ago ({row.priority} SLA {row.sla_hours:g} h)"
    else:
        clock = (
            f"{_fmt_hours(row.hours_left)} left of its {row.priority} SLA of {row.sla_hours:g} h; "
            f"of past {row.basis_label} still open at {_fmt_hours(row.age_hours)}, {_pct(row.p_sla_breach)} "
            f"went past {row.sla_hours:g} h (Kaplan–Meier over {row.basis_resolved} resolved"
            + (", too few for a firm estimate)" if (row.basis_resolved or 0) < min_resolved else ")")
        )
    if row.churn_probability is None:
        value = f"{row.account_name} has churned: no lifetime value left"
    else:
        capped = " (capped)" if row.expected_lifetime_years >= LIFETIME_CAP_YEARS - 1e-9 else ""
        value = (
            f"{row.account_name}'s lifetime value {_money(row.clv)} = ARR {_money(row.arr)} × "
            f"{row.expected_lifetime_years:.1f} years{capped} at {_pct(row.churn_probability)} 90-day churn risk"
        )
    return f"{clock}; {value}"


def service_queue(
    *,
    session: Session,
    filters: dict[str, Any] | None = None,
    limit: int = 10,
    sla_hours: dict[str, float] | None = None,
    as_of: dt.date | None = None,
    history_days: int = DEFAULT_HISTORY_DAYS,
    min_resolved: int = MIN_RESOLVED,
    min_at_risk: int = MIN_AT_RISK,
    lifetime_cap_years: float = LIFETIME_CAP_YEARS,
) -> ServiceQueue:
    """Rank open support tickets by p_sla_breach × customer lifetime value, with the reasons.

    Args:
        filters: Optional {key: value or [values]} over the ticket's priority and category and its
            account's segment, region, plan, industry, owner and status (default: active accounts).
        limit: How many tickets to list (0 to 200); the counts cover every open ticket.
        sla_hours: Resolution SLA hours per priority replacing the shipped table's (sla.yaml),
            e.g. {"urgent": 24}.
        as_of: The day whose end is the clock; default the data's as-of date.
        history_days: Tickets opened this many days before the clock make the resolution-time
            history.
        min_resolved: Resolved tickets a priority/category (or priority) cell needs to be used.
        min_at_risk: Tickets of that cell still unresolved at the ticket's age it needs.
        lifetime_cap_years: The most years of remaining lifetime a customer is credited with.
    """
    if not 0 <= limit <= MAX_LIMIT:
        raise ToolInputError(f"limit must be between 0 and {MAX_LIMIT}; got {limit}")
    if history_days < 1:
        raise ToolInputError(f"history_days must be at least 1; got {history_days}")
    if min_resolved < 0 or min_at_risk < 0:
        raise ToolInputError("min_resolved and min_at_risk must not be negative")
    if not (math.isfinite(lifetime_cap_years) and lifetime_cap_years > 0):
        raise ToolInputError(f"lifetime_cap_years must be a positive number; got {lifetime_cap_years}")
    sla = sla_table(sla_hours)
    day = as_of or queue_as_of(session)
    clock = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    normalised = normalise_filters(
        session, filters, FILTER_COLUMNS, entity="open tickets", defaults=DEFAULT_FILTERS
    )
    t = SupportTicket
    rows = session.execute(
        select(
            t.id, t.account_id, t.priority, t.category, t.opened_at, t.opened_time,
            Account.name, Account.arr, Account.status,
        )
        .join(Account, Account.id == t.account_id)
        .where(t.opened_at <= day, or_(t.closed_at.is_(None), t.closed_at > day), *conditions(normalised, FILTER_COLUMNS))
        .order_by(t.id)
    ).all()
    unknown_priorities = sorted({r.priority for r in rows} - set(sla))
    if unknown_priorities:
        raise DataFault(f"no SLA for ticket priority {unknown_priorities!r}; add it to {SLA_FILE.name} or sla_hours")

    history = _load_history(session, day, clock, history_days)
    estimator = _Estimator(history, min_resolved, min_at_risk)

    accounts = sorted({r.account_id for r in rows})
    churn: dict[str, float] = {}
    method, version = "none", None
    if accounts:
        assessed = assess(session, as_of=day, scope=AccountScope(ids=tuple(accounts)))
        churn = {str(a): float(p) for a, p in zip(assessed.table.ids, assessed.probability, strict=True)}
        method, version = assessed.model.method, assessed.model.version

    queue: list[QueuedTicket] = []
    for r in rows:
        opened = _moment(r.opened_at, r.opened_time)
        age = _hours(clock - opened)
        hours = sla[r.priority]
        est = estimator.estimate(r.priority, r.category, age, hours)
        active = r.status != "churned"
        p_churn = churn.get(r.account_id) if active else None
        lifetime = expected_lifetime_years(p_churn or 0.0, lifetime_cap_years) if active else 0.0
        clv = float(r.arr or 0.0) * lifetime
        row = QueuedTicket(
            rank=0,
            ticket_id=r.id,
            account_id=r.account_id,
            account_name=r.name,
            priority=r.priority,
            category=r.category,
            opened=opened,
            time_known=r.opened_time is not None,
            age_hours=age,
            sla_hours=hours,
            deadline=opened + dt.timedelta(hours=hours),
            hours_left=hours - age,
            breached=age > hours,
            p_sla_breach=est.p,
            basis=est.basis,
            basis_label=est.label,
            basis_resolved=est.resolved,
            basis_at_risk=est.at_risk,
            arr=float(r.arr or 0.0),
            churn_probability=p_churn,
            expected_lifetime_years=lifetime,
            clv=clv,
            score=est.p * clv,
            why="",
        )
        row.why = _why(row, min_resolved)
        queue.append(row)
    queue.sort(key=lambda q: (-q.score, q.ticket_id))
    for i, q in enumerate(queue, start=1):
        q.rank = i
    breached = sum(q.breached for q in queue)
    likely = sum(1 for q in queue if not q.breached and q.p_sla_breach >= 0.5)
    exposed = math.fsum(q.score for q in queue)
    top = queue[0] if queue else None
    explanation = (
        f"{len(queue)} open tickets at the end of {day} ({describe(normalised)}): {breached} past their SLA, "
        f"{likely} more likely than not to breach; {_money(exposed)} of customer lifetime value exposed "
        "(Σ p_sla_breach × CLV)."
    )
    if top is not None:
        explanation += f" First: ticket {top.ticket_id} of {top.account_name} ({top.account_id}): {top.why}."
    return ServiceQueue(
        items=queue[:limit],
        open_tickets=len(queue),
        breached=breached,
        likely_to_breach=likely,
        clv_exposed=exposed,
        explanation=explanation,
        inputs=ServiceQueueInputs(
            as_of=day,
            clock=clock,
            filters=normalised,
            limit=limit,
            sla_hours=sla,
            sla_source="sla.yaml" + (" with sla_hours" if sla_hours else ""),
            history_days=history_days,
            history_tickets=len(history.hours),
            history_resolved=int(history.resolved.sum()),
            min_resolved=min_resolved,
            min_at_risk=min_at_risk,
            lifetime_cap_years=lifetime_cap_years,
            churn_horizon_days=HORIZON_DAYS,
            churn_method=method,
            churn_model_version=version,
        ),
    )


def project_service_queue(r: ServiceQueue) -> dict[str, Any]:
    """What the model reads of `service_queue`: the counts and each listed ticket's key figures and why."""
    return {
        "as_of": r.inputs.as_of,
        "open_tickets": r.open_tickets,
        "breached": r.breached,
        "likely_to_breach": r.likely_to_breach,
        "items": [
            {
                "ticket_id": q.ticket_id,
                "account_id": q.account_id,
                "account_name": q.account_name,
                "priority": q.priority,
                "category": q.category,
                "deadline": q.deadline,
                "hours_left": q.hours_left,
                "p_sla_breach": q.p_sla_breach,
                "clv": q.clv,
                "score": q.score,
                "why": q.why,
            }
            for q in r.items
        ],
    }
