"""Point-in-time churn features: exact values on a hand-built account, no leakage, bulk = single."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from churn_builders import build_history
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from crm.models import (
    Account,
    Contact,
    Interaction,
    Invoice,
    NpsResponse,
    Subscription,
    SupportTicket,
    UsageWeekly,
)
from tools.churn.features import AccountScope, FeatureTable, compute_features

D = dt.date(2026, 6, 28)  # a Sunday: the week starting Monday 2026-06-22 is complete on D


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _hand_built(session: Session) -> None:
    session.add_all(
        [
            Account(
                id="HAND-1",
                name="Hand One",
                segment="Mid-Market",
                plan="Business",
                arr=120_000.0,
                created_at=day("2025-01-01"),
                status="active",
                attributes={},
            ),
            Account(
                id="HAND-2",
                name="Hand Two",
                segment="SMB",
                plan="Starter",
                arr=5_000.0,
                created_at=day("2026-06-01"),
                status="active",
                attributes={},
            ),
        ]
    )
    session.flush()
    mondays = [day("2026-04-06") + dt.timedelta(weeks=k) for k in range(13)]  # 04-06 .. 06-29
    users = [20] * 8 + [10, 10, 12, 12] + [50]  # the week of 06-29 is after D (and incomplete)
    session.execute(
        insert(UsageWeekly),
        [
            {"account_id": "HAND-1", "week_start": w, "active_users": u, "sessions": 0, "features_adopted": 0}
            for w, u in zip(mondays, users, strict=True)
        ],
    )
    session.add_all(
        [
            Subscription(
                account_id="HAND-1",
                plan="Growth",
                seats=20,
                mrr=1.0,
                start_date=day("2025-07-01"),
                renewal_date=day("2026-07-01"),
                discount=0.1,
                status="ended",
            ),
            Subscription(
                account_id="HAND-1",
                plan="Business",
                seats=40,
                mrr=1.0,
                start_date=day("2026-07-01"),
                renewal_date=day("2027-07-01"),
                discount=0.0,
                status="active",
            ),
            Interaction(account_id="HAND-1", type="call", occurred_at=day("2026-06-10")),
            Interaction(account_id="HAND-1", type="qbr", occurred_at=day("2026-07-05")),
            SupportTicket(account_id="HAND-1", priority="urgent", opened_at=day("2026-06-01")),
            SupportTicket(
                account_id="HAND-1",
                priority="high",
                opened_at=day("2026-05-01"),
                closed_at=day("2026-06-27"),
                csat=2,
            ),
            SupportTicket(
                account_id="HAND-1",
                priority="high",
                opened_at=day("2026-06-20"),
                closed_at=day("2026-07-02"),
                csat=5,
            ),
            SupportTicket(
                account_id="HAND-1",
                priority="low",
                opened_at=day("2026-01-01"),
                closed_at=day("2026-01-03"),
                csat=4,
            ),
            SupportTicket(
                account_id="HAND-1",
                priority="medium",
                opened_at=day("2025-11-01"),
                closed_at=day("2025-11-05"),
                csat=1,
            ),
            SupportTicket(account_id="HAND-1", priority="urgent", opened_at=day("2026-06-29")),
            Invoice(
                account_id="HAND-1",
                issued_at=day("2026-03-01"),
                due_date=day("2026-03-15"),
                amount=1.0,
                status="failed",
            ),
            Invoice(
                account_id="HAND-1",
                issued_at=day("2026-04-01"),
                due_date=day("2026-04-15"),
                paid_at=day("2026-04-20"),
                amount=1.0,
                status="late",
            ),
            Invoice(
                account_id="HAND-1",
                issued_at=day("2026-05-01"),
                due_date=day("2026-05-15"),
                paid_at=day("2026-05-10"),
                amount=1.0,
                status="paid",
            ),
            Invoice(
                account_id="HAND-1",
                issued_at=day("2026-06-01"),
                due_date=day("2026-06-15"),
                paid_at=day("2026-07-01"),
                amount=1.0,
                status="late",
            ),
            Invoice(
                account_id="HAND-1",
                issued_at=day("2026-06-20"),
                due_date=day("2026-06-28"),
                amount=1.0,
                status="open",
            ),
            Invoice(
                account_id="HAND-1",
                issued_at=day("2025-10-01"),
                due_date=day("2025-10-15"),
                amount=1.0,
                status="failed",
            ),
            NpsResponse(account_id="HAND-1", responded_at=day("2026-03-01"), score=9),
            NpsResponse(account_id="HAND-1", responded_at=day("2026-06-01"), score=4),
            NpsResponse(account_id="HAND-1", responded_at=day("2026-07-01"), score=10),
            Contact(account_id="HAND-1", name="Champ", is_champion=True, left_at=day("2026-05-25")),
            Contact(account_id="HAND-1", name="Later champ", is_champion=True, left_at=day("2026-07-10")),
            Contact(account_id="HAND-1", name="User", is_champion=False, left_at=day("2026-06-01")),
        ]
    )
    session.commit()


EXPECTED_HAND_1 = {
    # usage: previous 8 complete weeks (04-06 .. 05-25) average 20; last 4 (06-01 .. 06-22)
    # average (10 + 10 + 12 + 12) / 4 = 11; trend = 11 / 20 − 1 = −0.45. The 06-29 week is ignored.
    "usage_last4": 11.0,
    "usage_prev8": 20.0,
    "usage_trend": 11.0 / 20.0 - 1.0,
    # subscription in force on D: the one that started 2025-07-01 (20 seats, 10 % discount,
    # renews 2026-07-01); the one starting 2026-07-01 is in the future.
    "seats": 20.0,
    "seat_utilisation": 11.0 / 20.0,
    "days_to_renewal": 3.0,
    "discount": 0.1,
    # last interaction 2026-06-10 (the QBR on 07-05 is after D): 18 days
    "days_since_interaction": 18.0,
    # open on D: the urgent from 06-01 and the high closed only on 07-02; the urgent of 06-29 is future
    "open_tickets_urgent": 1.0,
    "open_tickets_high": 1.0,
    "open_tickets_medium": 0.0,
    "open_tickets_low": 0.0,
    # CSAT of tickets closed in (2025-12-30, 2026-06-28]: 2 (closed 06-27) and 4 (closed 01-03);
    # the 5 closed on 07-02 and the 1 closed in 2025-11 are outside: median (2 + 4) / 2 = 3
    "csat_median": 3.0,
    # due in [2025-12-30, 2026-06-28): failed 03-15; late 04-15 (paid 04-20) and 06-15 (paid 07-01,
    # unpaid and overdue on D); 05-15 paid on time; the one due on D itself is not yet late
    "invoices_failed_180d": 1.0,
    "invoices_late_180d": 2.0,
    # latest NPS on or before D: 4 (06-01); the 10 of 07-01 is future
    "nps_last": 4.0,
    # champion left 2026-05-25: 34 days before D; the champion leaving 07-10 is future
    "champion_left": 1.0,
    "champion_left_days": 34.0,
    # created 2025-01-01: 365 + 178 = 543 days
    "tenure_days": 543.0,
    "arr": 120_000.0,
}


def _check_hand_built(table: FeatureTable) -> None:
    assert list(table.ids) == ["HAND-1", "HAND-2"]
    one, two = table.row(0), table.row(1)
    for name, expected in EXPECTED_HAND_1.items():
        assert one[name] == pytest.approx(expected, abs=1e-12), name
    assert one["plan"] == "Growth"  # the plan of the subscription in force, not today's "Business"
    assert one["segment"] == "Mid-Market"
    # HAND-2 has no history: unknowns are None, counts are 0
    for name in (
        "usage_trend",
        "seat_utilisation",
        "days_since_interaction",
        "csat_median",
        "nps_last",
        "days_to_renewal",
        "discount",
    ):
        assert two[name] is None, name
    for name in ("open_tickets_urgent", "invoices_failed_180d", "invoices_late_180d", "champion_left"):
        assert two[name] == 0.0, name
    assert two["tenure_days"] == 27.0
    assert two["plan"] == "Starter"


def test_point_in_time_features_exact(any_engine: Engine) -> None:
    factory = make_sessionmaker(any_engine)
    with factory() as session:
        _hand_built(session)
        _check_hand_built(compute_features(session, D))


def test_incomplete_week_excluded(session: Session) -> None:
    _hand_built(session)
    table = compute_features(session, day("2026-07-01"))
    row = table.row(0)
    assert row["usage_last4"] == 11.0  # the 50 users of the running week 06-29 are not counted
    assert row["usage_trend"] == pytest.approx(-0.45)


def _same(a: FeatureTable, b: FeatureTable) -> None:
    assert list(a.ids) == list(b.ids)
    assert sorted(a.numeric) == sorted(b.numeric)
    for name in a.numeric:
        np.testing.assert_array_equal(a.numeric[name], b.numeric[name], err_msg=name)
    for name in a.categorical:
        assert list(a.categorical[name]) == list(b.categorical[name]), name


def test_adding_future_rows_changes_nothing(session: Session) -> None:
    build_history(session, accounts=60, seed=3)
    cut = day("2026-03-31")
    before = compute_features(session, cut)
    ids = [str(i) for i in before.ids]
    future = [cut + dt.timedelta(days=k) for k in (1, 5, 30, 120)]
    for k, account_id in enumerate(ids):
        when = future[k % len(future)]
        session.add_all(
            [
                SupportTicket(
                    account_id=account_id,
                    priority="urgent",
                    opened_at=when,
                    csat=1,
                    closed_at=when + dt.timedelta(days=1),
                ),
                Invoice(account_id=account_id, issued_at=cut, due_date=when, amount=1.0, status="failed"),
                Invoice(
                    account_id=account_id,
                    issued_at=when,
                    due_date=when + dt.timedelta(days=9),
                    amount=1.0,
                    status="failed",
                ),
                NpsResponse(account_id=account_id, responded_at=when, score=0),
                Interaction(account_id=account_id, type="call", occurred_at=when),
                Contact(account_id=account_id, name="Leaver", is_champion=True, left_at=when),
                Subscription(
                    account_id=account_id,
                    plan="Enterprise",
                    seats=999,
                    mrr=1.0,
                    start_date=when,
                    renewal_date=when + dt.timedelta(days=365),
                    discount=0.9,
                    status="active",
                ),
            ]
        )
        monday = cut + dt.timedelta(days=(7 - cut.weekday()) % 7 or 7)
        session.merge(
            UsageWeekly(
                account_id=account_id, week_start=monday, active_users=999, sessions=0, features_adopted=0
            )
        )
        # the week that contains the cut date is still running on it: not used either
        running = cut - dt.timedelta(days=cut.weekday())
        session.merge(
            UsageWeekly(
                account_id=account_id, week_start=running, active_users=0, sessions=0, features_adopted=0
            )
        )
    session.commit()
    after = compute_features(session, cut)
    _same(before, after)


def test_bulk_equals_single(session: Session) -> None:
    build_history(session, accounts=40, seed=5)
    cut = day("2026-06-30")
    bulk = compute_features(session, cut)
    for i, account_id in enumerate(bulk.ids):
        single = compute_features(session, cut, AccountScope(ids=(str(account_id),)))
        _same(bulk.take([i]), single)


def test_scope_where_matches_ids(session: Session) -> None:
    build_history(session, accounts=30, seed=2)
    cut = day("2026-06-30")
    smb = compute_features(session, cut, AccountScope(where=(Account.segment == "SMB",)))
    assert len(smb) == 10
    assert all(s == "SMB" for s in smb.categorical["segment"])
    assert not math.isnan(float(np.nanmean(smb.numeric["tenure_days"])))


def test_broad_scope_reads_all_rows_and_keeps_its_own(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.churn import features

    build_history(session, accounts=40, seed=6)
    cut = day("2026-05-31")
    narrow = compute_features(session, cut, AccountScope(where=features.active_on(cut)))
    monkeypatch.setattr(features, "_IN_CLAUSE_MAX", 3)  # now the same scope counts as broad
    broad = compute_features(session, cut, AccountScope(where=features.active_on(cut)))
    _same(narrow, broad)
    assert len(broad) < 40  # accounts churned by the cut are still left out
