"""Point-in-time features of deals: what was known about a deal on a date, and nothing later.

A deal's features on day `t` use only what happened on or before `t`: its stage then (stage
history), how long it had been open and in that stage, its amount against the typical won deal
of its product *closed before t*, its owner's win rate over deals *closed before t*, its expected
close date, and its account's activity in the 90 days to `t` (when the deal has an account that
existed then). The label of a training row is the deal's eventual outcome (won = 1).

Two fields are used only when the data shows they were known while deals were open (otherwise a
model would learn the outcome from them): **amount** when most open deals carry one (an export
that fills the value only at close, e.g. 0 for every lost deal, fails this) and **stage** when
most closed deals have a stage history (without it, a closed deal's stage on `t` is unknown).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from sqlalchemy import ColumnElement, Select, String, cast, func, select
from sqlalchemy.orm import Session

from crm.models import (
    CLOSED_STAGES,
    DEMO_ORIGIN,
    LOST_STAGE,
    WON_STAGE,
    Account,
    Interaction,
    Opportunity,
    OpportunityStage,
    SupportTicket,
)
from tools.churn.features import FeatureTable

NUMERIC = (
    "age_days",
    "days_in_stage",
    "stage_changes",
    "amount_vs_typical",
    "amount_log",
    "days_to_expected_close",
    "owner_win_rate",
    "owner_closed_deals",
    "account_tenure_days",
    "interactions_90d",
    "days_since_interaction",
    "tickets_90d",
)
CATEGORICAL = ("stage", "type", "product")
AMOUNT_FEATURES = ("amount_vs_typical", "amount_log")
STAGE_FEATURES = ("stage", "days_in_stage", "stage_changes")
ACTIVITY_DAYS = 90
MIN_OWNER_DEALS = 5  # an owner's win rate needs this many closed deals before t
MIN_TYPICAL = 3  # a product's typical amount needs this many won deals before t
KNOWN_SHARE = 0.5


@dataclass(frozen=True)
class Deal:
    id: int
    ref: str
    account_id: str | None
    type: str | None
    product: str | None
    owner: str | None
    amount: float | None
    created: dt.date | None
    close: dt.date | None
    expected: dt.date | None
    stage: str  # as stored now
    origin: str

    @property
    def outcome(self) -> int | None:
        """1 won, 0 lost, None open."""
        return 1 if self.stage == WON_STAGE else 0 if self.stage == LOST_STAGE else None


def _ordinal_lists(pairs: Iterable[tuple[str, dt.date]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for key, day in pairs:
        out[key].append(day.toordinal())
    for days in out.values():
        days.sort()
    return out


def _count_in(days: list[int], lo: int, hi: int) -> int:
    """How many of the sorted `days` fall in (lo, hi]."""
    return bisect.bisect_right(days, hi) - bisect.bisect_right(days, lo)


@dataclass
class DealData:
    """Every deal and the history around it, read once; features at any date come from here."""

    deals: list[Deal]
    stages: dict[str, list[tuple[dt.date, str]]]
    interactions: dict[str, list[int]]
    tickets: dict[str, list[int]]
    account_created: dict[str, dt.date | None]
    use_amount: bool
    use_stage: bool
    notes: list[str] = field(default_factory=list)
    _won_by_product: dict[str | None, list[tuple[int, float]]] = field(default_factory=dict)
    _closed_by_owner: dict[str | None, tuple[list[int], list[int]]] = field(default_factory=dict)
    _typical_seen: dict[tuple[str | None, int], float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        won: dict[str | None, list[tuple[int, float]]] = defaultdict(list)
        closed: dict[str | None, list[tuple[int, int]]] = defaultdict(list)
        for d in self.deals:
            if d.close is None or d.outcome is None:
                continue
            if d.outcome == 1 and d.amount is not None:
                won[d.product].append((d.close.toordinal(), d.amount))
            closed[d.owner].append((d.close.toordinal(), d.outcome))
        self._won_by_product = {k: sorted(v) for k, v in won.items()}
        for owner, rows in closed.items():
            rows.sort()
            days = [r[0] for r in rows]
            cumulative = list(np.cumsum([r[1] for r in rows]).tolist())
            self._closed_by_owner[owner] = (days, cumulative)

    def typical_amount(self, product: str | None, before: int) -> float | None:
        """Median amount of the product's won deals closed before day `before` (≥ MIN_TYPICAL).
        Kept per (product, day): scoring the open pipeline asks the same few pairs once a deal."""
        key = (product, before)
        if key not in self._typical_seen:
            rows = self._won_by_product.get(product, [])
            k = bisect.bisect_left(rows, (before, -math.inf))
            self._typical_seen[key] = (
                None if k < MIN_TYPICAL else float(statistics.median(a for _, a in rows[:k]))
            )
        return self._typical_seen[key]

    def owner_record(self, owner: str | None, before: int) -> tuple[float, float]:
        """(win rate, closed deals) of the owner's deals closed before day `before`; rate NaN under
        MIN_OWNER_DEALS."""
        days, cumulative = self._closed_by_owner.get(owner, ([], []))
        k = bisect.bisect_left(days, before)
        if k < MIN_OWNER_DEALS:
            return math.nan, float(k)
        return cumulative[k - 1] / k, float(k)


_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")


def _in_population(stmt: _S, population: str | None) -> _S:
    if population == DEMO_ORIGIN:
        return stmt.where(Opportunity.origin == DEMO_ORIGIN)
    if population is not None:
        return stmt.where(Opportunity.origin != DEMO_ORIGIN)
    return stmt


def _deal(o: Any) -> Deal:
    """A Deal from an Opportunity or a row of its columns (the same names)."""
    return Deal(
        id=o.id,
        ref=o.external_id or str(o.id),
        account_id=o.account_id,
        type=o.type,
        product=o.product,
        owner=o.owner,
        amount=o.amount,
        created=o.created_at,
        close=o.close_date,
        expected=o.expected_close_date,
        stage=o.stage,
        origin=o.origin,
    )


def _matches(column: Any, value: str | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def in_population(opp: Opportunity, population: str | None) -> bool:
    """Whether `opp` is one of the deals `load_deal_data(population=...)` reads."""
    if population == DEMO_ORIGIN:
        return opp.origin == DEMO_ORIGIN
    return population is None or opp.origin != DEMO_ORIGIN


@dataclass
class DealContext(DealData):
    """`DealData` for one deal on one day: its owner's record and its product's typical amount are
    counted in SQL for that day alone (see `load_deal_context`) instead of from every deal."""

    typical: dict[tuple[str | None, int], float | None] = field(default_factory=dict)
    record: dict[tuple[str | None, int], tuple[float, float]] = field(default_factory=dict)

    def typical_amount(self, product: str | None, before: int) -> float | None:
        return self.typical[(product, before)]

    def owner_record(self, owner: str | None, before: int) -> tuple[float, float]:
        return self.record[(owner, before)]


def _typical_in_sql(session: Session, opp: Opportunity, day: dt.date, population: str | None) -> float | None:
    """`DealData.typical_amount` of the deal's product before `day`: the same median, from the
    middle one or two amounts that SQL sorts out."""
    won = _in_population(
        select(Opportunity.amount).where(
            Opportunity.stage == WON_STAGE,
            Opportunity.amount.is_not(None),
            Opportunity.close_date.is_not(None),
            Opportunity.close_date < day,
            _matches(Opportunity.product, opp.product),
        ),
        population,
    )
    k = session.scalar(select(func.count()).select_from(won.subquery())) or 0
    if k < MIN_TYPICAL:
        return None
    middle = [
        float(a or 0.0)  # not null: filtered above
        for a in session.scalars(won.order_by(Opportunity.amount).offset((k - 1) // 2).limit(2 - k % 2))
    ]
    return float(statistics.median(middle))


def _record_in_sql(
    session: Session, opp: Opportunity, day: dt.date, population: str | None
) -> tuple[float, float]:
    """`DealData.owner_record` of the deal's owner before `day`, counted in SQL."""
    counts = session.execute(
        _in_population(
            select(func.count(), func.count().filter(Opportunity.stage == WON_STAGE)).where(
                Opportunity.stage.in_(CLOSED_STAGES),
                Opportunity.close_date.is_not(None),
                Opportunity.close_date < day,
                _matches(Opportunity.owner, opp.owner),
            ),
            population,
        )
    ).one()
    closed, won = int(counts[0]), int(counts[1] or 0)
    if closed < MIN_OWNER_DEALS:
        return math.nan, float(closed)
    return won / closed, float(closed)


