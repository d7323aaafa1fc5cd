"""The agent's model endpoint for the life of a process: embedded server or configured URL.

`LLMRuntime.open(settings)` starts (and later stops) the embedded llama.cpp server when no
``LLM_BASE_URL`` is set, or just points at the configured endpoint. It hands out the two
chat models the agent uses — the router (tools bound, route slot) and the answerer (no
tools, answer slot) — and warms both prefixes with exactly the messages and tool schemas
the agent sends, so the first question does not pay for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool

from agent.llm.client import make_chat_model, resolve_endpoint
from agent.llm.model_files import ProgressFn
from agent.llm.server import ANSWER_SLOT, ROUTE_SLOT, EmbeddedLLMServer, embedded_model_name
from core.settings import Settings

WARM_QUESTION = "hello"
ROUTE_MAX_TOKENS = 384
"""A routing reply is a call (~30–80 tokens) or a short answer; never let it ramble."""
PLAN_MAX_TOKENS = 320
"""A plan is 20–180 tokens of compact JSON (six steps at most)."""
ANSWER_MAX_TOKENS = 512
"""The final answer: a few sentences or a short list. Without a cap the 1.5B model can write on
until its context is full (seen while recording cassettes: minutes for one answer)."""


@dataclass
class LLMRuntime:
    """Where the agent's chat requests go, and the embedded server if we own one."""

    settings: Settings
    base_url: str
    model: str
    server: EmbeddedLLMServer | None = None
    warm_s: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    attached: bool = False
    """True when this process uses an embedded server another process (e.g. `valuechain serve`) runs."""

    @classmethod
    def open(
        cls, settings: Settings, *, progress: ProgressFn | None = None, share: bool = True
    ) -> LLMRuntime:
        """Point at ``LLM_BASE_URL``; else use the embedded server another process already runs
        for the same data folder and model (`share`), or start one and wait for its health."""
        endpoint = resolve_endpoint(settings)
        if not endpoint.embedded:
            assert endpoint.base_url is not None  # resolve_endpoint guarantees it when configured
            return cls(settings, endpoint.base_url, endpoint.model)
        if not share:
            return cls._start(settings, endpoint.model, progress)
        # Several workers (`serve --workers N`) open at the same moment: one starts the ~2 GB
        # server under the lock, the others wait for it and attach to its URL.
        with _start_lock(settings):
            if (running := _running_server(settings)) is not None:
                return cls(settings, running, endpoint.model, attached=True)
            runtime = cls._start(settings, endpoint.model, progress)
            _register(settings, runtime)
            return runtime

    @classmethod
    def _start(cls, settings: Settings, model: str, progress: ProgressFn | None) -> LLMRuntime:
        server = EmbeddedLLMServer.from_settings(settings, progress=progress)
        server.start()
        return cls(settings, server.base_url, model, server=server,
                   timings={"server_start_s": server.started_s or 0.0})

    @property
    def embedded(self) -> bool:
        return self.server is not None

    def router(self, **overrides: Any) -> BaseChatModel:
        overrides.setdefault("max_tokens", ROUTE_MAX_TOKENS)
        return make_chat_model(self.settings, self.base_url, slot=ROUTE_SLOT, **overrides)

    def planner(self, schema: dict[str, Any], **overrides: Any) -> BaseChatModel:
        """The plan writer: the route slot, replies constrained to `schema` (compact JSON on the
        embedded server through its grammar; a configured endpoint's structured output otherwise)."""
        overrides.setdefault("max_tokens", PLAN_MAX_TOKENS)
        if resolve_endpoint(self.settings).embedded:
            # heavy: agent.plan loads the tool registry and every tool core (~0.4 s); only the embedded
            # plan agent needs the grammar, not `valuechain llm` or the ReAct agent
            from agent.plan import compact_grammar

            body = {"id_slot": ROUTE_SLOT, "grammar": compact_grammar(schema)}
            return make_chat_model(self.settings, self.base_url, slot=ROUTE_SLOT, extra_body=body, **overrides)
        model = make_chat_model(self.settings, self.base_url, **overrides)
        fmt = {"type": "json_schema", "json_schema": {"name": "plan", "schema": schema}}
        return model.bind(response_format=fmt)  # type: ignore[return-value]

    def answerer(self, **overrides: Any) -> BaseChatModel:
        overrides.setdefault("max_tokens", ANSWER_MAX_TOKENS)
        return make_chat_model(self.settings, self.base_url, slot=ANSWER_SLOT, **overrides)

    def warm(self, system_prompt: str, tools: Sequence[BaseTool]) -> float:
        """Fill both slots' prompt caches with the agent's fixed prefix; seconds taken.

        Goes through the same `ChatOpenAI.bind_tools` path as the agent, so the cached
        prefix is byte-identical to what real requests send. Configured endpoints are not
        warmed (their caching is theirs).
        """
        if not self.embedded:
            return 0.0
        t0 = time.perf_counter()
        prefix = [SystemMessage(system_prompt), HumanMessage(WARM_QUESTION)]
        self.router(max_tokens=1).bind_tools(list(tools)).invoke(prefix)
        self.answerer(max_tokens=1).invoke(prefix)
        self.warm_s = time.perf_counter() - t0
        return self.warm_s

    def close(self) -> None:
        if self.server is not None:
            _unregister(self.settings, self.base_url)
            self.server.stop()

    def __enter__(self) -> LLMRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def registry_path(settings: Settings) -> Path:
    """Where a process that runs the embedded server says so, for other processes to share it."""
    return settings.data_dir / "run" / "llm-server.json"


@contextlib.contextmanager
def _start_lock(settings: Settings) -> Iterator[None]:
    """An exclusive lock on `run/llm-server.lock` beside the registry, held while one process
    looks for a running embedded server and, finding none, starts and registers its own.
    The kernel drops it when the holder dies, so a crashed starter never blocks the rest."""
    path = registry_path(settings).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _register(settings: Settings, runtime: LLMRuntime) -> None:
    path = registry_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"base_url": runtime.base_url, "model": runtime.model, "owner_pid": os.getpid()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    tmp.replace(path)


def _unregister(settings: Settings, base_url: str) -> None:
    path = registry_path(settings)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("base_url") == base_url:
            path.unlink()


def _running_server(settings: Settings) -> str | None:
    """The base URL of a healthy embedded server for this data folder and model, if one runs."""
    try:
        info = json.loads(registry_path(settings).read_text(encoding="utf-8"))
        os.kill(int(info["owner_pid"]), 0)  # the owner is alive (the server dies with it)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if info.get("model") != embedded_model_name(settings):
        return None
    base_url = str(info["base_url"])
    try:
        healthy = httpx.get(base_url.removesuffix("/v1") + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return None
    return base_url if healthy else None
