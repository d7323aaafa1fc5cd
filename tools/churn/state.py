"""The churn feature state kept between batch runs, so scoring reads only what is new.

Most of the cost of scoring every account is reading the event tables from the start: the
latest interaction, the subscription in force, the latest NPS answer and the open tickets
look at all of an account's history, the usage windows at 12 weeks and the CSAT, invoice
and champion windows at 180 days of it. The state keeps, per account, the *parts* those
features are made of (`STATE_PARTS`) as of a date ``p``, and advances them to a later
date ``d`` with the rows dated in between:

- usage sums and week counts of the last-4 / previous-8 windows: + the weeks entering each
  window, − the weeks leaving it (sums of integers, so exactly what a fresh read gives);
- latest interaction, subscription in force, latest NPS answer: the latest of the kept one
  and those dated in ``(p, d]`` (ties by id, as the fresh read);
- open tickets per priority: + tickets opened in ``(p, d]`` and not closed by ``d``, −
  tickets opened by ``p`` and closed in ``(p, d]``;
- champion departures: the latest of all time (it is the window's latest when it is in the
  window); invoices due in the last 180 days: + those now due, − those due too long ago;
  CSAT of tickets closed in the last 180 days: a per-account histogram of ratings 1..5.

**When the state is not used** (the features are then read from scratch and the state
rebuilt): no state yet; a date before the state's or more than `MAX_STEP_DAYS` after it;
another format; rows added to interactions, subscriptions, NPS answers, tickets or invoices
since the state was written that are dated on or before its date (back-dated loads), or a
drop of one of those tables' highest id. The product's importer drops the state when it
writes rows dated on or before the state's date or updates rows (crm/importer/loader.py).
What neither can see: direct SQL that back-dates a usage week, deletes rows, or changes a
kept row in place (a subscription's seats, an invoice's status, a ticket's CSAT or a closing
date before the state's). After such writes run ``valuechain churn score --rebuild``.
`tests/test_churn_state.py` checks that an advanced state gives the same features as a
fresh read, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Date, bindparam, func, select
from sqlalchemy.orm import Session

from crm.models import (
    Account,
    Interaction,
    Invoice,
    NpsResponse,
    Subscription,
    SupportTicket,
    UsageWeekly,
)
from tools.churn.features import (
    KEPT_PARTS,
    PRIORITIES,
    WINDOW_DAYS,
    AccountScope,
    Components,
    IdIndex,
    column,
    date_ordinals,
    history_params,
    raw_rows,
    read_components,
    sort_by_id,
    sql_components,
    statements_for,
)
from tools.churn.state_store import (
    CSAT_LEVELS,
    CSAT_PARTS,
    ZERO_PARTS,
    AccountIndex,
    FeatureState,
    _id_array,
    drop,
    load,
    locate,
    save,
)

MAX_STEP_DAYS = 28
KEPT_GROUPS = ("usage", "subscription", "touch", "open_tickets", "nps_last")
# Tables whose new rows are checked for back-dating: (model, integer id, date column).
_WATCHED = (
    ("interactions", Interaction, Interaction.occurred_at),
    ("subscriptions", Subscription, Subscription.start_date),
    ("nps_responses", NpsResponse, NpsResponse.responded_at),
    ("support_tickets", SupportTicket, SupportTicket.opened_at),
    ("invoices", Invoice, Invoice.due_date),
)


@dataclass(frozen=True)
class StateUse:
    """How a batch got its features: `built` (read from scratch, state kept), `advanced` (the
    kept state moved on), `current` (the kept state was already at the date) or `read` (from
    scratch, nothing kept); `reason` says why the kept state was not used, if it was not."""

    how: str
    reason: str


# --------------------------------------------------------------------------- validity


def _watermarks(conn: Connection) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, model, _ in _WATCHED:
        out[name] = int(conn.execute(select(func.max(model.id))).scalar() or 0)
    return out


def why_unusable(conn: Connection, state: FeatureState | None, d: dt.date) -> str | None:
    """None when `state` can be advanced to `d`, else the reason it cannot."""
    if state is None:
        return "no kept feature state"
    if d < state.as_of:
        return f"the kept state is of {state.as_of}, after {d}"
    if (d - state.as_of).days > MAX_STEP_DAYS:
        return f"the kept state is of {state.as_of}, more than {MAX_STEP_DAYS} days before {d}"
    now = _watermarks(conn)
    for name, model, date_col in _WATCHED:
        kept = state.watermarks.get(name, 0)
        if now[name] < kept:
            return f"rows were removed from {name}"
        # rows added since (ordered by id, so the primary key is walked, not the date index)
        added = conn.execute(select(date_col).where(model.id > kept).order_by(model.id)).scalars().all()
        late = sum(1 for v in added if v is not None and str(v)[:10] <= state.as_of.isoformat())
        if late:
            return (
                f"{late} {name} row(s) dated on or before {state.as_of} were added after the state was kept"
            )
    return None


# --------------------------------------------------------------------------- build and advance


def build(session: Session, d: dt.date) -> FeatureState:
    """The state of every account as of `d`, read from scratch."""
    conn = session.connection()
    watermarks = _watermarks(conn)
    ids = column(sort_by_id(raw_rows(conn, select(Account.id))), 0)
    n = len(ids)
    stmts, extra = statements_for(AccountScope())
    params = {**history_params(d), **extra}
    by_id = {a: i for i, a in enumerate(ids)}
    parts = read_components(conn, stmts, params, by_id, n, (*KEPT_GROUPS, "invoices"))
    index = AccountIndex(_id_array(ids))
    plan = parts.pop("sub_plan")
    parts["champ_latest"] = np.full(n, np.nan)
    _latest_champion(conn, index, parts, dt.date.min, d)
    for name in CSAT_PARTS:
        parts[name] = np.zeros(n)
    _add_csat(conn, index, parts, d - dt.timedelta(days=WINDOW_DAYS), d, 1.0)
    for name in ZERO_PARTS:
        parts[name] = np.nan_to_num(parts[name], nan=0.0)
    return FeatureState(as_of=d, ids=index.ids, parts=parts, sub_plan=plan, watermarks=watermarks)


_D = bindparam("d", type_=Date())
_P = bindparam("p", type_=Date())
_LO = bindparam("lo", type_=Date())
_HI = bindparam("hi", type_=Date())
_U = UsageWeekly
_USAGE_SLICE = select(_U.account_id, _U.active_users).where(_U.week_start > _LO, _U.week_start <= _HI)
_TOUCH = (
    select(Interaction.account_id, func.max(Interaction.occurred_at))
    .where(Interaction.occurred_at > _P, Interaction.occurred_at <= _D)
    .group_by(Interaction.account_id)
)
_S = Subscription
_NEW_SUBS = select(
    _S.account_id, _S.seats, _S.discount, _S.renewal_date, _S.start_date, _S.id, _S.plan
).where(_S.start_date > _P, _S.start_date <= _D)
_N = NpsResponse
_NEW_NPS = select(_N.account_id, _N.score, _N.responded_at, _N.id).where(
    _N.responded_at > _P, _N.responded_at <= _D
)
_T = SupportTicket
# tickets opened after the state's date (+1 each, −1 again if closed by d), and tickets
# opened by it and closed after it (−1): the same open count as `opened ≤ d, not closed by d`
_OPENED = select(_T.account_id, _T.priority, _T.closed_at).where(_T.opened_at > _P, _T.opened_at <= _D)
_CLOSED = select(_T.account_id, _T.priority).where(_T.closed_at > _P, _T.closed_at <= _D, _T.opened_at <= _P)


# The windowed groups reuse the fresh read's statements over every account, bound to a
# slice instead of the window: `window_lo` < date ≤ `d` (CSAT closed, champion left) and, for
# invoices, `window_lo` ≤ due < `d`, issued by `issued`.


def _window_rows(
    conn: Connection, group: str, lo: dt.date, hi: dt.date, issued: dt.date | None = None
) -> list[Any]:
    stmts, _ = statements_for(AccountScope())
    return raw_rows(conn, stmts[group], {"d": hi, "window_lo": lo, "issued": issued or hi})


class CsatOutOfRange(ValueError):
    """A CSAT value other than 1..5: the histogram cannot hold it."""


def _latest_champion(
    conn: Connection, index: AccountIndex, parts: dict[str, np.ndarray], lo: dt.date, hi: dt.date
) -> None:
    """The latest champion departure in (lo, hi] where it is later than the kept one."""
    rows = _window_rows(conn, "champion", lo, hi)
    if rows:
        at = _rows_at(index, rows)
        parts["champ_latest"][at] = np.fmax(parts["champ_latest"][at], date_ordinals(column(rows, 1)))


def _add_csat(
    conn: Connection,
    index: AccountIndex,
    parts: dict[str, np.ndarray],
    lo: dt.date,
    hi: dt.date,
    sign: float,
) -> None:
    """± the CSAT ratings of tickets closed in (lo, hi] into the per-account histogram."""
    rows = _window_rows(conn, "csat", lo, hi)
    if not rows:
        return
    at = _rows_at(index, rows)
    values = np.array(column(rows, 1), dtype=np.float64)
    if not np.isin(values, CSAT_LEVELS).all():
        raise CsatOutOfRange("a CSAT rating outside 1..5")
    n = len(parts[CSAT_PARTS[0]])
    for level, name in zip(CSAT_LEVELS, CSAT_PARTS, strict=True):
        hit = values == level
        if hit.any():
            parts[name] += sign * np.bincount(at[hit], minlength=n)


def _add_invoices(
    conn: Connection,
    index: AccountIndex,
    parts: dict[str, np.ndarray],
    lo: dt.date,
    hi: dt.date,
    issued: dt.date,
    sign: float,
) -> None:
    rows = _window_rows(conn, "invoices", lo, hi, issued)
    if rows:
        at = _rows_at(index, rows)
        parts["inv_failed"][at] += sign * np.array(column(rows, 1), dtype=np.float64)
        parts["inv_late"][at] += sign * np.array(column(rows, 2), dtype=np.float64)


def csat_median(parts: Mapping[str, np.ndarray]) -> np.ndarray:
    """Median CSAT per account from the histogram (NaN with no ratings), as `_group_median`."""
    counts = np.column_stack([parts[name] for name in CSAT_PARTS])
    total = counts.sum(axis=1)
    cum = np.cumsum(counts, axis=1)
    levels = np.array(CSAT_LEVELS, dtype=np.float64)
    lo = levels[np.argmax(cum > ((total - 1) // 2)[:, None], axis=1)]
    hi = levels[np.argmax(cum > (total // 2)[:, None], axis=1)]
    return np.where(total > 0, (lo + hi) / 2.0, np.nan)


def _rows_at(index: AccountIndex, rows: list[Any]) -> np.ndarray:
    return index.positions(column(rows, 0))


def _later(kept_at: np.ndarray, kept_id: np.ndarray, at: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Where (at, id) is later than the kept (date, id); a missing kept one is earliest."""
    missing = np.isnan(kept_at)
    with np.errstate(invalid="ignore"):
        return missing | (at > kept_at) | ((at == kept_at) & (ids > kept_id))


