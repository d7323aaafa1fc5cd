"""The demo company's deals: owners, products, stage paths and a hidden, learnable win mechanism.

Three kinds of deal (issue #20; see docs/DEMO.md "Opportunities"):

* **new business**: every account was won once, closing the day it became a customer; next to
  those, prospects that were lost (or are still open on `as_of`, to be lost) and never became
  accounts, and deals in flight on `as_of` that will be won (their accounts would start after it).
* **renewals**: opened 90 days before each renewal, lost exactly when the account churns.
* **upsells**: add-on products sold to healthier accounts.

Hidden mechanism (what a deal model can learn, never written): each deal has a *stall* factor
`s ~ N(0, 1)` that stretches every stage (`days = base × exp(0.45 s) × noise`) and lowers the
odds of winning. An upsell is won with

    logit p = 0.1 + skill[owner] + effect[product] − 1.1·ln(amount / typical ask)
              − 1.0·trouble(account at creation) − 0.7·s

(typical ask = 30 % of the account's ARR). New business: the won deals are the accounts, so
the lost ones are drawn the other way round — their owners are weighted towards the less
skilled, their amounts are larger than the customers' first-year ARR and they stall more
(s tilted up), with the won deals' stall tilted down.

The deals of an account (its creating deal, renewals, upsells) keep the draws of RNG stream 9 they
always had (account, type, dates, amounts); everything new — owners, products, stall, paths,
prospects — comes from stream 10, so no other table changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crm.demo import names
from crm.demo.timeline import Timeline

PROSPECTING = "prospecting"
LADDER = ("qualification", "proposal", "negotiation")  # the open stages every deal goes through
WON, LOST = "closed_won", "closed_lost"
STAGE_NAMES = (PROSPECTING, *LADDER, WON, LOST)  # index = stage code
S_PROSPECTING, S_WON, S_LOST = 0, 4, 5

ADD_ONS = ("Analytics Add-on", "Automation Add-on", "Premium Support", "Data Connectors")
ADD_ON_SHARE = (0.35, 0.25, 0.2, 0.2)
ADD_ON_EFFECT = np.array([0.35, -0.45, 0.15, 0.0])
PLAN_PRODUCTS = ("Starter plan", "Growth plan", "Business plan", "Enterprise plan")

# Days per stage before stalling: (prospecting,) qualification, proposal, negotiation.
NEW_BASE = np.array([15.0, 20.0, 30.0, 20.0])
UPSELL_BASE = np.array([0.0, 14.0, 21.0, 14.0])
STALL_DAYS = 0.45
STALL_WIN = 0.7
WIN_B0, W_AMOUNT, W_TROUBLE = 0.1, 1.1, 1.0
TYPICAL_ASK = 0.3  # an upsell's typical amount as a share of the account's ARR
SKILL_SD = 0.55
PROSPECTS_PER_CUSTOMER = 1.3  # lost (or still open, to be lost) new-business deals per account won
FUTURE_PACE_DAYS = 90
LOST_AT = (0.35, 0.3, 0.2, 0.15)  # where a lost deal drops out: prospecting .. negotiation
REGION_MANAGERS = {
    "North America": "Harper Quinn",
    "EMEA": "Nadia Petrov",
    "APAC": "Arjun Mehta",
    "LATAM": "Lucia Ortega",
}
REGIONS = tuple(REGION_MANAGERS)  # the order of crm.demo.simulate.REGIONS
REGION_SHARE = (0.45, 0.33, 0.15, 0.07)  # of the accounts, as crm.demo.simulate draws them
# per agent and quarter, per 1,000 demo accounts: about what the demo wins a quarter (all deal kinds)
# shared by its 16 agents, so coverage of the next quarter is a real question
QUARTERLY_QUOTA_PER_1000_ACCOUNTS = 600_000.0


def agent_skills(seed: int) -> NDArray[np.float64]:
    """(region, agent) → the agent's hidden skill on the log-odds scale; fixed by the seed."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 2020])))
    return rng.normal(0.0, SKILL_SD, (len(REGIONS), 4))


