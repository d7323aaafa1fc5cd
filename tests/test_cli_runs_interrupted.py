"""Issue #19 item 7 for terminal chats: a `valuechain ask` killed mid-answer (kill -9) left its run
`running` for ever; the next start of a terminal chat (or of the server) now marks it
`interrupted`, and Ctrl-C ends the run `stopped` on the way out. A real `valuechain ask` runs in
a child process against a loopback model endpoint that never answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.runlog import owner_state
from agent.service import open_copilot
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from crm.models import AgentRun

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def silent_model() -> Iterator[str]:
    """An OpenAI-compatible endpoint that takes every request and never answers (until teardown)."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            release.wait(120)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def env_for(db_url: str, model_url: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url, "DATA_DIR": str(tmp_path / "data"),
            "LLM_BASE_URL": model_url, "LLM_MODEL": "m", "AGENT_DESIGN": "react"}


def ask_until_running(db_url: str, model_url: str, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """`valuechain ask` in a child process, once its run is in the run log (waiting for the model)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "from valuechain.cli.main import app; app()", "ask", "Which accounts may churn?"],
        cwd=tmp_path, env=env_for(db_url, model_url, tmp_path), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sessions = make_sessionmaker(make_engine(db_url))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and child.poll() is None:
        with sessions() as s:
            run_id = s.scalars(select(AgentRun.id).where(AgentRun.status == "running")).first()
        if run_id is not None:
            time.sleep(0.5)  # into the model call
            return child, run_id
        time.sleep(0.2)
    child.kill()
    out, err = child.communicate(timeout=30)
    pytest.fail(f"the run never started: {out}{err}")


def run_of(db_url: str, run_id: str) -> AgentRun:
    with make_sessionmaker(make_engine(db_url))() as s:
        run = s.get(AgentRun, run_id)
        assert run is not None
        s.expunge(run)
        return run


def test_a_killed_terminal_chat_is_interrupted_at_the_next_start(
        golden_db_url: str, silent_model: str, tmp_path: Path) -> None:
    child, run_id = ask_until_running(golden_db_url, silent_model, tmp_path)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    run = run_of(golden_db_url, run_id)
    assert run.status == "running" and owner_state(run.owner) == "dead"  # what a crash leaves behind
    settings = Settings(database_url=golden_db_url, data_dir=tmp_path / "data", llm_base_url=silent_model,
                        llm_model="m", agent_design="react")
    with open_copilot(settings, warm=False):  # the next `valuechain ask` / `chat` starts
        pass
    run = run_of(golden_db_url, run_id)
    assert run.status == "interrupted" and run.answer is None and run.finished_at is not None
    host = (run.owner or "").split()[0].split("/")[0]
    assert run.error == f"the process answering it (pid {child.pid} on {host}) ended before the answer; ask again"


def test_ctrl_c_in_a_terminal_chat_ends_its_run_stopped(golden_db_url: str, silent_model: str, tmp_path: Path) -> None:
    child, run_id = ask_until_running(golden_db_url, silent_model, tmp_path)
    child.send_signal(signal.SIGINT)
    child.communicate(timeout=60)
    run = run_of(golden_db_url, run_id)
    assert (run.status, run.error, run.answer) == ("stopped", "stopped in the terminal (Ctrl-C) before the answer", None)
