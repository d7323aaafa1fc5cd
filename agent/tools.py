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


def build_tools() -> list[BaseTool]:
    """The agent's tools, in the registry's order (the schemas are part of the cached prefix)."""
    return [as_langchain_tool(spec) for spec in MODEL_TOOLS]


__all__ = ["build_tools"]
