"""tools/analysis: the five-step value-chain analysis reuses score_activities and rank figures."""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import factories as f
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from crm.demo import DEFAULT_AS_OF, generate_demo
from crm.migrate import upgrade
from crm.models import Initiative, ValueChainActivity
from tools.activities import score_activities
from tools.analysis import ValueChainAnalysis, value_chain_analysis
from tools.analysis.periods import next_period_end, period_bounds
from tools.errors import ToolInputError
from tools.ranking import rank

D = dt.date


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('analysis') / 'demo.db'}")
    upgrade(engine)
    generate_demo(engine, accounts=120, seed=5, as_of=DEFAULT_AS_OF)
    yield engine
    engine.dispose()


@pytest.fixture
def demo(demo_engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(demo_engine)() as s:
        yield s


@pytest.fixture
def demo_result(demo: Session) -> ValueChainAnalysis:
    return value_chain_analysis(session=demo)


# ---------------------------------------------------------------- figures equal the tools'


def test_steps_1_and_2_copy_score_activities(demo: Session, demo_result: ValueChainAnalysis) -> None:
    scores = score_activities(session=demo, period=demo_result.period)
    by_id = {s.id: s for s in scores.activities}
    rows = {
        r.id: r
        for r in demo.scalars(select(ValueChainActivity).where(ValueChainActivity.period == scores.period))
    }
    primary, support = demo_result.step1_primary.activities, demo_result.step2_support.activities
    assert {a.id for a in primary} == {s.id for s in scores.activities if s.kind == "primary"}
    assert {a.id for a in support} == {s.id for s in scores.activities if s.kind == "support"}
    for a in [*primary, *support]:
        s = by_id[a.id]
        assert (a.annual_cost, a.value_score, a.cost_share, a.value_share, a.margin_leak, a.quadrant) == (
            s.annual_cost,
            s.value_score,
            s.cost_share,
            s.value_share,
            s.margin_leak,
            s.quadrant,
        )
        assert a.performance_gap == s.performance_gap and a.owner_team == s.owner_team
        assert a.systems == rows[a.id].systems
    for a in primary:
        s = by_id[a.id]
        assert (a.performance_actual, a.performance_target, a.value_cost_index) == (
            s.performance_actual,
            s.performance_target,
            s.value_cost_index,
        )
    for a in support:
        assert sorted(e.id for e in a.enables) == sorted(rows[a.id].enables)
        for e in a.enables:
            assert a.id in demo_result.step2_support.enablement[e.id]
    assert demo_result.total_cost == scores.total_cost
    assert demo_result.step1_primary.missing_categories == []


def test_step3_equals_rank_and_score_activities(demo: Session, demo_result: ValueChainAnalysis) -> None:
    s3, period = demo_result.step3_costs, demo_result.period
    scores = score_activities(session=demo, period=period)
    by_leak = rank(
        session=demo, entity="activities", metric="margin_leak", filters={"period": period}, limit=100
    )
    by_gap = rank(
        session=demo, entity="activities", metric="performance_gap", filters={"period": period}, limit=100
    )
    assert [(x.rank, x.id, x.margin_leak) for x in s3.margin_leak] == [
        (i.rank, i.id, i.value) for i in by_leak.items if i.value
    ]
    assert [(b.rank, b.id, b.performance_gap) for b in s3.bottlenecks] == [
        (i.rank, i.id, i.value) for i in by_gap.items if i.value is not None and i.value > 0
    ]
    assert s3.total_margin_leak == scores.total_margin_leak
    assert s3.quadrant_counts == scores.quadrant_counts
    assert (s3.total_value_added_cost, s3.total_non_value_added_cost, s3.total_unused_capacity_cost) == (
        scores.total_value_added_cost,
        scores.total_non_value_added_cost,
        scores.total_unused_capacity_cost,
    )
    split = {s.id: s for s in scores.activities if s.value_added_cost is not None}
    assert {x.id for x in s3.activity_based} == set(split)
    for x in s3.activity_based:
        assert x.value_added_cost == split[x.id].value_added_cost
        assert x.non_value_added_cost == split[x.id].non_value_added_cost
    assert sum(x.share_of_total_leak for x in s3.margin_leak) == pytest.approx(1.0)


def test_step4_equals_rank_initiatives(demo: Session, demo_result: ValueChainAnalysis) -> None:
    s4, period = demo_result.step4_opportunities, demo_result.period
    by_roi = rank(session=demo, entity="initiatives", metric="roi", filters={"period": period}, limit=1000)
    by_net = rank(
        session=demo, entity="initiatives", metric="net_benefit", filters={"period": period}, limit=1000
    )
    assert [(i.roi_rank, i.id, i.roi) for i in s4.initiatives] == [
        (x.rank, x.id, x.value) for x in by_roi.items
    ]
    net = {x.id: (x.rank, x.value) for x in by_net.items}
    assert all((i.net_benefit_rank, i.net_benefit) == net[i.id] for i in s4.initiatives)
    rows = {r.id: r for r in demo.scalars(select(Initiative))}
    for i in s4.initiatives:
        r = rows[i.id]
        assert (i.type, i.advantage, i.owner, i.due, i.status) == (
            r.type,
            r.advantage,
            r.owner,
            r.due,
            r.status,
        )
    # The demo's one unaddressed high-cost activity: campaigns, with non-value-added driver use.
    assert [(x.activity_id, x.type, x.owner, x.due) for x in s4.suggestions] == [
        ("MKT-CAMPAIGNS-2026", "streamline", "Marketing", D(2027, 12, 31))
    ]


def test_step5_flags_initiatives_without_an_advantage(demo_result: ValueChainAnalysis) -> None:
    s4, s5 = demo_result.step4_opportunities, demo_result.step5_advantage
    assert [x.initiative_id for x in s5.links] == [i.id for i in s4.initiatives]
    assert s5.decorative == [i.id for i in s4.initiatives if i.advantage is None]
    assert s5.decorative  # the demo has one (vendor consolidation)
    assert sum(t.est_annual_benefit for t in s5.totals) == pytest.approx(s4.open_est_annual_benefit)
    assert "likely decorative" in s5.narrative and demo_result.period in s5.narrative


def test_same_database_same_json(demo: Session, demo_result: ValueChainAnalysis) -> None:
    assert value_chain_analysis(session=demo).model_dump_json() == demo_result.model_dump_json()
    prior = value_chain_analysis(session=demo, period="2025")
    assert prior.period == "2025" and prior.crm_view.window_end == D(2025, 12, 31)


def test_crm_view_maps_areas_by_porter_category(demo_result: ValueChainAnalysis) -> None:
    areas = {a.area: [x.id for x in a.activities] for a in demo_result.crm_view.areas}
    assert areas == {
        "marketing": ["MKT-CAMPAIGNS-2026", "MKT-EVENTS-2026"],
        "sales": ["SAL-DIRECT-2026"],
        "service_support": ["SRV-CSM-2026", "SRV-SUPPORT-2026"],
        "it_is": ["INF-BILLING-2026", "INF-CRMDATA-2026", "TEC-RND-2026"],
    }
    view = demo_result.crm_view
    assert (view.window_start, view.window_end) == (D(2026, 1, 1), DEFAULT_AS_OF)
    metrics = {m.name for a in view.areas for m in a.metrics}
    assert {"ticket_resolution_rate", "avg_csat", "win_rate", "nps", "invoice_issue_rate"} <= metrics


def test_unknown_period_is_a_tool_input_error(demo: Session) -> None:
    with pytest.raises(ToolInputError, match="valid: 2026, 2025"):
        value_chain_analysis(session=demo, period="2031")


# ---------------------------------------------------------------- hand-checked small data


@pytest.fixture
def golden(session: Session) -> Session:
    f.golden_activities(session)
    f.golden_initiatives(session)
    f.set_as_of(session, D(2026, 3, 31))
    session.commit()
    return session


def test_golden_steps(golden: Session) -> None:
    r = value_chain_analysis(session=golden)
    assert r.period == "2026" and r.inputs.period_defaulted
    assert [a.id for a in r.step1_primary.activities] == ["A1", "A2"]  # operations before service
    assert r.step1_primary.missing_categories == [
        "inbound_logistics",
        "outbound_logistics",
        "marketing_sales",
    ]
    assert r.step1_primary.below_target == 2
    assert r.step2_support.unlinked_support == [
        "A4",
        "A3",
    ]  # firm_infrastructure first and r.step2_support.unsupported_primary == ["A1", "A2"]
    assert [(x.id, x.margin_leak) for x in r.step3_costs.margin_leak] == [("A1", 300.0)]
    assert [(b.id, b.performance_gap) for b in r.step3_costs.bottlenecks] == [("A2", 0.25), ("A1", 0.1)]
    assert r.step3_costs.activities_without_performance_data == ["A4"]
    assert r.step3_costs.driver_cost_coverage == 0.8  # A1, A2, A4 carry drivers: 800 of 1000
    s4 = r.step4_opportunities
    assert [(i.id, i.roi_rank, i.net_benefit_rank) for i in s4.initiatives] == [
        ("INI-1", 1, 2),
        ("INI-3", 2, 4),
        ("INI-2", 3, 1),
        ("INI-4", 4, 3),
    ]
    assert s4.initiatives[-1].roi is None  # est_cost 0
    assert (s4.open_initiatives, s4.open_est_cost, s4.open_est_annual_benefit) == (4, 550.0, 1030.0)
    assert s4.suggestions == []  # A1 and A2 have initiatives
    s5 = r.step5_advantage
    assert s5.decorative == ["INI-4"]
    totals = {t.advantage: (t.initiatives, t.est_annual_benefit) for t in s5.totals}
    assert totals == {"cost": (2, 350.0), "differentiation": (1, 600.0), "none": (1, 80.0)}
    areas = {a.area: [x.id for x in a.activities] for a in r.crm_view.areas}
    assert areas["service_support"] == ["A2"] and areas["it_is"] == ["A3", "A4"]
    assert r.crm_view.unmapped_activities == ["A1"]


def test_enables_resolve_to_primary_activities_of_the_period(golden: Session) -> None:
    golden.get_one(ValueChainActivity, "A3").enables = ["A2", "A1", "P1", "NOPE"]
    golden.commit()
    r = value_chain_analysis(session=golden)
    a3 = next(a for a in r.step2_support.activities if a.id == "A3")
    assert [e.id for e in a3.enables] == ["A1", "A2"]
    assert a3.unresolved_enables == ["NOPE", "P1"]  # P1 is a 2025 activity
    assert r.step2_support.enablement == {"A1": ["A3"], "A2": ["A3"]}
    assert [x.id for x in r.step1_primary.activities[0].enabled_by] == ["A3"]
    assert "NOPE" in r.step2_support.summary


@pytest.mark.parametrize(
    ("cancel", "activity", "kind", "addressable"),
    [
        ("INI-1", "A1", "streamline", 300.0),  # AQ 100 > SQ 80: over-use; leak 300 > NVA 80
        ("INI-2", "A2", "renegotiate", 200.0),  # AQ 60 < SQ 100: 40 unused tickets x 5
    ],
)
def test_suggestions_for_activities_left_without_initiative(
    golden: Session, cancel: str, activity: str, kind: str, addressable: float
) -> None:
    golden.get_one(Initiative, cancel).status = "cancelled"
    golden.commit()
    s4 = value_chain_analysis(session=golden).step4_opportunities
    assert [(x.activity_id, x.type, x.addressable_cost, x.advantage, x.due) for x in s4.suggestions] == [
        (activity, kind, addressable, "cost", D(2027, 12, 31))
    ]
    assert next(i for i in s4.initiatives if i.id == cancel).open is False


def test_unnecessary_activity_is_suggested_for_elimination(session: Session) -> None:
    f.activity(
        session,
        "X1",
        annual_cost=900.0,
        value_score=1.0,
        actual_quantity=9.0,
        std_price=100.0,
        necessary=False,
    )
    f.activity(session, "X2", annual_cost=100.0, value_score=9.0)
    session.commit()
    r = value_chain_analysis(session=session)
    assert [(x.activity_id, x.type) for x in r.step4_opportunities.suggestions] == [("X1", "eliminate")]
    assert r.step4_opportunities.initiatives == []
    assert "No initiative is recorded" in r.step5_advantage.narrative


def test_no_activities_is_a_tool_input_error(session: Session) -> None:
    with pytest.raises(ToolInputError, match="no value-chain activities"):
        value_chain_analysis(session=session)


def test_crm_area_metrics_are_counted_over_the_window(session: Session) -> None:
    f.set_as_of(session, D(2026, 3, 31))
    f.activity(session, "S1", kind="primary", porter_category="service", period="2026-Q1")
    f.account(session, "ACME-0001", created_at=D(2025, 6, 1), arr=1000.0)
    f.account(session, "ACME-0002", created_at=D(2026, 2, 1), arr=500.0)
    f.account(session, "ACME-0003", created_at=D(2025, 1, 1), status="churned", churned_at=D(2026, 2, 15))
    f.ticket(session, opened_at=D(2026, 1, 10), closed_at=D(2026, 1, 14), csat=5)
    f.ticket(session, opened_at=D(2026, 2, 1), closed_at=D(2026, 2, 7), csat=2)
    f.ticket(session, opened_at=D(2026, 3, 20), closed_at=None)
    f.ticket(session, opened_at=D(2025, 12, 1), closed_at=D(2026, 1, 2), csat=4)  # opened before the window
    f.nps(session, responded_at=D(2026, 2, 1), score=10)
    f.nps(session, responded_at=D(2026, 2, 2), score=3)
    f.nps(session, responded_at=D(2026, 2, 3), score=8)
    f.opportunity(session, type="new", stage="closed_won", amount=300.0, close_date=D(2026, 3, 1))
    f.opportunity(session, type="new", stage="closed_lost", amount=700.0, close_date=D(2026, 3, 2))
    f.invoice(session, due_date=D(2026, 1, 31), status="paid")
    f.invoice(session, due_date=D(2026, 2, 28), status="failed")
    f.usage(session, "ACME-0001", week_start=D(2026, 3, 23))
    session.commit()
    view = value_chain_analysis(session=session).crm_view
    assert (view.window_start, view.window_end) == (D(2026, 1, 1), D(2026, 3, 31))
    m = {x.name: x.value for a in view.areas for x in a.metrics}
    assert m["tickets_opened"] == 3
    assert m["ticket_resolution_rate"] == pytest.approx(2 / 3)
    assert m["avg_resolution_days"] == 5.0  # (4 + 6) / 2
    assert m["avg_csat"] == pytest.approx(11 / 3)  # closed in the window: 5, 2, 4
    assert m["logo_churn_rate"] == 0.5  # ACME-0001 and -0003 active on Jan 1; -0003 churned
    assert m["new_accounts"] == 1
    assert m["nps"] == pytest.approx(100 * (1 - 1) / 3)
    assert m["win_rate"] == 0.5 and m["won_amount"] == 300.0
    assert m["active_arr"] == 1500.0
    assert m["invoice_issue_rate"] == 0.5
    assert m["usage_data_coverage"] == 0.5  # 1 of the 2 accounts active on Mar 31


def test_period_bounds() -> None:
    assert period_bounds("2026") == (D(2026, 1, 1), D(2026, 12, 31))
    assert period_bounds("FY2025") == (D(2025, 1, 1), D(2025, 12, 31))
    assert period_bounds("2026-Q3") == (D(2026, 7, 1), D(2026, 9, 30))
    assert period_bounds("2026-H1") == (D(2026, 1, 1), D(2026, 6, 30))
    assert period_bounds("2026-02") == (D(2026, 2, 1), D(2026, 2, 28))
    assert period_bounds("spring") is None
    assert next_period_end("2026-Q4") == D(2027, 3, 31)
    assert next_period_end("2026-12") == D(2027, 1, 31)
    assert next_period_end("2026") == D(2027, 12, 31)


def test_same_result_on_every_engine(any_engine: Engine, tmp_path: Path) -> None:
    reference = make_engine(f"sqlite:///{tmp_path / 'ref.db'}")
    upgrade(reference)
    for engine in (any_engine, reference):
        generate_demo(engine, accounts=60, seed=3, as_of=DEFAULT_AS_OF)
    docs = []
    for engine in (any_engine, reference):
        with make_sessionmaker(engine)() as s:
            docs.append(value_chain_analysis(session=s).model_dump_json())
    reference.dispose()
    assert docs[0] == docs[1]


def test_docstring_is_the_tool_description() -> None:
    doc = inspect.getdoc(value_chain_analysis) or ""
    summary, _, rest = doc.partition("\n")
    assert summary.endswith(".") and len(summary) <= 100
    assert re.findall(r"^    (\w+):", rest.split("Args:\n", 1)[1], flags=re.MULTILINE) == ["period"]
    params = inspect.signature(value_chain_analysis).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
