"""Issue #19 item 8: a model endpoint that answers 200 with a body that is not a chat completion.

The turn must end with the documented "could not be read" sentence, the failed call logged in
`llm_calls`, nothing filed, and no traceback in the log (it is not a bug of ours)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest
from langchain_openai import ChatOpenAI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.pipeline import PlanCopilot
from crm.models import LlmCall, Recommendation

# the transports as httpx2 ships them, before the suite's no-live-model tripwire replaces them per test
SEND = httpx2.HTTPTransport.handle_request
ASEND = httpx2.AsyncHTTPTransport.handle_async_request

BODIES = {
    "text": (b"text/plain", b"hello, this is not JSON"),
    "json-not-completion": (b"application/json", b'{"unexpected": true}'),
    "sse-garbage": (b"text/event-stream", b"data: not json\n\ndata: [DONE]\n\n"),
}


def serve(kind: str) -> Iterator[str]:
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
def endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from serve(request.param)


def test_an_unreadable_reply_reads_as_such_is_logged_and_files_nothing(
        demo_sessions: sessionmaker[Session], endpoint: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # this test talks to its own loopback fake (not a model): lift the suite's tripwire for it
    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", SEND)
    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", ASEND)
    model = ChatOpenAI(base_url=endpoint, api_key="x", model="m", streaming=True, max_retries=0, timeout=10)
    copilot = PlanCopilot(sessions=demo_sessions, knowledge=lambda: pytest.fail("no knowledge needed"),
                          planner=model, answerer=model, model_name="m")
    caplog.set_level(logging.INFO)
    result = copilot.ask("Which 5 accounts are most likely to churn?")
    assert result.error is not None and "could not be read" in result.error
    assert "No generations" not in result.error and "ValueError" not in result.error
    with demo_sessions() as s:
        calls = s.scalars(select(LlmCall).where(LlmCall.run_id == result.run_id)).all()
        assert len(calls) == 1 and calls[0].error  # the failed call is in the run log
        assert s.scalars(select(Recommendation)).all() == []
    assert not [r for r in caplog.records if r.exc_info]  # no traceback: not a bug of ours