def load_deal_context(
    session: Session, opp: Opportunity, day: dt.date, *, population: str | None = None
) -> DealContext:
    """What `feature_table` reads about one deal on `day`, and nothing more: the deal, its owner's
    win rate and its product's typical won amount before that day (counted in SQL), its stage
    history and its account's activity. Its features equal those from `load_deal_data` over the
    whole population (tests/test_deal_model.py checks it), but reading costs a few indexed
    queries instead of every deal and interaction, which is what lets `deal_score` answer for one
    deal quickly on a million deals. `use_amount` and `use_stage` are not computed (they
    describe the whole population): the caller sets them from the model, which learned with them."""
    target = _deal(opp)
    t = day.toordinal()
    history = [
        (entered, stage)
        for stage, entered in session.execute(
            select(OpportunityStage.stage, OpportunityStage.entered_at)
            .where(OpportunityStage.opportunity_id == target.ref)
            .order_by(OpportunityStage.entered_at, OpportunityStage.id)
        )
    ]
    account = target.account_id
    interactions: dict[str, list[int]] = {}
    tickets: dict[str, list[int]] = {}
    created: dict[str, dt.date | None] = {}
    if account is not None:
        interactions = _ordinal_lists(
            (account, d)
            for (d,) in session.execute(
                select(Interaction.occurred_at).where(Interaction.account_id == account)
            )
        )
        tickets = _ordinal_lists(
            (account, d)
            for (d,) in session.execute(
                select(SupportTicket.opened_at).where(SupportTicket.account_id == account)
            )
        )
        created = {
            a: c
            for a, c in session.execute(select(Account.id, Account.created_at).where(Account.id == account))
        }
    return DealContext(
        deals=[target],
        stages={target.ref: history} if history else {},
        interactions=interactions,
        tickets=tickets,
        account_created=created,
        use_amount=False,
        use_stage=False,
        typical={(opp.product, t): _typical_in_sql(session, opp, day, population)},
        record={(opp.owner, t): _record_in_sql(session, opp, day, population)},
    )


