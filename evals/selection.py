"""Tool-selection eval: question → the agent's first routing call, graded BFCL-style.

Only the first routing request of a turn is sent (system prompt + tool schemas + question,
exactly what the agent sends), and no tool runs, so a case costs one model call. A call
matches an expected one when the function name is right, each expected argument is present
with an equal value after normalisation (lower-case, no spaces or punctuation), each
`allowed` argument is one of its listed values (null in the list: it may be left out), each
`contains` argument mentions every listed phrase, every argument has the JSON type its tool
schema declares (a string "5" is not an integer), and no argument outside
args/allowed/contains/optional appears. Parallel cases (`all: true`) match calls to expected
calls in any order. `expect: none` cases (irrelevance) pass when no call is made.
"""

from __future__ import annotations

import itertools
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from agent.middleware import as_text, check_calls, drop_unsaid_filters, squash
from agent.plan import Plan
from agent.planner import Planner
from agent.prompts import load_prompt
from core.loop import run_sync

CASES_DIR = Path(__file__).resolve().parent / "cases"
DEV_CASES = CASES_DIR / "agent_dev.yaml"
Category = Literal["single", "multiple", "parallel", "irrelevance"]


class ExpectedCall(BaseModel):
    name: str
    args: dict[str, Any] = Field(default_factory=dict, description="Required arguments and their values")
    allowed: dict[str, list[Any]] = Field(
        default_factory=dict, description="Argument → acceptable values; null in the list: may be absent")
    contains: dict[str, list[str]] = Field(default_factory=dict, description="Argument → phrases it must mention")
    optional: list[str] = Field(default_factory=list, description="Arguments that may appear with any value")


class SelectionCase(BaseModel):
    id: str
    category: Category
    question: str
    expect: list[ExpectedCall] | Literal["none"]
    all: bool = Field(default=False, description="Every expected call must be made (parallel), in any order")


class CaseFile(BaseModel):
    version: int
    cases: list[SelectionCase]


class CaseResult(BaseModel):
    id: str
    category: Category
    question: str
    calls: list[dict[str, Any]]
    text: str
    name_ok: bool = Field(description="The right function(s), or no call for irrelevance")
    args_ok: bool = Field(description="name_ok and the arguments match")
    valid: bool = Field(description="Every call validates against its tool's schema")
    detail: str
    latency_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    problem: str | None = Field(default=None, description="What the agent's call check found in the first reply")
    retried: bool = Field(default=False, description="The first reply failed the check; a corrective retry was sent")
    final_name_ok: bool = Field(default=False, description="name_ok of the call the agent would run (after the retry)")
    final_args_ok: bool = Field(default=False, description="args_ok of the call the agent would run (after the retry)")


class CategoryScore(BaseModel):
    n: int
    name_accuracy: float
    arg_accuracy: float
    after_retry_name_accuracy: float = 0.0
    after_retry_arg_accuracy: float = 0.0


class SelectionReport(BaseModel):
    model: str
    cases: int
    by_category: dict[str, CategoryScore]
    tool_selection_accuracy: float = Field(description="In-scope cases with the right function(s)")
    argument_accuracy: float = Field(description="In-scope cases with the right function(s) and arguments")
    invalid_first_replies: int = Field(description="First replies the agent's check rejects (schema, unknown tool, invented id)")
    after_retry_selection_accuracy: float = Field(description="Selection accuracy of what the agent runs after its one retry")
    after_retry_argument_accuracy: float = Field(description="Argument accuracy of what the agent runs after its one retry")
    after_retry_abstention: float
    abstention: float = Field(description="Out-of-scope cases answered without a call")
    false_abstention: float = Field(description="In-scope cases answered without any call")
    latency_p50_s: float
    latency_p95_s: float
    results: list[CaseResult]


def load_cases(path: Path = DEV_CASES) -> list[SelectionCase]:
    return CaseFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).cases


def norm(value: Any) -> Any:
    """Lower-case, strip spaces and punctuation; dicts and lists recursively; numbers as numbers."""
    if isinstance(value, dict):
        return {norm(k): norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    text = squash(str(value))
    try:
        return float(text) if re.fullmatch(r"\d+", text) else text
    except ValueError:
        return text


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,),
    "object": (dict,), "array": (list,), "null": (type(None),),
}


def declared_types(schema: dict[str, Any] | None, arg: str) -> set[str]:
    """JSON types the tool schema allows for `arg` (empty: unknown, anything goes)."""
    prop = ((schema or {}).get("properties") or {}).get(arg) or {}
    options = prop.get("anyOf") or [prop]
    return {o["type"] for o in options if isinstance(o.get("type"), str)}