def _empty(name: str) -> float:
    return 0.0 if name in ZERO_PARTS else np.nan


def _reindexed(state: FeatureState, ids: np.ndarray) -> FeatureState:
    """`state` over exactly `ids` (sorted): new accounts start empty, others are dropped."""
    if len(ids) == len(state.ids) and (ids == state.ids).all():
        return state
    at, found = locate(state.ids, ids)
    parts: dict[str, np.ndarray] = {}
    for name, values in state.parts.items():
        out = np.full(len(ids), _empty(name))
        out[found] = values[at[found]]
        parts[name] = out
    plan = np.full(len(ids), None, dtype=object)
    plan[found] = state.sub_plan[at[found]]
    return FeatureState(as_of=state.as_of, ids=ids, parts=parts, sub_plan=plan, watermarks=state.watermarks)


def _with_accounts(state: FeatureState, ids: np.ndarray) -> FeatureState:
    """`state` with empty rows added for the accounts of `ids` it lacks (all others kept)."""
    at, found = locate(state.ids, ids)
    if found.all():
        return state
    where, new = at[~found], ids[~found]
    return FeatureState(
        as_of=state.as_of,
        ids=np.insert(state.ids.astype(np.result_type(state.ids, new)), where, new),  # no id cut short
        parts={k: np.insert(v, where, _empty(k)) for k, v in state.parts.items()},
        sub_plan=np.insert(state.sub_plan, where, np.full(len(new), None, dtype=object)),
        watermarks=state.watermarks,
    )


