"""Supervisor for the embedded llama.cpp server: a child process speaking the OpenAI protocol.

`EmbeddedLLMServer` starts ``python -m agent.llm.serve_child`` on a free loopback port,
polls ``/health`` until the model is loaded, can warm the prompt cache with the agent's
fixed prefix, and stops the child with SIGTERM (SIGKILL as a last resort). The child
never outlives this process: it gets PDEATHSIG on Linux and also watches our pid;
an ``atexit`` hook stops it on a normal interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from agent.llm.model_files import ProgressFn, resolve_gguf_path
from core.settings import Settings

CHAT_TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "prompts" / "chat_template.jinja"
DEFAULT_ALIAS = "qwen2.5-coder-1.5b-instruct"
# Two slots, one per prompt shape, pinned by request (`id_slot`): the agent routes with
# tools on ROUTE_SLOT and answers without tools on ANSWER_SLOT, so neither evicts the
# other's cached prefix. Unpinned, llama.cpp picks the slot by prompt similarity and
# both shapes land on one slot (measured in docs/LLM.md). n_ctx is shared by the slots.
DEFAULT_PARALLEL = 2
ROUTE_SLOT = 0
ANSWER_SLOT = 1
DEFAULT_CTX = 8192 * DEFAULT_PARALLEL
DEFAULT_THREADS = 2
STOP_TIMEOUT_S = 5.0
LOG_TAIL_CHARS = 2000


class LLMServerError(RuntimeError):
    """The embedded model server could not start, or died."""


@dataclass(frozen=True)
class ServerConfig:
    """How to run the embedded server; `EmbeddedLLMServer.from_settings` fills the model path."""

    model_path: Path
    n_ctx: int = DEFAULT_CTX
    n_parallel: int = DEFAULT_PARALLEL
    threads: int = DEFAULT_THREADS
    alias: str = DEFAULT_ALIAS
    chat_template_path: Path | None = CHAT_TEMPLATE_PATH
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port chosen at start
    startup_timeout_s: float = 300.0
    log_path: Path | None = None  # None: the child's output is discarded
    verbosity: int = 1


@dataclass(frozen=True)
class Timings:
    """What one completion cost, from llama.cpp's ``timings`` and the OpenAI ``usage`` fields."""

    wall_s: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    prompt_tokens_per_s: float | None
    gen_tokens_per_s: float | None

    @classmethod
    def from_response(cls, body: dict[str, Any], wall_s: float) -> Timings:
        usage = body.get("usage") or {}
        timings = body.get("timings") or {}
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            wall_s=wall_s,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            cached_tokens=int(timings.get("cache_n", details.get("cached_tokens", 0)) or 0),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            prompt_tokens_per_s=_rate(timings, "prompt_n", "prompt_per_second"),
            gen_tokens_per_s=_rate(timings, "predicted_n", "predicted_per_second"),
        )


def _rate(timings: dict[str, Any], count_key: str, rate_key: str) -> float | None:
    # A rate over zero or one token is noise (e.g. a fully cached prompt).
    if int(timings.get(count_key, 0) or 0) < 2 or rate_key not in timings:
        return None
    return float(timings[rate_key])


def embedded_model_name(settings: Settings) -> str:
    """The name the embedded server answers to: LLM_MODEL, else the GGUF's stem, else the packaged alias."""
    if settings.llm_model:
        return settings.llm_model
    if settings.llm_gguf_path is not None:
        return settings.llm_gguf_path.stem
    return DEFAULT_ALIAS


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_live_servers: weakref.WeakSet[EmbeddedLLMServer] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_live_servers):
        server.stop()