_DEAL_COLUMNS = (
    Opportunity.id,
    Opportunity.external_id,
    Opportunity.account_id,
    Opportunity.type,
    Opportunity.product,
    Opportunity.owner,
    Opportunity.amount,
    Opportunity.created_at,
    Opportunity.close_date,
    Opportunity.expected_close_date,
    Opportunity.stage,
    Opportunity.origin,
)


def load_deal_data(
    session: Session, *, population: str | None = None, history_of: Literal["all", "open"] = "all"
) -> DealData:
    """Read deals (of one `population`: 'demo' or 'import'; None for all) and their history.

    With `history_of="open"` the stage history and account activity are read for the open deals
    only (in SQL), which is all scoring open deals needs (a deal's features read only its own
    history and account, and every deal's outcome, which is always read): at a million deals
    that skips most of the interactions table. Then `use_amount` / `use_stage` and the notes
    describe nothing (False, none): the caller takes them from the model, which learned with them.
    """
    session.flush()  # read through the connection below: pending changes first, as a query would
    conn = session.connection()
    deals = [
        _deal(o)
        for o in conn.execute(_in_population(select(*_DEAL_COLUMNS), population).order_by(Opportunity.id))
    ]
    refs = {d.ref for d in deals}
    open_only = history_of == "open"
    open_deals_sql = _in_population(
        select(Opportunity).where(Opportunity.stage.not_in(CLOSED_STAGES)), population
    )
    stage_rows = select(OpportunityStage.opportunity_id, OpportunityStage.stage, OpportunityStage.entered_at)
    if open_only:
        open_refs = open_deals_sql.with_only_columns(
            func.coalesce(Opportunity.external_id, cast(Opportunity.id, String))
        )
        stage_rows = stage_rows.where(OpportunityStage.opportunity_id.in_(open_refs))
    stages: dict[str, list[tuple[dt.date, str]]] = defaultdict(list)
    for ref, stage, day in conn.execute(
        stage_rows.order_by(OpportunityStage.opportunity_id, OpportunityStage.entered_at, OpportunityStage.id)
    ):
        if ref in refs:
            stages[ref].append((day, stage))
    accounts = {
        d.account_id for d in deals if d.account_id is not None and not (open_only and d.outcome is not None)
    }
    interaction_rows = select(Interaction.account_id, Interaction.occurred_at)
    ticket_rows = select(SupportTicket.account_id, SupportTicket.opened_at)
    account_rows = select(Account.id, Account.created_at)
    if open_only:
        open_accounts = open_deals_sql.with_only_columns(Opportunity.account_id).where(
            Opportunity.account_id.is_not(None)
        )
        interaction_rows = interaction_rows.where(Interaction.account_id.in_(open_accounts))
        ticket_rows = ticket_rows.where(SupportTicket.account_id.in_(open_accounts))
        account_rows = account_rows.where(Account.id.in_(open_accounts))
    interactions = _ordinal_lists((a, day) for a, day in conn.execute(interaction_rows) if a in accounts)
    tickets = _ordinal_lists((a, day) for a, day in conn.execute(ticket_rows) if a in accounts)
    created = {a: c for a, c in conn.execute(account_rows) if a in accounts}
    notes: list[str] = []
    use_amount = use_stage = False  # decided from open and closed deals together: not for open_only
    if not open_only:
        open_deals = [d for d in deals if d.outcome is None]
        closed = [d for d in deals if d.outcome is not None]
        use_amount = bool(open_deals) and sum(d.amount is not None for d in open_deals) >= KNOWN_SHARE * len(
            open_deals
        )
        if not use_amount:
            notes.append(
                "amount not used: most open deals have none, so an amount is recorded at close and would give "
                "the outcome away"
            )
        use_stage = bool(closed) and sum(d.ref in stages for d in closed) >= KNOWN_SHARE * len(closed)
        if not use_stage:
            notes.append(
                "stage not used: most closed deals have no stage history, so their stage back then is unknown"
            )
    return DealData(
        deals=deals,
        stages=dict(stages),
        interactions=interactions,
        tickets=tickets,
        account_created=created,
        use_amount=use_amount,
        use_stage=use_stage,
        notes=notes,
    )


