"""Proposing an account's next best action from the account page (`POST
/api/v1/tools/next-best-action/{id}/propose`) and the at-risk list ranked by ARR at risk."""

from __future__ import annotations

from pathlib import Path

import pytest
from apihelp import bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from crm.models import Recommendation
from tools.nba import next_best_action


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


def _best(factory: sessionmaker[Session], account_id: str) -> tuple[str, float]:
    with factory() as s:
        best = next_best_action(session=s, account_id=account_id, limit=1).actions[0]
    return best.action, best.expected_value


def test_propose_files_a_pending_recommendation_as_the_caller(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    action, value = _best(factory, "ACME-0001")
    r = client.post("/api/v1/tools/next-best-action/ACME-0001/propose", json={"action": action},
                    headers=bearer(keys["analyst"]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["created_by"], body["action"]) == ("pending", "analyst1", action)
    assert body["expected_value"] == pytest.approx(value)
    assert "Expected value:" not in body["rationale"]  # the arithmetic stays in the evidence
    assert body["evidence"]["formula"] and body["evidence"]["why"] is not None
    with factory() as s:
        rec = s.scalars(select(Recommendation).where(Recommendation.id == body["id"])).one()
        assert (rec.status, rec.created_by) == ("pending", "analyst1")
    again = client.post("/api/v1/tools/next-best-action/ACME-0001/propose", json={"action": action},
                        headers=bearer(keys["analyst"]))
    assert again.status_code == 422 and f"#{body['id']}" in again.json()["detail"]  # held back while pending


def test_the_proposer_cannot_approve_it_but_another_approver_can(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    action, _ = _best(factory, "ACME-0001")
    rec = client.post("/api/v1/tools/next-best-action/ACME-0001/propose", json={"action": action},
                      headers=bearer(keys["approver"])).json()
    own = client.post(f"/api/v1/recommendations/{rec['id']}/approve", json={"expected_version": rec["version"]},
                      headers=bearer(keys["approver"]))
    assert own.status_code == 403 and own.json()["detail"]["error"] == "forbidden"
    other = client.post(f"/api/v1/recommendations/{rec['id']}/approve", json={"expected_version": rec["version"]},
                        headers=bearer(keys["approver2"]))
    assert other.status_code == 200 and other.json()["status"] == "approved"


def test_propose_refuses_an_action_that_does_not_apply_and_viewers(
    client: TestClient, keys: dict[str, str]
) -> None:
    r = client.post("/api/v1/tools/next-best-action/ACME-0001/propose", json={"action": "give_a_discount_to_all"},
                    headers=bearer(keys["analyst"]))
    assert r.status_code == 422 and "not among" in r.json()["detail"]
    r = client.post("/api/v1/tools/next-best-action/ACME-0009/propose", json={"action": "x"},
                    headers=bearer(keys["analyst"]))
    assert r.status_code == 404
    r = client.post("/api/v1/tools/next-best-action/ACME-0001/propose", json={"action": "x"},
                    headers=bearer(keys["viewer"]))
    assert r.status_code == 403


def test_churn_risk_ranked_by_arr_at_risk(client: TestClient, keys: dict[str, str]) -> None:
    by_risk = client.get("/api/v1/tools/churn-risk", params={"limit": 10, "order_by": "arr_at_risk"},
                         headers=bearer(keys["analyst"])).json()
    values = [a["arr_at_risk"] for a in by_risk["accounts"]]
    assert len(values) >= 2 and values == sorted(values, reverse=True)
    by_p = client.get("/api/v1/tools/churn-risk", params={"limit": 10}, headers=bearer(keys["analyst"])).json()
    probs = [a["probability"] for a in by_p["accounts"]]
    assert probs == sorted(probs, reverse=True)
    assert by_risk["total_arr_at_risk"] == pytest.approx(by_p["total_arr_at_risk"])


def test_the_currency_setting_reaches_the_page_and_the_report(
    db_engine: Engine, keys: dict[str, str], tmp_path: Path
) -> None:
    with TestClient(create_app(settings_for(db_engine, tmp_path, currency="EUR"))) as client:
        assert client.get("/api/v1/me", headers=bearer(keys["analyst"])).json()["currency"] == "EUR"
        report = client.get("/api/v1/analysis", params={"format": "md"}, headers=bearer(keys["analyst"]))
        assert report.status_code == 200 and "total cost €" in report.text and "Amounts are in EUR" in report.text
