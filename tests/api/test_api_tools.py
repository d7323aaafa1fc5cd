"""Direct tool endpoints return exactly the tool's model (same JSON as calling the core);
unknown account → 404 with the tool's message, other fixable mistakes → 422."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from apihelp import bearer
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tools.accounts import account_timeline, get_account, list_accounts
from tools.activities import score_activities
from tools.churn.scoring import churn_risk
from tools.nba import next_best_action
from tools.ranking import rank


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    """SQLite only: the tools themselves are compared across engines in tests/test_tools_engines.py."""
    return sqlite_engine


CASES: list[tuple[str, dict[str, Any], Callable[[Session], BaseModel]]] = [
    ("/api/v1/tools/activity-scores", {}, lambda s: score_activities(session=s)),
    (
        "/api/v1/tools/activity-scores",
        {"period": "2025"},
        lambda s: score_activities(session=s, period="2025"),
    ),
    (
        "/api/v1/tools/rank/activities/margin_leak",
        {"limit": 3},
        lambda s: rank(session=s, entity="activities", metric="margin_leak", limit=3),
    ),
    (
        "/api/v1/tools/rank/accounts/arr",
        {"filter": ["segment=enterprise", "region=EMEA,NA"], "order": "asc"},
        lambda s: rank(
            session=s,
            entity="accounts",
            metric="arr",
            filters={"segment": "enterprise", "region": ["EMEA", "NA"]},
            order="asc",
        ),
    ),
    (
        "/api/v1/tools/rank/initiatives/roi",
        {},
        lambda s: rank(session=s, entity="initiatives", metric="roi"),
    ),
    ("/api/v1/tools/churn-risk", {"limit": 3}, lambda s: churn_risk(session=s, limit=3)),
    ("/api/v1/tools/churn-risk/ACME-0001", {}, lambda s: churn_risk(session=s, account_id="ACME-0001")),
    (
        "/api/v1/tools/next-best-action/ACME-0001",
        {"limit": 2},
        lambda s: next_best_action(session=s, account_id="ACME-0001", limit=2),
    ),
    (
        "/api/v1/tools/accounts",
        {"search": "acme", "limit": 2},
        lambda s: list_accounts(session=s, search="acme", limit=2),
    ),
    ("/api/v1/tools/accounts/ACME-0003", {}, lambda s: get_account(session=s, account_id="ACME-0003")),
    (
        "/api/v1/tools/accounts/ACME-0001/timeline",
        {"limit": 5},
        lambda s: account_timeline(session=s, account_id="ACME-0001", limit=5),
    ),
]


@pytest.mark.parametrize(("path", "params", "core"), CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_same_model_as_the_tool(
    client: TestClient,
    keys: dict[str, str],
    factory: sessionmaker[Session],
    path: str,
    params: dict[str, Any],
    core: Callable[[Session], BaseModel],
) -> None:
    r = client.get(path, params=params, headers=bearer(keys["analyst"]))
    assert r.status_code == 200, r.text
    with factory() as s:
        expected = core(s).model_dump(mode="json")
    assert r.json() == expected


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/tools/accounts/ACME-0009",
        "/api/v1/tools/accounts/ACME-0009/timeline",
        "/api/v1/tools/churn-risk/ACME-0009",
        "/api/v1/tools/next-best-action/ACME-0009",
    ],
)
def test_unknown_account_is_404_with_suggestions(client: TestClient, keys: dict[str, str], path: str) -> None:
    r = client.get(path, headers=bearer(keys["analyst"]))
    assert r.status_code == 404
    assert r.json()["detail"].startswith('no account "ACME-0009"; did you mean "ACME-0005"')


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/v1/tools/rank/accounts/foo", {}, 'unknown metric "foo" for accounts; valid: arr'),
        ("/api/v1/tools/rank/accounts/arr", {"filter": "segmnt=SMB"}, 'unknown filter "segmnt" for accounts'),
        ("/api/v1/tools/rank/accounts/arr", {"filter": "segment"}, "filter takes key=value"),
        ("/api/v1/tools/activity-scores", {"period": "2030"}, 'unknown period "2030"'),
        ("/api/v1/tools/accounts", {"filter": "segment=Enterprize"}, 'no accounts with segment "Enterprize"'),
    ],
)
def test_fixable_mistakes_are_422_with_the_tool_message(
    client: TestClient, keys: dict[str, str], path: str, params: dict[str, Any], message: str
) -> None:
    r = client.get(path, params=params, headers=bearer(keys["analyst"]))
    assert r.status_code == 422
    assert message in r.json()["detail"]


def test_unknown_entity_is_422(client: TestClient, keys: dict[str, str]) -> None:
    r = client.get("/api/v1/tools/rank/planets/arr", headers=bearer(keys["analyst"]))
    assert r.status_code == 422


def test_tool_calls_are_timed(client: TestClient, keys: dict[str, str]) -> None:
    client.get("/api/v1/tools/activity-scores", headers=bearer(keys["analyst"]))
    client.get("/api/v1/tools/rank/accounts/foo", headers=bearer(keys["analyst"]))
    text = client.get("/metrics").text
    assert 'vcc_tool_call_duration_seconds_count{outcome="ok",tool="score_activities"}' in text
    assert 'vcc_tool_call_duration_seconds_count{outcome="input_error",tool="rank"}' in text


# ------------------------------------------------------------------ POST /api/v1/tools/call/<name>


def test_a_registry_route_returns_what_the_agent_call_returns(
    client: TestClient, keys: dict[str, str], db_engine: Engine
) -> None:
    body = {"account_id": "ACME-0001", "filters": {"segment": "SMB"}}  # a filter with an id is dropped
    r = client.post("/api/v1/tools/call/churn_risk", json=body, headers=bearer(keys["analyst"]))
    assert r.status_code == 200, r.text
    with sessionmaker(db_engine)() as s:
        expected = churn_risk(session=s, account_id="ACME-0001", filters=None, limit=10)
    assert r.json() == expected.model_dump(mode="json")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/v1/tools/call/rank", {"entity": "accounts", "metric": "nope"}, 'unknown metric "nope"'),
        ("/api/v1/tools/call/get_account", {"account_id": "ACME-9999"}, 'no account "ACME-9999"'),
        ("/api/v1/tools/call/rank", {"entity": "accounts", "metric": "arr", "as_of": "2026-01-01"}, "as_of"),
    ],
)
def test_registry_routes_give_422_with_the_message(
    client: TestClient, keys: dict[str, str], path: str, body: dict[str, Any], message: str
) -> None:
    r = client.post(path, json=body, headers=bearer(keys["analyst"]))
    assert r.status_code == 422 and message in str(r.json()["detail"]), r.text


def test_registry_routes_need_an_analyst_and_writing_tools_have_none(
    client: TestClient, keys: dict[str, str]
) -> None:
    body = {"entity": "accounts", "metric": "arr"}
    assert client.post("/api/v1/tools/call/rank", json=body).status_code == 401
    assert client.post("/api/v1/tools/call/rank", json=body, headers=bearer(keys["viewer"])).status_code == 403
    r = client.post("/api/v1/tools/call/propose_recommendation", json={"action": "x", "rationale": "y"},
                    headers=bearer(keys["analyst"]))
    assert r.status_code in (404, 405)
