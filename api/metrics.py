"""Prometheus metrics for the service, and the hooks other parts call to record theirs.

All metrics live in one registry (`REGISTRY`) created at import, so building several apps
in one process (tests) never registers a metric twice. `GET /metrics` renders it.

Hooks for code outside `api/` (the agent, the Slack app), all cheap and thread-safe:

- `record_llm_call(model=, seconds=, prompt_tokens=, completion_tokens=, ok=)` — one chat
  completion request (latency histogram, token counters, error counter);
- `record_agent_run(status=, seconds=, channel=)` — one agent run end to end;
- `record_tool_call(tool=, seconds=, outcome=)` or the `observe_tool(tool)` context
  manager — one tool call (the direct tool endpoints use the same one);
- `record_decision(decision=, outcome=)` — one approve/reject attempt.

With several worker processes each keeps its own counts; scrape each worker, or run one
worker per container (the usual Kubernetes layout).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tools.errors import ToolInputError

REGISTRY = CollectorRegistry(auto_describe=True)

# Buckets from 5 ms (a lookup) to 2 minutes (a slow local model answering).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

HTTP_REQUEST_SECONDS = Histogram(
    "vcc_http_request_duration_seconds",
    "HTTP request latency by route template, method and status code",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOOL_CALL_SECONDS = Histogram(
    "vcc_tool_call_duration_seconds",
    "Deterministic tool call latency by tool and outcome (ok, input_error, error)",
    ["tool", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RECOMMENDATION_DECISIONS = Counter(
    "vcc_recommendation_decisions_total",
    "Approve/reject attempts by decision and outcome (decided, already_decided, content_changed, "
    "expired, forbidden, not_found, invalid)",
    ["decision", "outcome"],
    registry=REGISTRY,
)
LLM_REQUEST_SECONDS = Histogram(
    "vcc_llm_request_duration_seconds",
    "Chat-completion request latency by model and outcome (ok, error)",
    ["model", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "vcc_llm_tokens_total",
    "Tokens sent to and received from the chat model, by model and kind (prompt, completion)",
    ["model", "kind"],
    registry=REGISTRY,
)
AGENT_RUN_SECONDS = Histogram(
    "vcc_agent_run_duration_seconds",
    "Agent run latency end to end by channel and status (ok, error)",
    ["channel", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)

ToolOutcome = Literal["ok", "input_error", "error"]


def record_tool_call(*, tool: str, seconds: float, outcome: ToolOutcome) -> None:
    """Record one tool call (`outcome`: ok, input_error for a ToolInputError, error for a bug)."""
    TOOL_CALL_SECONDS.labels(tool=tool, outcome=outcome).observe(max(0.0, seconds))


@contextmanager
def observe_tool(tool: str) -> Iterator[None]:
    """Time the block as one call of `tool`; the outcome follows from the exception, if any."""
    begin = time.perf_counter()
    outcome: ToolOutcome = "error"
    try:
        yield
        outcome = "ok"
    except ToolInputError:
        outcome = "input_error"
        raise
    finally:
        record_tool_call(tool=tool, seconds=time.perf_counter() - begin, outcome=outcome)


def record_decision(*, decision: str, outcome: str) -> None:
    """Count one approve/reject attempt (`outcome` "decided" for the one that won)."""
    RECOMMENDATION_DECISIONS.labels(decision=decision, outcome=outcome).inc()


def record_llm_call(
    *,
    model: str,
    seconds: float,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    ok: bool = True,
) -> None:
    """Record one chat-completion request: latency, tokens (when known) and its outcome."""
    LLM_REQUEST_SECONDS.labels(model=model, outcome="ok" if ok else "error").observe(max(0.0, seconds))
    if prompt_tokens:
        LLM_TOKENS.labels(model=model, kind="prompt").inc(prompt_tokens)
    if completion_tokens:
        LLM_TOKENS.labels(model=model, kind="completion").inc(completion_tokens)


def record_agent_run(*, status: str, seconds: float, channel: str = "api") -> None:
    """Record one agent run end to end (`status` ok or error; `channel` api, web, slack, cli)."""
    AGENT_RUN_SECONDS.labels(channel=channel, status=status).observe(max(0.0, seconds))


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Times every HTTP request and labels it with the matched route template (so
    `/api/v1/recommendations/{recommendation_id}` is one series, not one per id); requests
    that match no route are labelled "unmatched"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begin = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_REQUEST_SECONDS.labels(
                method=scope.get("method", ""),
                route=_route_template(scope),
                status=str(status["code"]),
            ).observe(time.perf_counter() - begin)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
