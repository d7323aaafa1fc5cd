"""Knowledge search and document upload against a real (temporary) Chroma store; conversation
history read from the run-log tables, with viewers limited to their own conversations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelp import bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from crm.models import AgentRun, Conversation, LlmCall, Message, ToolCall, User
from tools.recommendations import propose_recommendation

DOC = b"""---
title: Widget returns
id: widget-returns
---
# Widget returns

## Return policy

Customers may return a zorblatt widget within 45 days for a full refund.
"""


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


@pytest.fixture
def kclient(db_engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    """A client whose knowledge store is a real embedded Chroma in tmp_path (created on first use)."""
    with TestClient(create_app(settings_for(db_engine, tmp_path))) as c:
        yield c


def test_upload_then_search_cites_the_document(kclient: TestClient, keys: dict[str, str]) -> None:
    files = {"files": ("Widget Returns.md", DOC, "text/markdown")}
    r = kclient.post("/api/v1/knowledge/documents", files=files, headers=bearer(keys["analyst"]))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["files"] == 1 and report["added"] >= 1
    assert [(s["source"], s["path"]) for s in report["sources"]] == [("widget-returns", "Widget-Returns.md")]

    again = kclient.post("/api/v1/knowledge/documents", files=files, headers=bearer(keys["analyst"]))
    assert again.json()["added"] == 0 and again.json()["unchanged"] == report["chunks"]

    hits = kclient.get(
        "/api/v1/knowledge/search",
        params={"q": "how long can a zorblatt widget be returned", "k": 3},
        headers=bearer(keys["viewer"]),
    )
    assert hits.status_code == 200
    top = hits.json()["results"][0]
    assert (top["source"], top["section"]) == ("widget-returns", "Return policy")
    assert "45 days" in top["text"]

    ready = kclient.get("/readyz", params={"skip": "llm"}).json()
    assert ready["components"]["vector_store"]["status"] == "ok"


def test_upload_errors(kclient: TestClient, keys: dict[str, str]) -> None:
    h = bearer(keys["analyst"])
    bad = kclient.post(
        "/api/v1/knowledge/documents",
        files={"files": ("x.exe", b"MZ", "application/octet-stream")},
        headers=h,
    )
    assert bad.status_code == 422 and "unsupported file type '.exe'" in bad.json()["detail"]
    none = kclient.post("/api/v1/knowledge/documents", headers=h)
    assert none.status_code == 422
    blank = kclient.get("/api/v1/knowledge/search", params={"q": "   "}, headers=h)
    assert blank.status_code == 422 and "query is empty" in blank.json()["detail"]
    viewer = kclient.post(
        "/api/v1/knowledge/documents",
        files={"files": ("a.md", DOC, "text/markdown")},
        headers=bearer(keys["viewer"]),
    )
    assert viewer.status_code == 403


def _conversation(factory: sessionmaker[Session], cid: str, user_name: str | None) -> None:
    at = dt.datetime(2026, 4, 1, 9, 0)
    with factory() as s:
        user_id = s.scalars(select(User.id).where(User.name == user_name)).one() if user_name else None
        s.add(Conversation(id=cid, created_at=at, user_id=user_id, channel="web", title="Who will churn?"))
        s.flush()
        s.add(
            AgentRun(
                id=f"run-{cid}",
                conversation_id=cid,
                started_at=at,
                finished_at=at + dt.timedelta(seconds=3),
                model="qwen",
                status="ok",
                question="Who will churn?",
                answer="ACME-0001 (41%).",
                llm_calls=2,
                prompt_tokens=900,
                completion_tokens=80,
                latency_ms=3000.0,
            )
        )
        s.flush()
        s.add_all(
            [
                Message(
                    conversation_id=cid,
                    run_id=f"run-{cid}",
                    seq=1,
                    role="user",
                    content="Who will churn?",
                    created_at=at,
                ),
                Message(
                    conversation_id=cid,
                    run_id=f"run-{cid}",
                    seq=2,
                    role="assistant",
                    content="ACME-0001 (41%).",
                    tool_calls=[{"name": "churn_risk", "args": {"limit": 1}}],
                    created_at=at,
                ),
                ToolCall(
                    run_id=f"run-{cid}",
                    seq=1,
                    name="churn_risk",
                    args={"limit": 1},
                    result={"accounts": [{"account_id": "ACME-0001"}]},
                    error=None,
                    ok=True,
                    latency_ms=12.5,
                ),
                LlmCall(
                    run_id=f"run-{cid}",
                    seq=1,
                    model="qwen",
                    prompt_tokens=500,
                    completion_tokens=40,
                    latency_ms=1500.0,
                ),
            ]
        )
        propose_recommendation(
            session=s,
            account_id="ACME-0001",
            action=f"call-{cid}",
            rationale="r",
            evidence={},
            run_id=f"run-{cid}",
            now=at,
            holdout_share=0.0,  # not about the holdout (test_outcomes.py): every one is filed
        )
        s.commit()


def test_conversation_history_and_visibility(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    _conversation(factory, "conv-mine", "viewer1")
    _conversation(factory, "conv-other", "analyst1")

    mine = client.get("/api/v1/conversations/conv-mine", headers=bearer(keys["viewer"]))
    assert mine.status_code == 200
    body = mine.json()
    assert (body["user"], body["channel"], body["title"]) == ("viewer1", "web", "Who will churn?")
    assert [(m["seq"], m["role"]) for m in body["messages"]] == [(1, "user"), (2, "assistant")]
    (run,) = body["runs"]
    assert (run["status"], run["answer"], run["prompt_tokens"]) == ("ok", "ACME-0001 (41%).", 900)
    assert run["tool_calls"][0] | {"latency_ms": 0} == {
        "seq": 1,
        "name": "churn_risk",
        "args": {"limit": 1},
        "result": {"accounts": [{"account_id": "ACME-0001"}]},
        "error": None,
        "ok": True,
        "latency_ms": 0,
    }
    assert run["llm_call_log"][0]["prompt_tokens"] == 500
    assert len(run["recommendation_ids"]) == 1

    # A viewer cannot read someone else's conversation (404, not 403: ids cannot be probed).
    other = client.get("/api/v1/conversations/conv-other", headers=bearer(keys["viewer"]))
    assert (other.status_code, other.json()["detail"]) == (404, "no conversation 'conv-other'")
    assert client.get("/api/v1/conversations/conv-other", headers=bearer(keys["analyst"])).status_code == 200
    assert client.get("/api/v1/conversations/conv-nope", headers=bearer(keys["admin"])).status_code == 404

    listed = client.get("/api/v1/conversations", headers=bearer(keys["viewer"])).json()
    assert [c["id"] for c in listed["items"]] == ["conv-mine"] and listed["items"][0]["runs"] == 1
    assert client.get("/api/v1/conversations", headers=bearer(keys["approver"])).json()["total"] == 2
