"""Issue #19 item 8: a model endpoint that answers 200 with a body that is not a chat completion.

The turn must end with the documented "could not be read" sentence, the failed call logged in
`llm_calls`, nothing filed, and no traceback in the log (it is not a bug of ours). The models
are the product's own (`LLMRuntime` pointed at a loopback fake): the planner's call is not
streamed, the answerer's and the ReAct router's are, so both ways of reading a reply are hit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Agent, Copilot
from agent.llm.runtime import LLMRuntime
from agent.pipeline import PlanCopilot
from agent.plan import plan_schema
from core.settings import Settings
from crm.models import AgentRun, LlmCall, Recommendation

# the transports as httpx2 ships them, before the suite's no-live-model tripwire replaces them per test
SEND = httpx2.HTTPTransport.handle_request
ASEND = httpx2.AsyncHTTPTransport.handle_async_request

COMPLETION_HEAD = b'{"id": "x", "object": "chat.completion", "created": 1, "model": "m", '
BODIES = {
    "text": (b"text/plain", b"hello, this is not JSON"),
    "html-error-page": (b"text/html", b"<html><body>502 Bad Gateway</body></html>"),
    "empty-body": (b"application/json", b""),
    "json-not-completion": (b"application/json", b'{"unexpected": true}'),
    "json-no-choices": (b"application/json", COMPLETION_HEAD + b'"choices": []}'),
    "json-null-message": (b"application/json",
                          COMPLETION_HEAD + b'"choices": [{"index": 0, "message": null, "finish_reason": "stop"}]}'),
    "sse-empty": (b"text/event-stream", b""),
    "sse-only-done": (b"text/event-stream", b"data: [DONE]\n\n"),
    "sse-garbage": (b"text/event-stream", b"data: not json\n\ndata: [DONE]\n\n"),
}


def serve(kind: str) -> Generator[str, None, None]:
    """A loopback endpoint answering every POST with 200 and the body of `kind`."""
    content_type, body = BODIES[kind]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", content_type.decode())
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=sorted(BODIES))
def endpoint(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # this test talks to its own loopback fake (not a model): lift the suite's tripwire for it
    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", SEND)
    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", ASEND)
    yield from serve(request.param)


def agent_for(design: str, endpoint: str, sessions: sessionmaker[Session], tmp_path: Path) -> Agent:
    """The agent of `design` with the models `agent.service.build_copilot` gives it, at `endpoint`."""
    settings = Settings(data_dir=tmp_path, llm_base_url=endpoint, llm_model="m", llm_api_key="x",
                        llm_timeout_s=10)
    runtime = LLMRuntime.open(settings)
    no_knowledge = lambda: pytest.fail("no knowledge needed")  # noqa: E731
    if design == "plan":
        return PlanCopilot(sessions=sessions, knowledge=no_knowledge, planner=runtime.planner(plan_schema()),
                           answerer=runtime.answerer(), model_name="m", llm_call_timeout_s=10)
    if design == "plan-streamed":
        streamed = runtime.answerer(streaming=True)
        return PlanCopilot(sessions=sessions, knowledge=no_knowledge, planner=streamed, answerer=streamed,
                           model_name="m", llm_call_timeout_s=10)
    return Copilot(sessions=sessions, knowledge=no_knowledge, router=runtime.router(), answerer=runtime.answerer(),
                   model_name="m", llm_call_timeout_s=10)


@pytest.mark.parametrize("design", ["plan", "plan-streamed", "react"])
def test_an_unreadable_reply_reads_as_such_is_logged_and_files_nothing(
        demo_sessions: sessionmaker[Session], endpoint: str, design: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    copilot = agent_for(design, endpoint, demo_sessions, tmp_path)
    caplog.set_level(logging.INFO)
    result = copilot.ask("Which 5 accounts are most likely to churn? Recommend what to do.")
    assert result.error is not None and "sent a reply that could not be read" in result.error, result.error
    assert "agent failed" not in result.error and "Error" not in result.error
    with demo_sessions() as s:
        calls = s.scalars(select(LlmCall).where(LlmCall.run_id == result.run_id)).all()
        assert len(calls) == 1 and calls[0].error  # the failed call is in the run log
        run = s.get(AgentRun, result.run_id)
        assert run is not None and run.status == "error" and run.error == result.error
        assert s.scalars(select(Recommendation)).all() == []
    assert not [r for r in caplog.records if r.exc_info]  # no traceback: not a bug of ours


def test_a_bug_in_our_code_during_a_model_call_is_still_a_bug() -> None:
    """Only the client's readers of a reply make 'could not be read': the same exception types
    raised by our own code are not endpoint failures."""
    from agent.middleware import describe_llm_error

    def ours() -> None:
        raise IndexError("list index out of range")

    with pytest.raises(IndexError) as caught:
        ours()
    assert describe_llm_error(caught.value) is None
