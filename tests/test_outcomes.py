"""Issue #21: follow-up after approval (tools/review.follow_up), the holdout, outcomes measured point
in time, the attribution report and the learned effects (tools/outcomes/)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import factories as f
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.auth import create_key
from core.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from crm.models import Recommendation, RecommendationEvent, RecommendationHoldout
from tools.errors import ToolInputError
from tools.nba import next_best_action, project_nba
from tools.outcomes.holdout import holdout_bucket, is_held_out
from tools.outcomes.learning import learn
from tools.outcomes.measure import ArmCounts, load_units
from tools.outcomes.report import outcomes_report
from tools.outcomes.stats import newcombe_difference, risk_ratio, wilson
from tools.recommendations import HeldOut, propose_recommendation
from tools.review import (
    ContentChanged,
    InvalidTransition,
    NotAuthorised,
    decide_recommendation,
    follow_up,
    get_recommendation,
)
from valuechain.cli.main import app

NOW = dt.datetime(2026, 3, 20, 12, 0)
runner = CliRunner()
ACTION = "exec_sponsor_outreach"


@pytest.fixture
def db(session: Session) -> Session:
    f.golden_accounts(session)
    session.commit()
    return session


def _approved(session: Session, account_id: str = "ACME-0001", action: str = ACTION) -> int:
    rec = propose_recommendation(
        session=session, account_id=account_id, action=action, rationale="Low NPS, renewal soon.",
        evidence={"churn_probability": 0.4}, expected_value=1000.0, now=NOW, holdout_share=0.0,
    )
    decide_recommendation(
        session=session, recommendation_id=rec.id, decision="approved", actor="carol", role="approver",
        expected_version=1, now=NOW,
    )
    session.commit()
    return rec.id


def _step(session: Session, rid: int, transition: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "session": session, "recommendation_id": rid, "transition": transition, "actor": "carol",
        "role": "approver", "now": NOW,
    }
    args.update(kw)
    if "expected_version" not in args:
        args["expected_version"] = session.get(Recommendation, rid, populate_existing=True).version  # type: ignore[union-attr]
    return follow_up(**args)


# ------------------------------------------------------------------------------ follow-up


def test_follow_up_assign_start_execute_bumps_version_and_audits(db: Session) -> None:
    rid = _approved(db)
    assigned = _step(db, rid, "assign", owner="dave", due_date=dt.date(2026, 4, 15), expected_version=1)
    assert (assigned.status, assigned.owner, assigned.due_date, assigned.version) == (
        "approved", "dave", dt.date(2026, 4, 15), 2,
    )
    # the owner, an analyst, may start and execute it
    started = _step(db, rid, "start", actor="dave", role="analyst", expected_version=2)
    assert (started.status, started.version) == ("in_progress", 3)
    done = _step(db, rid, "execute", actor="dave", role="analyst", expected_version=3,
                 now=dt.datetime(2026, 3, 25, 9, 0))
    assert (done.status, done.executed_at, done.version) == ("executed", dt.datetime(2026, 3, 25, 9, 0), 4)
    db.commit()
    detail = get_recommendation(session=db, recommendation_id=rid)
    assert [e.event for e in detail.events] == ["proposed", "approved", "assigned", "started", "executed"]
    assert detail.events[-1].data["from_status"] == "in_progress"
    assert (detail.owner, detail.status) == ("dave", "executed")


def test_follow_up_refusals(db: Session) -> None:
    rid = _approved(db)
    with pytest.raises(ContentChanged, match="not the version 7"):
        _step(db, rid, "start", expected_version=7)
    with pytest.raises(NotAuthorised, match="may not assign"):
        _step(db, rid, "assign", owner="x", role="analyst")
    with pytest.raises(NotAuthorised, match="only its owner"):
        _step(db, rid, "execute", actor="erin", role="analyst")
    with pytest.raises(NotAuthorised):
        _step(db, rid, "execute", actor="vic", role="viewer")
    with pytest.raises(ToolInputError, match="needs a reason_code"):
        _step(db, rid, "abandon")
    abandoned = _step(db, rid, "abandon", reason_code="customer_unreachable", note="No answer in 3 weeks.")
    assert abandoned.status == "abandoned"
    with pytest.raises(InvalidTransition, match="is abandoned"):
        _step(db, rid, "execute")
    pending = propose_recommendation(
        session=db, account_id="ACME-0002", action="qbr", rationale="r", evidence={}, now=NOW, holdout_share=0.0
    )
    with pytest.raises(InvalidTransition, match="is pending"):
        _step(db, pending.id, "execute", expected_version=1)


def test_one_of_two_racing_steps_wins(db: Session) -> None:
    rid = _approved(db)
    _step(db, rid, "execute", expected_version=1)
    with pytest.raises((ContentChanged, InvalidTransition)):
        _step(db, rid, "abandon", reason_code="superseded", expected_version=1)
    assert db.scalars(select(RecommendationEvent.event).where(RecommendationEvent.recommendation_id == rid)).all() == [
        "proposed", "approved", "executed",
    ]


# ------------------------------------------------------------------------------ holdout


def test_holdout_is_deterministic_and_about_the_share() -> None:
    ids = [f"ACME-{i:05d}" for i in range(20_000)]
    share = sum(is_held_out(i, ACTION, 0.10) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert holdout_bucket("ACME-00001", ACTION) == holdout_bucket("ACME-00001", ACTION)
    # a larger share keeps everyone a smaller share held out; other actions hold out other accounts
    assert all(is_held_out(i, ACTION, 0.2) for i in ids if is_held_out(i, ACTION, 0.1))
    other = {i for i in ids if is_held_out(i, "adoption_workshop", 0.1)}
    same = {i for i in ids if is_held_out(i, ACTION, 0.1)}
    assert len(other & same) < len(same) * 0.2
    with pytest.raises(ToolInputError, match=r"from 0 to 0\.5"):
        is_held_out("A", ACTION, 0.9)


def test_held_out_account_is_refused_and_recorded_as_control(db: Session) -> None:
    held = next(a for a in ("ACME-0001", "ACME-0002", "ACME-0003", "ACME-0005") if holdout_bucket(a, "qbr") < 0.5)
    share = 0.5
    with pytest.raises(HeldOut, match=f"{held} is in the 50% holdout of 'qbr'") as info:
        propose_recommendation(
            session=db, account_id=held, action="qbr", rationale="r", evidence={}, now=NOW, holdout_share=share
        )
    assert db.scalars(select(Recommendation).where(Recommendation.account_id == held)).all() == []
    row = db.get(RecommendationHoldout, info.value.holdout.id)
    assert row is not None and (row.account_id, row.action, row.at, row.share) == (held, "qbr", NOW, share)
    # a second attempt in the window is the same control unit
    with pytest.raises(HeldOut) as again:
        propose_recommendation(
            session=db, account_id=held, action="qbr", rationale="r", evidence={}, now=NOW, holdout_share=share
        )
    assert again.value.holdout.duplicate_of == row.id


def test_next_best_action_says_held_out(db: Session) -> None:
    plain = next_best_action(session=db, account_id="ACME-0001", limit=20, holdout_share=0.0)
    assert plain.actions, "the golden Enterprise account has eligible actions"
    everyone = next_best_action(session=db, account_id="ACME-0001", limit=20, holdout_share=0.5)
    expected = {a.action for a in plain.actions if holdout_bucket("ACME-0001", a.action) < 0.5}
    assert {h.action for h in everyone.held_out} == expected
    assert not expected & {a.action for a in everyone.actions}
    assert all("holdout" in h.reason for h in everyone.held_out)


# ------------------------------------------------------------------------------ statistics


def test_intervals_match_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II example (a), method 10:
    # 56/70 − 48/80 = 0.2000, interval (0.0524, 0.3339)
    d, low, high = newcombe_difference(56, 70, 48, 80) or (0, 0, 0)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    # Wilson: 0/10 → (0, 0.2775) (Newcombe 1998 table I)
    assert tuple(round(x, 4) for x in wilson(0, 10)) == (0.0, 0.2775)
    rr, lo, hi = risk_ratio(10, 100, 20, 100) or (0, 0, 0)
    assert rr == pytest.approx(0.5)
    assert lo < 0.5 < hi < 1.05


def test_learning_is_the_beta_update_by_hand() -> None:
    # holdout churn 40 of 100 → 120 treated would have had 48 churners; 30 churned → 18 saved.
    # prior uplift 0.15 × 20 → Beta(3, 17); posterior Beta(21, 47) → mean 21/68
    e = learn(
        action=ACTION, kind="retention", prior=0.15,
        treated=ArmCounts(n=120, churned=30), holdout=ArmCounts(n=100, churned=40), prior_strength=20,
    )
    assert e.learned == pytest.approx(21 / 68)
    assert (e.n_treated, e.n_holdout, e.treated_rate, e.holdout_rate) == (120, 100, 0.25, 0.4)
    # no holdout: nothing to compare, the prior stays exactly
    assert learn(action=ACTION, kind="retention", prior=0.15, treated=ArmCounts(n=5), holdout=None).learned == 0.15
    # growth: 30 wins of 100 treated vs 10 % holdout → 20 incremental; Beta(7,13) → Beta(27, 93)
    g = learn(
        action="seat_expansion_offer", kind="growth", prior=0.35,
        treated=ArmCounts(n=100, successes=30), holdout=ArmCounts(n=50, successes=5),
    )
    assert g.learned == pytest.approx(27 / 120)


# ------------------------------------------------------------------------------ outcomes and report


def _executed(session: Session, account_id: str, action: str, on: dt.date) -> int:
    rec = f.recommendation(
        session, account_id=account_id, action=action, status="executed", decided_by="carol",
        decided_at=dt.datetime.combine(on, dt.time(9)), executed_at=dt.datetime.combine(on, dt.time(10)),
        created_at=dt.datetime.combine(on, dt.time(8)),
    )
    return rec.id


def _holdout(session: Session, account_id: str, action: str, on: dt.date) -> None:
    session.add(RecommendationHoldout(
        account_id=account_id, action=action, at=dt.datetime.combine(on, dt.time(10)), created_by="agent",
        share=0.1, evidence={},
    ))
    session.flush()


def _cohort(session: Session) -> None:
    """Treated T-00..T-09 (2 churn within 90 days), holdout H-00..H-04 (3 churn), all on 2025-10-01;
    one more treated on 2026-03-01 (90 days not ended by the as-of date 2026-03-31)."""
    day0 = dt.date(2025, 10, 1)
    for i in range(10):
        churned = day0 + dt.timedelta(days=20 + 40 * i) if i < 2 else None  # day 20 and day 60
        f.account(session, f"T-{i:02d}", segment="Enterprise", status="churned" if churned else "active",
                  churned_at=churned)
        _executed(session, f"T-{i:02d}", ACTION, day0)
    for i in range(5):
        churned = day0 + dt.timedelta(days=30 * (i + 1)) if i < 3 else None  # day 30, 60, 90
        f.account(session, f"H-{i:02d}", segment="Enterprise", status="churned" if churned else "active",
                  churned_at=churned)
        _holdout(session, f"H-{i:02d}", ACTION, day0)
    f.account(session, "T-late", segment="SMB")
    _executed(session, "T-late", ACTION, dt.date(2026, 3, 1))
    f.opportunity(session, "T-05", stage="closed_won", amount=9000.0, close_date=dt.date(2025, 10, 20))
    session.commit()


def test_outcomes_are_point_in_time(db: Session) -> None:
    _cohort(db)
    units = {u.account_id: u for u in load_units(db, as_of=dt.date(2026, 3, 31))}
    assert units["T-00"].states == {30: "churned", 90: "churned"}
    assert units["T-01"].states == {30: "retained", 90: "churned"}
    assert units["T-05"].states == {30: "expanded", 90: "expanded"}
    assert units["T-late"].states == {30: "retained", 90: "pending"}
    assert units["H-02"].states == {30: "retained", 90: "churned"}
    # as of an earlier date nothing after it is known
    early = {u.account_id: u for u in load_units(db, as_of=dt.date(2025, 11, 15))}
    assert early["T-01"].states == {30: "retained", 90: "pending"}
    assert "T-late" not in early


def test_report_counts_funnel_and_treated_vs_holdout(db: Session) -> None:
    _cohort(db)
    rid = _approved(db, "ACME-0002", ACTION)
    db.commit()
    rejected = propose_recommendation(
        session=db, account_id="ACME-0003", action=ACTION, rationale="r", evidence={}, now=NOW, holdout_share=0.0
    )
    decide_recommendation(session=db, recommendation_id=rejected.id, decision="rejected", actor="carol",
                          role="approver", expected_version=1, reason_code="not_worth_it", now=NOW)
    db.commit()
    report = outcomes_report(session=db)
    row = next(a for a in report.actions if a.action == ACTION)
    assert (row.proposals, row.decided, row.approved, row.executions) == (13, 13, 12, 11)
    assert row.approval_rate == pytest.approx(12 / 13)
    assert row.rejection_reasons == {"not_worth_it": 1}
    assert (row.treated.n, row.treated.events, row.treated.pending) == (10, 2, 1)
    assert (row.holdout.n, row.holdout.events) == (5, 3)
    assert row.difference is not None and row.difference.estimate == pytest.approx(0.2 - 0.6)
    assert row.uplift is not None and row.uplift.estimate == pytest.approx(1 - 0.2 / 0.6)
    assert row.uplift.low < row.uplift.estimate < row.uplift.high
    # learned: 10 × 0.6 = 6 would-be churners, 2 churned → 4 saved; Beta(3,17) → Beta(7, 19)
    assert row.learned.learned == pytest.approx(7 / 26)
    assert "Newcombe" in report.method
    # filters: SMB has only the late one (pending); an approver nobody is has no treated units
    smb = next(a for a in outcomes_report(session=db, segment="SMB").actions if a.action == ACTION)
    assert (smb.treated.n, smb.treated.pending, smb.holdout.n) == (0, 1, 0)
    nobody = next(a for a in outcomes_report(session=db, approver="zed").actions if a.action == ACTION)
    assert (nobody.proposals, nobody.treated.n, nobody.holdout.n) == (0, 0, 5)
    assert rid


def test_next_best_action_uses_the_learned_uplift(db: Session) -> None:
    before = next_best_action(session=db, account_id="ACME-0001", limit=20, holdout_share=0.0)
    _cohort(db)
    after = next_best_action(session=db, account_id="ACME-0001", limit=20, holdout_share=0.0)
    b = next(a for a in before.actions if a.action == ACTION)
    a = next(a for a in after.actions if a.action == ACTION)
    assert b.learning is not None and a.learning is not None
    assert (b.uplift, b.learning.n_treated) == (0.15, 0)
    assert a.uplift == pytest.approx(7 / 26)
    assert (a.learning.prior, a.learning.n_treated, a.learning.n_holdout) == (0.15, 10, 5)
    assert a.expected_value > b.expected_value
    shown = next(x for x in project_nba(after)["actions"] if x["action"] == ACTION)
    assert shown["effect"] == "uplift 0.269 learned (prior 0.15; 10 treated, 5 held out)"
    # without outcomes the model reads what it read before: no effect line
    assert "effect" not in next(x for x in project_nba(before)["actions"] if x["action"] == ACTION)


# ------------------------------------------------------------------------------ CLI


def test_cli_review_execute_and_outcomes_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine)() as s:
        f.golden_accounts(s)
        _cohort(s)
        rid = _approved(s)
        carol = create_key(session=s, name="carol", role="approver").key
        s.commit()
    engine.dispose()
    monkeypatch.setenv("VALUECHAIN_API_KEY", carol)

    def run(args: list[str], code: int = 0) -> Any:
        result = runner.invoke(app, [*args, "--database-url", url, "--json"])
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)

    stale = run(["review", "execute", str(rid), "--expected-version", "9"], code=3)
    assert stale["error"] == "content_changed"
    assigned = run(["review", "assign", str(rid), "--owner", "dana", "--due", "2026-04-15", "--expected-version", "1"])
    assert (assigned["owner"], assigned["due_date"], assigned["version"]) == ("dana", "2026-04-15", 2)
    done = run(["review", "execute", str(rid), "--expected-version", "2", "--note", "call held"])
    assert (done["status"], done["actor"], done["note"]) == ("executed", "carol", "call held")
    report = run(["outcomes", "report", "--segment", "Enterprise"])
    row = next(a for a in report["actions"] if a["action"] == ACTION)
    # the execution just recorded is dated after the data's as-of date, so it is not a unit yet
    assert (row["treated"]["n"], row["holdout"]["n"], row["executions"]) == (10, 5, 11)
    assert report["filters"]["segment"] == "Enterprise"
    table = runner.invoke(app, ["outcomes", "report", "--database-url", url], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    line = next(x for x in table.stdout.splitlines() if ACTION in x)
    assert "20.0% of 10 / 60.0% of 5" in line and "+66.7%" in line, line
