"""Issue #18 faults of the model endpoint, over `POST /api/v1/chat`: the endpoint is down (nothing
listens), hangs (accepts the request and never answers), or closes the connection in the middle
of a streamed reply. Each time the chat answers with a clear sentence naming the endpoint, the
run is logged `error` with its failed model call, nothing is filed, and no traceback is logged.

The models are the product's own (`LLMRuntime` at a loopback fake OpenAI-compatible server);
a 200 with garbage is `tests/test_llm_unreadable.py` and `test_api_unreadable_model.py`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Generator
from pathlib import Path

import factories as f
import httpx2
import pytest
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from test_llm_unreadable import ASEND, SEND

from agent.copilot import Agent, Copilot
from agent.llm.runtime import LLMRuntime
from agent.pipeline import PlanCopilot
from agent.plan import plan_schema
from core.db import make_sessionmaker
from core.settings import Settings
from crm.models import AgentRun, LlmCall, Recommendation

TIMEOUT_S = 1.0  # LLM_TIMEOUT_S for the hanging endpoint (120 s by default)


@pytest.fixture
def db_engine(sqlite_engine: Engine) -> Engine:
    """The golden accounts on SQLite only: these faults are the model's, not the database's."""
    with make_sessionmaker(sqlite_engine)() as s:
        f.golden_accounts(s)
        f.golden_activities(s)
        s.commit()
    return sqlite_engine


def _read_request(conn: socket.socket) -> None:
    """Read one HTTP request (headers and a Content-Length body) from `conn`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def _half_stream(conn: socket.socket) -> None:
    """A streamed chat completion that starts, sends one token, and the connection closes
    without the stream's end (the chunked body is never terminated)."""
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The"}, "finish_reason": None}]}
    event = f"data: {json.dumps(chunk)}\n\n".encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                 + f"{len(event):x}\r\n".encode() + event + b"\r\n")


def fake_endpoint(kind: str) -> Generator[str, None, None]:
    """A loopback OpenAI-compatible endpoint that is `down`, `hangs` or closes `mid-stream`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    if kind == "down":
        listener.close()  # the port is free: connections are refused
        yield url
        return
    listener.listen(16)
    listener.settimeout(0.05)  # so that the accept loop sees `stop`
    stop = threading.Event()
    open_conns: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            open_conns.append(conn)
            _read_request(conn)
            if kind == "mid-stream":
                _half_stream(conn)
                conn.close()
            # "hangs": keep the connection open and never answer

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in open_conns:
            conn.close()


def agent_at(design: str, endpoint: str, sessions: sessionmaker[Session], tmp_path: Path,
             timeout_s: float = TIMEOUT_S) -> Agent:
    """The agent of `design` built as `agent.service.build_copilot` builds it, at `endpoint`."""
    settings = Settings(data_dir=tmp_path, llm_base_url=endpoint, llm_model="m", llm_api_key="x",
                        llm_timeout_s=timeout_s)
    runtime = LLMRuntime.open(settings)
    no_knowledge = lambda: pytest.fail("no knowledge needed")  # noqa: E731
    if design == "plan":
        return PlanCopilot(sessions=sessions, knowledge=no_knowledge, planner=runtime.planner(plan_schema()),
                           answerer=runtime.answerer(), model_name="m", llm_call_timeout_s=timeout_s)
    return Copilot(sessions=sessions, knowledge=no_knowledge, router=runtime.router(),
                   answerer=runtime.answerer(), model_name="m", llm_call_timeout_s=timeout_s)


EXPECTED = {
    "down": "the language model endpoint cannot be reached",
    "hangs": "the language model did not answer in time",
    "mid-stream": "the language model endpoint cannot be reached",
}


@pytest.mark.parametrize(("kind", "design"), [
    ("down", "plan"), ("hangs", "plan"),
    ("mid-stream", "plan"),  # the planner's reply is not streamed: the body is cut short
    ("mid-stream", "react"),  # the router's reply is streamed: cut after its first token
])
def test_chat_over_a_failing_model_endpoint_says_so_logs_the_run_and_files_nothing(
        client: TestClient, keys: dict[str, str], factory: sessionmaker[Session], tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, kind: str, design: str) -> None:
    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", SEND)  # a loopback fake, not a model
    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", ASEND)
    endpoint = fake_endpoint(kind)
    client.app.state.llm.copilot = agent_at(design, next(endpoint), factory, tmp_path)  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO)
    try:
        resp = client.post("/api/v1/chat", headers=bearer(keys["analyst"]),
                           json={"message": "Which accounts are most likely to churn? File a recommendation."})
    finally:
        endpoint.close()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["error"] is not None and EXPECTED[kind] in body["error"], body["error"]
    assert "agent failed" not in body["error"]
    with factory() as s:
        run = s.get(AgentRun, body["run_id"])
        assert run is not None and run.status == "error" and run.error == body["error"]
        calls = s.scalars(select(LlmCall).where(LlmCall.run_id == run.id)).all()
        assert calls and all(c.error for c in calls)
        assert s.scalars(select(Recommendation)).all() == []
    assert not [r for r in caplog.records if r.exc_info]  # an endpoint failure, not a bug of ours


def test_chat_recovers_when_the_endpoint_comes_back(
        client: TestClient, keys: dict[str, str], factory: sessionmaker[Session], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The conversation of a failed turn goes on: the next question in it gets an answer."""
    from test_llm_unreadable import BODIES, serve

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", SEND)
    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", ASEND)
    down = fake_endpoint("down")
    client.app.state.llm.copilot = agent_at("react", next(down), factory, tmp_path)  # type: ignore[attr-defined]
    first = client.post("/api/v1/chat", headers=bearer(keys["analyst"]), json={"message": "Hello?"}).json()
    down.close()
    assert first["error"] is not None
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Back again."}, "finish_reason": "stop"}]}
    stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    monkeypatch.setitem(BODIES, "ok", (b"text/event-stream", stream))
    up = serve("ok")
    # the 1 s limit is for the endpoint that hangs: a loaded CI machine may take longer to answer this one
    client.app.state.llm.copilot = agent_at("react", next(up), factory, tmp_path,  # type: ignore[attr-defined]
                                            timeout_s=30.0)
    try:
        second = client.post("/api/v1/chat", headers=bearer(keys["analyst"]),
                             json={"message": "Hello again?", "conversation_id": first["conversation_id"]})
    finally:
        up.close()
    assert second.status_code == 200, second.text
    assert second.json()["error"] is None and "Back again." in second.json()["answer"]