def type_ok(value: Any, types: set[str]) -> bool:
    if not types:
        return True
    for t in types:
        allowed = _JSON_TYPES.get(t, (object,))
        if isinstance(value, bool) and t in ("integer", "number"):
            continue
        if isinstance(value, allowed):
            return True
    return False


def match_call(call: dict[str, Any], exp: ExpectedCall, schema: dict[str, Any] | None = None) -> tuple[bool, bool, str]:
    """(name matches, arguments match, why not); `schema` (the tool's JSON schema) enables type checks."""
    if call["name"] != exp.name:
        return False, False, f"called {call['name']!r}, expected {exp.name!r}"
    args = {k: v for k, v in call["args"].items() if v not in (None, "", {}, [])}
    allowed = set(exp.args) | set(exp.allowed) | set(exp.contains) | set(exp.optional)
    extra = sorted(set(args) - allowed)
    if extra:
        return True, False, f"unexpected argument(s) {extra}"
    for key, value in args.items():
        types = declared_types(schema, key)
        if not type_ok(value, types):
            return True, False, f"{key}={value!r} is {type(value).__name__}, expected {'/'.join(sorted(types))}"
    for key, want in exp.args.items():
        if key not in args:
            return True, False, f"missing argument {key!r}"
        if norm(args[key]) != norm(want):
            return True, False, f"{key}={args[key]!r}, expected {want!r}"
    for key, values in exp.allowed.items():
        if key not in args:
            if None not in values:
                return True, False, f"missing argument {key!r}"
            continue
        if norm(args[key]) not in [norm(v) for v in values if v is not None]:
            return True, False, f"{key}={args[key]!r}, expected one of {[v for v in values if v is not None]}"
    for key, phrases in exp.contains.items():
        got = norm(args.get(key, ""))
        missing = [p for p in phrases if norm(p) not in str(got)]
        if missing:
            return True, False, f"{key}={args.get(key)!r} does not mention {missing}"
    return True, True, "ok"


def grade(case: SelectionCase, ai: AIMessage, tools: dict[str, BaseTool]) -> tuple[bool, bool, bool, str]:
    """(name_ok, args_ok, valid, detail) for the routing reply `ai`; `valid` includes the invented-id check."""
    question = case.question
    calls = [{"name": c["name"], "args": c["args"]} for c in ai.tool_calls]
    schemas = {name: _schema(t) for name, t in tools.items()}
    valid = check_calls(ai, tools, question.upper(), squash(question)) is None
    if case.expect == "none":
        ok = not calls
        return ok, ok, valid, "no call" if ok else f"called {[c['name'] for c in calls]}"
    if not calls:
        return False, False, valid, "no call: answered in text"
    if case.all:
        return _grade_parallel(calls, list(case.expect), schemas, valid)
    first = calls[0]
    outcomes = [match_call(first, e, schemas.get(e.name)) for e in case.expect]
    name_ok = any(o[0] for o in outcomes)
    args_ok = any(o[1] for o in outcomes)
    detail = "ok" if args_ok else "; ".join(o[2] for o in outcomes)
    return name_ok, args_ok, valid, detail


def _schema(tool: BaseTool) -> dict[str, Any] | None:
    schema = tool.tool_call_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    return schema if isinstance(schema, dict) else None


def _grade_parallel(
    calls: list[dict[str, Any]], expect: list[ExpectedCall], schemas: dict[str, dict[str, Any] | None], valid: bool,
) -> tuple[bool, bool, bool, str]:
    """Order-free: the best one-to-one pairing of calls with expected calls (names first, then arguments)."""
    if len(calls) != len(expect):
        return False, False, valid, f"{len(calls)} call(s), expected {len(expect)}"
    best: tuple[int, int] = (-1, -1)
    for order in itertools.permutations(range(len(expect))):
        outcomes = [match_call(c, expect[i], schemas.get(expect[i].name)) for c, i in zip(calls, order, strict=True)]
        score = (sum(o[0] for o in outcomes), sum(o[1] for o in outcomes))
        best = max(best, score)
        if score == (len(calls), len(calls)):
            break
    names_ok = best[0] == len(expect)
    args_ok = names_ok and best[1] == len(expect)
    detail = "ok" if args_ok else ("right functions, wrong arguments" if names_ok else "wrong function(s)")
    return names_ok, args_ok, valid, detail


