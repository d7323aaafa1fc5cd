"""propose_recommendation: one pending row + one event, never approves, duplicate guard, errors."""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json

import factories as f
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from crm.models import Recommendation, RecommendationEvent
from tools.errors import ToolInputError
from tools.recommendations import propose_recommendation

NOW = dt.datetime(2026, 3, 31, 9, 30)
EVIDENCE = {"open_tickets": 2, "days_to_renewal": 30, "churn_probability": 0.41}


@pytest.fixture
def db(session: Session) -> Session:
    f.golden_accounts(session)
    f.golden_activities(session)
    session.commit()
    return session


def _counts(session: Session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(Recommendation)) or 0,
        session.scalar(select(func.count()).select_from(RecommendationEvent)) or 0,
    )


def test_writes_one_pending_row_and_one_event(db: Session) -> None:
    r = propose_recommendation(
        session=db,
        account_id="ACME-0001",
        action="exec_sponsor_call",
        rationale="Two urgent/high tickets open and renewal in 30 days.",
        evidence=EVIDENCE,
        expected_value=4_500.0,
        now=NOW,
    )
    db.commit()
    assert _counts(db) == (1, 1)
    row = db.scalars(select(Recommendation)).one()
    assert (row.id, row.status, row.version, row.created_at, row.created_by) == (
        r.id,
        "pending",
        1,
        NOW,
        "agent",
    )
    assert row.decided_at is None and row.decided_by is None
    assert row.evidence == EVIDENCE and row.expected_value == 4_500.0
    # content hash = sha256 of the canonical (sorted, compact) JSON of the five fields
    canonical = json.dumps(
        {
            "action": "exec_sponsor_call",
            "evidence": {"churn_probability": 0.41, "days_to_renewal": 30, "open_tickets": 2},
            "expected_value": 4500.0,
            "rationale": "Two urgent/high tickets open and renewal in 30 days.",
            "target": {"account_id": "ACME-0001", "activity_id": None},
        },
        separators=(",", ":"),
    )
    assert row.content_hash == hashlib.sha256(canonical.encode()).hexdigest() == r.content_hash
    event = db.scalars(select(RecommendationEvent)).one()
    assert (event.recommendation_id, event.event, event.actor, event.at) == (row.id, "proposed", "agent", NOW)
    assert event.data == {"evidence": EVIDENCE}
    assert r.status == "pending" and r.duplicate_of is None
    assert "pending" in r.explanation and "human approver" in r.explanation


def test_activity_target_and_run_id(db: Session) -> None:
    f.agent_run(db, "run-7")
    r = propose_recommendation(
        session=db,
        activity_id="A1",
        action="automate_order_entry",
        rationale="A1 leaks 300 of margin.",
        evidence={"margin_leak": 300.0},
        created_by="analyst-ann",
        run_id="run-7",
        now=NOW,
    )
    row = db.get(Recommendation, r.id)
    assert row is not None
    assert (row.activity_id, row.account_id, row.run_id, row.created_by) == (
        "A1",
        None,
        "run-7",
        "analyst-ann",
    )


def test_can_never_approve(db: Session) -> None:
    params = set(inspect.signature(propose_recommendation).parameters)
    assert not params & {"status", "decided_at", "decided_by", "approve", "approved", "version"}
    with pytest.raises(TypeError):
        propose_recommendation(  # type: ignore[call-arg]
            session=db,
            account_id="ACME-0001",
            action="x",
            rationale="y",
            evidence={},
            status="approved",
        )
    # Even an evidence payload that says "approved" leaves the row pending.
    r = propose_recommendation(
        session=db,
        account_id="ACME-0001",
        action="x",
        rationale="y",
        evidence={"status": "approved", "approve": True},
        now=NOW,
    )
    db.commit()
    assert db.scalars(select(Recommendation.status)).all() == ["pending"]
    assert db.scalars(select(RecommendationEvent.event)).all() == ["proposed"]
    assert r.status == "pending"


def test_duplicate_pending_returns_existing(db: Session) -> None:
    first = propose_recommendation(
        session=db, account_id="ACME-0001", action="qbr", rationale="a", evidence={"x": 1}, now=NOW
    )
    again = propose_recommendation(
        session=db,
        account_id="ACME-0001",
        action="qbr",
        rationale="different words",
        evidence={"x": 2},
        now=NOW + dt.timedelta(hours=1),
    )
    assert again.id == first.id and again.duplicate_of == first.id
    assert again.rationale == "a"  # the stored one
    assert _counts(db) == (1, 1)
    # Another action, or another account, is a new recommendation.
    other = propose_recommendation(
        session=db, account_id="ACME-0002", action="qbr", rationale="a", evidence={}, now=NOW
    )
    assert other.duplicate_of is None and _counts(db) == (2, 2)


def test_decided_recommendation_does_not_block_a_new_one(db: Session) -> None:
    f.recommendation(db, account_id="ACME-0001", action="qbr", status="rejected")
    r = propose_recommendation(
        session=db, account_id="ACME-0001", action="qbr", rationale="a", evidence={}, now=NOW
    )
    assert r.duplicate_of is None


def test_default_clock_is_naive_utc(db: Session) -> None:
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    r = propose_recommendation(session=db, account_id="ACME-0001", action="a", rationale="b", evidence={})
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert r.created_at.tzinfo is None and before <= r.created_at <= after


