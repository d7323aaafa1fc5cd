"""Chat over HTTP (`POST /api/v1/chat`, JSON and server-sent events), its status, the analysis
report route, `GET /api/v1/me` and the UI page, with a Copilot on the scripted fake chat model."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
from agent_fakes import Script, ScriptedChatModel, call, say
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Copilot
from api.metrics import REGISTRY
from crm.models import AgentRun, Conversation, Recommendation

CopilotFactory = Callable[..., Script]


@pytest.fixture
def scripted(client: TestClient, factory: sessionmaker[Session]) -> CopilotFactory:
    """Put a Copilot answering from `replies` on the app; returns the script (to inspect requests)."""

    def install(*replies: Any) -> Script:
        script = Script(list(replies))
        client.app.state.llm.copilot = Copilot(  # type: ignore[attr-defined]
            sessions=factory,
            knowledge=lambda: pytest.fail("this test does not use the knowledge store"),
            router=ScriptedChatModel(script=script, label="router"),
            answerer=ScriptedChatModel(script=script, label="answerer"),
            model_name="scripted",
        )
        return script

    return install


def sse_events(client: TestClient, key: str, body: dict[str, Any], **headers: str) -> list[tuple[str, dict[str, Any]]]:
    """POST a chat with `Accept: text/event-stream`; the (event, data) pairs in order."""
    events: list[tuple[str, dict[str, Any]]] = []
    with client.stream(
        "POST", "/api/v1/chat", json=body, headers={**bearer(key), "Accept": "text/event-stream", **headers}
    ) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                assert name is not None
                events.append((name, json.loads(line[len("data: "):])))
                name = None
    return events


def user_id(factory: sessionmaker[Session], name: str) -> int:
    from crm.models import User

    with factory() as s:
        uid = s.scalar(select(User.id).where(User.name == name))
    assert uid is not None
    return uid


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_chat_returns_the_agent_answer_as_json(
    client: TestClient, keys: dict[str, str], scripted: CopilotFactory, factory: sessionmaker[Session]
) -> None:
    scripted(call("score_activities"), say("Sales leaks the most margin [margin-leak-and-value-cost-index]."))
    runs_before = metric("vcc_agent_run_duration_seconds_count", channel="api", status="ok")
    tokens_before = metric("vcc_llm_tokens_total", model="scripted", kind="prompt")

    resp = client.post("/api/v1/chat", json={"message": "  Which activities leak margin?  "}, headers=bearer(keys["analyst"]))

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["answer"] == "Sales leaks the most margin [margin-leak-and-value-cost-index]."
    assert body["error"] is None and body["model"] == "scripted"
    assert [(c["name"], c["ok"]) for c in body["tool_calls"]] == [("score_activities", True)]
    with factory() as s:
        conv = s.get(Conversation, body["conversation_id"])
        run = s.get(AgentRun, body["run_id"])
    assert conv is not None and conv.channel == "api" and conv.user_id == user_id(factory, "analyst1")
    assert run is not None and run.status == "ok" and run.question == "Which activities leak margin?"
    # the conversation is the caller's: listed for them, with the run and its tool call
    history = client.get(f"/api/v1/conversations/{body['conversation_id']}", headers=bearer(keys["analyst"])).json()
    assert history["user"] == "analyst1" and history["runs"][0]["tool_calls"][0]["name"] == "score_activities"
    assert metric("vcc_agent_run_duration_seconds_count", channel="api", status="ok") == runs_before + 1
    assert metric("vcc_llm_tokens_total", model="scripted", kind="prompt") == tokens_before + 200


def test_chat_streams_server_sent_events_named_by_event_type(
    client: TestClient, keys: dict[str, str], scripted: CopilotFactory, factory: sessionmaker[Session]
) -> None:
    scripted(call("score_activities"), say("Sales leaks the most."))

    events = sse_events(client, keys["approver"], {"message": "Which activities leak margin?"}, **{"X-Client": "web"})

    names = [n for n, _ in events]
    assert names[0] == "run_started" and names[-1] == "answer"
    assert names.index("tool_start") < names.index("tool_end") < names.index("answer")
    assert all(data["type"] == name for name, data in events)
    start = next(d for n, d in events if n == "tool_start")
    end = next(d for n, d in events if n == "tool_end")
    assert (start["name"], end["name"], end["ok"]) == ("score_activities", "score_activities", True)
    assert json.loads(end["text"])["period"]  # the tool's (compact) result
    tokens = "".join(d["text"] for n, d in events if n == "token")
    assert "Sales leaks the most.".startswith(tokens)  # the fake model does not stream; a real one does
    answer = events[-1][1]["result"]
    assert answer["answer"] == "Sales leaks the most." and answer["conversation_id"] == events[0][1]["conversation_id"]
    with factory() as s:
        conv = s.get(Conversation, answer["conversation_id"])
    assert conv is not None and conv.channel == "web" and conv.user_id == user_id(factory, "approver1")


def test_a_conversation_goes_on_only_for_its_owner(
    client: TestClient, keys: dict[str, str], scripted: CopilotFactory
) -> None:
    script = scripted(say("Hello."), say("Still here."))
    first = client.post("/api/v1/chat", json={"message": "hi"}, headers=bearer(keys["analyst"])).json()
    cid = first["conversation_id"]

    other = client.post("/api/v1/chat", json={"message": "and?", "conversation_id": cid}, headers=bearer(keys["approver"]))
    assert other.status_code == 404 and "of yours" in other.json()["detail"]
    unknown = client.post("/api/v1/chat", json={"message": "x", "conversation_id": "conv-nope"}, headers=bearer(keys["analyst"]))
    assert unknown.status_code == 404

    again = client.post("/api/v1/chat", json={"message": "and?", "conversation_id": cid}, headers=bearer(keys["analyst"]))
    assert again.status_code == 200 and again.json()["conversation_id"] == cid
    sent = [(m.type, m.content) for m in script.requests[-1]["messages"] if m.type != "system"]
    assert sent == [("human", "hi"), ("ai", "Hello."), ("human", "and?")]


def test_model_failure_streams_an_error_then_the_answer(
    client: TestClient, keys: dict[str, str], scripted: CopilotFactory
) -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    scripted(openai.APIConnectionError(request=request))
    errors_before = metric("vcc_agent_run_duration_seconds_count", channel="api", status="error")

    events = sse_events(client, keys["analyst"], {"message": "Is ACME-0001 at risk?"})

    assert [n for n, _ in events] == ["run_started", "error", "answer"]
    assert "cannot be reached" in events[1][1]["text"]
    assert events[-1][1]["result"]["error"] == events[1][1]["text"]
    assert metric("vcc_agent_run_duration_seconds_count", channel="api", status="error") == errors_before + 1
    assert metric("vcc_llm_request_duration_seconds_count", model="scripted", outcome="error") >= 1


def test_a_bug_in_a_tool_still_ends_the_stream_and_marks_the_run_failed(
    client: TestClient,
    keys: dict[str, str],
    scripted: CopilotFactory,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tools.accounts

    def broken(*_: Any, **__: Any) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(tools.accounts, "require_account", broken)  # inside the get_account core
    scripted(call("get_account", account_id="ACME-0001"), say("unused"))

    events = sse_events(client, keys["analyst"], {"message": "Tell me about ACME-0001"})

    names = [n for n, _ in events]
    assert names[-2:] == ["error", "answer"]
    result = events[-1][1]["result"]
    assert "ZeroDivisionError" in result["error"] and result["run_id"] in result["error"]
    with factory() as s:
        run = s.get(AgentRun, result["run_id"])
    assert run is not None and run.status == "error" and "ZeroDivisionError: bug" in (run.error or "")


def test_no_copilot_is_503_with_the_reason(client: TestClient, keys: dict[str, str]) -> None:
    resp = client.post("/api/v1/chat", json={"message": "hi"}, headers=bearer(keys["analyst"]))
    assert resp.status_code == 503 and "LLM_AUTOSTART=false" in resp.json()["detail"]

    client.app.state.llm.status = "warming"  # type: ignore[attr-defined]
    resp = client.post("/api/v1/chat", json={"message": "hi"}, headers={**bearer(keys["analyst"]), "Accept": "text/event-stream"})
    assert resp.status_code == 503 and "warming up" in resp.json()["detail"]
    assert resp.headers["retry-after"] == "10"
    status = client.get("/api/v1/chat/status", headers=bearer(keys["viewer"])).json()
    assert status["available"] is False and status["status"] == "warming"


def test_chat_roles_and_validation(client: TestClient, keys: dict[str, str], scripted: CopilotFactory) -> None:
    scripted()
    assert client.post("/api/v1/chat", json={"message": "hi"}).status_code == 401
    viewer = client.post("/api/v1/chat", json={"message": "hi"}, headers=bearer(keys["viewer"]))
    assert viewer.status_code == 403 and "analyst" in viewer.json()["detail"]
    for body in ({"message": "   "}, {"message": ""}, {}, {"message": "x" * 4001}, {"message": "hi", "conversation_id": "a b"}):
        assert client.post("/api/v1/chat", json=body, headers=bearer(keys["analyst"])).status_code == 422, body
    assert client.get("/api/v1/chat/status", headers=bearer(keys["viewer"])).json()["available"] is True


def file_best_action_in_chat(client: TestClient, key: str, scripted: CopilotFactory,
                             factory: sessionmaker[Session]) -> tuple[dict[str, Any], Recommendation, str]:
    """Ask in chat (as `key`'s user) to file ACME-0001's best action; the chat's JSON, the filed
    recommendation and the action."""
    from tools.nba import next_best_action

    with factory() as s:
        action = next_best_action(session=s, account_id="ACME-0001").actions[0].action
    scripted(
        call("next_best_action", account_id="ACME-0001"),
        call("propose_recommendation", account_id="ACME-0001", action=action, rationale="Highest EV."),
        say(f"Filed {action} for approval."),
    )
    body = client.post("/api/v1/chat", json={"message": "File the best action for ACME-0001"},
                       headers=bearer(key)).json()
    with factory() as s:
        rec = s.scalars(select(Recommendation).where(Recommendation.run_id == body["run_id"])).one()
    return body, rec, action


def test_chat_files_a_recommendation_for_review(
    client: TestClient, keys: dict[str, str], scripted: CopilotFactory, factory: sessionmaker[Session]
) -> None:
    body, rec, action = file_best_action_in_chat(client, keys["analyst"], scripted, factory)
    assert (rec.status, rec.account_id, rec.action) == ("pending", "ACME-0001", action)
    detail = client.get(f"/api/v1/recommendations/{rec.id}", headers=bearer(keys["approver"])).json()
    assert detail["conversation_id"] == body["conversation_id"]


@pytest.mark.parametrize(
    ("fmt", "media", "head"),
    [("md", "text/markdown", b"# "), ("html", "text/html", b"<!"), ("pdf", "application/pdf", b"%PDF")],
)
def test_analysis_report_formats(client: TestClient, keys: dict[str, str], fmt: str, media: str, head: bytes) -> None:
    resp = client.get(f"/api/v1/analysis?format={fmt}", headers=bearer(keys["analyst"]))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(media)
    assert resp.content.lstrip()[: len(head)].lower() == head.lower()
    assert resp.headers["content-disposition"].startswith("inline; filename=\"value-chain-analysis-")


def test_analysis_json_errors_and_roles(client: TestClient, keys: dict[str, str]) -> None:
    body = client.get("/api/v1/analysis", headers=bearer(keys["analyst"])).json()
    assert {"period", "step1_primary", "step3_costs"} <= set(body)
    dl = client.get(f"/api/v1/analysis?format=md&download=true&period={body['period']}", headers=bearer(keys["admin"]))
    assert dl.headers["content-disposition"] == f'attachment; filename="value-chain-analysis-{body["period"]}.md"'
    bad = client.get("/api/v1/analysis?period=1999", headers=bearer(keys["analyst"]))
    assert bad.status_code == 422 and body["period"] in bad.json()["detail"]
    assert client.get("/api/v1/analysis?format=docx", headers=bearer(keys["analyst"])).status_code == 422
    assert client.get("/api/v1/analysis", headers=bearer(keys["viewer"])).status_code == 403


def test_me_and_the_ui_page(client: TestClient, keys: dict[str, str]) -> None:
    me = client.get("/api/v1/me", headers=bearer(keys["approver"])).json()
    assert (me["user"], me["role"]) == ("approver1", "approver")
    assert me["permissions"] == ["analyze", "decide", "read"]
    assert "not_worth_it" in me["reject_reasons"] and "agree" in me["approve_reasons"]
    assert client.get("/api/v1/me").status_code == 401

    page = client.get("/")
    assert page.status_code == 200 and "Value Chain Copilot" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "{{v}}" not in page.text
    script = page.text.split('src="', 1)[1].split('"', 1)[0]
    asset = client.get(script)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert client.get("/static/app.css").status_code == 200


def test_whoever_asked_the_agent_to_file_may_not_decide_the_proposal(
    client: TestClient, keys: dict[str, str], scripted: CopilotFactory, factory: sessionmaker[Session]
) -> None:
    """Issue #19 item 1: an approver asks in chat for a proposal, then tries to approve it (200 before)."""
    _, rec, _ = file_best_action_in_chat(client, keys["approver"], scripted, factory)
    with factory() as s:
        rec = s.get(Recommendation, rec.id)
        assert rec is not None and rec.created_by == "approver1"  # filed as asked by the user, not "agent"
        rec.created_by = "agent"  # as proposals filed before this fix were: the run still names the asker
        s.commit()
    decision = {"expected_version": 1, "reason_code": "agree"}
    own = client.post(f"/api/v1/recommendations/{rec.id}/approve", json=decision, headers=bearer(keys["approver"]))
    assert own.status_code == 403 and "another approver must decide it" in str(own.json()["detail"])
    with factory() as s:
        assert s.get(Recommendation, rec.id).status == "pending"  # nothing changed
    other = client.post(f"/api/v1/recommendations/{rec.id}/approve", json=decision, headers=bearer(keys["approver2"]))
    assert other.status_code == 200 and other.json()["status"] == "approved"


def test_the_html_report_is_served_with_a_policy_that_runs_no_script(client: TestClient, keys: dict[str, str]) -> None:
    resp = client.get("/api/v1/analysis?format=html", headers=bearer(keys["analyst"]))
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'self'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
