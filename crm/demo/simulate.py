"""Vectorised simulation of one chunk of accounts (numpy; no database access).

The story, per account and week:

* a latent **trouble** level (product problems, a budget squeeze, a lost
  champion) rises over a few weeks after each random onset and decays slowly;
* episodes of **payment trouble** come and go;
* the **champion** may leave (which is itself a trouble onset) and may be replaced.

Churn is decided a month before each annual renewal from trouble, payment
trouble, a missing champion, the discount, segment and lead source (and, for
monthly-billed customers, a small weekly hazard driven by the same factors).
Everything a CRM records is then drawn from those latent states: usage falls
with trouble and ramps down before a churn (the customer migrates away),
tickets get more frequent, more urgent and stay open longer, invoices fail or
are paid late, NPS and interaction sentiment drop. So the signals are in the
data *before* the churn date, and a point-in-time model can learn them. Weeks
after `as_of` are simulated too (never written), so accounts that will churn
soon already look at risk on `as_of`.

Every random draw is made for the whole chunk before any row is filtered, so
the data of an account depends only on (seed, chunk index, position in chunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crm.demo import deals, interventions, names, tickets
from crm.demo.timeline import Timeline

CHUNK = 2000  # accounts per chunk: fixed, so results never depend on how work is split
TRIM_THRESHOLD = 50_000  # above this many accounts, per-account history is trimmed
TRIM_USAGE_WEEKS = 52
TRIM_EVENT_DAYS = 480
TRIM_EMAIL_KEEP = 0.5

SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
PLANS = ("Starter", "Growth", "Business", "Enterprise")
PRICE_PER_SEAT = np.array([12.0, 25.0, 45.0, 70.0])  # USD per seat per month, list price
REGIONS = ("North America", "EMEA", "APAC", "LATAM")
LEAD_SOURCES = ("inbound", "outbound", "partner", "event")
PRIORITIES = ("low", "medium", "high", "urgent")
TICKET_CATEGORIES = (
    "bug",
    "how_to",
    "performance",
    "integration",
    "feature_request",
    "account_access",
    "billing",
)
INTERACTION_TYPES = ("email", "call", "meeting", "qbr")
OPEN_STAGES = ("qualification", "proposal", "negotiation")

# Latent dynamics
RHO_PROBLEM = 0.95  # weekly persistence of an underlying problem (half-life ~13 weeks)
RHO_TROUBLE = 0.8  # smoothing: trouble builds up over ~4-8 weeks after an onset
TROUBLE_RATE = np.array([1 / 70, 1 / 90, 1 / 110])  # onsets per week by segment
PAY_RATE = np.array([1 / 220, 1 / 400, 1 / 600])
CHAMPION_LEAVE_RATE = 1 / (52 * 3.5)

# Churn at renewal: logit = B0 + weights . drivers
CHURN_B0 = -3.8
W_TROUBLE, W_PAY, W_CHAMPION, W_DISCOUNT = 2.4, 1.4, 1.1, 3.0
SEG_EFFECT = np.array([0.35, 0.0, -0.5])
LEAD_EFFECT = np.array([-0.1, 0.25, -0.3, 0.0])
MID_TERM_HAZARD = 0.0003  # weekly, monthly-billed accounts only

BIG = 10**9
Columns = dict[str, Any]


@dataclass(frozen=True)
class ChunkSpec:
    seed: int
    index: int
    n_valid: int  # accounts of this chunk that exist (the last chunk may be partial)
    id_width: int
    trimmed: bool
    interventions: bool = False  # simulate decisions, executions and their effects (interventions.py)


@dataclass
class ChunkData:
    """Columns per table; `contacts_local` ids are 0-based within the chunk."""

    tables: dict[str, Columns]
    churned: int
    active: int


def _rng(spec: ChunkSpec, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([spec.seed, spec.index, stream])))


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def _expand(counts: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(row, col) of each event for a matrix of per-cell event counts, row-major."""
    rows, cols = np.nonzero(counts)
    reps = counts[rows, cols]
    return np.repeat(rows, reps), np.repeat(cols, reps)


