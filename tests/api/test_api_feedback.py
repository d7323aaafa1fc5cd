"""The run log with the verdicts on answers (`GET /api/v1/feedback`): analysts see every run,
newest first, with the tools it called, what it filed and each user's thumbs up/down and note."""

from __future__ import annotations

from typing import Any

import pytest
from agent_fakes import Script, ScriptedChatModel, call, say
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Copilot


def install(client: TestClient, factory: sessionmaker[Session], *replies: Any) -> None:
    script = Script(list(replies))
    client.app.state.llm.copilot = Copilot(  # type: ignore[attr-defined]
        sessions=factory,
        knowledge=lambda: pytest.fail("no knowledge here"),
        router=ScriptedChatModel(script=script, label="router"),
        answerer=ScriptedChatModel(script=script, label="answerer"),
        model_name="scripted",
    )


def test_the_run_log_lists_every_run_with_its_verdicts(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    install(client, factory, call("rank", entity="accounts", metric="churn_probability", limit=3),
            say("ACME-0001 is the riskiest."), say("Hello."), say("Procurement."))
    first = client.post("/api/v1/chat", json={"message": "Who is riskiest?"}, headers=bearer(keys["approver"])).json()
    second = client.post("/api/v1/chat", json={"message": "hi"}, headers=bearer(keys["analyst"])).json()
    third = client.post("/api/v1/chat", json={"message": "Where is the leak?"}, headers=bearer(keys["viewer"]))
    assert third.status_code == 403  # a viewer cannot chat: two runs in the log
    rate = "/api/v1/chat/runs/{}/feedback"
    client.put(rate.format(first["run_id"]), json={"rating": "down", "note": "Name the ARR."}, headers=bearer(keys["analyst"]))
    client.put(rate.format(first["run_id"]), json={"rating": "up"}, headers=bearer(keys["approver"]))
    client.put(rate.format(second["run_id"]), json={"rating": "up"}, headers=bearer(keys["analyst"]))

    log = client.get("/api/v1/feedback", headers=bearer(keys["analyst"]))
    assert log.status_code == 200, log.text
    body = log.json()
    assert (body["total"], body["ratings"]) == (2, {"up": 2, "down": 1})
    newest, oldest = body["items"]
    assert (newest["run_id"], newest["user"], newest["question"]) == (second["run_id"], "analyst1", "hi")
    assert (oldest["run_id"], oldest["status"], oldest["tools"], oldest["channel"]) == (
        first["run_id"], "ok", ["rank"], "api")
    assert oldest["answer"] == "ACME-0001 is the riskiest."
    assert [(f["user"], f["rating"], f["note"]) for f in oldest["feedback"]] == [
        ("analyst1", "down", "Name the ARR."), ("approver1", "up", None)]

    down = client.get("/api/v1/feedback", params={"rated": "down"}, headers=bearer(keys["approver"])).json()
    assert [i["run_id"] for i in down["items"]] == [first["run_id"]]
    rated = client.get("/api/v1/feedback", params={"rated": "rated", "limit": 1}, headers=bearer(keys["admin"])).json()
    assert (rated["total"], len(rated["items"])) == (2, 1)
    assert client.get("/api/v1/feedback", params={"rated": "meh"}, headers=bearer(keys["analyst"])).status_code == 422


def test_a_viewer_may_not_read_the_run_log(client: TestClient, keys: dict[str, str]) -> None:
    r = client.get("/api/v1/feedback", headers=bearer(keys["viewer"]))
    assert r.status_code == 403 and "may not analyze" in r.json()["detail"]
    assert client.get("/api/v1/feedback").status_code == 401