def advance(session: Session, state: FeatureState, d: dt.date, ids: np.ndarray | None = None) -> FeatureState:
    """`state` moved from its date to `d` (≥ it) with the rows dated in between.

    With `ids` (a sorted id array: e.g. the accounts being scored) the state gains rows for those it
    lacks and keeps all others, which saves reading every account id; if a row dated in
    between belongs to an account it still lacks, every account id is read after all. Without
    `ids` the state is reindexed to exactly the accounts in the database.
    """
    conn = session.connection()
    if ids is not None:
        try:
            return _advanced(conn, _with_accounts(state, ids), d)
        except KeyError:
            pass
    every = _id_array(column(sort_by_id(raw_rows(conn, select(Account.id))), 0))
    return _advanced(conn, _reindexed(state, every), d)


def _advanced(conn: Connection, state: FeatureState, d: dt.date) -> FeatureState:
    p = state.as_of
    parts = {k: v.copy() for k, v in state.parts.items()}
    plan = state.sub_plan.copy()
    index = state.index()
    watermarks = _watermarks(conn)
    if d > p:
        window = dt.timedelta(days=WINDOW_DAYS)
        _advance_usage(conn, index, parts, p, d)
        _advance_latest(conn, index, parts, plan, p, d)
        _advance_open(conn, index, parts, p, d)
        _latest_champion(conn, index, parts, p, d)
        _add_invoices(conn, index, parts, p, d, d, 1.0)  # now due (window [d − 180, d))
        _add_invoices(conn, index, parts, p - window, d - window, p, -1.0)  # due too long ago
        _add_csat(conn, index, parts, p, d, 1.0)  # closed in (p, d]
        _add_csat(conn, index, parts, p - window, d - window, -1.0)  # closed too long ago
    return FeatureState(as_of=d, ids=state.ids, parts=parts, sub_plan=plan, watermarks=watermarks)