def route_once(
    router: BaseChatModel, tools: Sequence[BaseTool], system_prompt: str, question: str,
    retry_of: tuple[AIMessage, str] | None = None,
) -> AIMessage:
    """The agent's first routing request for `question`: same system prompt, same tools, same binding.

    With `retry_of=(reply, problem)` it sends the agent's corrective retry for that reply instead.
    """
    messages = [SystemMessage(system_prompt), HumanMessage(question)]
    if retry_of is not None:
        reply, problem = retry_of
        messages += [as_text(reply), HumanMessage(load_prompt("retry_tool_call.md").format(error=problem))]
    reply = router.bind_tools(list(tools)).invoke(messages)
    if not isinstance(reply, AIMessage):
        raise TypeError(f"the router returned {type(reply).__name__}, not an AIMessage")
    return reply


def run_selection(
    cases: Sequence[SelectionCase],
    *,
    router: BaseChatModel,
    tools: Sequence[BaseTool],
    system_prompt: str,
    model: str,
    progress: Callable[[CaseResult], None] | None = None,
) -> SelectionReport:
    by_name = {t.name: t for t in tools}
    results: list[CaseResult] = []
    for case in cases:
        t0 = time.perf_counter()
        ai = route_once(router, tools, system_prompt, case.question)
        latency = time.perf_counter() - t0
        name_ok, args_ok, valid, detail = grade(case, ai, by_name)
        said = squash(case.question)
        repaired = drop_unsaid_filters(ai, said)[0]  # the agent drops invented filters first
        problem = check_calls(repaired, by_name, case.question.upper(), said)
        final_name_ok, final_args_ok = grade(case, repaired, by_name)[:2]
        if problem is not None:  # what the agent does next: one corrective retry
            again = drop_unsaid_filters(
                route_once(router, tools, system_prompt, case.question, retry_of=(ai, problem)), said)[0]
            if check_calls(again, by_name, case.question.upper(), said) is None:
                final_name_ok, final_args_ok = grade(case, again, by_name)[:2]
            else:  # the agent gives up on calls and answers without tools
                final_name_ok = final_args_ok = case.expect == "none"
        usage = dict(ai.usage_metadata or {})
        result = CaseResult(
            id=case.id, category=case.category, question=case.question,
            calls=[{"name": c["name"], "args": c["args"]} for c in ai.tool_calls],
            text=str(ai.content)[:500], name_ok=name_ok, args_ok=args_ok, valid=valid, detail=detail,
            latency_s=round(latency, 3), prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"), problem=problem, retried=problem is not None,
            final_name_ok=final_name_ok, final_args_ok=final_args_ok,
        )
        results.append(result)
        if progress is not None:
            progress(result)
    return summarise(results, model)


def plan_calls(plan: Plan | None) -> AIMessage:
    """The plan's steps as the tool calls of one routing reply (references kept as written)."""
    calls = [{"name": step.tool, "args": dict(step.args), "id": f"step-{i}", "type": "tool_call"}
             for i, step in enumerate(plan.steps if plan is not None and plan.intent in ("answer", "file") else [], 1)]
    return AIMessage(content="", tool_calls=calls)


def _grade_plan(case: SelectionCase, ai: AIMessage, tools: dict[str, BaseTool]) -> tuple[bool, bool, bool, str]:
    """`grade`, with the expected first call allowed at any step of the plan (a plan runs as a whole,
    in the order its references need: filing a named action runs next_best_action before it)."""
    if case.all and case.expect != "none":
        # the next_best_action a proposal needs is the filing rule's (the executor adds it when missing),
        # not an extra call, unless the case expects it
        wanted = {e.args.get("account_id") for e in case.expect if e.name == "next_best_action"}
        proposed = {c["args"].get("account_id") for c in ai.tool_calls if c["name"] == "propose_recommendation"}
        kept = [c for c in ai.tool_calls if not (c["name"] == "next_best_action"
                                                 and c["args"].get("account_id") in proposed - wanted)]
        return grade(case, AIMessage(content="", tool_calls=kept), tools)
    best = grade(case, ai, tools)
    if case.expect == "none" or len(ai.tool_calls) < 2:
        return best
    for i in range(1, len(ai.tool_calls)):
        calls = [ai.tool_calls[i], *ai.tool_calls[:i], *ai.tool_calls[i + 1:]]
        graded = grade(case, AIMessage(content="", tool_calls=calls), tools)
        if graded[:2] > best[:2]:
            best = graded
    return best


