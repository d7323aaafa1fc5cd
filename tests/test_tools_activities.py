"""score_activities: golden values worked out by hand, edge cases, determinism, errors."""

from __future__ import annotations

import factories as f
import pytest
from sqlalchemy.orm import Session

from tools.activities import abm_split, performance_gap, score_activities
from tools.errors import ToolInputError

approx = pytest.approx

# Golden period "2026" (tests/factories.golden_activities):
#   ΣC = 400 + 300 + 200 + 100 = 1000        Σv = 2 + 6 + 8 + 4 = 20        n = 4, 1/n = 0.25
#
#   id   C    v   cost_share   value_share  index = vs/cs     fair = ΣC·vs     leak = max(0, C − fair)
#   A1  400   2   400/1000=.4  2/20=.1      .1/.4 = 0.25      1000·.1 = 100    400 − 100 = 300
#   A2  300   6   .3           6/20=.3      .3/.3 = 1.0       300              0
#   A3  200   8   .2           8/20=.4      .4/.2 = 2.0       400              max(0, −200) = 0
#   A4  100   4   .1           4/20=.2      .2/.1 = 2.0       200              max(0, −100) = 0
#
# Quadrants (high = share ≥ .25):
#   A1 value .1 low,  cost .4 high → eliminate_or_restructure
#   A2 value .3 high, cost .3 high → optimize
#   A3 value .4 high, cost .2 low  → invest_and_scale
#   A4 value .2 low,  cost .1 low  → maintain
#
# Performance gap:
#   A1 higher_is_better, actual 90, target 100: (100 − 90)/100 = 0.10 (underperforming)
#   A2 lower_is_better,  actual 30, target 24:  (30 − 24)/24  = 0.25 (underperforming)
#   A3 higher_is_better, actual 12, target 10:  (10 − 12)/10  = −0.20 (beats target)
#   A4 no metric → null
#
# Activity-based split (SQ, AQ, SP):
#   A1 necessary, 80, 100, 4:   AQ ≥ SQ → value-added 80·4 = 320, non-value-added (100−80)·4 = 80, unused 0
#   A2 necessary, 100, 60, 5:   AQ < SQ → value-added 60·5 = 300, non-value-added 0,
#                               unused committed capacity (100−60)·5 = 200
#   A3 no driver → null, null, null
#   A4 unnecessary, AQ 50, SP 2 → value-added 0, non-value-added 50·2 = 100, unused 0
#
# Order by leak desc then id: A1 (300), then A2, A3, A4 tied at 0 → by id.

EXPECTED = {
    "A1": dict(
        cost_share=0.4,
        value_share=0.1,
        value_cost_index=0.25,
        margin_leak=300.0,
        performance_gap=0.10,
        quadrant="eliminate_or_restructure",
        value_added_cost=320.0,
        non_value_added_cost=80.0,
        unused_capacity_cost=0.0,
    ),
    "A2": dict(
        cost_share=0.3,
        value_share=0.3,
        value_cost_index=1.0,
        margin_leak=0.0,
        performance_gap=0.25,
        quadrant="optimize",
        value_added_cost=300.0,
        non_value_added_cost=0.0,
        unused_capacity_cost=200.0,
    ),
    "A3": dict(
        cost_share=0.2,
        value_share=0.4,
        value_cost_index=2.0,
        margin_leak=0.0,
        performance_gap=-0.20,
        quadrant="invest_and_scale",
        value_added_cost=None,
        non_value_added_cost=None,
        unused_capacity_cost=None,
    ),
    "A4": dict(
        cost_share=0.1,
        value_share=0.2,
        value_cost_index=2.0,
        margin_leak=0.0,
        performance_gap=None,
        quadrant="maintain",
        value_added_cost=0.0,
        non_value_added_cost=100.0,
        unused_capacity_cost=0.0,
    ),
}


@pytest.fixture
def golden(session: Session) -> Session:
    f.golden_activities(session)
    session.commit()
    return session


