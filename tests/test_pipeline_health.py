"""pipeline_health on a hand-worked fixture (tests/factories.py golden_pipeline, as of 2026-05-15).

The arithmetic, once: the quarter is 2026-Q2 (the day after as_of is 05-16), current.
Stage probabilities (stage table): prospecting 0.1, qualification 0.2, proposal 0.5, negotiation 0.7.

    deal  owner  stage          amount    p    weighted  due in Q2          last touch          signs
    D1    Ann    proposal       40,000   0.5   20,000    yes (06-20)        05-01 (stage): 14 d  -
    D2    Ann    negotiation    20,000   0.7   14,000    yes (04-30)        03-16: 60 d          stale, slipped 15 d
    D3    Bob    qualification  10,000   0.2    2,000    no (08-10, Q3)     05-10 (account): 5 d -
    D4    Cy     prospecting    40,000*  0.1    4,000    no (no date)       05-05 (created)      no_close_date
    * blank amount → median won Core amount: median(30,000, 50,000) = 40,000 (estimated)

Won in Q2 up to as_of: W1 30,000 (Ann, Core). Quotas: Ann 100,000, Bob 50,000, Cy none.

    Ann: pipeline 60,000, weighted 34,000, due 60,000, won 30,000, expected 30,000 + 34,000 = 64,000,
         coverage 60,000 / (100,000 − 30,000) = 0.857…, gap 100,000 − 64,000 = 36,000
    Bob: pipeline 10,000, weighted 2,000, due 0, coverage 0 / 50,000 = 0, gap 50,000
    Cy:  pipeline 40,000, weighted 4,000, no quota → no coverage
    all: pipeline 110,000, weighted 40,000, due 60,000, won 30,000, expected 64,000,
         target = quotas 150,000, coverage 60,000 / 120,000 = 0.5, gap 86,000
    at risk: D2 (weighted 14,000; 2 signs), D4 (4,000; 1 sign)
"""

from __future__ import annotations

import datetime as dt
import statistics
from itertools import pairwise

import factories as f
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm.models import Opportunity, OpportunityStage
from tools.errors import ToolInputError
from tools.pipeline import deals as deals_module
from tools.pipeline.health import PipelineGroup, pipeline_health, quarter_bounds
from tools.pipeline.probability import StageTable

D = dt.date


@pytest.fixture
def golden(session: Session) -> Session:
    f.golden_pipeline(session)
    session.commit()
    return session


def _groups(result: object) -> dict[str, PipelineGroup]:
    return {g.key: g for g in result.groups}  # type: ignore[attr-defined]


def test_per_owner_figures_are_the_hand_worked_ones(golden: Session) -> None:
    r = pipeline_health(session=golden)
    assert [g.key for g in r.groups] == ["Ann", "Cy", "Bob"]  # by open pipeline, then name
    ann, bob, cy = (_groups(r)[k] for k in ("Ann", "Bob", "Cy"))
    assert (ann.open_deals, ann.open_pipeline, ann.weighted_pipeline) == (2, 60_000.0, 34_000.0)
    assert (ann.due_deals, ann.due_pipeline, ann.due_weighted) == (2, 60_000.0, 34_000.0)
    assert (ann.won_in_quarter, ann.expected_won_amount, ann.target) == (30_000.0, 64_000.0, 100_000.0)
    assert ann.coverage == pytest.approx(60_000 / 70_000)
    assert ann.below_coverage_goal is True and ann.gap_to_target == 36_000.0
    assert (ann.stale_deals, ann.stale_amount, ann.slipped_deals, ann.slipped_amount) == (
        1,
        20_000.0,
        1,
        20_000.0,
    )
    assert (bob.open_pipeline, bob.weighted_pipeline, bob.due_pipeline, bob.coverage) == (
        10_000.0,
        2_000.0,
        0.0,
        0.0,
    )
    assert bob.gap_to_target == 50_000.0
    assert (cy.open_pipeline, cy.weighted_pipeline, cy.target, cy.coverage, cy.gap_to_target) == (
        40_000.0,
        4_000.0,
        None,
        None,
        None,
    )
    t = r.total
    assert (t.open_deals, t.open_pipeline, t.weighted_pipeline, t.deals_without_amount) == (
        4,
        110_000.0,
        40_000.0,
        0,
    )
    assert (t.due_pipeline, t.won_in_quarter, t.expected_won_amount, t.target) == (
        60_000.0,
        30_000.0,
        64_000.0,
        150_000.0,
    )
    assert t.coverage == 0.5 and t.gap_to_target == 86_000.0
    i = r.inputs
    assert (i.as_of, i.quarter, i.quarter_start, i.quarter_end, i.quarter_is_current) == (
        D(2026, 5, 15),
        "2026-Q2",
        D(2026, 4, 1),
        D(2026, 6, 30),
        True,
    )
    assert (i.target_source, i.probability_source) == ("quotas", "stage_table")
    assert i.stage_probabilities == {
        "negotiation": 0.7,
        "proposal": 0.5,
        "prospecting": 0.1,
        "qualification": 0.2,
    }
    assert i.typical_days_in_stage == {}  # one won deal with history: fewer than 5 samples a stage