class EmbeddedLLMServer:
    """A supervised llama.cpp server child; use as a context manager or call start()/stop()."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._lock = threading.Lock()
        self.started_s: float | None = None
        """Seconds from process start to a healthy /health on the last start()."""

    def __repr__(self) -> str:
        return f"EmbeddedLLMServer(model={str(self.config.model_path)!r}, port={self._port}, pid={self.pid})"

    @classmethod
    def from_settings(
        cls, settings: Settings, *, progress: ProgressFn | None = None, **overrides: Any
    ) -> EmbeddedLLMServer:
        """A server for ``settings.llm_gguf_path`` or the packaged model (joined on first use)."""
        model_path = resolve_gguf_path(settings.data_dir, settings.llm_gguf_path, progress=progress)
        overrides.setdefault("log_path", settings.data_dir / "logs" / "llm-server.log")
        overrides.setdefault("alias", embedded_model_name(settings))
        return cls(ServerConfig(model_path=model_path, **overrides))

    # --- addresses -------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        if self._port is None:
            raise LLMServerError("the embedded LLM server is not started")
        return f"http://{self.config.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return self.root_url + "/v1"

    @property
    def model(self) -> str:
        return self.config.alias

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> EmbeddedLLMServer:
        """Start the child and wait for /health; raises `LLMServerError` with the log tail on failure."""
        with self._lock:
            if self.running:
                return self
            cfg = self.config
            if not cfg.model_path.is_file():
                raise LLMServerError(f"model file {str(cfg.model_path)!r} does not exist")
            port = cfg.port or free_port(cfg.host)
            cmd = self.child_command(port)
            begin = time.perf_counter()
            with contextlib.ExitStack() as stack:
                out: Any = subprocess.DEVNULL
                if cfg.log_path is not None:
                    cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
                    out = stack.enter_context(cfg.log_path.open("wb"))
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                )
            self._port = port
            _live_servers.add(self)
        try:
            self._wait_healthy(begin)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.perf_counter() - begin
        return self

    def child_command(self, port: int) -> list[str]:
        """The child's command line (``python -m agent.llm.serve_child ...``)."""
        cfg = self.config
        cmd = [
            sys.executable, "-m", "agent.llm.serve_child",
            "--model", str(cfg.model_path.resolve()),
            "--host", cfg.host,
            "--port", str(port),
            "--ctx", str(cfg.n_ctx),
            "--parallel", str(cfg.n_parallel),
            "--threads", str(cfg.threads),
            "--alias", cfg.alias,
            "--parent-pid", str(os.getpid()),
            "--verbosity", str(cfg.verbosity),
        ]  # fmt: skip
        if cfg.chat_template_path is not None:
            cmd += ["--chat-template-file", str(cfg.chat_template_path.resolve())]
        # PDEATHSIG fires when the *thread* that forked the child exits, so only ask
        # for it from the main thread; the child's pid watcher covers the rest.
        if threading.current_thread() is threading.main_thread():
            cmd.append("--pdeathsig")
        return cmd

    def _wait_healthy(self, begin: float) -> None:
        deadline = begin + self.config.startup_timeout_s
        url = self.root_url + "/health"
        with httpx.Client(timeout=2.0) as client:
            while True:
                proc = self._proc
                if proc is None or proc.poll() is not None:
                    code = None if proc is None else proc.returncode
                    raise LLMServerError(
                        f"the embedded LLM server exited during start-up (exit code {code}); "
                        f"{self._log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                if time.perf_counter() > deadline:
                    raise LLMServerError(
                        f"the embedded LLM server did not become healthy within "
                        f"{self.config.startup_timeout_s:.0f} s at {url}; {self._log_tail()}"
                    )
                time.sleep(0.2)

    def _log_tail(self) -> str:
        path = self.config.log_path
        if path is None:
            return "no log (log_path unset)"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return f"no log at {str(path)!r}"
        return f"last lines of {str(path)!r}:\n{text[-LOG_TAIL_CHARS:]}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the child and wait up to `timeout_s`; SIGKILL if it is still there."""
        with self._lock:
            proc, self._proc = self._proc, None
            _live_servers.discard(self)
            if proc is None:
                return
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout_s)

    def __enter__(self) -> EmbeddedLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- requests ----------------------------------------------------------------------------
    def chat(self, payload: dict[str, Any], timeout_s: float = 600.0) -> tuple[dict[str, Any], Timings]:
        """POST one non-streaming chat completion; returns the body and its timings."""
        body = {"model": self.model, **payload}
        begin = time.perf_counter()
        with httpx.Client(timeout=timeout_s) as client:
            resp = client.post(self.base_url + "/chat/completions", json=body)
        wall = time.perf_counter() - begin
        if resp.status_code != 200:
            raise LLMServerError(f"chat completion failed: HTTP {resp.status_code}: {resp.text[:500]}")
        data: dict[str, Any] = resp.json()
        return data, Timings.from_response(data, wall)

    def warm(
        self,
        prefix_messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
        slot: int | None = None,
    ) -> Timings:
        """Send the agent's fixed prefix once so the server's prompt cache holds it.

        `prefix_messages` are OpenAI-format messages (usually just the system prompt) and
        `tools` the OpenAI tool schemas, byte-identical to what the agent sends later;
        `slot` pins the slot (`ROUTE_SLOT` for the tool shape, `ANSWER_SLOT` without tools).
        """
        payload: dict[str, Any] = {
            "messages": list(prefix_messages),
            "max_tokens": 1,
            "temperature": 0.0,
            "cache_prompt": True,
        }
        if tools:
            payload["tools"] = list(tools)
        if slot is not None:
            payload["id_slot"] = slot
        _, timings = self.chat(payload)
        return timings
