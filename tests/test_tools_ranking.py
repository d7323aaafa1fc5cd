"""rank: golden orders worked out by hand, filters, errors, the account-metric registry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

import factories as f
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from tools import ranking
from tools.errors import ToolInputError
from tools.ranking import AccountMetric, AccountMetricContext, rank, register_account_metric

approx = pytest.approx


def _golden(session: Session) -> Session:
    f.golden_activities(session)
    f.golden_initiatives(session)
    f.golden_accounts(session)
    session.commit()
    return session


@pytest.fixture
def golden(session: Session) -> Session:
    return _golden(session)


def _pairs(result: ranking.RankResult) -> list[tuple[str, object]]:
    return [(i.id, i.value) for i in result.items]


# ---------------------------------------------------------------------------- accounts
# as_of = 2026-03-31 (app_meta). Default filter status = active → ACME-0004 (churned) left out.


def test_days_to_renewal_soonest_first(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="days_to_renewal")
    # ACME-0005 renews 2026-03-21: 21 − 31 = −10 (overdue)
    # ACME-0001 renews 2026-04-30: 30 days of April after 03-31 = 30
    # ACME-0002 renews 2026-06-29: 30 (Apr) + 31 (May) + 29 (Jun) = 90
    # ACME-0003 has no active subscription → null, listed last
    assert _pairs(r) == [("ACME-0005", -10), ("ACME-0001", 30), ("ACME-0002", 90), ("ACME-0003", None)]
    assert r.order == "asc" and r.as_of == dt.date(2026, 3, 31)
    assert r.total_matching == 4 and r.missing_values == 1
    assert r.filters == {"status": ["active"]}
    assert [i.rank for i in r.items] == [1, 2, 3, 4]


def test_days_to_renewal_desc_keeps_nulls_last(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="days_to_renewal", order="desc")
    assert _pairs(r) == [("ACME-0002", 90), ("ACME-0001", 30), ("ACME-0005", -10), ("ACME-0003", None)]


def test_arr_ties_break_by_id(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="arr")
    # 0001 and 0003 both 120,000 → id order; then 0005 50,000; 0002 20,000.
    assert _pairs(r) == [
        ("ACME-0001", 120_000.0),
        ("ACME-0003", 120_000.0),
        ("ACME-0005", 50_000.0),
        ("ACME-0002", 20_000.0),
    ]
    assert r.items[0].context["segment"] == "Enterprise"
    assert r.items[0].name == "Acme Alpha"


def test_tenure_days(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="tenure_days")
    # 0001: 2023-03-31 → 2026-03-31 = 365 + 366 (2024) + 365 = 1096
    # 0002: 2025-03-31 → 2026-03-31 = 365
    # 0005: 2025-12-31 → 2026-03-31 = 31 + 28 + 31 = 90
    # 0003: 2026-01-01 → 2026-03-31 = 30 + 28 + 31 = 89
    assert _pairs(r) == [("ACME-0001", 1096), ("ACME-0002", 365), ("ACME-0005", 90), ("ACME-0003", 89)]


def test_tenure_of_churned_account_stops_at_churn(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="tenure_days", filters={"status": "churned"})
    # 0004: 2024-12-31 → churned 2025-12-31 = 365 (not 455 to as_of)
    assert _pairs(r) == [("ACME-0004", 365)]


def test_open_tickets_point_in_time(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="open_tickets")
    # 0001: high + urgent open (the low one closed 2026-01-09) = 2
    # 0003: one opened on as_of counts; one opened 2026-04-02 is in the future = 1
    # 0005: opened 03-01, closed 04-10 — still open on 03-31 = 1
    # 0002: none = 0;  ties (0003, 0005) by id
    assert _pairs(r) == [("ACME-0001", 2), ("ACME-0003", 1), ("ACME-0005", 1), ("ACME-0002", 0)]


def test_explicit_as_of_moves_day_counts(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="days_to_renewal", as_of=dt.date(2026, 4, 30))
    # 0001: 2026-04-30 − 2026-04-30 = 0; 0002: 31 + 29 = 60; 0005: −(10 + 30) = −40
    assert _pairs(r)[:3] == [("ACME-0005", -40), ("ACME-0001", 0), ("ACME-0002", 60)]


def test_account_filters_and_limit(golden: Session) -> None:
    r = rank(
        session=golden,
        entity="accounts",
        metric="arr",
        filters={"segment": "enterprise", "region": ["NA", "EMEA"]},
        limit=1,
    )
    assert r.filters == {"region": ["EMEA", "NA"], "segment": ["Enterprise"], "status": ["active"]}
    assert _pairs(r) == [("ACME-0001", 120_000.0)]
    assert r.total_matching == 2
    assert r.inputs.limit == 1


def test_all_statuses(golden: Session) -> None:
    r = rank(session=golden, entity="accounts", metric="arr", filters={"status": ["active", "churned"]})
    assert r.total_matching == 5


# ---------------------------------------------------------------------------- activities


def test_activities_by_margin_leak(golden: Session) -> None:
    r = rank(session=golden, entity="activities", metric="margin_leak")
    # See test_tools_activities: A1 leaks 300, the rest 0 → by id.
    assert _pairs(r) == [("A1", 300.0), ("A2", 0.0), ("A3", 0.0), ("A4", 0.0)]
    assert r.period == "2026" and r.filters == {"period": ["2026"]}
    assert r.items[0].context["quadrant"] == "eliminate_or_restructure"


def test_activities_by_value_cost_index_lowest_first(golden: Session) -> None:
    r = rank(session=golden, entity="activities", metric="value_cost_index")
    # .25 (A1), 1.0 (A2), 2.0 (A3), 2.0 (A4): tie → id
    assert _pairs(r) == [("A1", 0.25), ("A2", 1.0), ("A3", 2.0), ("A4", 2.0)]
    assert r.order == "asc"


def test_activities_by_performance_gap(golden: Session) -> None:
    r = rank(session=golden, entity="activities", metric="performance_gap")
    # A2 .25, A1 .10, A3 −.20, A4 null last
    assert [i.id for i in r.items] == ["A2", "A1", "A3", "A4"]
    assert [i.value for i in r.items][:3] == [approx(0.25), approx(0.10), approx(-0.20)]
    assert r.items[3].value is None


def test_activity_filters_keep_shares_of_whole_period(golden: Session) -> None:
    r = rank(session=golden, entity="activities", metric="cost", filters={"kind": "support"})
    # A3 200, A4 100; the shares are still of the whole period (ΣC = 1000).
    assert _pairs(r) == [("A3", 200.0), ("A4", 100.0)]
    assert r.items[0].context["cost_share"] == approx(0.2)
    assert r.total_matching == 2


def test_activities_other_period(golden: Session) -> None:
    r = rank(session=golden, entity="activities", metric="cost", filters={"period": "2025"})
    assert _pairs(r) == [("P1", 500.0)]


def test_activities_in_two_periods_is_an_error(golden: Session) -> None:
    with pytest.raises(ToolInputError, match="one period"):
        rank(session=golden, entity="activities", metric="cost", filters={"period": ["2025", "2026"]})


# ---------------------------------------------------------------------------- initiatives


def test_initiatives_by_roi(golden: Session) -> None:
    r = rank(session=golden, entity="initiatives", metric="roi")
    # roi = benefit / cost: INI-1 250/100 = 2.5; INI-3 100/50 = 2.0; INI-2 600/400 = 1.5;
    # INI-4 cost 0 → null, last.
    assert _pairs(r) == [("INI-1", 2.5), ("INI-3", 2.0), ("INI-2", 1.5), ("INI-4", None)]


def test_initiatives_by_net_benefit(golden: Session) -> None:
    r = rank(session=golden, entity="initiatives", metric="net_benefit")
    # benefit − cost: INI-2 600 − 400 = 200; INI-1 250 − 100 = 150; INI-4 80 − 0 = 80; INI-3 100 − 50 = 50
    assert _pairs(r) == [("INI-2", 200.0), ("INI-1", 150.0), ("INI-4", 80.0), ("INI-3", 50.0)]


def test_initiatives_payback_and_filters(golden: Session) -> None:
    r = rank(session=golden, entity="initiatives", metric="payback_years", filters={"status": "proposed"})
    # cost / benefit: INI-4 0/80 = 0; INI-1 100/250 = 0.4; INI-3 50/100 = 0.5 (INI-2 is approved)
    assert _pairs(r) == [("INI-4", 0.0), ("INI-1", 0.4), ("INI-3", 0.5)]
    r = rank(session=golden, entity="initiatives", metric="roi", filters={"porter_category": "service"})
    assert _pairs(r) == [("INI-2", 1.5)]
    assert r.items[0].context["activity"] == "Customer support"


# ---------------------------------------------------------------------------- errors


def test_unknown_metric_lists_valid_ones(golden: Session) -> None:
    with pytest.raises(ToolInputError) as exc:
        rank(session=golden, entity="activities", metric="foo")
    assert str(exc.value) == (
        'unknown metric "foo" for activities; valid: cost, margin_leak, non_value_added_cost, '
        "performance_gap, value_cost_index, value_score"
    )


def test_unknown_metric_suggests_close_one(golden: Session) -> None:
    with pytest.raises(ToolInputError, match='did you mean "margin_leak"'):
        rank(session=golden, entity="activities", metric="margin_leek")


def test_unknown_entity(golden: Session) -> None:
    with pytest.raises(ToolInputError) as exc:
        rank(session=golden, entity="customers", metric="arr")  # type: ignore[arg-type]
    assert str(exc.value) == 'unknown entity "customers"; valid: accounts, activities, initiatives'


def test_singular_entity_is_accepted(golden: Session) -> None:
    assert rank(session=golden, entity="account", metric="arr").entity == "accounts"  # type: ignore[arg-type]


def test_unknown_filter_key(golden: Session) -> None:
    with pytest.raises(ToolInputError) as exc:
        rank(session=golden, entity="accounts", metric="arr", filters={"segmnt": "SMB"})
    assert str(exc.value) == (
        'unknown filter "segmnt" for accounts; valid: industry, owner, plan, region, segment, status; '
        'did you mean "segment"?'
    )


def test_invalid_filter_value_lists_values_in_data(golden: Session) -> None:
    with pytest.raises(ToolInputError) as exc:
        rank(session=golden, entity="accounts", metric="arr", filters={"segment": "Enterprize"})
    assert str(exc.value) == (
        'no accounts with segment "Enterprize"; valid segment values: "Enterprise", "Mid-Market", "SMB"; '
        'did you mean "Enterprise"?'
    )


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_out_of_range(golden: Session, limit: int) -> None:
    with pytest.raises(ToolInputError, match="limit must be between 1 and 1000"):
        rank(session=golden, entity="accounts", metric="arr", limit=limit)


def test_bad_order(golden: Session) -> None:
    with pytest.raises(ToolInputError, match='unknown order "up"; valid: desc, asc'):
        rank(session=golden, entity="accounts", metric="arr", order="up")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- registry


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = dict(ranking.ACCOUNT_METRICS)
    yield
    ranking.ACCOUNT_METRICS.clear()
    ranking.ACCOUNT_METRICS.update(saved)


def test_registered_compute_metric_ranks_filtered_set(golden: Session, clean_registry: None) -> None:
    seen: list[list[str]] = []

    def fake_probability(ctx: AccountMetricContext) -> Mapping[str, float | None]:
        ids = ctx.ids()
        seen.append(ids)
        table = {"ACME-0001": 0.2, "ACME-0002": 0.7, "ACME-0003": 0.7, "ACME-0005": None}
        return {i: table.get(i) for i in ids}

    register_account_metric(
        AccountMetric(
            "test_probability",
            "a stand-in for a churn probability",
            "desc",
            "probability",
            compute=fake_probability,
            context=lambda ctx, ids: {i: {"band": "high"} for i in ids},
        )
    )
    r = rank(session=golden, entity="accounts", metric="test_probability")
    assert seen == [["ACME-0001", "ACME-0002", "ACME-0003", "ACME-0005"]]  # active only
    # 0.7 tie → id; 0.2; None last
    assert _pairs(r) == [("ACME-0002", 0.7), ("ACME-0003", 0.7), ("ACME-0001", 0.2), ("ACME-0005", None)]
    assert r.items[0].context["band"] == "high"
    assert r.total_matching == 4 and r.missing_values == 1
    assert "70.0%" in r.explanation
    with pytest.raises(ToolInputError, match="test_probability"):
        rank(session=golden, entity="accounts", metric="nope")


def test_registered_sql_metric(golden: Session, clean_registry: None) -> None:
    register_account_metric(
        AccountMetric("half_arr", "arr / 2", "desc", "currency", sql=lambda ctx: ranking.Account.arr / 2)
    )
    r = rank(session=golden, entity="accounts", metric="half_arr", limit=1)
    assert _pairs(r) == [("ACME-0001", 60_000.0)]


def test_registered_grouped_metric_fills_missing(golden: Session, clean_registry: None) -> None:
    from sqlalchemy import func, select

    from crm.models import SupportTicket

    register_account_metric(
        AccountMetric(
            "all_tickets",
            "tickets ever opened",
            "desc",
            "count",
            grouped=lambda ctx: select(SupportTicket.account_id, func.count()).group_by(
                SupportTicket.account_id
            ),
            missing_as=0,
        )
    )
    r = rank(session=golden, entity="accounts", metric="all_tickets")
    # 0001: 3 tickets, 0003: 2, 0005: 1, 0002: none → 0 (not null)
    assert _pairs(r) == [("ACME-0001", 3), ("ACME-0003", 2), ("ACME-0005", 1), ("ACME-0002", 0)]
    assert r.missing_values == 0


def test_metric_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        AccountMetric("x", "x", "desc", "count")
    with pytest.raises(ValueError, match="exactly one"):
        AccountMetric("x", "x", "desc", "count", sql=lambda ctx: ranking.Account.arr, compute=lambda ctx: {})


def test_duplicate_registration_refused(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_account_metric(
            AccountMetric("arr", "other", "asc", "currency", sql=lambda ctx: ranking.Account.arr)
        )


def test_churn_metrics_are_rankable() -> None:
    # that tools/churn never imports tools.ranking is checked with every other import's direction
    # in tests/test_layers.py
    assert {"churn_probability", "arr_at_risk", "health", "arr"} <= set(ranking.account_metrics())


# ---------------------------------------------------------------------------- determinism, engines


def test_same_args_same_json(golden: Session) -> None:
    for entity, metric in [
        ("accounts", "days_to_renewal"),
        ("activities", "margin_leak"),
        ("initiatives", "roi"),
    ]:
        a = rank(session=golden, entity=entity, metric=metric).model_dump_json()  # type: ignore[arg-type]
        golden.expire_all()
        b = rank(session=golden, entity=entity, metric=metric).model_dump_json()  # type: ignore[arg-type]
        assert a == b


def test_account_metrics_on_every_engine(any_engine: Engine) -> None:
    with make_sessionmaker(any_engine)() as s:
        _golden(s)
        assert _pairs(rank(session=s, entity="accounts", metric="days_to_renewal")) == [
            ("ACME-0005", -10),
            ("ACME-0001", 30),
            ("ACME-0002", 90),
            ("ACME-0003", None),
        ]
        assert _pairs(rank(session=s, entity="accounts", metric="tenure_days"))[0] == ("ACME-0001", 1096)
        assert _pairs(rank(session=s, entity="accounts", metric="open_tickets"))[:2] == [
            ("ACME-0001", 2),
            ("ACME-0003", 1),
        ]
        with pytest.raises(ToolInputError, match="Enterprise"):
            rank(session=s, entity="accounts", metric="arr", filters={"segment": "Enterprize"})