def test_golden_period_defaults_to_latest(golden: Session) -> None:
    r = score_activities(session=golden)
    assert r.period == "2026"
    assert r.inputs.period == "2026" and r.inputs.period_defaulted is True
    assert r.n == 4
    assert r.total_cost == 1000.0
    assert r.total_value_score == 20.0
    # Σ leak = 300; Σ value-added = 320 + 300 + 0 = 620; Σ non-value-added = 80 + 0 + 100 = 180;
    # Σ unused = 200 (nulls of A3 count as 0 in totals).
    assert r.total_margin_leak == approx(300.0)
    assert r.total_value_added_cost == approx(620.0)
    assert r.total_non_value_added_cost == approx(180.0)
    assert r.total_unused_capacity_cost == approx(200.0)
    assert r.quadrant_counts == {
        "invest_and_scale": 1,
        "optimize": 1,
        "eliminate_or_restructure": 1,
        "maintain": 1,
    }


def test_golden_per_activity_figures(golden: Session) -> None:
    r = score_activities(session=golden, period="2026")
    assert r.inputs.period_defaulted is False
    assert [a.id for a in r.activities] == ["A1", "A2", "A3", "A4"]
    for a in r.activities:
        for field, expected in EXPECTED[a.id].items():
            got = getattr(a, field)
            if expected is None or isinstance(expected, str):
                assert got == expected, (a.id, field)
            else:
                assert got == approx(expected, rel=1e-12, abs=1e-12), (a.id, field)


def test_golden_explanation_names_the_leak(golden: Session) -> None:
    text = score_activities(session=golden).explanation
    assert "2026 (latest period)" in text
    assert "300" in text and "Order fulfilment" in text and "30% of cost" in text


def test_single_activity_period(golden: Session) -> None:
    # P1 alone in 2025: cost share 500/500 = 1, value share 5/5 = 1, index 1/1 = 1,
    # leak max(0, 500 − 500·1) = 0; both shares ≥ 1/1 → optimize.
    r = score_activities(session=golden, period="2025")
    (a,) = r.activities
    assert (a.cost_share, a.value_share, a.value_cost_index, a.margin_leak) == (1.0, 1.0, 1.0, 0.0)
    assert a.quadrant == "optimize"


def test_period_case_insensitive_match(session: Session) -> None:
    f.activity(session, "Q1", period="2026-Q1")
    session.commit()
    assert score_activities(session=session, period="2026-q1").period == "2026-Q1"


def test_equal_shares_tie_at_threshold_count_as_high(session: Session) -> None:
    # Three activities costing 100 with value 1 each: every share is exactly 1/3 → all high/high.
    for i in range(3):
        f.activity(session, f"E{i}", annual_cost=100.0, value_score=1.0)
    session.commit()
    r = score_activities(session=session)
    assert {a.quadrant for a in r.activities} == {"optimize"}
    assert [a.id for a in r.activities] == ["E0", "E1", "E2"]  # all leaks 0 → by id
    assert all(a.margin_leak == 0.0 for a in r.activities)


def test_zero_total_cost(session: Session) -> None:
    # ΣC = 0: cost shares are 0, index null (C = 0), no leak, cost is "low" everywhere.
    f.activity(session, "Z1", annual_cost=0.0, value_score=3.0)
    f.activity(session, "Z2", annual_cost=0.0, value_score=1.0)
    session.commit()
    r = score_activities(session=session)
    assert [(a.id, a.cost_share, a.value_cost_index, a.margin_leak) for a in r.activities] == [
        ("Z1", 0.0, None, 0.0),
        ("Z2", 0.0, None, 0.0),
    ]
    # Z1 value share 3/4 ≥ 1/2 → high value, low cost; Z2 1/4 < 1/2 → maintain.
    assert [a.quadrant for a in r.activities] == ["invest_and_scale", "maintain"]
    assert "Total cost is zero" in r.explanation


def test_zero_total_value_makes_all_spend_leak(session: Session) -> None:
    # Σv = 0: value shares are 0, so leak = max(0, C − ΣC·0) = C; index 0/share = 0.
    f.activity(session, "V1", annual_cost=300.0, value_score=0.0)
    f.activity(session, "V2", annual_cost=100.0, value_score=0.0)
    session.commit()
    r = score_activities(session=session)
    assert [(a.id, a.margin_leak, a.value_cost_index, a.quadrant) for a in r.activities] == [
        ("V1", 300.0, 0.0, "eliminate_or_restructure"),  # cost 3/4 ≥ 1/2
        ("V2", 100.0, 0.0, "maintain"),  # cost 1/4 < 1/2
    ]
    assert r.total_margin_leak == 400.0
    assert "value score is zero" in r.explanation