def _advance_usage(
    conn: Connection, index: AccountIndex, parts: dict[str, np.ndarray], p: dt.date, d: dt.date
) -> None:
    week = dt.timedelta(days=1)
    lw_p, lw_d = p - 6 * week, d - 6 * week

    def read(lo: dt.date, hi: dt.date) -> tuple[np.ndarray, np.ndarray]:
        rows = raw_rows(conn, _USAGE_SLICE, {"lo": lo, "hi": hi})
        return _rows_at(index, rows), np.array(column(rows, 1), dtype=np.float64)

    def add(rows: tuple[np.ndarray, np.ndarray], s: str, c: str, sign: float) -> None:
        at, users = rows
        if at.size:
            parts[s] += sign * np.bincount(at, weights=users, minlength=len(parts[s]))
            parts[c] += sign * np.bincount(at, minlength=len(parts[c]))

    add(read(lw_p, lw_d), "usage_s4", "usage_c4", 1.0)  # weeks entering the last 4
    moved = read(lw_p - 28 * week, lw_d - 28 * week)  # leaving the last 4, entering the previous 8
    add(moved, "usage_s4", "usage_c4", -1.0)
    add(moved, "usage_s8", "usage_c8", 1.0)
    add(read(lw_p - 84 * week, lw_d - 84 * week), "usage_s8", "usage_c8", -1.0)  # leaving the previous 8


def _advance_latest(
    conn: Connection,
    index: AccountIndex,
    parts: dict[str, np.ndarray],
    plan: np.ndarray,
    p: dt.date,
    d: dt.date,
) -> None:
    params = {"p": p, "d": d}
    touch = raw_rows(conn, _TOUCH, params)
    if touch:
        at = _rows_at(index, touch)
        parts["touch"][at] = np.fmax(parts["touch"][at], date_ordinals(column(touch, 1)))
    subs = _latest_per_account(raw_rows(conn, _NEW_SUBS, params), date_at=4, id_at=5)
    if subs:
        at = _rows_at(index, subs)
        start, sid = date_ordinals(column(subs, 4)), np.array(column(subs, 5), dtype=np.float64)
        take = _later(parts["sub_start"][at], parts["sub_id"][at], start, sid)
        at, chosen = at[take], [r for r, t in zip(subs, take.tolist(), strict=True) if t]
        parts["sub_seats"][at] = np.array([_num(r[1]) for r in chosen], dtype=np.float64)
        parts["sub_discount"][at] = np.array([_num(r[2]) for r in chosen], dtype=np.float64)
        parts["sub_renewal"][at] = date_ordinals([r[3] for r in chosen])
        parts["sub_start"][at] = start[take]
        parts["sub_id"][at] = sid[take]
        plan[at] = np.array([r[6] for r in chosen], dtype=object)
    nps = _latest_per_account(raw_rows(conn, _NEW_NPS, params), date_at=2, id_at=3)
    if nps:
        at = _rows_at(index, nps)
        when, nid = date_ordinals(column(nps, 2)), np.array(column(nps, 3), dtype=np.float64)
        take = _later(parts["nps_at"][at], parts["nps_id"][at], when, nid)
        parts["nps_score"][at[take]] = np.array([_num(r[1]) for r in nps], dtype=np.float64)[take]
        parts["nps_at"][at[take]] = when[take]
        parts["nps_id"][at[take]] = nid[take]


