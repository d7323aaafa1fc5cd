"""The agent's LangChain tools, derived from the tool registry (`tools.registry`).

Each registered tool the model is offered becomes a `StructuredTool` whose schema is the
spec's parameter model and whose description is the spec's; `runtime` is injected by
LangChain and never shown to the model. The parameters are only the arguments a user
question sets (no `as_of`, no paging) and the descriptions are short: the embedded 1.5B
model reads every schema on every routing request, so ~1,300 prefix tokens instead of
~3,000 (measured in docs/AGENT.md).

What the model reads back is the spec's projection of the core's pydantic result; the full
result goes to the run log (`tool_calls.result`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool

from agent.deps import RunContext
from tools.registry import MODEL_TOOLS, ToolSpec

Runtime = ToolRuntime[RunContext]


def as_langchain_tool(spec: ToolSpec[Any, Any]) -> BaseTool:
    """`spec` as a LangChain tool run through the run context, tagged with the model's tool-call id."""

    def run(runtime: Runtime, **args: Any) -> str:
        return runtime.context.call(spec, args, call_id=runtime.tool_call_id)

    return StructuredTool(name=spec.name, description=spec.description, args_schema=spec.params, func=run)


PLAN_ONLY = frozenset({"pipeline_health", "deal_score", "service_queue"})
"""Tools offered to the plan agent only (issue #20: its exemplars and grammar cover them). Offered to
the older ReAct loop too, the 1.5B router stopped calling any tool for "Which 5 accounts are most
likely to churn and what should we do about the first one?" (tests/test_agent_cassettes.py)."""


def build_tools(specs: Sequence[ToolSpec[Any, Any]] = MODEL_TOOLS) -> list[BaseTool]:
    """The agent's tools, in the registry's order (the schemas are part of the cached prefix)."""
    return [as_langchain_tool(spec) for spec in specs]


def react_tools() -> list[BaseTool]:
    """The ReAct loop's tools: the offered ones but `PLAN_ONLY`."""
    return build_tools(tuple(s for s in MODEL_TOOLS if s.name not in PLAN_ONLY))


__all__ = ["build_tools"]
