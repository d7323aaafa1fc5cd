"""A fixed tool-routing probe of the model: the product's own tools and system prompt, ten questions,
a BFCL-style check.

The tool schemas are the agent's (`agent.tools.build_tools`, derived from the tool registry)
and the system prompt is `agent/prompts/system.md`, so the probe measures the model against
what it is asked in production; the tools are not run. The probe only asks whether the server
returns a native OpenAI ``tool_calls`` entry with the right function and valid arguments. Used
by the live tests, ``bench/llm_bench.py`` and ``valuechain llm status --routing``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from langchain_core.utils.function_calling import convert_to_openai_tool

from agent.llm.client import EMBEDDED_API_KEY, NO_API_KEY, Endpoint
from agent.prompts import load_prompt
from agent.tools import build_tools
from core.settings import Settings


def tool_schemas() -> list[dict[str, Any]]:
    """The OpenAI tool schemas the agent offers the model, in its order."""
    return [convert_to_openai_tool(t) for t in build_tools()]


def system_prompt() -> str:
    return load_prompt("system.md")


def prefix_messages() -> list[dict[str, Any]]:
    """The fixed part of every routing request: the system prompt (tools travel beside it)."""
    return [{"role": "system", "content": system_prompt()}]


# The model sometimes goes on to invent a tool result; nothing after this marker is useful.
STOP_SEQUENCES = ("<tool_response>",)

ArgCheck = Callable[[Any], bool]


def equals(expected: Any) -> ArgCheck:
    def check(value: Any) -> bool:
        if isinstance(expected, str) and isinstance(value, str):
            return value.strip().lower() == expected.lower()
        return bool(value == expected)

    return check


def mentions(*words: str) -> ArgCheck:
    """A free-text argument that mentions every one of `words` (case-insensitive)."""

    def check(value: Any) -> bool:
        return isinstance(value, str) and all(w.lower() in value.lower() for w in words)

    return check


def holds(value: str) -> ArgCheck:
    """An object argument with `value` among its values (case-insensitive)."""

    def check(arg: Any) -> bool:
        return isinstance(arg, dict) and any(str(v).lower() == value.lower() for v in arg.values())

    return check


@dataclass(frozen=True)
class RoutingCase:
    question: str
    tool: str
    args: Mapping[str, ArgCheck] = field(default_factory=dict)


CASES: tuple[RoutingCase, ...] = (
    RoutingCase(
        "What is the churn risk for account QUIN-0958?", "churn_risk", {"account_id": equals("QUIN-0958")}
    ),
    RoutingCase(
        "Show me the profile of account DYNE-0036.", "get_account", {"account_id": equals("DYNE-0036")}
    ),
    RoutingCase(
        "Which 5 Enterprise accounts have the most ARR at risk?",
        "rank",
        {
            "entity": equals("accounts"),
            "metric": equals("arr_at_risk"),
            "filters": holds("Enterprise"),
            "limit": equals(5),
        },
    ),
    RoutingCase(
        "Score our value-chain activities for 2026.", "score_activities", {"period": equals("2026")}
    ),
    RoutingCase(
        "What should we do next with CENI-0789? Give me the top 2 actions.",
        "next_best_action",
        {"account_id": equals("CENI-0789"), "limit": equals(2)},
    ),
    RoutingCase(
        "What does Porter's value chain framework say about inbound logistics?",
        "search_knowledge",
        {"query": mentions("inbound logistics")},
    ),
    RoutingCase(
        "File a champion_rebuild recommendation for QUIN-0958: their champion left last month.",
        "propose_recommendation",
        {"account_id": equals("QUIN-0958"), "action": equals("champion_rebuild"), "rationale": mentions("champion")},
    ),
    RoutingCase(
        "Rank our improvement initiatives by ROI and show the top 10.",
        "rank",
        {"entity": equals("initiatives"), "metric": equals("roi"), "limit": equals(10)},
    ),
    RoutingCase(
        "Is account DYNE-0036 likely to leave us?", "churn_risk", {"account_id": equals("DYNE-0036")}
    ),
    RoutingCase(
        "Explain what a margin leak is and how it is computed.",
        "search_knowledge",
        {"query": mentions("margin leak")},
    ),
)


@dataclass(frozen=True)
class RoutingResult:
    question: str
    expected_tool: str
    native_tool_call: bool
    tool: str | None
    arguments: dict[str, Any] | None
    valid: bool
    problems: tuple[str, ...]
    content: str
    seconds: float | None = None


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "boolean": (bool,),
}


def _schema_problems(arguments: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """Required present, nothing unexpected, JSON types and enums respected."""
    props: dict[str, Any] = parameters.get("properties", {})
    problems = [
        f"missing required {name!r}" for name in parameters.get("required", []) if name not in arguments
    ]
    for name, value in arguments.items():
        spec = props.get(name)
        if spec is None:
            problems.append(f"unexpected argument {name!r}")
            continue
        options = spec.get("anyOf", [spec])
        if value is None and any(o.get("type") == "null" for o in options):
            continue
        ok = False
        for option in options:
            types = _TYPES.get(option.get("type", ""), ())
            if isinstance(value, bool) and option.get("type") in ("integer", "number"):
                continue
            if types and isinstance(value, types) and ("enum" not in option or value in option["enum"]):
                ok = True
        if not ok:
            problems.append(f"{name!r}={value!r} does not match {options}")
    return problems


def check_response(case: RoutingCase, body: dict[str, Any], schemas: list[dict[str, Any]]) -> RoutingResult:
    """Grade one chat-completion body against `case`."""
    message = body["choices"][0]["message"]
    calls = message.get("tool_calls") or []
    content = message.get("content") or ""
    if not calls:
        return RoutingResult(case.question, case.tool, False, None, None, False, ("no tool_calls",), content)
    fn = calls[0]["function"]
    name = fn.get("name")
    problems: list[str] = []
    if len(calls) > 1:
        problems.append(f"{len(calls)} tool calls, expected 1")
    try:
        arguments = json.loads(fn.get("arguments") or "{}")
    except json.JSONDecodeError:
        return RoutingResult(
            case.question, case.tool, True, name, None, False, ("arguments are not JSON",), content
        )
    if not isinstance(arguments, dict):
        problems.append("arguments are not an object")
        arguments = {}
    if name != case.tool:
        problems.append(f"called {name!r}, expected {case.tool!r}")
    by_name = {s["function"]["name"]: s["function"]["parameters"] for s in schemas}
    if name in by_name:
        problems += _schema_problems(arguments, by_name[name])
    for arg, check in case.args.items():
        if not check(arguments.get(arg)):
            problems.append(f"{arg}={arguments.get(arg)!r} is wrong")
    return RoutingResult(
        case.question, case.tool, True, name, arguments, not problems, tuple(problems), content
    )


def routing_payload(
    case: RoutingCase, schemas: list[dict[str, Any]], max_tokens: int = 200, slot: int | None = None
) -> dict[str, Any]:
    """The request body for one case: fixed prefix + tools + the question, greedy decoding.

    `slot` pins the embedded server's slot (llama.cpp's ``id_slot``).
    """
    payload: dict[str, Any] = {
        "messages": [*prefix_messages(), {"role": "user", "content": case.question}],
        "tools": schemas,
        "tool_choice": "auto",
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "stop": list(STOP_SEQUENCES),
    }
    if slot is not None:
        payload["id_slot"] = slot
    return payload


def run_routing(endpoint: Endpoint, settings: Settings, client: httpx.Client | None = None,
                cases: tuple[RoutingCase, ...] = CASES) -> list[RoutingResult]:
    """Send every case to `endpoint` (greedy, the product's tools and prompt) and grade the replies.

    Raises httpx.HTTPError when the endpoint fails."""
    if endpoint.base_url is None:
        raise ValueError("the endpoint has no base_url; start the embedded server first")
    schemas = tool_schemas()
    key = EMBEDDED_API_KEY if endpoint.embedded else (settings.llm_api_key or NO_API_KEY)
    results = []
    with client or httpx.Client(timeout=settings.llm_timeout_s) as http:
        for case in cases:
            payload = {"model": endpoint.model, **routing_payload(case, schemas)}
            begin = time.perf_counter()
            resp = http.post(endpoint.base_url + "/chat/completions", json=payload,
                             headers={"Authorization": f"Bearer {key}"})
            resp.raise_for_status()
            result = check_response(case, resp.json(), schemas)
            results.append(RoutingResult(**{**result.__dict__, "seconds": round(time.perf_counter() - begin, 2)}))
    return results