def test_zero_cost_activity_has_null_index(session: Session) -> None:
    # X2 costs 0: index null; its value share 1/2 → fair share of ΣC = 100·0.5 = 50,
    # so X1 (cost 100, value share .5) leaks 100 − 50 = 50.
    f.activity(session, "X1", annual_cost=100.0, value_score=1.0)
    f.activity(session, "X2", annual_cost=0.0, value_score=1.0)
    session.commit()
    r = score_activities(session=session)
    by_id = {a.id: a for a in r.activities}
    assert by_id["X2"].value_cost_index is None
    assert by_id["X1"].margin_leak == 50.0
    assert by_id["X1"].value_cost_index == 0.5  # (1/2)/(100/100)


@pytest.mark.parametrize(
    ("actual", "target", "direction", "expected"),
    [
        (90.0, 100.0, "higher_is_better", 0.10),  # (100 − 90)/100
        (110.0, 100.0, "higher_is_better", -0.10),  # (100 − 110)/100
        (30.0, 24.0, "lower_is_better", 0.25),  # (30 − 24)/24
        (18.0, 24.0, "lower_is_better", -0.25),  # (18 − 24)/24
        (5.0, 0.0, "higher_is_better", None),  # zero target: undefined
        (None, 10.0, "higher_is_better", None),
        (5.0, 10.0, None, None),
        (5.0, 10.0, "sideways", None),
    ],
)
def test_performance_gap(
    actual: float | None, target: float | None, direction: str | None, expected: float | None
) -> None:
    got = performance_gap(actual, target, direction)
    assert got == (None if expected is None else approx(expected))


@pytest.mark.parametrize(
    ("sq", "aq", "sp", "necessary", "expected"),
    [
        (80.0, 100.0, 4.0, True, (320.0, 80.0, 0.0)),  # over-use: (AQ − SQ)·SP is waste
        (100.0, 100.0, 4.0, True, (400.0, 0.0, 0.0)),  # exactly at standard
        (100.0, 60.0, 5.0, True, (300.0, 0.0, 200.0)),  # committed but unused: (SQ − AQ)·SP
        (100.0, 60.0, 5.0, None, (300.0, 0.0, 200.0)),  # unknown necessity = necessary
        (None, 50.0, 2.0, False, (0.0, 100.0, 0.0)),  # unnecessary: all AQ·SP non-value-added
        (30.0, 50.0, 2.0, False, (0.0, 100.0, 0.0)),  # unnecessary ignores SQ
        (None, 50.0, 2.0, True, (None, None, None)),  # no standard → no split
        (10.0, None, 2.0, True, (None, None, None)),
        (10.0, 5.0, None, True, (None, None, None)),
    ],
)
def test_abm_split(
    sq: float | None,
    aq: float | None,
    sp: float | None,
    necessary: bool | None,
    expected: tuple[float | None, float | None, float | None],
) -> None:
    assert abm_split(sq=sq, aq=aq, sp=sp, necessary=necessary) == expected


def test_unknown_period_lists_valid_ones(golden: Session) -> None:
    with pytest.raises(ToolInputError) as exc:
        score_activities(session=golden, period="2030")
    assert str(exc.value) == 'unknown period "2030" for value-chain activities; valid: 2026, 2025'


def test_empty_database_is_a_clear_error(session: Session) -> None:
    with pytest.raises(ToolInputError, match="no value-chain activities"):
        score_activities(session=session)


def test_same_database_same_json(golden: Session) -> None:
    first = score_activities(session=golden).model_dump_json()
    golden.expire_all()
    assert score_activities(session=golden).model_dump_json() == first


def test_docstring_is_a_tool_description() -> None:
    doc = score_activities.__doc__ or ""
    assert doc.splitlines()[0].startswith("Score value-chain activities")
    assert "Args:\n        period:" in doc
