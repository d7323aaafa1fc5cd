"""A team deployment in one test: a throw-away PostgreSQL database, a fake OpenAI-compatible model
endpoint and several `valuechain serve` worker processes on it (issue #22).

Kept apart from any one test so the load and Chroma-server tests can start the same workers:
`TeamDatabase` (a fresh database, migrated, with API keys), `FakeModel` (streams a short answer,
slowly if asked, or holds it until released so a worker can be killed mid-run) and `Worker`
(one `valuechain serve` process with `LLM_AUTOSTART=false`, started and stopped or killed).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from api.auth import create_key
from core.db import make_engine, make_sessionmaker, session_scope
from crm.migrate import upgrade

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
VALUECHAIN = Path(sys.executable).with_name("valuechain")
START_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ PostgreSQL


def postgres_url() -> str:
    """The test server's admin URL: TEST_DATABASE_URL, else the local default.

    Down in CI (CI=true, or TEST_DATABASE_URL set as `.ci/run` does): the test fails saying so;
    elsewhere it is skipped, since a laptop need not run PostgreSQL."""
    url = os.environ.get("TEST_DATABASE_URL") or PG_DEFAULT
    host, port = "127.0.0.1", 5432
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as exc:
        message = (f"PostgreSQL is not answering on {host}:{port} ({exc}); the team deployment test needs it "
                   "(start it, or run .ci/run which does)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("TEST_DATABASE_URL"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@dataclass
class TeamDatabase:
    """A fresh PostgreSQL database, migrated, with an analyst key; dropped by `drop`."""

    admin_url: str
    name: str = field(default_factory=lambda: f"vc_team_{uuid.uuid4().hex[:12]}")
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.admin_url.rpartition('/')[0]}/{self.name}"

    def create(self) -> TeamDatabase:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        engine = make_engine(self.url)
        upgrade(engine)
        with session_scope(make_sessionmaker(engine)) as s:
            for role in ("analyst", "admin"):
                self.keys[role] = create_key(session=s, name=f"team-{role}", role=role).key
        engine.dispose()
        return self

    def drop(self) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()


# ------------------------------------------------------------------------------ the fake model endpoint


class FakeModel:
    """An OpenAI-compatible `/v1/chat/completions` on loopback that streams `ANSWER` word by word,
    `delay_s` apart; while `hold` is clear it stops after the first word until released (a turn
    in the middle of its answer). Counts the completions asked."""

    ANSWER = "The accounts most at risk are listed on the at-risk page of the copilot."

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.hold = threading.Event()
        self.hold.set()
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fake.requests += 1
                head = {"id": "fake", "created": 1, "model": "fake"}
                usage = {"prompt_tokens": 100, "completion_tokens": 14, "total_tokens": 114}
                if not body.get("stream"):
                    data = json.dumps({**head, "object": "chat.completion", "usage": usage, "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": fake.ANSWER},
                         "finish_reason": "stop"}]}).encode()
                    self._send(data, "application/json")
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                words = fake.ANSWER.split(" ")
                try:
                    for i, word in enumerate(words):
                        delta = {"role": "assistant", "content": word if i == 0 else " " + word}
                        self._chunk({**head, "object": "chat.completion.chunk",
                                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                        if i == 0:
                            fake.hold.wait(60)
                        time.sleep(fake.delay_s)
                    self._chunk({**head, "object": "chat.completion.chunk", "usage": usage,
                                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:  # the worker was killed mid-answer
                    pass
                self.close_connection = True

            def do_GET(self) -> None:  # /health, /v1/models
                self._send(b'{"status": "ok", "object": "list", "data": [{"id": "fake", "object": "model"}]}',
                           "application/json")

            def _chunk(self, chunk: dict[str, Any]) -> None:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            def _send(self, data: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------ API workers


class Worker:
    """One `valuechain serve` process on its own port; `env` adds or overrides settings."""

    def __init__(self, name: str, database_url: str, data_dir: Path, model_url: str, **env: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        values = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir),
                  "CHROMA_PATH": str(data_dir / "chroma"), "LLM_BASE_URL": model_url, "LLM_MODEL": "fake",
                  "LLM_API_KEY": "x", "AGENT_DESIGN": "react", "LLM_AUTOSTART": "false", **env}
        for name_ in ("CHROMA_HOST", "PLAYBOOK_PATH", "TEST_DATABASE_URL"):
            if name_ not in env:
                values.pop(name_, None)
        self.log_path = data_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(VALUECHAIN), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=values, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> Worker:
        """Until `/api/v1/chat/status` says the model is available (fails with the worker's log if not)."""
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup (a crash, the OOM killer)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()


def start_workers(count: int, database_url: str, data_dir: Path, model_url: str, **env: str) -> list[Worker]:
    """`count` workers on one database, started together and ready."""
    workers = [Worker(f"worker{i + 1}", database_url, data_dir / f"worker{i + 1}", model_url, **env)
               for i in range(count)]
    try:
        for w in workers:
            w.wait_ready()
    except BaseException:
        for w in workers:
            w.stop()
        raise
    return workers


def sse_events(lines: Iterator[str]) -> Iterator[tuple[int | None, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event read from `lines` (keep-alive comments skipped; id None:
    an event sent without one, not stored: a queued chat job's place)."""
    seq: int | None = None
    name, data = "", ""
    for line in lines:
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            yield seq, name, json.loads(data)
            seq, name, data = None, "", ""


# ------------------------------------------------------------------------------ reading a chat stream

STREAM_WAIT_S = 60.0
Event = tuple[int | None, str, dict[str, Any]]


class Stream:
    """A server-sent event stream read in a thread: its events so far, and whether it has ended."""

    def __init__(self, method: str, url: str, **kwargs: Any) -> None:
        self.events: list[Event] = []
        self.status: int | None = None
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(method, url), kwargs=kwargs, daemon=True)
        self.thread.start()

    def _read(self, method: str, url: str, **kwargs: Any) -> None:
        try:
            with httpx.stream(method, url, timeout=STREAM_WAIT_S, **kwargs) as resp:
                self.status = resp.status_code
                self.started.set()
                for event in sse_events(resp.iter_lines()):
                    self.events.append(event)
        except (httpx.HTTPError, OSError) as exc:  # a killed worker cuts its streams
            self.error = exc
        finally:
            self.started.set()
            self.done.set()

    def wait_for(self, name: str) -> Event:
        deadline = time.monotonic() + STREAM_WAIT_S
        while time.monotonic() < deadline:
            for event in self.events:
                if event[1] == name:
                    return event
            if self.done.is_set():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} event; got {self.events} (status {self.status}, error {self.error})")

    def finish(self) -> list[Event]:
        assert self.done.wait(STREAM_WAIT_S), f"stream did not end; got {self.events}"
        return self.events
