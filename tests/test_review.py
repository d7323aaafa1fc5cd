"""tools/review.py: list/show with effective status, decisions bound to content, role checked inside,
one winner, audit events, expiry."""

from __future__ import annotations

import datetime as dt
import inspect
import threading
from typing import Any

import factories as f
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from crm.models import Recommendation, RecommendationEvent
from tools.errors import DataFault, ToolInputError
from tools.recommendations import propose_recommendation
from tools.review import (
    AlreadyDecided,
    ContentChanged,
    NotAuthorised,
    RecommendationExpired,
    RecommendationNotFound,
    decide_and_commit,
    decide_recommendation,
    expire_stale,
    get_recommendation,
    list_recommendations,
)

NOW = dt.datetime(2026, 4, 10, 12, 0)
TTL = 30


def _propose(
    session: Session, account_id: str = "ACME-0001", action: str = "exec_sponsor_call", **kw: object
) -> int:
    at = kw.pop("now", NOW - dt.timedelta(days=1))
    kw.setdefault("holdout_share", 0.0)  # these tests are about review; the holdout: test_outcomes*.py
    rec = propose_recommendation(
        session=session,
        account_id=account_id,
        action=action,
        rationale="Two urgent tickets open and renewal in 30 days.",
        evidence={"open_tickets": 2, "churn_probability": 0.41},
        expected_value=4_500.0,
        now=at,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    session.commit()
    return rec.id


@pytest.fixture
def db(session: Session) -> Session:
    f.golden_accounts(session)
    session.commit()
    return session


def _decide(session: Session, rid: int, core: Any = decide_recommendation, **kw: object) -> Any:
    args: dict[str, object] = {
        "session": session,
        "recommendation_id": rid,
        "decision": "approved",
        "actor": "carol",
        "role": "approver",
        "expected_version": 1,
        "ttl_days": TTL,
        "now": NOW,
    }
    args.update(kw)
    return core(**args)


def test_approve_writes_status_and_one_event(db: Session) -> None:
    rid = _propose(db)
    result = _decide(db, rid, reason_code="agree", note="Booked.")
    db.commit()
    rec = db.get(Recommendation, rid)
    assert rec is not None and (rec.status, rec.decided_by, rec.decided_at) == ("approved", "carol", NOW)
    events = db.scalars(select(RecommendationEvent).order_by(RecommendationEvent.id)).all()
    assert [(e.event, e.actor) for e in events] == [("proposed", "agent"), ("approved", "carol")]
    assert events[1].reason_code == "agree" and events[1].note == "Booked."
    assert events[1].data == {"version": 1, "content_hash": rec.content_hash, "role": "approver"}
    assert result.event_id == events[1].id  # type: ignore[attr-defined]


def test_reject_needs_a_known_reason_and_other_needs_a_note(db: Session) -> None:
    rid = _propose(db)
    with pytest.raises(ToolInputError, match="a rejection needs a reason_code; valid: evidence_wrong"):
        _decide(db, rid, decision="rejected")
    with pytest.raises(ToolInputError, match=r'unknown reason_code "too_pricey".*not_worth_it'):
        _decide(db, rid, decision="rejected", reason_code="too_pricey")
    with pytest.raises(ToolInputError, match='"other" needs a note'):
        _decide(db, rid, decision="rejected", reason_code="other")
    _decide(db, rid, decision="rejected", reason_code="other", note="Customer is being acquired.")
    db.commit()
    assert db.get(Recommendation, rid).status == "rejected"  # type: ignore[union-attr]


@pytest.mark.parametrize("role", ["viewer", "analyst", "root", ""])
def test_role_is_checked_inside(db: Session, role: str) -> None:
    rid = _propose(db)
    with pytest.raises(NotAuthorised, match="may not decide recommendations; only approver or admin"):
        _decide(db, rid, role=role)
    assert db.get(Recommendation, rid).status == "pending"  # type: ignore[union-attr]


def test_admin_may_decide_but_not_on_what_they_filed(db: Session) -> None:
    rid = _propose(db, created_by="dana")
    with pytest.raises(NotAuthorised, match="'dana' asked for recommendation"):
        _decide(db, rid, actor="dana", role="admin")
    _decide(db, rid, actor="erin", role="admin")


def test_version_or_hash_is_required_and_must_match(db: Session) -> None:
    rid = _propose(db)
    rec = db.get(Recommendation, rid)
    assert rec is not None
    with pytest.raises(ToolInputError, match="give expected_version and/or content_hash"):
        _decide(db, rid, expected_version=None)
    with pytest.raises(ContentChanged, match="is at version 1, not the version 2 you reviewed"):
        _decide(db, rid, expected_version=2)
    with pytest.raises(ContentChanged, match="content hash"):
        _decide(db, rid, expected_version=None, content_hash="0" * 64)
    _decide(db, rid, expected_version=None, content_hash=rec.content_hash)


def test_content_edited_without_a_new_version_is_refused(db: Session) -> None:
    rid = _propose(db)
    db.execute(update(Recommendation).where(Recommendation.id == rid).values(rationale="Something else."))
    db.commit()
    with pytest.raises(ContentChanged, match="no longer matches its content hash"):
        _decide(db, rid)


def test_second_decision_names_the_winner(db: Session) -> None:
    rid = _propose(db)
    _decide(db, rid, decision="rejected", reason_code="bad_timing", actor="carol")
    db.commit()
    with pytest.raises(AlreadyDecided) as err:
        _decide(db, rid, actor="frank")
    assert "already rejected by carol at 2026-04-10T12:00:00Z (reason 'bad_timing')" in str(err.value)
    assert err.value.winner.decided_by == "carol" and err.value.as_dict()["error"] == "already_decided"
    assert db.scalar(select(func.count()).select_from(RecommendationEvent)) == 2


def test_unknown_id(db: Session) -> None:
    with pytest.raises(RecommendationNotFound, match="no recommendation #99"):
        _decide(db, 99)
    with pytest.raises(RecommendationNotFound):
        get_recommendation(session=db, recommendation_id=99)


def test_expired_is_refused_listed_as_expired_and_can_be_written(db: Session) -> None:
    old = _propose(db, now=NOW - dt.timedelta(days=TTL, seconds=1))
    fresh = _propose(db, action="qbr", now=NOW - dt.timedelta(days=TTL - 1))
    with pytest.raises(RecommendationExpired, match=r"expired at 2026-04-10T11:59:59Z \(30 days after"):
        _decide(db, old)
    page = list_recommendations(session=db, ttl_days=TTL, now=NOW)
    assert {(r.id, r.status, r.decidable) for r in page.items} == {
        (old, "expired", False),
        (fresh, "pending", True),
    }
    assert [
        r.id for r in list_recommendations(session=db, status="pending", ttl_days=TTL, now=NOW).items
    ] == [fresh]
    assert [
        r.id for r in list_recommendations(session=db, status="expired", ttl_days=TTL, now=NOW).items
    ] == [old]
    # No TTL: nothing expires.
    assert list_recommendations(session=db, status="pending", ttl_days=0, now=NOW).total == 2
    assert expire_stale(session=db, ttl_days=TTL, now=NOW) == [old]
    db.commit()
    assert expire_stale(session=db, ttl_days=TTL, now=NOW) == []
    detail = get_recommendation(session=db, recommendation_id=old, ttl_days=TTL, now=NOW)
    assert (detail.status, detail.stored_status) == ("expired", "expired")
    assert [e.event for e in detail.events] == ["proposed", "expired"]
    with pytest.raises(RecommendationExpired):
        _decide(db, old)
    # The target is free again: a fresh recommendation for the same action can be filed.
    again = _propose(db, now=NOW)
    assert again != old


def test_decide_and_commit_is_the_whole_transaction(db: Session, engine: Engine) -> None:
    """Committed when decided; a refusal or a mistake rolled back and raised; an expired
    recommendation's expiry written for good, so a fresh one may be filed."""
    decided, expired = _propose(db), _propose(db, action="qbr", now=NOW - dt.timedelta(days=TTL + 1))

    def stored() -> dict[int, tuple[str, list[str]]]:
        with make_sessionmaker(engine)() as other:  # what another connection sees: committed rows only
            return {
                rid: (
                    other.scalars(select(Recommendation.status).where(Recommendation.id == rid)).one(),
                    list(
                        other.scalars(
                            select(RecommendationEvent.event)
                            .where(RecommendationEvent.recommendation_id == rid)
                            .order_by(RecommendationEvent.id)
                        )
                    ),
                )
                for rid in (decided, expired)
            }

    with pytest.raises(ToolInputError, match="a rejection needs a reason_code"):
        _decide(db, decided, decide_and_commit, decision="rejected")
    assert _decide(db, decided, decide_and_commit).status == "approved"
    with pytest.raises(AlreadyDecided):
        _decide(db, decided, decide_and_commit, actor="dave")
    with pytest.raises(RecommendationExpired):
        _decide(db, expired, decide_and_commit)
    assert stored() == {
        decided: ("approved", ["proposed", "approved"]),
        expired: ("expired", ["proposed", "expired"]),
    }


def test_an_unknown_stored_status_is_a_data_fault(db: Session) -> None:
    rid = _propose(db)
    db.execute(update(Recommendation).where(Recommendation.id == rid).values(status="archived"))
    db.commit()
    with pytest.raises(DataFault, match=r"#\d+ has an unknown stored status 'archived'.*correct that row"):
        get_recommendation(session=db, recommendation_id=rid, ttl_days=TTL, now=NOW)


def test_list_filters_and_pages(db: Session) -> None:
    a = _propose(db, "ACME-0001", "exec_sponsor_call", now=dt.datetime(2026, 4, 1, 9))
    b = _propose(db, "ACME-0002", "exec_sponsor_call", now=dt.datetime(2026, 4, 2, 9))
    c = _propose(db, "ACME-0002", "qbr", now=dt.datetime(2026, 4, 3, 9))
    _decide(db, b)
    db.commit()

    def ids(**kw: object) -> list[int]:
        return [r.id for r in list_recommendations(session=db, now=NOW, ttl_days=TTL, **kw).items]  # type: ignore[arg-type]

    assert ids() == [c, b, a]
    assert ids(status="approved") == [b]
    assert ids(account_id="ACME-0002") == [c, b]
    assert ids(action="exec_sponsor_call") == [b, a]
    assert ids(created_from=dt.date(2026, 4, 2), created_to=dt.date(2026, 4, 2)) == [b]
    page = list_recommendations(session=db, limit=1, offset=1, now=NOW)
    assert ([r.id for r in page.items], page.total) == ([b], 3)
    with pytest.raises(ToolInputError, match='unknown status "done"'):
        list_recommendations(session=db, status="done")
    with pytest.raises(ToolInputError, match="after created_to"):
        list_recommendations(session=db, created_from=dt.date(2026, 5, 1), created_to=dt.date(2026, 4, 1))


def test_detail_links_the_conversation(db: Session) -> None:
    f.agent_run(db, "run-7")
    rid = _propose(db, run_id="run-7")
    detail = get_recommendation(session=db, recommendation_id=rid)
    assert (detail.run_id, detail.conversation_id, detail.version) == ("run-7", "conv-1", 1)
    assert detail.evidence == {"open_tickets": 2, "churn_probability": 0.41}


def test_decide_is_keyword_only_and_never_an_agent_default() -> None:
    params = inspect.signature(decide_recommendation).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert params["role"].default is inspect.Parameter.empty
    assert params["actor"].default is inspect.Parameter.empty


def test_concurrent_deciders_one_winner(any_engine: Engine) -> None:
    """20 threads, each with its own session, race to decide: one row update, one event."""
    factory = make_sessionmaker(any_engine)
    with factory() as s:
        f.golden_accounts(s)
        s.commit()
        rid = _propose(s, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def worker(i: int) -> None:
        with factory() as s:
            barrier.wait()
            try:
                decide_recommendation(
                    session=s,
                    recommendation_id=rid,
                    decision="approved" if i % 2 else "rejected",
                    actor=f"approver{i}",
                    role="approver",
                    expected_version=1,
                    reason_code="bad_timing" if i % 2 == 0 else None,
                    ttl_days=TTL,
                )
                s.commit()
                result = "won"
            except AlreadyDecided:
                s.rollback()
                result = "lost"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 19 + ["won"]
    with factory() as s:
        decisions = s.scalars(
            select(RecommendationEvent).where(RecommendationEvent.event.in_(("approved", "rejected")))
        ).all()
        assert len(decisions) == 1
        rec = s.get(Recommendation, rid)
        assert rec is not None and rec.decided_by == decisions[0].actor and rec.status == decisions[0].event
