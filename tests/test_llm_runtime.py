"""Sharing one embedded model server between processes (serve + ask/chat)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.llm.runtime import LLMRuntime, _register, _running_server, _unregister, registry_path
from core.settings import Settings


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def settings_in(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, llm_base_url=None, llm_model=None, llm_gguf_path=None)


def test_a_registered_healthy_server_is_shared(tmp_path: Path, health_server: str) -> None:
    settings = settings_in(tmp_path)
    owner = LLMRuntime(settings, health_server, "qwen2.5-coder-1.5b-instruct")
    _register(settings, owner)
    assert json.loads(registry_path(settings).read_text())["owner_pid"] == os.getpid()

    runtime = LLMRuntime.open(settings)  # no server started: it attaches
    assert (runtime.base_url, runtime.attached, runtime.server) == (health_server, True, None)
    assert runtime.warm("system", []) == 0.0  # the owner warmed it; nothing to do
    runtime.close()  # does not stop what it does not own
    assert registry_path(settings).exists()

    _unregister(settings, health_server)
    assert not registry_path(settings).exists()


def test_a_dead_owner_or_unhealthy_server_is_not_shared(tmp_path: Path, health_server: str) -> None:
    settings = settings_in(tmp_path)
    path = registry_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"base_url": health_server, "model": "qwen2.5-coder-1.5b-instruct",
                                "owner_pid": 2**22 + 12345}))
    assert _running_server(settings) is None  # no such process
    path.write_text(json.dumps({"base_url": "http://127.0.0.1:9/v1", "model": "qwen2.5-coder-1.5b-instruct",
                                "owner_pid": os.getpid()}))
    assert _running_server(settings) is None  # nothing answers /health
    path.write_text(json.dumps({"base_url": health_server, "model": "another-model", "owner_pid": os.getpid()}))
    assert _running_server(settings) is None  # a different model
    path.write_text("not json")
    assert _running_server(settings) is None
