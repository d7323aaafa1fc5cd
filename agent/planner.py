"""The planner: one model call writes the whole plan as JSON, constrained by the plan's schema.

The request is a fixed prefix (the planning rules of `prompts/planner.md` and a catalogue of
the tools generated from the registry; cached by the embedded server) followed by one user
message: the k retrieved exemplars nearest the question, the last turns of the conversation,
and the question. llama.cpp's server turns `response_format` json_schema into a grammar, so
the reply is always a plan of known tools with typed arguments; a hosted endpoint uses its
structured output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import ValidationError

from agent.intent import unsupported_action
from agent.plan import MAX_STEPS, NAMED_ID, Plan, fan_out
from agent.prompts import load_prompt
from knowledge.search import OFF_TOPIC_SIMILARITY
from tools.registry import MODEL_TOOLS, ToolSpec

HISTORY_TURNS = 2
MAX_HINT_IDS = 10


def _arg_line(name: str, prop: dict[str, Any], required: bool) -> str:
    options = prop.get("anyOf", [prop])
    kinds = []
    for o in options:
        if "enum" in o:
            kinds.append("|".join(str(v) for v in o["enum"]))
        elif o.get("type") == "object":
            kinds.append("{key: value}")
        elif o.get("type") not in (None, "null"):
            kinds.append(str(o["type"]))
    return f"{name}{'' if required else '?'}: {' or '.join(kinds)}"


def tool_catalogue(tools: Sequence[ToolSpec[Any, Any]] = MODEL_TOOLS) -> str:
    """One line per tool: its arguments (optional ones marked ?) and what it is for."""
    lines = []
    for t in tools:
        schema = t.params.model_json_schema()
        required = set(schema.get("required", []))
        args = ", ".join(_arg_line(n, p, n in required) for n, p in schema.get("properties", {}).items())
        lines.append(f"- {t.name}({args}): {' '.join(t.description.split())}")
    return "\n".join(lines)


Scopes = dict[str, list[str]]
"""Account field → the values the data holds (`tools.accounts.scope_values`)."""


def planner_system_prompt(scopes: Scopes | None = None) -> str:
    """The planner's fixed prefix: the rules, the tools and, when given, the data's scope values
    (so "Healthcare" goes under industry and "EMEA" under region)."""
    text = load_prompt("planner.md") + "\n" + tool_catalogue()
    if scopes:
        listed = "\n".join(f"- {key}: {', '.join(values)}" for key, values in scopes.items() if values)
        text += "\nFilter values in this company's data, by field:\n" + listed
    return text


@dataclass
class PlanReply:
    plan: Plan | None
    raw: str
    error: str | None
    seconds: float
    prompt_tokens: int | None
    completion_tokens: int | None
    fanned_out: tuple[str, ...] = ()
    """Accounts the user named that the model's plan left out, given its per-account steps by code
    (`agent.plan.fan_out`)."""
    gated: bool = False
    """Decided off-topic without a model call: far from anything answerable (the similarity gate) or
    an action the tools cannot take (`agent.intent.unsupported_action`)."""


Retrieve = Callable[[str], str]
"""question → the rendered exemplars to show ('' for none)."""
Gate = Callable[[str], bool]
"""question → whether it is near anything the product answers (False: off-topic, no model call)."""


class Planner:
    """Writes plans with one model call each."""

    def __init__(self, model: Runnable[Any, Any], *, retrieve: Retrieve | None = None,
                 scopes: Scopes | None = None, gate: Gate | None = None,
                 passages: Callable[[str], float | None] | None = None) -> None:
        """`model` must already constrain its replies to `plan_schema()` (`LLMRuntime.planner`);
        `passages`: query → similarity of the nearest knowledge passage (None: no passages at all)."""
        self.system = planner_system_prompt(scopes)
        self.model = model
        self.retrieve = retrieve
        self.gate = gate
        self.passages = passages

    def _nothing_to_search(self, question: str, plan: Plan) -> bool:
        """A plan of knowledge searches only, none of which finds a passage about its query: the
        question is outside the framework (the answer would decline: `knowledge.search.on_topic`),
        so the plan is to abstain. An empty store is not that (the answer says how to fill it)."""
        if (self.passages is None or not plan.steps or any(st.tool != "search_knowledge" for st in plan.steps)
                or NAMED_ID.search(question)):  # an id named: about the CRM, and the replan puts it in a step
            return False
        best = [self.passages(str(st.args.get("query", ""))) for st in plan.steps]
        return all(b is not None and b < OFF_TOPIC_SIMILARITY for b in best)

    def messages(self, question: str, history: Sequence[tuple[str, str]] = (), feedback: str | None = None,
                 previous: Sequence[tuple[str, dict[str, Any], Any]] = ()) -> list[BaseMessage]:
        """The planner's request; `previous` = the (tool, args, result) the last turn ran, ids resolved."""
        parts = []
        examples = self.retrieve(question) if self.retrieve else ""
        if examples:
            parts.append("Examples:\n" + examples)
        recent = list(history)[-2 * HISTORY_TURNS:]
        if recent:
            said = "\n".join(f"{'User' if role == 'user' else 'Assistant'}: {_short(text)}" for role, text in recent)
            parts.append("Conversation so far:\n" + said)
            if previous:
                steps = [{"tool": tool, "args": args} for tool, args, _ in previous][:MAX_STEPS]
                parts.append("Steps the last answer ran: " + json.dumps(steps, separators=(",", ":"), default=str))
            last = next((text for role, text in reversed(recent) if role == "assistant"), "")
            ids = list(dict.fromkeys(m.group(0) for m in NAMED_ID.finditer(last)))[:MAX_HINT_IDS]
            if ids:
                parts.append("Ids in the last answer, in order: " + ", ".join(ids))
        parts.append(f"Q: {question}")
        if feedback:
            parts.append(f"Your previous plan failed: {feedback}\nWrite a corrected plan.")
        return [SystemMessage(self.system), HumanMessage("\n\n".join(parts) + "\nA:")]

    async def plan(self, question: str, history: Sequence[tuple[str, str]] = (), feedback: str | None = None,
                   previous: Sequence[tuple[str, dict[str, Any], Any]] = ()) -> PlanReply:
        t0 = time.perf_counter()
        if feedback is None and (unsupported_action(question)
                                 or (self.gate is not None and not history and not self.gate(question))):
            off = Plan(intent="off_topic")
            return PlanReply(off, off.compact(), None, time.perf_counter() - t0, None, None, gated=True)
        reply = await self.model.ainvoke(self.messages(question, history, feedback, previous))
        seconds = time.perf_counter() - t0
        raw = str(reply.content).strip() if isinstance(reply, AIMessage) else str(reply)
        usage = reply.usage_metadata if isinstance(reply, AIMessage) else None
        plan, error = parse_plan(raw)
        added: list[str] = []
        if plan is not None:
            plan, added = fan_out(question, plan)
            if self._nothing_to_search(question, plan):
                plan = Plan(intent="off_topic")
        return PlanReply(plan, raw, error, seconds, usage["input_tokens"] if usage else None,
                         usage["output_tokens"] if usage else None, fanned_out=tuple(added))


def parse_plan(raw: str) -> tuple[Plan | None, str | None]:
    """The plan in `raw` (tolerating a ```json fence), or None and why not."""
    text = raw.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return Plan.model_validate(json.loads(text)), None
    except (json.JSONDecodeError, ValidationError) as exc:
        return None, f"the plan is not valid: {str(exc).splitlines()[0]}"


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
