"""The embedded-server supervisor, driven against a tiny fake HTTP child (no model needed)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.llm import server as server_mod
from agent.llm.server import EmbeddedLLMServer, LLMServerError, ServerConfig, Timings

FAKE_CHILD = r"""
import json, signal, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, mode = int(sys.argv[1]), sys.argv[2]
print(f"fake child starting in mode {mode}", flush=True)
if mode == "exit":
    print("error: failed to load model", flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
ready_at = time.monotonic() + (1e9 if mode == "never" else 0.5)

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            ok = time.monotonic() >= ready_at
            self._send(200 if ok else 503, {"status": "ok" if ok else "loading model"})
        else:
            self._send(404, {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(200, {
            "choices": [{"message": {"role": "assistant", "content": "x"}}],
            "usage": {"prompt_tokens": 900, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}},
            "timings": {"cache_n": 0, "prompt_n": 900, "prompt_per_second": 30.0,
                        "predicted_n": 1, "predicted_per_second": 10.0},
            "echo": body,
        })

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class FakeServer(EmbeddedLLMServer):
    def __init__(self, config: ServerConfig, script: Path, mode: str) -> None:
        super().__init__(config)
        self.script, self.mode = script, mode

    def child_command(self, port: int) -> list[str]:
        return [sys.executable, str(self.script), str(port), self.mode]


Factory = Callable[..., FakeServer]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Factory]:
    script = tmp_path / "fake_child.py"
    script.write_text(FAKE_CHILD)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    made: list[EmbeddedLLMServer] = []

    def factory(mode: str = "ok", **config: Any) -> FakeServer:
        cfg = ServerConfig(model_path=model, log_path=tmp_path / "logs" / "child.log", **config)
        srv = FakeServer(cfg, script, mode)
        made.append(srv)
        return srv

    yield factory
    for srv in made:
        srv.stop()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); stop() reaps, so treat a reaped pid as gone.
    return False


def test_start_warm_stop(make: Factory) -> None:
    srv = make()
    with srv:
        assert srv.running
        assert srv.started_s is not None and srv.started_s >= 0.4
        assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
        timings = srv.warm([{"role": "system", "content": "S"}], [{"type": "function"}])
        assert timings == Timings(
            wall_s=timings.wall_s,
            prompt_tokens=900,
            cached_tokens=0,
            completion_tokens=1,
            prompt_tokens_per_s=30.0,
            gen_tokens_per_s=None,  # one generated token is not a rate
        )
        pid = srv.pid
    assert pid is not None and _gone(pid)
    assert not srv.running
    srv.stop()  # idempotent


def test_warm_sends_the_prefix_once_with_cache_prompt(make: Factory) -> None:
    with make() as srv:
        body, _ = srv.chat({"messages": [], "max_tokens": 1})
        assert body["echo"]["model"] == srv.model


def test_child_exiting_during_start_up_reports_its_log(make: Factory) -> None:
    srv = make("exit")
    with pytest.raises(LLMServerError, match=r"exited during start-up \(exit code 3\)") as err:
        srv.start()
    assert "failed to load model" in str(err.value)
    assert not srv.running


def test_start_up_timeout_stops_the_child(make: Factory) -> None:
    srv = make("never", startup_timeout_s=1.0)
    with pytest.raises(LLMServerError, match="did not become healthy within 1 s"):
        srv.start()
    assert not srv.running


def test_sigkill_when_sigterm_is_ignored(make: Factory) -> None:
    srv = make("stubborn")
    srv.start()
    pid = srv.pid
    begin = time.perf_counter()
    srv.stop(timeout_s=0.5)
    assert time.perf_counter() - begin < 3
    assert pid is not None and _gone(pid)


def test_atexit_hook_stops_live_servers(make: Factory) -> None:
    srv = make().start()
    server_mod._stop_all_at_exit()
    assert not srv.running


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(LLMServerError, match="does not exist"):
        EmbeddedLLMServer(ServerConfig(model_path=tmp_path / "none.gguf")).start()


def test_child_command_line(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    cfg = ServerConfig(model_path=model, n_parallel=2, n_ctx=4096, alias="a")
    cmd = EmbeddedLLMServer(cfg).child_command(1234)
    assert cmd[:3] == [sys.executable, "-m", "agent.llm.serve_child"]
    joined = " ".join(cmd)
    for flag in ("--port 1234", "--parallel 2", "--ctx 4096", "--threads 2", "--alias a", "--pdeathsig"):
        assert flag in joined
    assert f"--parent-pid {os.getpid()}" in joined
    assert "--chat-template-file" in joined and "chat_template.jinja" in joined


def test_base_url_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LLMServerError, match="not started"):
        _ = EmbeddedLLMServer(ServerConfig(model_path=tmp_path / "m.gguf")).base_url
