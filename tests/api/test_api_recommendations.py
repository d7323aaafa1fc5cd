"""Recommendation routes: list/filter/page, detail with audit trail, approve/reject with the
status codes and bodies a client relies on (409 naming the winner, 404, 409 changed, 410 expired)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from apihelp import bearer, utcnow
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from crm.models import Recommendation, RecommendationEvent

BASE = "/api/v1/recommendations"


def test_list_filters_and_pages(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int]
) -> None:
    now = utcnow()
    a = propose("ACME-0001", "exec_sponsor_call", now=now - dt.timedelta(days=3))
    b = propose("ACME-0002", "exec_sponsor_call", now=now - dt.timedelta(days=2))
    c = propose("ACME-0002", "qbr", now=now - dt.timedelta(days=1))
    h = bearer(keys["viewer"])

    body = client.get(BASE, headers=h).json()
    assert [r["id"] for r in body["items"]] == [c, b, a] and body["total"] == 3
    assert body["items"][0]["status"] == "pending" and body["items"][0]["decidable"] is True
    assert body["ttl_days"] == 30

    def ids(**params: object) -> list[int]:
        r = client.get(BASE, headers=h, params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["items"]]

    assert ids(account_id="ACME-0002") == [c, b]
    assert ids(action="exec_sponsor_call") == [b, a]
    day_b = (now - dt.timedelta(days=2)).date().isoformat()
    assert ids(created_from=day_b, created_to=day_b) == [b]
    assert ids(status="approved") == []
    page = client.get(BASE, headers=h, params={"limit": 1, "offset": 2}).json()
    assert [x["id"] for x in page["items"]] == [a] and page["total"] == 3

    bad = client.get(BASE, headers=h, params={"status": "done"})
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith('unknown status "done" for recommendations; valid: pending')
    assert client.get(BASE, headers=h, params={"limit": 0}).status_code == 422


def test_detail_has_evidence_version_hash_and_trail(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int]
) -> None:
    rid = propose()
    r = client.get(f"{BASE}/{rid}", headers=bearer(keys["viewer"]))
    assert r.status_code == 200
    d = r.json()
    assert d["evidence"] == {"open_tickets": 2, "churn_probability": 0.41}
    assert d["version"] == 1 and len(d["content_hash"]) == 64
    assert [e["event"] for e in d["events"]] == ["proposed"]
    assert d["expires_at"] is not None

    missing = client.get(f"{BASE}/999", headers=bearer(keys["viewer"]))
    assert (missing.status_code, missing.json()["detail"]) == (404, "no recommendation #999")


def test_approve_then_second_decision_gets_409_naming_the_winner(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int], factory: sessionmaker[Session]
) -> None:
    rid = propose()
    ok = client.post(
        f"{BASE}/{rid}/approve",
        headers=bearer(keys["approver"]),
        json={"expected_version": 1, "reason_code": "agree", "note": "Call booked."},
    )
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["status"], body["decided_by"], body["reason_code"], body["note"]) == (
        "approved",
        "approver1",
        "agree",
        "Call booked.",
    )

    again = client.post(
        f"{BASE}/{rid}/reject",
        headers=bearer(keys["approver2"]),
        json={"expected_version": 1, "reason_code": "bad_timing"},
    )
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert detail["error"] == "already_decided"
    assert detail["winner"]["decided_by"] == "approver1" and detail["winner"]["status"] == "approved"
    assert "already approved by approver1" in detail["message"] and "(reason 'agree')" in detail["message"]

    trail = client.get(f"{BASE}/{rid}", headers=bearer(keys["viewer"])).json()["events"]
    assert [(e["event"], e["actor"], e["reason_code"]) for e in trail] == [
        ("proposed", "agent", None),
        ("approved", "approver1", "agree"),
    ]
    with factory() as s:
        assert s.scalars(select(Recommendation.status).where(Recommendation.id == rid)).one() == "approved"


def test_reject_needs_reason_code(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int]
) -> None:
    rid = propose()
    h = bearer(keys["admin"])
    missing = client.post(f"{BASE}/{rid}/reject", headers=h, json={"expected_version": 1})
    assert missing.status_code == 422
    unknown = client.post(
        f"{BASE}/{rid}/reject", headers=h, json={"expected_version": 1, "reason_code": "meh"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith(
        'unknown reason_code "meh" for rejected recommendations; valid:'
    )
    ok = client.post(
        f"{BASE}/{rid}/reject",
        headers=h,
        json={"expected_version": 1, "reason_code": "not_worth_it", "note": "Too costly."},
    )
    assert ok.status_code == 200 and ok.json()["status"] == "rejected"


def test_decision_must_quote_what_was_reviewed(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int]
) -> None:
    rid = propose()
    h = bearer(keys["approver"])
    unbound = client.post(f"{BASE}/{rid}/approve", headers=h, json={})
    assert unbound.status_code == 422
    assert "give expected_version and/or content_hash" in unbound.text
    stale = client.post(f"{BASE}/{rid}/approve", headers=h, json={"expected_version": 2})
    assert stale.status_code == 409
    assert stale.json()["detail"]["error"] == "content_changed"
    assert "not the version 2 you reviewed" in stale.json()["detail"]["message"]
    wrong_hash = client.post(f"{BASE}/{rid}/approve", headers=h, json={"content_hash": "a" * 64})
    assert wrong_hash.status_code == 409
    good_hash = client.get(f"{BASE}/{rid}", headers=h).json()["content_hash"]
    assert (
        client.post(f"{BASE}/{rid}/approve", headers=h, json={"content_hash": good_hash}).status_code == 200
    )


def test_changed_content_is_refused(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int], factory: sessionmaker[Session]
) -> None:
    rid = propose()
    with factory() as s:
        s.execute(update(Recommendation).where(Recommendation.id == rid).values(expected_value=1e9))
        s.commit()
    r = client.post(f"{BASE}/{rid}/approve", headers=bearer(keys["approver"]), json={"expected_version": 1})
    assert r.status_code == 409
    assert "no longer matches its content hash" in r.json()["detail"]["message"]


def test_expired_gets_410_and_is_written_as_expired(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int], factory: sessionmaker[Session]
) -> None:
    rid = propose(now=utcnow() - dt.timedelta(days=31))
    r = client.post(f"{BASE}/{rid}/approve", headers=bearer(keys["approver"]), json={"expected_version": 1})
    assert r.status_code == 410
    assert r.json()["detail"]["error"] == "expired"
    assert "its evidence is stale" in r.json()["detail"]["message"]
    listed = client.get(BASE, headers=bearer(keys["viewer"]), params={"status": "expired"}).json()
    assert [x["id"] for x in listed["items"]] == [rid]
    with factory() as s:
        assert s.scalars(select(Recommendation.status).where(Recommendation.id == rid)).one() == "expired"
        events = s.scalars(
            select(RecommendationEvent.event).where(RecommendationEvent.recommendation_id == rid)
        ).all()
        assert events == ["proposed", "expired"]


def test_wrong_id_is_404(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post(f"{BASE}/4242/approve", headers=bearer(keys["approver"]), json={"expected_version": 1})
    assert r.status_code == 404
    assert r.json()["detail"]["message"] == "no recommendation #4242"


def test_approver_cannot_decide_what_they_filed(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int]
) -> None:
    rid = propose(created_by="approver1")
    r = client.post(f"{BASE}/{rid}/approve", headers=bearer(keys["approver"]), json={"expected_version": 1})
    assert r.status_code == 403
    assert r.json()["detail"]["error"] == "forbidden"
    assert (
        client.post(
            f"{BASE}/{rid}/approve", headers=bearer(keys["approver2"]), json={"expected_version": 1}
        ).status_code
        == 200
    )