def test_aware_now_is_stored_as_naive_utc(db: Session) -> None:
    aware = dt.datetime(2026, 3, 31, 11, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    r = propose_recommendation(
        session=db, account_id="ACME-0001", action="a", rationale="b", evidence={}, now=aware
    )
    assert r.created_at == NOW


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account_id": "ACME-0099"}, 'no account "ACME-0099"; did you mean'),
        ({"activity_id": "A9"}, 'no activity "A9"; did you mean'),
        ({}, "exactly one of account_id or activity_id"),
        ({"account_id": "ACME-0001", "activity_id": "A1"}, "exactly one of account_id or activity_id"),
        ({"account_id": "ACME-0001", "action": " "}, "action must be a non-empty string"),
        ({"account_id": "ACME-0001", "action": "x" * 65}, "at most 64 characters"),
        ({"account_id": "ACME-0001", "rationale": ""}, "rationale must be a non-empty string"),
        ({"account_id": "ACME-0001", "evidence": ["a"]}, "evidence must be an object"),
        ({"account_id": "ACME-0001", "evidence": {"x": float("nan")}}, "plain JSON"),
        ({"account_id": "ACME-0001", "expected_value": float("inf")}, "finite"),
        ({"account_id": "ACME-0001", "expected_value": "lots"}, "must be a number"),
    ],
)
def test_model_fixable_errors_write_nothing(db: Session, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"action": "call", "rationale": "why", "evidence": {}, **kwargs}
    with pytest.raises(ToolInputError, match=message):
        propose_recommendation(session=db, now=NOW, **args)  # type: ignore[arg-type]
    assert _counts(db) == (0, 0)


def test_unknown_run_id_is_a_bug_not_a_tool_error(db: Session) -> None:
    with pytest.raises(ValueError, match="agent run") as exc:
        propose_recommendation(
            session=db, account_id="ACME-0001", action="a", rationale="b", evidence={}, run_id="nope", now=NOW
        )
    assert not isinstance(exc.value, ToolInputError)


def test_on_every_engine(any_engine: Engine) -> None:
    with make_sessionmaker(any_engine)() as s:
        f.golden_accounts(s)
        s.commit()
        r = propose_recommendation(
            session=s, account_id="ACME-0001", action="call", rationale="r", evidence=EVIDENCE, now=NOW
        )
        s.commit()
        again = propose_recommendation(
            session=s, account_id="ACME-0001", action="call", rationale="r", evidence=EVIDENCE, now=NOW
        )
        assert again.duplicate_of == r.id
        assert _counts(s) == (1, 1)
        assert s.scalars(select(RecommendationEvent.data)).one() == {"evidence": EVIDENCE}


def test_racing_duplicate_is_caught_by_the_unique_index(
    any_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers pass the duplicate check before either commits: the partial unique index
    stops the second row, and the loser gets the winner's recommendation as `duplicate_of`,
    with the rest of its unit of work intact."""
    factory = make_sessionmaker(any_engine)
    with factory() as s:
        f.golden_accounts(s)
        f.golden_activities(s)
        s.commit()
    import tools.recommendations as recs

    real = recs._pending
    calls: list[int] = []

    def stale_check(
        session: Session, *, account_id: str | None, activity_id: str | None, action: str
    ) -> Recommendation | None:
        calls.append(1)
        if len(calls) == 1:  # the check ran before the other writer committed
            return None
        return real(session, account_id=account_id, activity_id=activity_id, action=action)

    # SQLite serialises writers, so there the loser cannot hold a write transaction while the
    # winner writes; on PostgreSQL the loser's unit of work already holds another row.
    prior_work = any_engine.dialect.name == "postgresql"
    with factory() as loser, factory() as winner:
        if prior_work:
            kept = propose_recommendation(
                session=loser, account_id="ACME-0002", action="other", rationale="r", evidence={}, now=NOW
            )
        won = propose_recommendation(
            session=winner, account_id="ACME-0001", action="call", rationale="r", evidence={}, now=NOW
        )
        winner.commit()
        monkeypatch.setattr(recs, "_pending", stale_check)
        lost = propose_recommendation(
            session=loser, account_id="ACME-0001", action="call", rationale="r2", evidence={}, now=NOW
        )
        if not prior_work:  # the session is still usable after the undone insert
            kept = propose_recommendation(
                session=loser, account_id="ACME-0002", action="other", rationale="r", evidence={}, now=NOW
            )
        loser.commit()
    assert lost.duplicate_of == won.id == lost.id
    assert "already exists" in lost.explanation
    with factory() as s:
        rows = s.execute(
            select(Recommendation.id, Recommendation.account_id, Recommendation.action).order_by(
                Recommendation.id
            )
        ).all()
        assert sorted(tuple(r) for r in rows) == sorted(
            [(kept.id, "ACME-0002", "other"), (won.id, "ACME-0001", "call")]
        )
        assert _counts(s) == (2, 2)


@pytest.mark.parametrize("target", ["account_id", "activity_id"])
def test_database_refuses_a_second_pending_row(any_engine: Engine, target: str) -> None:
    factory = make_sessionmaker(any_engine)
    with factory() as s:
        f.golden_accounts(s)
        f.golden_activities(s)
        s.commit()
        who = (
            {"account_id": "ACME-0001"}
            if target == "account_id"
            else {"account_id": None, "activity_id": "A1"}
        )
        f.recommendation(s, **who, action="call", status="pending")
        f.recommendation(s, **who, action="call", status="rejected")
        f.recommendation(s, **who, action="other", status="pending")
        s.commit()
        with pytest.raises(IntegrityError):
            f.recommendation(s, **who, action="call", status="pending")
        s.rollback()