def simulate_chunk(tl: Timeline, spec: ChunkSpec) -> ChunkData:
    C, W, WH, A = CHUNK, tl.weeks, tl.weeks_hist, tl.as_of
    acc = np.arange(C)
    numbers = spec.index * C + 1 + acc
    valid = acc < spec.n_valid
    ws = tl.week_start
    wi = np.arange(W)

    # ---------------------------------------------------------------- static attributes
    r = _rng(spec, 0)
    seg = r.choice(3, size=C, p=[0.62, 0.28, 0.10])
    seats0 = (
        np.where(
            seg == 0,
            np.clip(r.lognormal(np.log(14), 0.55, C), 3, 80),
            np.where(
                seg == 1,
                np.clip(r.lognormal(np.log(90), 0.5, C), 25, 600),
                np.clip(r.lognormal(np.log(600), 0.55, C), 150, 5000),
            ),
        )
        .round()
        .astype(np.int64)
    )
    u = r.random(C)
    plan = np.where(seg == 0, (u < 0.4) * 1, np.where(seg == 1, 1 + (u < 0.45), 2 + (u < 0.7)))
    d_smb = np.where(r.random(C) < 0.6, 0.0, r.uniform(0.05, 0.2, C))
    disc = np.where(seg == 0, d_smb, np.where(seg == 1, r.uniform(0, 0.3, C), r.uniform(0.1, 0.4, C)))
    disc = np.round(disc * 20) / 20
    annual = r.random(C) < np.array([0.15, 0.6, 0.95])[seg]
    region = r.choice(4, size=C, p=[0.45, 0.33, 0.15, 0.07])
    lead = r.choice(4, size=C, p=[0.45, 0.30, 0.15, 0.10])
    ae = r.integers(0, 4, C)
    csm = r.integers(0, len(names.CSMS), C)
    employees = np.maximum(5, (seats0 * r.uniform(1.5, 12, C)).round()).astype(np.int64)
    base_util = r.beta(7, 3, C)
    sessions_per_user = r.uniform(3, 9, C)
    feat_start = r.integers(2, 5, C)
    feat_cap = r.integers(6, 21, C)
    trouble_rate = TROUBLE_RATE[seg] * r.lognormal(0, 0.6, C)
    pay_rate = PAY_RATE[seg] * r.lognormal(0, 0.5, C)
    created = tl.start + np.floor((A - 21 - tl.start) * r.random(C) ** 0.7).astype(np.int64)
    created_week = (created - tl.monday0) // 7
    # Champions: the primary may leave (geometric in weeks) and may be replaced; some have two.
    leave1 = created_week + r.geometric(CHAMPION_LEAVE_RATE, C)
    replace_w = np.where(r.random(C) < 0.5, leave1 + 4 + r.geometric(1 / 10, C), BIG)
    has2 = r.random(C) < np.array([0.1, 0.35, 0.6])[seg]
    leave2 = np.where(has2, created_week + r.geometric(CHAMPION_LEAVE_RATE, C), BIG)
    n_contacts = np.where(
        seg == 0, r.integers(2, 5, C), np.where(seg == 1, r.integers(3, 7, C), r.integers(5, 11, C))
    )
    root, word, legal = names.name_parts(numbers)
    industry = np.asarray(names.WORD_INDUSTRY)[word]

    showcase = spec.index == 0 and spec.n_valid >= 42
    s = 41  # account number 42: "ACME-0042", the spec's example account, scripted to be at risk
    if showcase:
        seg[s], plan[s], seats0[s], disc[s], annual[s], region[s], lead[s] = 2, 3, 850, 0.3, True, 0, 1
        n_contacts[s], has2[s], leave2[s], replace_w[s] = 7, False, BIG, BIG
        employees[s], base_util[s] = 4200, 0.78
        created[s] = A + 45 - 730
        created_week[s] = (created[s] - tl.monday0) // 7
        leave1[s] = (A - 42 - tl.monday0) // 7
        trouble_rate[s], pay_rate[s] = 0.0, 0.0

    # ---------------------------------------------------------------- latent weekly states
    rl = _rng(spec, 1)
    started = wi[None, :] >= created_week[:, None]
    onset = (rl.random((C, W)) < trouble_rate[:, None]) & started
    x = np.where(onset, rl.uniform(0.4, 1.3, (C, W)), 0.0)
    for leave, size in ((leave1, 0.7), (leave2, 0.4)):
        hit = leave < W
        x[acc[hit], leave[hit]] += size
    if showcase:
        x[s, (A - 70 - tl.monday0) // 7] += 1.2
    pay_u = rl.random((C, W))
    trouble = np.empty((C, W))
    pay = np.empty((C, W), dtype=bool)
    problem = np.zeros(C)
    level = np.zeros(C)
    in_pay = np.zeros(C, dtype=bool)
    for w in range(W):
        problem = RHO_PROBLEM * problem + x[:, w]
        level = RHO_TROUBLE * level + (1 - RHO_TROUBLE) * problem
        trouble[:, w] = level
        in_pay = np.where(in_pay, pay_u[:, w] >= 1 / 12, pay_u[:, w] < pay_rate) & started[:, w]
        pay[:, w] = in_pay
    champ_gone = (
        (wi[None, :] >= leave1[:, None])
        & (wi[None, :] < replace_w[:, None])
        & (~has2[:, None] | (wi[None, :] >= leave2[:, None]))
    )

    # ---------------------------------------------------------------- churn
    rc = _rng(spec, 2)
    K = 4
    renew = created[:, None] + 365 * np.arange(1, K + 1)  # (C, K) renewal dates R_1..R_K
    dweek = (renew - 28 - tl.monday0) // 7
    decidable = dweek < W
    dw = np.clip(dweek, 0, W - 1)
    rows = acc[:, None]
    z = (
        CHURN_B0
        + W_TROUBLE * trouble[rows, dw]
        + W_PAY * pay[rows, dw]
        + W_CHAMPION * champ_gone[rows, dw]
        + W_DISCOUNT * disc[:, None]
        + SEG_EFFECT[seg][:, None]
        + LEAD_EFFECT[lead][:, None]
        + rc.normal(0, 0.5, (C, K))
    )
    at_renewal = (rc.random((C, K)) < _sigmoid(z)) & decidable
    hazard = MID_TERM_HAZARD * np.exp(1.8 * trouble + 1.2 * pay + 0.6 * champ_gone)
    mid = (rc.random((C, W)) < hazard) & ~annual[:, None] & (wi[None, :] >= created_week[:, None] + 8)
    if showcase:  # renews once, then leaves at its second renewal, 35-45 days after as_of
        at_renewal[s] = np.arange(K) == 1
        mid[s] = False
    first_k = np.argmax(at_renewal, axis=1)
    renewal_churn = np.where(at_renewal.any(axis=1), renew[acc, first_k] + rc.integers(-10, 1, C), BIG)
    mid_day = np.where(mid.any(axis=1), ws[np.argmax(mid, axis=1)] + rc.integers(0, 7, C), BIG)
    churn_day = np.minimum(renewal_churn, mid_day)
    # Interventions in the history with stated true effects (crm/demo/interventions.py): an executed
    # action may save an account that would have churned within 90 days; its churn is cancelled.
    ids = np.array(
        [
            f"{names.ROOTS[ro][:4].upper()}-{n:0{spec.id_width}d}"
            for ro, n in zip(root.tolist(), numbers.tolist(), strict=True)
        ],
        dtype=object,
    )
    signals = interventions.Signals(
        ids=ids, valid=valid, created=created, enterprise=seg == 2, trouble=trouble, pay=pay,
        champ_gone=champ_gone, csm=[names.CSMS[c] for c in csm.tolist()],
    )
    decisions: dict[str, Columns] = {}
    if spec.interventions:
        saved, decisions = interventions.simulate_interventions(
            signals, churn_day, as_of=A, monday0=tl.monday0, rng=_rng(spec, 12)
        )
        churn_day = np.where(saved, BIG, churn_day)
        renewal_churn = np.where(saved, BIG, renewal_churn)
    disengage = rc.random(C) < 0.75
    ramp_weeks = rc.integers(3, 13, C)
    floor = rc.uniform(0.25, 0.8, C)
    # Seats per term: renewals expand healthy accounts and shrink troubled ones.
    seats = np.empty((C, K + 1), dtype=np.int64)
    seats[:, 0] = seats0
    growth = rc.normal(0.07, 0.12, (C, K))
    for k in range(K):
        factor = np.exp(growth[:, k] - 0.35 * trouble[acc, dw[:, k]])
        seats[:, k + 1] = np.maximum(1, np.round(seats[:, k] * factor))
    if showcase:
        disengage[s], ramp_weeks[s], floor[s] = True, 9, 0.45
        seats[s, 1:] = np.maximum(seats[s, 1:], 850)
    price = PRICE_PER_SEAT[plan]
    mrr = np.round(seats * (price * (1 - disc))[:, None], 2)
    churned = churn_day <= A
    # Usage multiplier while a leaving customer migrates away.
    ramp_start = churn_day - 7 * ramp_weeks
    progress = np.clip((ws[None, :] - ramp_start[:, None]) / (7 * ramp_weeks[:, None]), 0, 1)
    leaving = np.where(disengage[:, None], 1 - (1 - floor[:, None]) * progress, 1.0)

    tables: dict[str, Columns] = dict(decisions)

    # ---------------------------------------------------------------- accounts
    term_now = np.clip((np.minimum(A, churn_day - 1) - created) // 365, 0, K)
    arr = np.where(churned, 0.0, np.round(12 * mrr[acc, term_now], 2))
    init_arr = 12 * mrr[:, 0]
    tier = np.where(init_arr >= 100_000, "Gold", np.where(init_arr >= 25_000, "Silver", "Bronze"))
    v = acc[valid]
    tables["accounts"] = {
        "id": ids[v].tolist(),
        "name": [
            names.company_name(n, ro, wo, le)
            for n, ro, wo, le in zip(
                numbers[v].tolist(), root[v].tolist(), word[v].tolist(), legal[v].tolist(), strict=True
            )
        ],
        "segment": [SEGMENTS[i] for i in seg[v].tolist()],
        "industry": [names.INDUSTRIES[i] for i in industry[v].tolist()],
        "region": [REGIONS[i] for i in region[v].tolist()],
        "plan": [PLANS[i] for i in plan[v].tolist()],
        "arr": arr[v].tolist(),
        "created_at": tl.to_dates(created[v]),
        "owner": [
            names.ACCOUNT_EXECUTIVES[REGIONS[g]][e]
            for g, e in zip(region[v].tolist(), ae[v].tolist(), strict=True)
        ],
        "status": np.where(churned[v], "churned", "active").tolist(),
        "churned_at": tl.to_dates(churn_day[v], missing=~churned[v]),
        "attributes": [
            {
                "crm_tier": t,
                "csm": None if sg == 0 else names.CSMS[c],
                "lead_source": LEAD_SOURCES[ls],
                "employees": em,
            }
            for t, sg, c, ls, em in zip(
                tier[v].tolist(),
                seg[v].tolist(),
                csm[v].tolist(),
                lead[v].tolist(),
                employees[v].tolist(),
                strict=True,
            )
        ],
    }

    # ---------------------------------------------------------------- subscriptions
    starts = created[:, None] + 365 * np.arange(K)  # terms 0..K-1
    last_term = np.where(renewal_churn < BIG, first_k, K)
    exists = (starts <= A) & (starts < churn_day[:, None]) & (np.arange(K)[None, :] <= last_term[:, None])
    exists &= valid[:, None]
    si, sk = np.nonzero(exists)
    n_terms = exists.sum(axis=1)
    is_current = (sk == n_terms[si] - 1) & ~churned[si]
    tables["subscriptions"] = {
        "account_id": ids[si].tolist(),
        "plan": [PLANS[i] for i in plan[si].tolist()],
        "seats": seats[si, sk].tolist(),
        "mrr": mrr[si, sk].tolist(),
        "start_date": tl.to_dates(starts[si, sk]),
        "renewal_date": tl.to_dates(starts[si, sk] + 365),
        "discount": disc[si].tolist(),
        "status": np.where(is_current, "active", "ended").tolist(),
    }

    # ---------------------------------------------------------------- usage_weekly
    ru = _rng(spec, 3)
    wsh = ws[:WH]
    term_w = np.clip((wsh[None, :] - created[:, None]) // 365, 0, K)
    seats_w = seats[rows, term_w]
    tenure = (wsh[None, :] - created[:, None]) / 7
    util = (
        base_util[:, None]
        * (1 - 0.6 * np.exp(-np.maximum(tenure, 0) / 4))
        * np.exp(-0.55 * trouble[:, :WH])
        * (1 - 0.12 * champ_gone[:, :WH])
        * tl.season[None, :WH]
        * leaving[:, :WH]
        * ru.lognormal(0, 0.08, (C, WH))
    )
    active_users = np.clip(np.round(seats_w * util), 0, seats_w).astype(np.int64)
    sessions = np.round(active_users * sessions_per_user[:, None] * ru.lognormal(0, 0.12, (C, WH)))
    adoption = feat_start[:, None] + (feat_cap - feat_start)[:, None] * (
        1 - np.exp(-np.maximum(tenure, 0) / 30)
    )
    features = np.clip(np.round(adoption * (0.55 + 0.45 * np.clip(util / base_util[:, None], 0, 1.2))), 0, 25)
    has_usage = (wsh[None, :] >= created[:, None]) & (wsh[None, :] < churn_day[:, None]) & valid[:, None]
    if spec.trimmed:
        has_usage[:, : WH - TRIM_USAGE_WEEKS] = False
    ui, uw = np.nonzero(has_usage)
    tables["usage_weekly"] = {
        "account_id": ids[ui].tolist(),
        "week_start": tl.to_dates(wsh[uw]),
        "active_users": active_users[ui, uw].tolist(),
        "sessions": sessions[ui, uw].astype(np.int64).tolist(),
        "features_adopted": features[ui, uw].astype(np.int64).tolist(),
    }

    event_from = A - TRIM_EVENT_DAYS if spec.trimmed else tl.start

    def alive_on(ai: NDArray[np.int64], day: NDArray[np.int64]) -> NDArray[np.bool_]:
        return valid[ai] & (day >= created[ai]) & (day < churn_day[ai]) & (day <= A) & (day >= event_from)

    # ---------------------------------------------------------------- support_tickets
    rt = _rng(spec, 4)
    lam = np.array([0.05, 0.12, 0.3])[seg][:, None] * (1 + 1.8 * trouble[:, :WH] + 0.5 * pay[:, :WH])
    ti, tw = _expand(rt.poisson(lam * started[:, :WH]))
    n = len(ti)
    t_day = ws[tw] + rt.integers(0, 7, n)
    t_tr = trouble[ti, tw]
    pu = rt.random(n)
    p_urgent, p_high = 0.03 + 0.12 * np.minimum(t_tr, 1.5), 0.12 + 0.15 * np.minimum(t_tr, 1.5)
    prio = np.where(
        pu < p_urgent, 3, np.where(pu < p_urgent + p_high, 2, np.where(pu < p_urgent + p_high + 0.37, 1, 0))
    )
    cat = rt.choice(len(TICKET_CATEGORIES), size=n, p=[0.25, 0.25, 0.12, 0.13, 0.1, 0.08, 0.07])
    cat = np.where(pay[ti, tw] & (rt.random(n) < 0.5), TICKET_CATEGORIES.index("billing"), cat)
    med = np.array([8.0, 5.0, 2.5, 1.0])[prio] * np.exp(0.9 * t_tr) * rt.lognormal(0, 0.7, n)
    stuck = rt.random(n) < 0.02 + 0.2 * np.minimum(t_tr, 1.5)
    days_open = np.floor(np.where(stuck, med * rt.uniform(4, 12, n), med)).astype(np.int64)
    closed = t_day + days_open
    closed = np.where(churned[ti], np.minimum(closed, churn_day[ti]), closed)
    still_open = closed > A
    csat_draw = np.clip(np.round(4.4 - 1.3 * t_tr - 0.25 * np.log1p(days_open) + rt.normal(0, 0.7, n)), 1, 5)
    has_csat = ~still_open & (rt.random(n) < 0.55)
    keep = alive_on(ti, t_day)
    csat = np.where(has_csat, csat_draw.astype(np.int64), -1)[keep]
    tables["support_tickets"] = {
        "account_id": ids[ti[keep]].tolist(),
        "priority": [PRIORITIES[i] for i in prio[keep].tolist()],
        "category": [TICKET_CATEGORIES[i] for i in cat[keep].tolist()],
        "opened_at": tl.to_dates(t_day[keep]),
        "closed_at": tl.to_dates(closed[keep], missing=still_open[keep]),
        "csat": [None if c < 0 else c for c in csat.tolist()],
    }
    # time of day (#20, the SLA clock): its own stream, so the days above are unchanged
    o_min, c_min = tickets.ticket_minutes(_rng(spec, 11), cat, closed == t_day)
    tables["support_tickets"]["opened_time"] = tickets.to_datetimes(t_day[keep], o_min[keep])
    tables["support_tickets"]["closed_time"] = tickets.to_datetimes(closed[keep], c_min[keep], still_open[keep])
    if showcase and not np.any((ti[keep] == s) & (prio[keep] == 3) & still_open[keep]):
        _append(
            tables["support_tickets"],
            {
                "account_id": ids[s],
                "priority": "urgent",
                "category": "performance",
                "opened_at": tl.dates[A - 9 - tl.date_lo],
                "closed_at": None,
                "csat": None,
                "opened_time": tickets.to_datetimes(np.array([A - 9]), np.array([9 * 60 + 40]))[0],
                "closed_time": None,
            },
        )

    # ---------------------------------------------------------------- invoices
    ri = _rng(spec, 5)
    months = np.arange(40)
    m_issue = Timeline.add_months(created, months)  # (C, 40)
    a_issue = created[:, None] + 365 * np.arange(K)  # (C, K)
    issue = np.concatenate([m_issue, a_issue], axis=1)
    is_monthly_col = np.concatenate([np.ones(40, bool), np.zeros(K, bool)])
    billed = np.where(annual[:, None], ~is_monthly_col[None, :], is_monthly_col[None, :])
    cand = billed & (issue <= A) & (issue < churn_day[:, None]) & (issue >= event_from) & valid[:, None]
    ii, ic = np.nonzero(cand)
    iday = issue[ii, ic]
    n = len(ii)
    monthly = is_monthly_col[ic]
    term_i = np.clip((iday - created[ii]) // 365, 0, K)
    amount = np.round(np.where(monthly, mrr[ii, term_i], 12 * mrr[ii, term_i]), 2)
    due = iday + np.where(monthly, 14, 30)
    iw = tl.week_of(iday)
    i_pay, i_tr = pay[ii, iw], trouble[ii, iw]
    p_fail = 0.008 + 0.3 * i_pay + 0.02 * i_tr
    p_late = 0.04 + 0.3 * i_pay + 0.05 * i_tr
    uu = ri.random(n)
    late_paid = due + ri.integers(3, 46, n)
    on_time = iday + np.floor(ri.random(n) * (due - iday + 1)).astype(np.int64)
    failed, late = uu < p_fail, (uu >= p_fail) & (uu < p_fail + p_late)
    paid_at = np.where(failed, BIG, np.where(late, late_paid, on_time))
    unpaid = paid_at > A
    status = np.where(failed & (due <= A), "failed", np.where(unpaid, "open", np.where(late, "late", "paid")))
    tables["invoices"] = {
        "account_id": ids[ii].tolist(),
        "issued_at": tl.to_dates(iday),
        "due_date": tl.to_dates(due),
        "paid_at": tl.to_dates(np.where(unpaid, 0, paid_at), missing=unpaid),
        "amount": amount.tolist(),
        "status": status.tolist(),
    }

    # ---------------------------------------------------------------- interactions
    rx = _rng(spec, 6)
    lam = (
        np.array([0.07, 0.2, 0.45])[seg][:, None]
        * (1 + 0.4 * trouble[:, :WH])
        * leaving[:, :WH] ** 1.5
        * started[:, :WH]
    )
    xi, xw = _expand(rx.poisson(lam))
    n = len(xi)
    x_day = ws[xw] + rx.integers(0, 7, n)
    x_type = rx.choice(3, size=n, p=[0.55, 0.27, 0.18])
    thin = rx.random(n) >= TRIM_EMAIL_KEEP
    # QBRs: quarterly for Enterprise, half-yearly for Mid-Market; troubled accounts skip them.
    period = np.where(seg == 2, 13, 26)
    q_off = rx.integers(0, 13, C)
    qk = np.arange(W // 13 + 1)
    qw = created_week[:, None] + 4 + q_off[:, None] + period[:, None] * qk[None, :]
    q_ok = (seg[:, None] > 0) & (qw < WH)
    qwc = np.clip(qw, 0, W - 1)
    skip_p = 0.15 + 0.4 * np.minimum(trouble[rows, qwc], 1) + 0.6 * (1 - leaving[rows, qwc])
    q_ok &= rx.random(qw.shape) >= skip_p
    qi, qc = np.nonzero(q_ok)
    q_day = ws[qw[qi, qc]] + rx.integers(0, 5, len(qi))
    all_i = np.concatenate([xi, qi])
    all_day = np.concatenate([x_day, q_day])
    all_type = np.concatenate([x_type, np.full(len(qi), 3)])
    all_w = tl.week_of(all_day)
    m = len(all_i)
    sentiment = (
        np.clip(
            np.tanh(
                0.5
                - 1.3 * trouble[all_i, all_w]
                - 0.8 * pay[all_i, all_w]
                - 0.5 * champ_gone[all_i, all_w]
                + rx.normal(0, 0.35, m)
            ),
            -1,
            1,
        ).round(2)
        + 0.0
    )  # + 0.0: no negative zeros (SQLite would store them as 0)
    keep = alive_on(all_i, all_day)
    if spec.trimmed:
        keep &= ~((all_type == 0) & np.concatenate([thin, np.zeros(len(qi), bool)]))
    tables["interactions"] = {
        "account_id": ids[all_i[keep]].tolist(),
        "type": [INTERACTION_TYPES[i] for i in all_type[keep].tolist()],
        "occurred_at": tl.to_dates(all_day[keep]),
        "sentiment": sentiment[keep].tolist(),
    }

    # ---------------------------------------------------------------- contacts
    rp = _rng(spec, 7)
    S = 11  # slots 0..9 for the initial contacts, slot 10 for a replacement champion
    slot = np.arange(S)
    c_exists = slot[None, :] < n_contacts[:, None]
    c_champion = (slot[None, :] == 0) | ((slot[None, :] == 1) & has2[:, None])
    c_created = created[:, None] + np.where(slot[None, :] < 2, 0, rp.integers(0, 200, (C, S)))
    other_leave = c_created + np.floor(rp.exponential(365 / 0.15, (C, S))).astype(np.int64)
    leave_day1 = np.where(leave1 < W, ws[np.clip(leave1, 0, W - 1)] + rp.integers(0, 7, C), BIG)
    leave_day2 = np.where(leave2 < W, ws[np.clip(leave2, 0, W - 1)] + rp.integers(0, 7, C), BIG)
    c_left = np.where(slot[None, :] == 0, leave_day1[:, None], other_leave)
    c_left = np.where((slot[None, :] == 1) & has2[:, None], leave_day2[:, None], c_left)
    rep_day = np.where(replace_w < W, ws[np.clip(replace_w, 0, W - 1)] + rp.integers(0, 7, C), BIG)
    c_exists[:, 10] = True
    c_champion[:, 10] = True
    c_created[:, 10] = rep_day
    c_left[:, 10] = BIG
    c_exists &= (c_created <= A) & (c_created < churn_day[:, None]) & valid[:, None]
    c_left = np.where((c_left <= A) & (c_left < churn_day[:, None]), c_left, BIG)
    ci, cs = np.nonzero(c_exists)
    n = len(ci)
    first = rp.integers(0, len(names.FIRST_NAMES), (C, S))[ci, cs]
    last = rp.integers(0, len(names.LAST_NAMES), (C, S))[ci, cs]
    role_pick = rp.integers(0, 6, (C, S))[ci, cs]
    champ_role = rp.integers(0, 3, (C, S))[ci, cs]
    is_champ = c_champion[ci, cs]
    domain = [
        f"{names.ROOTS[a].lower()}{names.WORDS[b].lower()}.com"
        for a, b in zip(root.tolist(), word.tolist(), strict=True)
    ]
    contact_names = [
        f"{names.FIRST_NAMES[f]} {names.LAST_NAMES[la]}"
        for f, la in zip(first.tolist(), last.tolist(), strict=True)
    ]
    left = c_left[ci, cs]
    tables["contacts"] = {
        "account_id": ids[ci].tolist(),
        "name": contact_names,
        "email": [
            f"{nm.lower().replace(' ', '.')}@{domain[a]}"
            for nm, a in zip(contact_names, ci.tolist(), strict=True)
        ],
        "role": [
            names.CHAMPION_ROLES[cr] if ch else names.CONTACT_ROLES[rl_]
            for ch, cr, rl_ in zip(is_champ.tolist(), champ_role.tolist(), role_pick.tolist(), strict=True)
        ],
        "is_champion": is_champ.tolist(),
        "created_at": tl.to_dates(c_created[ci, cs]),
        "left_at": tl.to_dates(np.where(left >= BIG, 0, left), missing=left >= BIG),
    }
    local_id = np.full((C, S), -1)
    local_id[ci, cs] = np.arange(n)

    # ---------------------------------------------------------------- nps_responses
    rn = _rng(spec, 8)
    J = W // 26 + 1
    nw = created_week[:, None, None] + rn.integers(2, 26, C)[:, None, None] + 26 * np.arange(J)[None, :, None]
    nw = np.broadcast_to(nw, (C, J, 2))
    pick = np.floor(rn.random((C, J, 2)) * n_contacts[:, None, None]).astype(np.int64)
    n_day = ws[np.clip(nw, 0, W - 1)] + rn.integers(0, 7, (C, J, 2))
    nwc = np.clip(nw, 0, W - 1)
    a3 = acc[:, None, None]
    respond = rn.random((C, J, 2)) < 0.35 * (1 - 0.3 * np.minimum(trouble[a3, nwc], 1))
    score = np.clip(
        np.round(
            8.2
            - 3.2 * trouble[a3, nwc]
            - 1.2 * pay[a3, nwc]
            - 1.5 * champ_gone[a3, nwc]
            + rn.normal(0, 1.4, (C, J, 2))
        ),
        0,
        10,
    ).astype(np.int64)
    cid = local_id[a3, pick]
    ok = respond & (nw < WH) & (cid >= 0)
    ok &= (c_created[a3, pick] <= n_day) & (c_left[a3, pick] > n_day)
    ni, nj, nk = np.nonzero(ok)
    nd = n_day[ni, nj, nk]
    keep = alive_on(ni, nd)
    ni, nj, nk, nd = ni[keep], nj[keep], nk[keep], nd[keep]
    tables["nps_responses"] = {
        "account_id": ids[ni].tolist(),
        "contact_local": cid[ni, nj, nk].tolist(),
        "responded_at": tl.to_dates(nd),
        "score": score[ni, nj, nk].tolist(),
    }

    # ---------------------------------------------------------------- opportunities (crm/demo/deals.py)
    deals_of = deals.Accounts(
        ids=ids,
        valid=valid,
        created=created,
        churn_day=churn_day,
        churned=churned,
        renew=renew,
        mrr=mrr,
        trouble=trouble,
        started=started,
        region=region,
        ae=ae,
        plan=plan,
        lead=lead,
        lead_names=LEAD_SOURCES,
    )
    growth_wins = tables.pop("growth_wins", None)  # won deals the simulated growth offers brought
    tables["opportunities"], tables["opportunity_stages"] = deals.simulate_deals(
        deals_of, tl, stage_from=event_from, ro=_rng(spec, 9), rs=_rng(spec, 10), seed=spec.seed,
        extra_won=growth_wins,
    )

    return ChunkData(tables, churned=int((churned & valid).sum()), active=int((~churned & valid).sum()))


def _append(columns: Columns, row: dict[str, Any]) -> None:
    for key, value in row.items():
        columns[key].append(value)
