"""One embedded model server per data folder, however many workers open the runtime at once.

`valuechain serve --workers N` with LLM_AUTOSTART on: every worker's lifespan calls
`LLMRuntime.open` at the same moment. Without a lock each found no registered server and started
its own (~2 GB each). These tests fork real processes (as uvicorn's workers are) with a fake
`EmbeddedLLMServer` whose start takes a while, and count how many were started.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from http.server import ThreadingHTTPServer
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest
from test_llm_runtime import Health, settings_in

import agent.llm.runtime as runtime_module
from agent.llm.runtime import LLMRuntime, registry_path
from core.settings import Settings

WORKERS = 3
START_S = 0.6  # long enough that unlocked workers would all miss each other's registration


class FakeEmbeddedServer:
    """Stands in for the llama.cpp child: answers /health on a loopback port after START_S."""

    def __init__(self, starts: Path) -> None:
        self.starts = starts
        self.http: ThreadingHTTPServer | None = None
        self.started_s: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **_: Any) -> FakeEmbeddedServer:
        return cls(settings.data_dir / "starts")

    def start(self) -> None:
        with self.starts.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(START_S)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Health)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.started_s = START_S

    @property
    def base_url(self) -> str:
        assert self.http is not None
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"

    def stop(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()


def _worker(settings: Settings, barrier: Barrier, done: Event, out: Any) -> None:
    barrier.wait()  # all open at once, as uvicorn's workers do at startup
    runtime = LLMRuntime.open(settings)
    out.put((os.getpid(), runtime.base_url, runtime.attached))
    done.wait(30)  # the owner must outlive the attach checks (its server dies with it)
    runtime.close()


def test_concurrent_workers_start_one_server_and_the_rest_attach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "EmbeddedLLMServer", FakeEmbeddedServer)
    settings = settings_in(tmp_path)
    ctx = mp.get_context("fork")  # the children inherit the fake, as forked workers inherit the app
    barrier, done, out = ctx.Barrier(WORKERS), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(settings, barrier, done, out)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=30) for _ in procs]
    finally:
        done.set()
        for p in procs:
            p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)

    starters = (tmp_path / "starts").read_text().split()
    assert len(starters) == 1, f"{len(starters)} embedded servers started by {WORKERS} workers"
    urls = {url for _, url, _ in results}
    assert len(urls) == 1
    owners = [pid for pid, _, attached in results if not attached]
    assert owners == [int(starters[0])]  # the one that started it owns it; the others attached
    assert not registry_path(settings).exists()  # the owner unregistered when it closed


def test_a_dead_starter_does_not_block_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock is the kernel's: a process killed while holding it releases it."""
    monkeypatch.setattr(runtime_module, "EmbeddedLLMServer", FakeEmbeddedServer)
    settings = settings_in(tmp_path)
    ctx = mp.get_context("fork")
    killed = ctx.Process(target=LLMRuntime.open, args=(settings,))
    killed.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "starts").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # it holds the lock and is starting
    killed.kill()
    killed.join(timeout=10)

    runtime = LLMRuntime.open(settings)  # would hang on a lock a dead process still held
    try:
        assert runtime.server is not None and not runtime.attached
    finally:
        runtime.close()


def test_serve_says_the_workers_share_one_model_server() -> None:
    from valuechain.cli.serve import _llm_hint

    settings = Settings(llm_base_url=None, llm_autostart=True)
    assert "one model server for all 2 workers" in _llm_hint(settings, workers=2)
    assert "valuechain llm serve" in _llm_hint(settings, workers=2)
    assert "workers" not in _llm_hint(settings)
