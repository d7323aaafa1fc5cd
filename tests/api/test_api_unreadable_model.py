"""Issue #19 item 8 over HTTP: a model endpoint answering 200 with a body that is no chat completion
gives the chat's documented endpoint sentence (not "the agent failed"), a failed model call in the
run log and no traceback in the server log."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_llm_unreadable import ASEND, SEND, agent_for, serve

from crm.models import AgentRun, LlmCall


@pytest.mark.parametrize("kind", ["text", "sse-garbage"])
def test_chat_over_an_unreadable_endpoint_says_so_and_logs_the_call(
        client: TestClient, keys: dict[str, str], factory: sessionmaker[Session], tmp_path: Path, kind: str,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", SEND)  # a loopback fake, not a model
    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", ASEND)
    endpoint = serve(kind)
    client.app.state.llm.copilot = agent_for("plan", next(endpoint), factory, tmp_path)  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO)
    try:
        resp = client.post("/api/v1/chat", json={"message": "Which accounts are most likely to churn?"},
                           headers=bearer(keys["analyst"]))
    finally:
        endpoint.close()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "the language model endpoint sent a reply that could not be read" in body["error"]
    assert "agent failed" not in body["error"]
    with factory() as s:
        run = s.get(AgentRun, body["run_id"])
        assert run is not None and run.status == "error"
        [call] = s.scalars(select(LlmCall).where(LlmCall.run_id == run.id)).all()
        assert call.error
    assert not [r for r in caplog.records if r.exc_info]
