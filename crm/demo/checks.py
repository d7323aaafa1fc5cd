"""Sanity checks of a generated database: churn rates and a point-in-time churn model's AUC.

Used by the tests and the scale benchmark to show the churn mechanism is in the
data and learnable. This is a check of the generator, not the product's churn
model (that lives in `tools/`); the features follow SPEC §5.3 and use only
facts known on the snapshot date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, Engine, text

FEATURES = (
    "usage_trend",
    "seat_utilisation",
    "open_high_urgent",
    "open_tickets",
    "bad_invoices_180d",
    "nps_avg_365d",
    "nps_missing",
    "champion_lost",
    "renewal_within_90d",
    "days_to_renewal",
    "discount",
    "sentiment_90d",
    "days_since_interaction",
    "enterprise",
    "smb",
)
HORIZON_DAYS = 90


@dataclass
class Snapshot:
    date: dt.date
    account_ids: list[str]
    X: NDArray[np.float64]
    y: NDArray[np.int64]


def churn_rate_last_year(engine: Engine, as_of: dt.date) -> float:
    """Logo churn over the 12 months before `as_of`: churned in the window / active at its start."""
    start = as_of - dt.timedelta(days=365)
    with engine.connect() as conn:
        base = conn.execute(
            text(
                "SELECT COUNT(*) FROM accounts WHERE created_at <= :s "
                "AND (churned_at IS NULL OR churned_at > :s)"
            ),
            {"s": start},
        ).scalar_one()
        lost = conn.execute(
            text(
                "SELECT COUNT(*) FROM accounts WHERE created_at <= :s "
                "AND churned_at > :s AND churned_at <= :a"
            ),
            {"s": start, "a": as_of},
        ).scalar_one()
    return float(lost) / float(base) if base else 0.0


def _by_account(conn: Connection, sql: str, params: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in conn.execute(text(sql), params)}


def snapshot(conn: Connection, day: dt.date) -> Snapshot:
    """Features of every account active on `day` (tenure ≥ 12 weeks) and its 90-day churn label."""
    d = dt.timedelta
    p = {
        "s": day,
        "s_plus": day + d(days=HORIZON_DAYS),
        "w_last": day - d(days=34),
        "w_first": day - d(days=90),
        "w_end": day - d(days=7),
        "tenure": day - d(days=91),
        "d180": day - d(days=180),
        "d365": day - d(days=365),
        "d90": day - d(days=90),
    }
    accounts = conn.execute(
        text(
            "SELECT id, segment, churned_at FROM accounts WHERE created_at <= :tenure "
            "AND (churned_at IS NULL OR churned_at > :s) ORDER BY id"
        ),
        p,
    ).all()
    usage = _by_account(
        conn,
        "SELECT account_id, SUM(CASE WHEN week_start > :w_last THEN active_users ELSE 0 END), "
        "SUM(CASE WHEN week_start <= :w_last THEN active_users ELSE 0 END), "
        "SUM(CASE WHEN week_start > :w_last THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN week_start <= :w_last THEN 1 ELSE 0 END) "
        "FROM usage_weekly WHERE week_start > :w_first AND week_start <= :w_end GROUP BY account_id",
        p,
    )
    subs = _by_account(
        conn,
        "SELECT account_id, renewal_date, discount, seats FROM subscriptions "
        "WHERE start_date <= :s AND renewal_date > :s",
        p,
    )
    tickets = _by_account(
        conn,
        "SELECT account_id, SUM(CASE WHEN priority IN ('high', 'urgent') THEN 1 ELSE 0 END), "
        "COUNT(*) FROM support_tickets WHERE opened_at <= :s "
        "AND (closed_at IS NULL OR closed_at > :s) GROUP BY account_id",
        p,
    )
    invoices = _by_account(
        conn,
        "SELECT account_id, COUNT(*) FROM invoices WHERE due_date > :d180 AND due_date <= :s "
        "AND (status = 'failed' OR paid_at IS NULL OR paid_at > due_date) GROUP BY account_id",
        p,
    )
    nps = _by_account(
        conn,
        "SELECT account_id, AVG(score) FROM nps_responses "
        "WHERE responded_at > :d365 AND responded_at <= :s GROUP BY account_id",
        p,
    )
    champions = _by_account(
        conn,
        "SELECT account_id, SUM(CASE WHEN left_at <= :s THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN created_at <= :s AND (left_at IS NULL OR left_at > :s) THEN 1 ELSE 0 END) "
        "FROM contacts WHERE is_champion GROUP BY account_id",
        p,
    )
    talks = _by_account(
        conn,
        "SELECT account_id, AVG(CASE WHEN occurred_at > :d90 THEN sentiment END), MAX(occurred_at) "
        "FROM interactions WHERE occurred_at <= :s AND occurred_at > :d365 GROUP BY account_id",
        p,
    )
    ids: list[str] = []
    rows: list[list[float]] = []
    labels: list[int] = []
    for account_id, segment, churned_at in accounts:
        last4, prev8, n_last, n_prev = usage.get(account_id, (0, 0, 0, 0))
        renewal, discount, seats = subs.get(account_id, (None, 0.0, 0))
        if not n_last or not n_prev or renewal is None:
            continue
        last_avg = float(last4) / float(n_last)
        prev_avg = float(prev8) / float(n_prev)
        trend = last_avg / prev_avg - 1 if prev_avg > 0 else 0.0
        hu, n_open = tickets.get(account_id, (0, 0))
        left, current = champions.get(account_id, (0, 0))
        nps_avg = nps.get(account_id, (None,))[0]
        sentiment, last_talk = talks.get(account_id, (None, None))
        days_to_renewal = (_as_date(renewal) - day).days
        days_since = (day - _as_date(last_talk)).days if last_talk is not None else 365
        rows.append(
            [
                trend,
                last_avg / float(seats) if seats else 0.0,
                float(hu or 0),
                float(n_open or 0),
                float(invoices.get(account_id, (0,))[0] or 0),
                float(nps_avg) if nps_avg is not None else 7.5,
                1.0 if nps_avg is None else 0.0,
                1.0 if (left or 0) > 0 and not current else 0.0,
                1.0 if days_to_renewal <= HORIZON_DAYS else 0.0,
                float(days_to_renewal),
                float(discount or 0.0),
                float(sentiment) if sentiment is not None else 0.0,
                float(min(days_since, 365)),
                1.0 if segment == "Enterprise" else 0.0,
                1.0 if segment == "SMB" else 0.0,
            ]
        )
        ids.append(account_id)
        labels.append(int(churned_at is not None and _as_date(churned_at) <= p["s_plus"]))
    return Snapshot(day, ids, np.array(rows, dtype=float).reshape(-1, len(FEATURES)), np.array(labels))


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def holdout_auc(
    engine: Engine, as_of: dt.date, *, months: int = 24, test_months: int = 6
) -> tuple[float, int, int]:
    """Train a logistic regression on monthly snapshots, test on the later ones.

    Snapshots run monthly from `months` before the last usable date (`as_of` − 90 days);
    the last `test_months` are the holdout window. Returns (AUC, test rows, test positives).
    """
    # deferred: sklearn loads in ~0.9 s; only the AUC checks need it, not churn_rate_last_year
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    last = as_of - dt.timedelta(days=HORIZON_DAYS)
    days = [last - dt.timedelta(days=30 * k) for k in range(months)][::-1]
    with engine.connect() as conn:
        snaps = [snapshot(conn, day) for day in days]
    train = snaps[: months - test_months]
    test = snaps[months - test_months :]
    X_train = np.vstack([s.X for s in train])
    y_train = np.concatenate([s.y for s in train])
    X_test = np.vstack([s.X for s in test])
    y_test = np.concatenate([s.y for s in test])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    model.fit(X_train, y_train)
    auc = float(roc_auc_score(y_test, model.predict_proba(X_test)[:, 1]))
    return auc, len(y_test), int(y_test.sum())


def single_snapshot_auc(engine: Engine, as_of: dt.date, *, seed: int = 0) -> tuple[float, int, int]:
    """AUC on a random 30 % account holdout of the snapshot at `as_of` − 90 days.

    The check for trimmed (large) databases, where usage history supports one snapshot.
    """
    # deferred: sklearn loads in ~0.9 s; only the AUC checks need it, not churn_rate_last_year
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with engine.connect() as conn:
        snap = snapshot(conn, as_of - dt.timedelta(days=HORIZON_DAYS))
    rng = np.random.default_rng(seed)
    is_test = rng.random(len(snap.y)) < 0.3
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    model.fit(snap.X[~is_test], snap.y[~is_test])
    auc = float(roc_auc_score(snap.y[is_test], model.predict_proba(snap.X[is_test])[:, 1]))
    return auc, int(is_test.sum()), int(snap.y[is_test].sum())