def test_deals_at_risk_are_ranked_by_weighted_amount_with_their_reasons(golden: Session) -> None:
    r = pipeline_health(session=golden)
    assert r.at_risk_count == 2
    d2, d4 = r.deals_at_risk
    assert (d2.opportunity_id, d2.signs, d2.weighted_amount) == ("OPP-D2", ["stale", "slipped"], 14_000.0)
    assert (d2.days_since_activity, d2.days_past_expected_close, d2.days_in_stage) == (60, 15, 60)
    assert d2.why == "no activity for 60 days (over 30); 15 days past its expected close 2026-04-30"
    assert (d4.opportunity_id, d4.signs, d4.amount, d4.amount_estimated) == (
        "OPP-D4",
        ["no_close_date"],
        40_000.0,
        True,
    )
    assert d4.probability == 0.1 and d4.weighted_amount == pytest.approx(4_000.0)
    assert "Most at risk: OPP-D2 (Ann)" in r.explanation
    assert "coverage 0.50× of what is left (goal 3×)" in r.explanation


def test_long_in_stage_against_won_deals_history(golden: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """W1 spent 15 days in negotiation; D2 has been there 60 days (> 2 × 15)."""
    monkeypatch.setattr(deals_module, "MIN_STAGE_SAMPLES", 1)
    r = pipeline_health(session=golden)
    assert r.inputs.typical_days_in_stage == {"negotiation": 15.0, "proposal": 16.0, "qualification": 19.0}
    d2 = r.deals_at_risk[0]
    assert d2.signs == ["stale", "slipped", "long_in_stage"]
    assert d2.why.endswith("60 days in negotiation, over twice the usual 15")


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "team",
            {
                "East": (3, 70_000.0, 36_000.0, 60_000.0, 30_000.0, 150_000.0, 0.5),
                "West": (1, 40_000.0, 4_000.0, 0.0, 0.0, None, None),
            },
        ),
        (
            "product",
            {
                "Core": (3, 100_000.0, 38_000.0, 60_000.0, 30_000.0, None, None),
                "Analytics": (1, 10_000.0, 2_000.0, 0.0, 0.0, None, None),
            },
        ),
        (
            "quarter",
            {
                "2026-Q2": (2, 60_000.0, 34_000.0, 60_000.0, 30_000.0, None, None),
                "2026-Q3": (1, 10_000.0, 2_000.0, 0.0, 0.0, None, None),
                "(no expected close)": (1, 40_000.0, 4_000.0, 0.0, 0.0, None, None),
            },
        ),
    ],
)
def test_other_groupings(golden: Session, group_by: str, expected: dict[str, tuple[object, ...]]) -> None:
    r = pipeline_health(session=golden, group_by=group_by)  # type: ignore[arg-type]
    got = {
        g.key: (
            g.open_deals,
            g.open_pipeline,
            g.weighted_pipeline,
            g.due_pipeline,
            g.won_in_quarter,
            g.target,
            g.coverage,
        )
        for g in r.groups
    }
    assert got == expected
    assert [g.key for g in r.groups] == list(expected)  # quarters chronological, undated last


