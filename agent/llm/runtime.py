"""The agent's model endpoint for the life of a process: embedded server or configured URL.

`LLMRuntime.open(settings)` starts (and later stops) the embedded llama.cpp server when no
``LLM_BASE_URL`` is set, or just points at the configured endpoint. It hands out the two
chat models the agent uses — the router (tools bound, route slot) and the answerer (no
tools, answer slot) — and warms both prefixes with exactly the messages and tool schemas
the agent sends, so the first question does not pay for them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool

from agent.llm.client import make_chat_model, resolve_endpoint
from agent.llm.model_files import ProgressFn
from agent.llm.server import ANSWER_SLOT, ROUTE_SLOT, EmbeddedLLMServer
from valuechain.config import Settings

WARM_QUESTION = "hello"
ROUTE_MAX_TOKENS = 384
"""A routing reply is a call (~30–80 tokens) or a short answer; never let it ramble."""
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

    @classmethod
    def open(cls, settings: Settings, *, progress: ProgressFn | None = None) -> LLMRuntime:
        """Point at ``LLM_BASE_URL``, or start the embedded server and wait for its health."""
        endpoint = resolve_endpoint(settings)
        if not endpoint.embedded:
            assert endpoint.base_url is not None  # resolve_endpoint guarantees it when configured
            return cls(settings, endpoint.base_url, endpoint.model)
        server = EmbeddedLLMServer.from_settings(settings, progress=progress)
        server.start()
        return cls(settings, server.base_url, endpoint.model, server=server,
                   timings={"server_start_s": server.started_s or 0.0})

    @property
    def embedded(self) -> bool:
        return self.server is not None

    def router(self, **overrides: Any) -> BaseChatModel:
        overrides.setdefault("max_tokens", ROUTE_MAX_TOKENS)
        return make_chat_model(self.settings, self.base_url, slot=ROUTE_SLOT, **overrides)

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
            self.server.stop()

    def __enter__(self) -> LLMRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