def _stage_at(data: DealData, deal: Deal, day: dt.date) -> tuple[str | None, float, float]:
    """(stage, days in it, stage changes) on `day`, from the stage history."""
    history = data.stages.get(deal.ref, [])
    k = bisect.bisect_right(history, (day, "\uffff"))
    if k == 0:
        return None, math.nan, 0.0
    entered, stage = history[k - 1]
    if stage in CLOSED_STAGES:
        return None, math.nan, float(k)
    return stage, float((day - entered).days), float(k)


def feature_table(data: DealData, rows: Sequence[tuple[Deal, dt.date]]) -> FeatureTable:
    """Features of each (deal, day) pair, as they stood on that day."""
    n = len(rows)
    numeric = {name: np.full(n, np.nan) for name in NUMERIC}
    categorical = {name: np.full(n, None, dtype=object) for name in CATEGORICAL}
    for i, (deal, day) in enumerate(rows):
        t = day.toordinal()
        if deal.created is not None:
            numeric["age_days"][i] = (day - deal.created).days
        if data.use_stage:
            stage, in_stage, changes = _stage_at(data, deal, day)
            categorical["stage"][i] = stage
            numeric["days_in_stage"][i] = in_stage
            numeric["stage_changes"][i] = changes
        categorical["type"][i] = deal.type
        categorical["product"][i] = deal.product
        if data.use_amount and deal.amount is not None:
            numeric["amount_log"][i] = math.log1p(max(deal.amount, 0.0))
            typical = data.typical_amount(deal.product, t)
            if typical and deal.amount > 0:
                numeric["amount_vs_typical"][i] = math.log(deal.amount / typical)
        if deal.expected is not None:
            numeric["days_to_expected_close"][i] = (deal.expected - day).days
        rate, closed = data.owner_record(deal.owner, t)
        numeric["owner_win_rate"][i] = rate
        numeric["owner_closed_deals"][i] = closed
        account = deal.account_id
        since = data.account_created.get(account) if account is not None else None
        if account is not None and since is not None and since <= day:
            numeric["account_tenure_days"][i] = (day - since).days
            touches = data.interactions.get(account, [])
            numeric["interactions_90d"][i] = _count_in(touches, t - ACTIVITY_DAYS, t)
            k = bisect.bisect_right(touches, t)
            if k:
                numeric["days_since_interaction"][i] = t - touches[k - 1]
            numeric["tickets_90d"][i] = _count_in(data.tickets.get(account, []), t - ACTIVITY_DAYS, t)
    refs = np.array([f"{deal.ref}@{day.isoformat()}" for deal, day in rows], dtype=object)
    as_of = np.array([day.toordinal() for _, day in rows], dtype=np.int64)
    return FeatureTable(ids=refs, as_of=as_of, numeric=numeric, categorical=categorical)


def used_features(data: DealData) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric, categorical) features the data supports (see the module docstring)."""
    drop = set()
    if not data.use_amount:
        drop |= set(AMOUNT_FEATURES)
    if not data.use_stage:
        drop |= set(STAGE_FEATURES)
    return tuple(f for f in NUMERIC if f not in drop), tuple(f for f in CATEGORICAL if f not in drop)
