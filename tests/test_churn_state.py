"""The kept churn feature state: advancing it must give exactly what a fresh read gives.

The demo company's history runs to 2026-09-30 with tickets opened and closed, renewals, NPS
answers and weekly usage throughout, so building the state in June and advancing it step by
step to September goes through every kind of change the deltas handle.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from crm.demo import generate_demo
from crm.models import Account, ChurnScore, Interaction, SupportTicket
from tools.churn import state, state_store
from tools.churn.features import (
    KEPT_PARTS,
    OPEN_PARTS,
    USAGE_PARTS,
    AccountScope,
    active_on,
    compute_features,
    sql_components,
)
from tools.churn.model import train
from tools.churn.scoring import write_score_snapshot

D0 = dt.date(2026, 6, 30)
STEPS = (1, 6, 7, 13, 28, 0, 20)  # days; 0 = the same date again


@pytest.fixture
def demo(any_engine: Engine) -> Iterator[Session]:
    generate_demo(any_engine, accounts=150, seed=11)
    with make_sessionmaker(any_engine)() as session:
        yield session


def _fresh(session: Session, d: dt.date) -> tuple[dict[str, np.ndarray], np.ndarray]:
    ids = sorted(session.scalars(select(Account.id)))
    comp = sql_components(session, AccountScope(), {a: i for i, a in enumerate(ids)}, len(ids), d, True)
    parts = {k: comp.numeric[k] for k in KEPT_PARTS}
    for k in (*USAGE_PARTS, *OPEN_PARTS):
        parts[k] = np.nan_to_num(parts[k], nan=0.0)
    return parts, comp.sub_plan


def _assert_same(kept: state_store.FeatureState, session: Session) -> None:
    parts, plan = _fresh(session, kept.as_of)
    assert kept.ids.tolist() == sorted(session.scalars(select(Account.id)))
    for name in KEPT_PARTS:
        np.testing.assert_array_equal(kept.parts[name], parts[name], err_msg=f"{name} as of {kept.as_of}")
    assert kept.sub_plan.tolist() == plan.tolist()
    # every component the features are made of, the windowed ones (CSAT median, invoice
    # counts, champion departure) included
    n = len(kept.ids)
    by_id = {a: i for i, a in enumerate(kept.ids.tolist())}
    fresh = sql_components(session, AccountScope(), by_id, n, kept.as_of, True)
    via_state = state.components_of(kept, np.arange(n), kept.as_of)
    for name in ("csat", "inv_failed", "inv_late", "champ"):
        np.testing.assert_array_equal(
            via_state.numeric[name], fresh.numeric[name], err_msg=f"{name} {kept.as_of}"
        )
    assert sorted(via_state.numeric) == sorted(fresh.numeric)


def test_advancing_step_by_step_equals_reading_fresh(demo: Session) -> None:
    kept = state.build(demo, D0)
    _assert_same(kept, demo)
    day = D0
    changed = dict.fromkeys(state_store.STATE_PARTS, 0)
    for step in STEPS:
        day += dt.timedelta(days=step)
        before = {k: v.copy() for k, v in kept.parts.items()}
        kept = state.advance(demo, kept, day)
        _assert_same(kept, demo)
        for k in changed:
            changed[k] += int((~np.isclose(before[k], kept.parts[k], equal_nan=True)).sum())
    # the steps really moved every part: usage weeks, touches, tickets, renewals, NPS answers,
    # invoices, champion departures, CSAT ratings of every level
    assert min(changed.values()) > 0, changed


def test_state_survives_storage_and_new_accounts_start_empty(demo: Session) -> None:
    kept = state.build(demo, D0)
    state_store.save(demo, kept)
    loaded = state_store.load(demo)
    assert loaded is not None and loaded.as_of == D0 and loaded.ids.tolist() == kept.ids.tolist()
    for name in KEPT_PARTS:
        np.testing.assert_array_equal(loaded.parts[name], kept.parts[name])
    assert loaded.sub_plan.tolist() == kept.sub_plan.tolist()
    # an account created after the state's date, with its first events after it too
    demo.execute(
        insert(Account).values(id="AAA-NEW", name="New Co", arr=1000.0, created_at=dt.date(2026, 7, 3))
    )
    demo.execute(
        insert(SupportTicket).values(account_id="AAA-NEW", priority="urgent", opened_at=dt.date(2026, 7, 4))
    )
    demo.execute(
        insert(Interaction).values(account_id="AAA-NEW", type="call", occurred_at=dt.date(2026, 7, 5))
    )
    assert state.why_unusable(demo.connection(), loaded, dt.date(2026, 7, 7)) is None
    _assert_same(state.advance(demo, loaded, dt.date(2026, 7, 7)), demo)
    # given the accounts being scored, it adds those it lacks and keeps the others (here the
    # scored ones are just the two new accounts, one with a longer id than any kept: nothing
    # may be cut short) ...
    longer = "AAA-NEW-WITH-A-LONG-ID"
    demo.execute(insert(Account).values(id=longer, name="Longer", arr=1.0, created_at=dt.date(2026, 7, 6)))
    demo.execute(insert(Interaction).values(account_id=longer, type="call", occurred_at=dt.date(2026, 7, 6)))
    _assert_same(state.advance(demo, loaded, dt.date(2026, 7, 7), np.array(["AAA-NEW", longer])), demo)
    # ... and when a row in between belongs to an account it still lacks, reads them all after all
    _assert_same(state.advance(demo, loaded, dt.date(2026, 7, 7), loaded.ids[:10]), demo)


def test_back_dated_rows_too_long_a_step_or_an_earlier_date_rebuild(demo: Session) -> None:
    kept = state.build(demo, D0)
    conn = demo.connection()
    assert state.why_unusable(conn, None, D0) == "no kept feature state"
    assert state.why_unusable(conn, kept, D0 + dt.timedelta(days=28)) is None
    assert "more than 28 days" in str(state.why_unusable(conn, kept, D0 + dt.timedelta(days=29)))
    assert "after" in str(state.why_unusable(conn, kept, D0 - dt.timedelta(days=1)))
    account = demo.scalars(select(Account.id).order_by(Account.id)).first()
    demo.execute(insert(Interaction).values(account_id=account, type="call", occurred_at=D0))
    reason = state.why_unusable(conn, kept, D0 + dt.timedelta(days=7))
    assert reason == f"1 interactions row(s) dated on or before {D0} were added after the state was kept"


def _scores(session: Session, day: dt.date) -> dict[str, tuple[float, str]]:
    rows = session.execute(
        select(ChurnScore.account_id, ChurnScore.probability, ChurnScore.drivers).where(
            ChurnScore.as_of == day
        )
    )
    return {a: (p, str(d)) for a, p, d in rows}


def test_batch_scoring_builds_then_advances_with_the_same_scores_as_a_fresh_read(demo: Session) -> None:
    report = train(demo, now=dt.datetime(2026, 10, 1))
    first = write_score_snapshot(demo, as_of=dt.date(2026, 9, 2))
    assert (first.features, first.features_note) == ("built", "no kept feature state")
    day = dt.date(2026, 9, 16)
    advanced = write_score_snapshot(demo, as_of=day)
    assert advanced.features == "advanced", report.method
    kept_scores = _scores(demo, day)
    again = write_score_snapshot(demo, as_of=day)
    assert again.features == "current"
    fresh = write_score_snapshot(demo, as_of=day, keep_state=False)
    assert fresh.features == "read" and fresh.replaced == advanced.accounts
    assert _scores(demo, day) == kept_scores and len(kept_scores) == advanced.accounts > 0
    rebuilt = write_score_snapshot(demo, as_of=day, rebuild=True)
    assert (rebuilt.features, rebuilt.features_note) == ("built", "--rebuild")
    # the features behind the scores are those of a fresh read, not just the probabilities
    scope = AccountScope(where=active_on(day))
    source = state.KeptSource()
    via_state = compute_features(demo, day, scope, source=source)
    assert source.use is not None and source.use.how == "current"
    direct = compute_features(demo, day, scope)
    for name, values in direct.numeric.items():
        np.testing.assert_array_equal(via_state.numeric[name], values, err_msg=name)
    assert via_state.categorical["plan"].tolist() == direct.categorical["plan"].tolist()


def test_parts_are_stored_compactly_only_when_that_is_exact() -> None:
    whole = np.array([0.0, 3.0, np.nan, 739_000.0, -2.0])
    packed = state_store._compact(whole)
    assert packed.dtype == np.int32
    np.testing.assert_array_equal(state_store._expand(packed), whole)
    for kept_as_float in (np.array([0.5, 1.0]), np.array([3e9, np.nan]), np.array([-(2.0**31), 1.0])):
        assert state_store._compact(kept_as_float) is kept_as_float
    index = state_store.AccountIndex(np.array(["A-1", "A-2", "B-7"]))
    assert index.positions(["B-7", "A-1"]).tolist() == [2, 0]
    for unknown in (["A-3"], ["A-10"], ["B-77"]):  # a longer id must not be cut to a known one
        with pytest.raises(KeyError):
            index.positions(unknown)


@pytest.mark.postgres
def test_two_batches_keeping_their_state_at_once_do_not_fail(pg_engine: Engine) -> None:
    """B's save waits for A's uncommitted one and then replaces it (a delete + insert would
    hit the primary key once A commits)."""
    generate_demo(pg_engine, accounts=20, seed=3)
    factory = make_sessionmaker(pg_engine)
    errors: list[BaseException] = []
    with factory() as first, factory() as second:
        kept_a = state.build(first, D0)
        kept_b = state.build(second, D0 + dt.timedelta(days=1))
        state_store.save(first, kept_a)  # uncommitted: holds the key

        def save_second() -> None:
            try:
                state_store.save(second, kept_b)
                second.commit()
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        worker = threading.Thread(target=save_second)
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive()  # waiting for the first transaction
        first.commit()
        worker.join(timeout=30)
    assert not worker.is_alive() and errors == []
    with factory() as check:
        kept = state_store.load(check)
    assert kept is not None and kept.as_of == D0 + dt.timedelta(days=1)