def _num(value: Any) -> float:
    return np.nan if value is None else float(value)


def _latest_per_account(rows: list[Any], *, date_at: int, id_at: int) -> list[Any]:
    """The row with the latest (date, id) of each account (ISO dates compare as text)."""
    best: dict[str, Any] = {}
    for r in rows:
        held = best.get(r[0])
        if held is None or (str(r[date_at]), r[id_at]) > (str(held[date_at]), held[id_at]):
            best[r[0]] = r
    return list(best.values())


def _advance_open(
    conn: Connection, index: AccountIndex, parts: dict[str, np.ndarray], p: dt.date, d: dt.date
) -> None:
    params = {"p": p, "d": d}
    d_text = d.isoformat()
    opened = raw_rows(conn, _OPENED, params)
    closed = raw_rows(conn, _CLOSED, params)
    for rows, sign in ((opened, 1.0), (closed, -1.0)):
        at = _rows_at(index, rows).tolist()
        for i, r in zip(at, rows, strict=True):
            key = str(r[1]).lower()
            still_open = sign < 0 or r[2] is None or str(r[2])[:10] > d_text
            if key in PRIORITIES and still_open:
                parts[f"open_{key}"][i] += sign


# --------------------------------------------------------------------------- use in a batch


class KeptSource:
    """A `ComponentSource` for `compute_features` that takes the components from the kept
    state, advanced to the date (or rebuilt), and keeps the result for the next run."""

    def __init__(self, *, rebuild: bool = False) -> None:
        self.rebuild = rebuild
        self.use: StateUse | None = None

    def __call__(
        self, session: Session, scope: AccountScope, index: Mapping[str, int], n: int, d: dt.date, broad: bool
    ) -> Components:
        conn = session.connection()
        kept = None if self.rebuild else load(session)
        reason = "--rebuild" if self.rebuild else why_unusable(conn, kept, d)
        scored = _id_array(_ordered(index, n))
        state: FeatureState | None = None
        try:
            if kept is not None and reason is None:
                state = advance(session, kept, d, scored) if d > kept.as_of else kept
                self.use = StateUse("advanced" if d > kept.as_of else "current", "")
            else:
                state = build(session, d)
                self.use = StateUse("built", reason or "")
        except CsatOutOfRange:
            state = None
        if state is None:  # data the state cannot hold: read everything fresh, keep nothing
            drop(conn)
            self.use = StateUse("read", "CSAT ratings outside 1..5 cannot be kept in the feature state")
            return sql_components(session, scope, index, n, d, broad)
        if kept is not None and d < kept.as_of and not self.rebuild:
            # a past date: the newer kept state stays for the next regular run
            self.use = StateUse("read", reason or "")
        elif state is not kept:
            save(session, state)
        return components_of(state, state.index().positions(scored), d)


def components_of(state: FeatureState, rows: np.ndarray, d: dt.date) -> Components:
    """The history components of the state's rows `rows` (its date must be `d`)."""
    taken = {name: values[rows] for name, values in state.parts.items()}
    numeric = {name: taken[name] for name in KEPT_PARTS}
    numeric["inv_failed"], numeric["inv_late"] = taken["inv_failed"], taken["inv_late"]
    latest = taken["champ_latest"]
    with np.errstate(invalid="ignore"):
        numeric["champ"] = np.where(latest > d.toordinal() - WINDOW_DAYS, latest, np.nan)
    numeric["csat"] = csat_median(taken)
    return Components(numeric=numeric, sub_plan=state.sub_plan[rows])


def _ordered(index: Mapping[str, int], n: int) -> list[str]:
    if isinstance(index, IdIndex):
        return index.ordered
    out = [""] * n
    for account_id, i in index.items():
        out[i] = account_id
    return out