def sales_agent_rows(accounts: int) -> list[dict[str, Any]]:
    """The sales team: every account executive with manager, team (region) and a quarterly quota
    (their skill stays hidden: only their deals show it)."""
    rows = []
    for region, share in zip(REGIONS, REGION_SHARE, strict=True):
        # a territory's quota follows its share of the customers (4 agents a region)
        quota = round(QUARTERLY_QUOTA_PER_1000_ACCOUNTS * accounts / 1000 * 4 * share, -2) or 100.0
        for name in names.ACCOUNT_EXECUTIVES[region]:
            rows.append(
                {
                    "name": name,
                    "manager": REGION_MANAGERS[region],
                    "team": region,
                    "quarterly_quota": quota,
                    "attributes": {},
                }
            )
    return rows


@dataclass(frozen=True)
class Accounts:
    """What the deals need to know about a chunk's accounts (arrays of length CHUNK)."""

    ids: NDArray[Any]
    valid: NDArray[np.bool_]
    created: NDArray[np.int64]
    churn_day: NDArray[np.int64]
    churned: NDArray[np.bool_]
    renew: NDArray[np.int64]  # (C, K)
    mrr: NDArray[np.float64]  # (C, K + 1)
    trouble: NDArray[np.float64]  # (C, W)
    started: NDArray[np.bool_]  # (C, W)
    region: NDArray[np.int64]
    ae: NDArray[np.int64]
    plan: NDArray[np.int64]
    lead: NDArray[np.int64]
    lead_names: tuple[str, ...]


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def _tilted_normal(rng: np.random.Generator, n: int, slope: float) -> NDArray[np.float64]:
    """Draws of N(0, 1) reweighted by sigmoid(slope · s): the stall of deals known to be won
    (slope < 0) or lost (slope > 0). Weighted choice among 8 candidates each."""
    cand = rng.normal(0.0, 1.0, (n, 8))
    weights = _sigmoid(slope * cand)
    keys = np.log(rng.random((n, 8))) / weights  # Efraimidis–Spirakis: largest key wins
    return cand[np.arange(n), np.argmax(keys, axis=1)]


def _durations(
    rng: np.random.Generator, base: NDArray[np.float64], stall: NDArray[np.float64]
) -> NDArray[np.int64]:
    """(n, 4) whole days per stage (≥ 1 where the stage is used)."""
    n = len(stall)
    raw = base[None, :] * np.exp(STALL_DAYS * stall[:, None] + rng.normal(0.0, 0.25, (n, 4)))
    return np.where(base[None, :] > 0, np.maximum(1, np.round(raw)), 0).astype(np.int64)


@dataclass
class _Deals:
    """Columns of the chunk's deals as they accumulate (one entry per kind)."""

    acc: list[NDArray[np.int64]]  # account row, or -1 for a prospect
    type: list[NDArray[np.int64]]  # 0 new, 1 upsell, 2 renewal
    product: list[list[str]]
    owner: list[NDArray[np.int64]]  # region * 4 + agent
    amount: list[NDArray[np.float64]]  # NaN = blank
    created: list[NDArray[np.int64]]
    entered: list[NDArray[np.int64]]  # (n, 5): day each stage 0..3 and the close were entered; BIG = never
    outcome: list[NDArray[np.int64]]  # S_WON / S_LOST
    expected: list[NDArray[np.int64]]  # forecast close day
    lead: list[NDArray[np.int64]]  # lead source of a prospect, -1 otherwise


BIG = 10**9


def _path(created: NDArray[np.int64], days: NDArray[np.int64], last: NDArray[np.int64]) -> NDArray[np.int64]:
    """Day each stage (0..3) and the close (column 4) is entered, for deals that go through stages
    up to `last` (inclusive) and then close; stages with zero days are skipped (BIG)."""
    n = len(created)
    out = np.full((n, 5), BIG, dtype=np.int64)
    day = created.copy()
    for k in range(4):
        use = (days[:, k] > 0) & (k <= last)
        out[:, k] = np.where(use, day, BIG)
        day = day + np.where(use, days[:, k], 0)
    out[:, 4] = day
    return out


