"""Issue #21 over HTTP: follow-up steps on a recommendation (assign, start, execute, abandon) with
their status codes, and GET /api/v1/outcomes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from apihelp import bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from crm.models import Recommendation, RecommendationHoldout
from tools.nba import next_best_action

BASE = "/api/v1/recommendations"


def _approved(client: TestClient, keys: dict[str, str], propose: Callable[..., int]) -> int:
    rid = propose()
    ok = client.post(f"{BASE}/{rid}/approve", headers=bearer(keys["approver"]), json={"expected_version": 1})
    assert ok.status_code == 200, ok.text
    return rid


def test_assign_start_execute_over_http(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int]
) -> None:
    rid = _approved(client, keys, propose)
    r = client.post(f"{BASE}/{rid}/assign", headers=bearer(keys["analyst"]), json={"expected_version": 1, "owner": "x"})
    assert r.status_code == 403 and r.json()["detail"]["error"] == "forbidden"
    r = client.post(
        f"{BASE}/{rid}/assign", headers=bearer(keys["approver"]),
        json={"expected_version": 1, "owner": "analyst1", "due_date": "2026-12-01"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["owner"], r.json()["due_date"], r.json()["version"]) == ("analyst1", "2026-12-01", 2)
    stale = client.post(f"{BASE}/{rid}/start", headers=bearer(keys["analyst"]), json={"expected_version": 1})
    assert stale.status_code == 409 and stale.json()["detail"]["error"] == "content_changed"
    r = client.post(f"{BASE}/{rid}/start", headers=bearer(keys["analyst"]), json={"expected_version": 2})
    assert r.status_code == 200 and r.json()["status"] == "in_progress"
    r = client.post(f"{BASE}/{rid}/execute", headers=bearer(keys["analyst"]), json={"expected_version": 3})
    assert r.status_code == 200 and r.json()["status"] == "executed" and r.json()["executed_at"]
    again = client.post(
        f"{BASE}/{rid}/abandon", headers=bearer(keys["approver"]),
        json={"expected_version": 4, "reason_code": "superseded"},
    )
    assert again.status_code == 409 and again.json()["detail"]["error"] == "invalid_transition"
    detail = client.get(f"{BASE}/{rid}", headers=bearer(keys["viewer"])).json()
    assert [e["event"] for e in detail["events"]] == ["proposed", "approved", "assigned", "started", "executed"]
    assert client.get(f"{BASE}?status=executed", headers=bearer(keys["viewer"])).json()["total"] == 1


def test_abandon_needs_a_known_reason(
    client: TestClient, keys: dict[str, str], propose: Callable[..., int]
) -> None:
    rid = _approved(client, keys, propose)
    r = client.post(f"{BASE}/{rid}/abandon", headers=bearer(keys["approver"]), json={"expected_version": 1})
    assert r.status_code == 422
    r = client.post(
        f"{BASE}/{rid}/abandon", headers=bearer(keys["approver"]),
        json={"expected_version": 1, "reason_code": "customer_unreachable", "note": "three attempts"},
    )
    assert r.status_code == 200 and r.json()["status"] == "abandoned"
    assert r.json()["reason_code"] == "customer_unreachable"


def test_outcomes_report_route(client: TestClient, keys: dict[str, str]) -> None:
    r = client.get("/api/v1/outcomes", headers=bearer(keys["viewer"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {a["action"] for a in body["actions"]} >= {"exec_sponsor_outreach", "seat_expansion_offer"}
    first = body["actions"][0]
    assert {"proposals", "approval_rate", "treated", "holdout", "difference", "uplift", "learned"} <= set(first)
    assert "Wilson" in body["method"]
    bad = client.get("/api/v1/outcomes?period_from=2026-05-01&period_to=2026-04-01", headers=bearer(keys["viewer"]))
    assert bad.status_code == 422
    assert client.get("/api/v1/outcomes").status_code == 401


def test_proposing_a_held_out_action_is_refused_and_keeps_the_control_unit(
    db_engine: Engine, tmp_path: Path, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    share = 0.5  # so that one of the golden account's worthwhile actions is held out
    with factory() as s:
        nba = next_best_action(session=s, account_id="ACME-0001", limit=20, holdout_share=share)
    assert nba.held_out, "at a 50 % share some worthwhile action of ACME-0001 is held out"
    held = nba.held_out[0].action
    with TestClient(create_app(settings_for(db_engine, tmp_path, holdout_share=share))) as client:
        shown = client.get("/api/v1/tools/next-best-action/ACME-0001?limit=20", headers=bearer(keys["analyst"]))
        assert shown.status_code == 200 and held in [h["action"] for h in shown.json()["held_out"]]
        r = client.post("/api/v1/tools/next-best-action/ACME-0001/propose", json={"action": held},
                        headers=bearer(keys["analyst"]))
    assert r.status_code == 422 and "holdout" in r.json()["detail"], r.text
    with factory() as s:
        assert s.scalars(select(Recommendation).where(Recommendation.action == held)).all() == []
        row = s.scalars(select(RecommendationHoldout)).one()
        assert (row.account_id, row.action, row.share, row.created_by) == ("ACME-0001", held, share, "analyst1")