def run_plan_selection(
    cases: Sequence[SelectionCase],
    *,
    planner: Planner,
    tools: Sequence[BaseTool],
    model: str,
    progress: Callable[[CaseResult], None] | None = None,
    prepare: Callable[[Plan, str], tuple[Plan, str | None]] | None = None,
) -> SelectionReport:
    """The plan → execute → answer agent's plan for each question, graded like a routing reply.

    One planning call per case (no tool runs). A multi-step plan passes when any of its steps is
    the expected first call (`_grade_plan`), a parallel case needs all its steps; "after retry" is what the executor would run:
    with `prepare` (`agent.executor.prepared_plan`) the plan after every check and repair in code (intent settled by the
    user's words, unnamed filters dropped, a scope value moved to its field, unknown periods dropped, invented ids and
    unfiled proposals left out) and, when the product would replan before running (an id the user named that
    no step uses, a step failing a check), the prepared replan; else the plan with unnamed filters dropped.
    A parallel case's next_best_action steps that only serve its proposals are the filing rule's, not extra calls."""
    by_name = {t.name: t for t in tools}
    results: list[CaseResult] = []
    for case in cases:
        t0 = time.perf_counter()
        reply = run_sync(planner.plan(case.question))
        latency = time.perf_counter() - t0
        ai = plan_calls(reply.plan)
        name_ok, args_ok, valid, detail = _grade_plan(case, ai, by_name)
        if prepare is not None and reply.plan is not None:
            prepared, feedback = prepare(reply.plan, case.question)
            if feedback is not None:  # the product replans once with this feedback before running anything
                again = run_sync(planner.plan(case.question, feedback=feedback))
                if again.plan is not None:
                    prepared = prepare(again.plan, case.question)[0]
            repaired = plan_calls(prepared)
        else:
            repaired = drop_unsaid_filters(ai, squash(case.question))[0]
        final_name_ok, final_args_ok = _grade_plan(case, repaired, by_name)[:2]
        result = CaseResult(
            id=case.id, category=case.category, question=case.question,
            calls=[{"name": c["name"], "args": c["args"]} for c in ai.tool_calls],
            text=reply.raw[:500], name_ok=name_ok, args_ok=args_ok, valid=valid and reply.error is None,
            detail=detail if reply.error is None else reply.error, latency_s=round(latency, 3),
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
            problem=reply.error, retried=False, final_name_ok=final_name_ok, final_args_ok=final_args_ok,
        )
        results.append(result)
        if progress is not None:
            progress(result)
    return summarise(results, model)


def _share(hits: int, n: int) -> float:
    return round(hits / n, 4) if n else 0.0


def summarise(results: Sequence[CaseResult], model: str) -> SelectionReport:
    by_category: dict[str, CategoryScore] = {}
    for cat in ("single", "multiple", "parallel", "irrelevance"):
        rows = [r for r in results if r.category == cat]
        if rows:
            by_category[cat] = CategoryScore(
                n=len(rows), name_accuracy=_share(sum(r.name_ok for r in rows), len(rows)),
                arg_accuracy=_share(sum(r.args_ok for r in rows), len(rows)),
                after_retry_name_accuracy=_share(sum(r.final_name_ok for r in rows), len(rows)),
                after_retry_arg_accuracy=_share(sum(r.final_args_ok for r in rows), len(rows)),
            )
    in_scope = [r for r in results if r.category != "irrelevance"]
    out_scope = [r for r in results if r.category == "irrelevance"]
    latencies = sorted(r.latency_s for r in results) or [0.0]
    return SelectionReport(
        model=model, cases=len(results), by_category=by_category,
        tool_selection_accuracy=_share(sum(r.name_ok for r in in_scope), len(in_scope)),
        argument_accuracy=_share(sum(r.args_ok for r in in_scope), len(in_scope)),
        abstention=_share(sum(r.name_ok for r in out_scope), len(out_scope)),
        false_abstention=_share(sum(not r.calls for r in in_scope), len(in_scope)),
        invalid_first_replies=sum(r.retried for r in results),
        after_retry_selection_accuracy=_share(sum(r.final_name_ok for r in in_scope), len(in_scope)),
        after_retry_argument_accuracy=_share(sum(r.final_args_ok for r in in_scope), len(in_scope)),
        after_retry_abstention=_share(sum(r.final_name_ok for r in out_scope), len(out_scope)),
        latency_p50_s=round(statistics.median(latencies), 3),
        latency_p95_s=round(latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))], 3),
        results=list(results),
    )
