"""Property tests: shares, quadrants, margin leak and ranking order hold for any data."""

from __future__ import annotations

import datetime as dt
import math
from functools import lru_cache

import factories as f
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.db import make_engine
from crm.models import Base, ValueChainActivity
from tools.activities import score_rows
from tools.ranking import rank

costs = st.one_of(
    st.integers(0, 1_000_000).map(float), st.floats(0, 1e7, allow_nan=False, allow_infinity=False)
)
values = st.one_of(st.integers(0, 10).map(float), st.floats(0, 10, allow_nan=False))
activity_lists = st.lists(st.tuples(costs, values), min_size=1, max_size=12)


def _rows(data: list[tuple[float, float]]) -> list[ValueChainActivity]:
    return [
        ValueChainActivity(id=f"X{i:02d}", name=f"x{i}", kind="primary", porter_category="operations",
                           period="2026", annual_cost=c, value_score=v)
        for i, (c, v) in enumerate(data)
    ]  # fmt: skip


@given(activity_lists)
def test_shares_sum_to_one(data: list[tuple[float, float]]) -> None:
    scores = score_rows(_rows(data))
    total_cost = math.fsum(c for c, _ in data)
    total_value = math.fsum(v for _, v in data)
    if total_cost > 0:
        assert math.isclose(math.fsum(s.cost_share for s in scores), 1.0, rel_tol=1e-9)
    else:
        assert all(s.cost_share == 0.0 for s in scores)
    if total_value > 0:
        assert math.isclose(math.fsum(s.value_share for s in scores), 1.0, rel_tol=1e-9)
    else:
        assert all(s.value_share == 0.0 for s in scores)


@given(activity_lists)
def test_quadrant_consistent_with_shares(data: list[tuple[float, float]]) -> None:
    scores = score_rows(_rows(data))
    n = len(scores)
    for s in scores:
        high_value = s.quadrant in ("invest_and_scale", "optimize")
        high_cost = s.quadrant in ("optimize", "eliminate_or_restructure")
        # Away from the exact 1/n boundary, the quadrant follows the reported shares.
        if abs(s.value_share - 1 / n) > 1e-9:
            assert high_value == (s.value_share >= 1 / n)
        if abs(s.cost_share - 1 / n) > 1e-9:
            assert high_cost == (s.cost_share >= 1 / n)


@given(activity_lists)
def test_margin_leak_formula_and_order(data: list[tuple[float, float]]) -> None:
    scores = score_rows(_rows(data))
    total_cost = math.fsum(c for c, _ in data)
    total_value = math.fsum(v for _, v in data)
    # margin_leak_i = max(0, C_i − ΣC · value_share_i), value_share_i = v_i/Σv (0 when Σv = 0)
    expected = {
        f"X{i:02d}": max(0.0, c - total_cost * (v / total_value if total_value > 0 else 0.0))
        for i, (c, v) in enumerate(data)
    }
    for s in scores:
        assert math.isclose(s.margin_leak, expected[s.id], rel_tol=1e-9, abs_tol=1e-6)
        assert 0.0 <= s.margin_leak <= s.annual_cost
    assert math.isclose(
        math.fsum(s.margin_leak for s in scores), math.fsum(expected.values()), rel_tol=1e-9, abs_tol=1e-6
    )
    keys = [(-s.margin_leak, s.id) for s in scores]
    assert keys == sorted(keys)
    # Spend and fair shares both add up to ΣC, so the leaks are half the total deviation.
    if any(v for _, v in data):
        deviation = math.fsum(abs(s.annual_cost - total_cost * s.value_share) for s in scores)
        assert math.isclose(
            2 * math.fsum(s.margin_leak for s in scores), deviation, rel_tol=1e-9, abs_tol=1e-6
        )


# ---------------------------------------------------------------------------- ranking


@lru_cache(maxsize=1)
def _engine() -> Engine:
    engine = make_engine("sqlite:///:memory:")
    Base.metadata.create_all(engine)
    return engine


SEGMENTS = ("SMB", "Mid-Market", "Enterprise")
account_rows = st.lists(
    st.tuples(
        st.sampled_from(SEGMENTS),
        st.integers(0, 5).map(lambda k: k * 10_000.0),  # few distinct ARR values → many ties
        st.one_of(st.none(), st.integers(-30, 400)),  # days to renewal, or no active subscription
        st.sampled_from(("active", "churned")),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=account_rows,
    metric=st.sampled_from(("arr", "days_to_renewal")),
    order=st.sampled_from((None, "asc", "desc")),
    segment=st.sampled_from((None, *SEGMENTS)),
)
def test_account_ranking_is_sorted_permutation_of_filtered_set(
    rows: list[tuple[str, float, int | None, str]], metric: str, order: str | None, segment: str | None
) -> None:
    as_of = dt.date(2026, 3, 31)
    with Session(_engine()) as s:
        f.set_as_of(s, as_of)
        for i, (seg, arr, days, status) in enumerate(rows):
            f.account(s, f"P-{i:03d}", segment=seg, arr=arr, status=status)
            if days is not None:
                f.subscription(s, f"P-{i:03d}", renewal_date=as_of + dt.timedelta(days=days))
        filters = {"segment": segment} if segment else None
        if segment and not any(r[0] == segment for r in rows):
            s.rollback()
            return  # an absent value is an error, tested elsewhere
        r = rank(session=s, entity="accounts", metric=metric, filters=filters, limit=1000, order=order)  # type: ignore[arg-type]
        s.rollback()
    value = {"arr": lambda t: t[1], "days_to_renewal": lambda t: t[2]}[metric]
    matching = {
        f"P-{i:03d}": value(t)
        for i, t in enumerate(rows)
        if t[3] == "active" and (segment is None or t[0] == segment)
    }
    resolved = order or ("desc" if metric == "arr" else "asc")
    assert r.order == resolved
    assert sorted(i.id for i in r.items) == sorted(matching)  # a permutation of the filtered set
    assert r.total_matching == len(matching)
    for item in r.items:
        assert item.value == matching[item.id]

    def key(item_id: str) -> tuple[bool, float, str]:
        v = matching[item_id]
        if v is None:
            return (True, 0.0, item_id)
        return (False, -v if resolved == "desc" else v, item_id)

    assert [i.id for i in r.items] == sorted(matching, key=key)
    assert [i.rank for i in r.items] == list(range(1, len(r.items) + 1))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=activity_lists,
    metric=st.sampled_from(("margin_leak", "value_cost_index", "cost", "value_score")),
    order=st.sampled_from((None, "asc", "desc")),
)
def test_activity_ranking_is_sorted_permutation(
    data: list[tuple[float, float]], metric: str, order: str | None
) -> None:
    with Session(_engine()) as s:
        s.add_all(_rows(data))
        s.flush()
        r = rank(session=s, entity="activities", metric=metric, limit=1000, order=order)  # type: ignore[arg-type]
        s.rollback()
    scores = {a.id: a for a in score_rows(_rows(data))}
    get = {
        "margin_leak": lambda a: a.margin_leak,
        "value_cost_index": lambda a: a.value_cost_index,
        "cost": lambda a: a.annual_cost,
        "value_score": lambda a: a.value_score,
    }[metric]
    resolved = r.order
    assert sorted(i.id for i in r.items) == sorted(scores)

    def key(item_id: str) -> tuple[bool, float, str]:
        v = get(scores[item_id])
        if v is None:
            return (True, 0.0, item_id)
        return (False, -v if resolved == "desc" else v, item_id)

    assert [i.id for i in r.items] == sorted(scores, key=key)