def test_filters_target_and_another_quarter(golden: Session) -> None:
    east = pipeline_health(session=golden, filters={"team": "east"}, target=200_000.0)
    assert east.inputs.filters == {"team": ["East"]}  # case mapped to the stored spelling
    assert [g.key for g in east.groups] == ["Ann", "Bob"]
    assert east.inputs.target_source == "argument"
    assert east.total.coverage == pytest.approx(60_000 / 170_000)
    q3 = pipeline_health(session=golden, quarter="2026q3")
    assert (q3.inputs.quarter, q3.inputs.quarter_is_current) == ("2026-Q3", False)
    # not the current quarter: only deals expected in it are due (D3); the slipped D2 is not
    assert (q3.total.due_deals, q3.total.due_pipeline, q3.total.won_in_quarter) == (1, 10_000.0, 0.0)


def test_the_probability_source_is_pluggable(golden: Session) -> None:
    flat = StageTable(stages={}, unlisted=0.25, name="flat")
    r = pipeline_health(session=golden, probabilities=flat)
    assert r.total.weighted_pipeline == 0.25 * 110_000
    assert r.inputs.probability_source == "flat"
    assert r.inputs.unlisted_stages == ["negotiation", "proposal", "prospecting", "qualification"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_by": "region"}, 'unknown group_by "region"; valid: owner, team, product, quarter'),
        (
            {"filters": {"colour": "red"}},
            'unknown filter "colour" for opportunities; valid: manager, owner, ',
        ),
        (
            {"filters": {"owner": "Anne"}},
            'no opportunities with owner "Anne"; valid owner values: "Ann", "Bob", "Cy"',
        ),
        ({"quarter": "Q5"}, 'quarter must look like "2026-Q4"; got "Q5"'),
        ({"target": -1.0}, "target must be a positive amount"),
        ({"limit": 500}, "limit must be between 0 and 200"),
    ],
)
def test_mistakes_come_back_as_messages(golden: Session, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ToolInputError) as err:
        pipeline_health(session=golden, **kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_same_data_same_bytes(golden: Session) -> None:
    first = pipeline_health(session=golden, group_by="team").model_dump_json()
    assert pipeline_health(session=golden, group_by="team").model_dump_json() == first


def test_quarter_bounds() -> None:
    assert quarter_bounds("2026-Q4") == ("2026-Q4", D(2026, 10, 1), D(2026, 12, 31))
    assert quarter_bounds(" 2025 q1 ") == ("2025-Q1", D(2025, 1, 1), D(2025, 3, 31))


def test_no_open_deals(session: Session) -> None:
    f.set_as_of(session, D(2026, 3, 31))
    r = pipeline_health(session=session)
    assert r.groups == [] and r.total.open_deals == 0 and r.total.target is None
    assert r.explanation == "No open deals on 2026-03-31 (no filters)."


def _typical_days_row_by_row(s: Session, as_of: dt.date) -> dict[str, float]:
    """The reference: the stage history of won deals read as ORM rows and paired in Python (the
    implementation before it read the dates as text; docs/PIPELINE.md, Performance)."""
    won = select(Opportunity.external_id).where(
        Opportunity.stage == "closed_won",
        Opportunity.close_date.between(as_of - dt.timedelta(days=deals_module.STAGE_HISTORY_DAYS), as_of),
    )
    rows = s.execute(
        select(OpportunityStage.opportunity_id, OpportunityStage.stage, OpportunityStage.entered_at)
        .where(OpportunityStage.opportunity_id.in_(won), OpportunityStage.entered_at <= as_of)
        .order_by(OpportunityStage.opportunity_id, OpportunityStage.entered_at, OpportunityStage.id)
    ).all()
    spans: dict[str, list[int]] = {}
    for (ref, stage, day), nxt in pairwise(rows):
        if nxt[0] == ref and stage not in ("closed_won", "closed_lost"):
            spans.setdefault(stage, []).append((nxt[2] - day).days)
    return {k: float(statistics.median(v)) for k, v in spans.items() if len(v) >= deals_module.MIN_STAGE_SAMPLES}


def test_typical_days_in_stage_equals_the_row_by_row_reading(demo_sessions: sessionmaker[Session]) -> None:
    with demo_sessions() as s:
        for as_of in (dt.date(2026, 9, 30), dt.date(2025, 6, 30), dt.date(2024, 12, 31)):
            expected = _typical_days_row_by_row(s, as_of)
            assert expected, as_of  # the demo has enough won deals with history on these days
            assert deals_module.typical_days_in_stage(s, as_of) == expected