def simulate_deals(
    a: Accounts, tl: Timeline, *, stage_from: int, ro: np.random.Generator, rs: np.random.Generator, seed: int,
    extra_won: dict[str, list[Any]] | None = None,
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(opportunities columns, stage-history columns) for one chunk. Stage rows point at deals by
    their position in the returned opportunities (`opportunity_local`). `ro` is RNG stream 9 (the
    draws the account deals always had), `rs` stream 10. Stage history before `stage_from` is not
    written (the trimmed demo). `extra_won`: upsell deals won by the simulated growth offers
    (crm/demo/interventions.py: row, created, close, fraction of ARR, product), appended after the
    others without a draw from `ro` or `rs`, so every other deal is unchanged."""
    A, C = tl.as_of, len(a.valid)
    acc = np.arange(C)
    valid = a.valid
    skill = agent_skills(seed)
    owner_of_account = a.region * 4 + a.ae
    d = _Deals([], [], [], [], [], [], [], [], [], [])

    # ------------------------------------------------ new business won: the deal that made the account
    nv = int(valid.sum())
    created_new = (a.created - ro.integers(20, 121, C))[valid]
    close_new = a.created[valid]
    stall_won = _tilted_normal(rs, nv, -STALL_WIN)
    cycle = close_new - created_new
    share = NEW_BASE[None, :] * np.exp(rs.normal(0.0, 0.25, (nv, 4)))
    share /= share.sum(axis=1, keepdims=True)
    days = np.maximum(1, np.floor(share * cycle[:, None])).astype(np.int64)
    days[:, 3] = np.maximum(1, cycle - days[:, :3].sum(axis=1))
    entered = _path(created_new, days, np.full(nv, 3))
    entered[:, 4] = close_new
    d.acc.append(acc[valid])
    d.type.append(np.zeros(nv, np.int64))
    d.product.append([PLAN_PRODUCTS[p] for p in a.plan[valid].tolist()])
    d.owner.append(owner_of_account[valid])
    d.amount.append(np.round(12 * a.mrr[valid, 0], 2))
    d.created.append(created_new)
    d.entered.append(entered)
    d.outcome.append(np.full(nv, S_WON))
    d.expected.append(created_new + int(NEW_BASE.sum()))
    d.lead.append(np.full(nv, -1))
    del stall_won  # the won deals' stall shaped nothing written beyond their (fixed) cycle

    # ------------------------------------------------ renewals: opened 90 days before each renewal
    K = a.renew.shape[1]
    r_open = a.renew - 90
    r_ok = (r_open <= A) & (r_open < a.churn_day[:, None]) & valid[:, None]
    ri_, rk = np.nonzero(r_ok)
    rdate = a.renew[ri_, rk]
    lost = a.churned[ri_] & (a.churn_day[ri_] <= rdate)
    close = np.where(lost, a.churn_day[ri_], rdate)
    n = len(ri_)
    entered = np.full((n, 5), BIG, dtype=np.int64)
    for k, start in ((1, r_open[ri_, rk]), (2, rdate - 60), (3, rdate - 30)):
        entered[:, k] = np.where(start < close, start, BIG)
    entered[:, 4] = close
    d.acc.append(ri_)
    d.type.append(np.full(n, 2))
    d.product.append([PLAN_PRODUCTS[p] for p in a.plan[ri_].tolist()])
    d.owner.append(owner_of_account[ri_])
    d.amount.append(np.round(12 * a.mrr[ri_, rk], 2))
    d.created.append(r_open[ri_, rk])
    d.entered.append(entered)
    d.outcome.append(np.where(lost, S_LOST, S_WON))
    d.expected.append(rdate)
    d.lead.append(np.full(n, -1))

    # ------------------------------------------------ upsells: healthier accounts get more
    WH = tl.weeks_hist
    p_up = 0.35 / 52 * np.exp(-1.5 * a.trouble[:, :WH]) * a.started[:, :WH]
    ui_, uw_ = np.nonzero(ro.random((C, WH)) < p_up)
    n = len(ui_)
    u_created = tl.week_start[uw_] + ro.integers(0, 7, n)
    ro.integers(30, 100, n)  # the close offset these deals once drew; their path now sets it
    u_draw = ro.random(n)
    ro.integers(1, 4, n)  # once the open stage
    term = np.clip((u_created - a.created[ui_]) // 365, 0, K)
    arr_now = 12 * a.mrr[ui_, term]
    amount = np.round(arr_now * ro.uniform(0.1, 0.5, n), 2)
    product = rs.choice(len(ADD_ONS), size=n, p=ADD_ON_SHARE)
    stall = rs.normal(0.0, 1.0, n)
    owner = owner_of_account[ui_]
    logit = (
        WIN_B0
        + skill.reshape(-1)[owner]
        + ADD_ON_EFFECT[product]
        - W_AMOUNT * np.log(amount / (TYPICAL_ASK * arr_now))
        - W_TROUBLE * a.trouble[ui_, uw_]
        - STALL_WIN * stall
    )
    won = u_draw < _sigmoid(logit)
    days = _durations(rs, UPSELL_BASE, stall)
    last = np.where(won, 3, rs.choice([1, 2, 3], size=n, p=[0.4, 0.35, 0.25]))
    entered = _path(u_created, days, last)
    outcome = np.where(won, S_WON, S_LOST)
    # a churning customer buys nothing more: the deal is lost the day it leaves
    cut = a.churned[ui_] & (entered[:, 4] >= a.churn_day[ui_])
    entered[:, 4] = np.where(cut, a.churn_day[ui_], entered[:, 4])
    entered[:, :4] = np.where(entered[:, :4] >= entered[:, 4:5], BIG, entered[:, :4])
    outcome = np.where(cut, S_LOST, outcome)
    keep = valid[ui_] & (u_created >= a.created[ui_]) & (u_created < a.churn_day[ui_]) & (u_created <= A)
    d.acc.append(ui_[keep])
    d.type.append(np.ones(int(keep.sum()), np.int64))
    d.product.append([ADD_ONS[p] for p in product[keep].tolist()])
    d.owner.append(owner[keep])
    d.amount.append(amount[keep])
    d.created.append(u_created[keep])
    d.entered.append(entered[keep])
    d.outcome.append(outcome[keep])
    d.expected.append(u_created[keep] + int(UPSELL_BASE.sum()))
    d.lead.append(np.full(int(keep.sum()), -1))

    # ------------------------------------------------ prospects that did not (or not yet) become accounts
    per = rs.poisson(PROSPECTS_PER_CUSTOMER, C) * valid
    pi_ = np.repeat(acc, per)  # a "look-alike" customer: same region, plan and size
    n = len(pi_)
    p_created = np.clip(
        a.created[pi_] - rs.integers(20, 121, n) + np.round(rs.normal(0, 120, n)).astype(np.int64),
        tl.start,
        A,
    )
    stall = _tilted_normal(rs, n, STALL_WIN)
    region = a.region[pi_]
    lose = 1.0 - _sigmoid(WIN_B0 + skill[region])  # (n, 4): each agent's chance to lose a deal
    pick = np.argmax(np.log(rs.random((n, 4))) / lose, axis=1)
    owner = region * 4 + pick
    amount = np.round(12 * a.mrr[pi_, 0] * np.exp(rs.normal(0.25, 0.35, n)), 2)
    days = _durations(rs, NEW_BASE, stall)
    last = rs.choice(4, size=n, p=LOST_AT)
    entered = _path(p_created, days, last)
    d.acc.append(np.full(n, -1))
    d.type.append(np.zeros(n, np.int64))
    d.product.append([PLAN_PRODUCTS[p] for p in a.plan[pi_].tolist()])
    d.owner.append(owner)
    d.amount.append(amount)
    d.created.append(p_created)
    d.entered.append(entered)
    d.outcome.append(np.full(n, S_LOST))
    d.expected.append(p_created + int(NEW_BASE.sum()))
    d.lead.append(a.lead[pi_])

    # ------------------------------------------------ future customers: deals in flight on as_of that will be won
    # Their accounts would be created after as_of, so only the open deal exists; one look-alike per
    # account won in the last FUTURE_PACE_DAYS keeps the pace of new customers.
    fi_ = acc[valid & (a.created > A - FUTURE_PACE_DAYS)]
    n = len(fi_)
    f_created = A - rs.integers(0, 120, n)
    stall = _tilted_normal(rs, n, -STALL_WIN)
    region = a.region[fi_]
    win = _sigmoid(WIN_B0 + skill[region])
    owner = region * 4 + np.argmax(np.log(rs.random((n, 4))) / win, axis=1)
    amount = np.round(12 * a.mrr[fi_, 0] * np.exp(rs.normal(0.0, 0.2, n)), 2)
    entered = _path(f_created, _durations(rs, NEW_BASE, stall), np.full(n, 3))
    flying = entered[:, 4] > A  # those that would have closed by as_of would be accounts already
    d.acc.append(np.full(int(flying.sum()), -1))
    d.type.append(np.zeros(int(flying.sum()), np.int64))
    d.product.append([PLAN_PRODUCTS[p] for p in a.plan[fi_[flying]].tolist()])
    d.owner.append(owner[flying])
    d.amount.append(amount[flying])
    d.created.append(f_created[flying])
    d.entered.append(entered[flying])
    d.outcome.append(np.full(int(flying.sum()), S_WON))
    d.expected.append(f_created[flying] + int(NEW_BASE.sum()))
    d.lead.append(a.lead[fi_[flying]])

    if extra_won and extra_won["row"]:
        xi = np.array(extra_won["row"], dtype=np.int64)
        x_created = np.array(extra_won["created"], dtype=np.int64)
        x_close = np.array(extra_won["close"], dtype=np.int64)
        n = len(xi)
        term = np.clip((x_created - a.created[xi]) // 365, 0, K)
        entered = np.full((n, 5), BIG, dtype=np.int64)
        entered[:, 1] = x_created  # qualification on creation, proposal halfway, then the win
        entered[:, 2] = np.minimum(x_created + (x_close - x_created) // 2, x_close - 1)
        entered[:, 2] = np.where(entered[:, 2] > x_created, entered[:, 2], BIG)
        entered[:, 4] = x_close
        d.acc.append(xi)
        d.type.append(np.ones(n, np.int64))
        d.product.append(list(extra_won["product"]))
        d.owner.append(owner_of_account[xi])
        d.amount.append(np.round(12 * a.mrr[xi, term] * np.array(extra_won["fraction"]), 2))
        d.created.append(x_created)
        d.entered.append(entered)
        d.outcome.append(np.full(n, S_WON))
        d.expected.append(x_close)
        d.lead.append(np.full(n, -1))

    return _columns(d, a, tl, stage_from=stage_from)


def _columns(
    d: _Deals, a: Accounts, tl: Timeline, *, stage_from: int
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    as_of = tl.as_of
    acc = np.concatenate(d.acc)
    kinds = np.concatenate(d.type)
    products = [p for part in d.product for p in part]
    owner = np.concatenate(d.owner)
    amount = np.concatenate(d.amount)
    created = np.concatenate(d.created)
    entered = np.concatenate(d.entered)
    outcome = np.concatenate(d.outcome)
    expected = np.concatenate(d.expected)
    lead = np.concatenate(d.lead)
    # grouped by account like the other tables (stable: kinds keep their order); prospects last
    order = np.argsort(np.where(acc >= 0, acc, len(a.valid)), kind="stable")
    closed = entered[:, 4] <= as_of
    # the stage on as_of: the last one entered on or before it
    reached = entered[:, :4] <= as_of
    current = np.where(reached.any(axis=1), 3 - np.argmax(reached[:, ::-1], axis=1), 0)
    stage = np.where(closed, outcome, current)
    # a prospect still prospecting has no amount yet
    blank_amount = ~closed & (stage == S_PROSPECTING)
    owners = [f"{names.ACCOUNT_EXECUTIVES[REGIONS[o // 4]][o % 4]}" for o in range(16)]
    opps: dict[str, list[Any]] = {
        "account_id": [None if i < 0 else a.ids[i] for i in acc[order].tolist()],
        "type": [("new", "upsell", "renewal")[k] for k in kinds[order].tolist()],
        "stage": [STAGE_NAMES[s] for s in stage[order].tolist()],
        "amount": [
            None if b else float(x)
            for x, b in zip(amount[order].tolist(), blank_amount[order].tolist(), strict=True)
        ],
        "created_at": tl.to_dates(created[order]),
        "close_date": tl.to_dates(entered[:, 4][order], missing=~closed[order]),
        "expected_close_date": tl.to_dates(expected[order]),
        "owner": [owners[o] for o in owner[order].tolist()],
        "product": [products[i] for i in order.tolist()],
        "attributes": [{} if ld < 0 else {"lead_source": a.lead_names[ld]} for ld in lead[order].tolist()],
    }
    # stage history: each stage entered on or before as_of (and the close), from `stage_from`
    ent = entered[order]
    out_sorted = outcome[order]
    rows, cols = np.nonzero((ent <= as_of) & (ent >= stage_from))
    stage_code = np.where(cols == 4, out_sorted[rows], cols)
    stages: dict[str, list[Any]] = {
        "opportunity_local": rows.tolist(),
        "stage": [STAGE_NAMES[s] for s in stage_code.tolist()],
        "entered_at": tl.to_dates(ent[rows, cols]),
    }
    return opps, stages
