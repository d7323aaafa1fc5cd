"""A fixed tool-routing probe for the embedded model: dummy tools, ten questions, a BFCL-style check.

The tools mirror the product's shapes (typed functions whose docstrings are the tool
descriptions) but do nothing; the probe only asks whether the server returns a native
OpenAI ``tool_calls`` entry with the right function and valid arguments. Used by the
live tests, ``bench/llm_bench.py`` and ``valuechain llm status --routing``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.utils.function_calling import convert_to_openai_tool

SYSTEM_PROMPT = """\
You are Value Chain Copilot, an analyst for a B2B company's CRM. You explain where value \
is created and lost along Porter's value chain, which accounts are at risk, and what to do next.

Rules:
- Every number you state comes from a tool result. Never invent figures, accounts or ids.
- Framework, definition and method questions are answered from the knowledge base \
(search_knowledge); cite the chunks you used.
- Account questions need an account id (like ACC-00042); if none was given, ask for it.
- Interventions are only proposed with propose_recommendation; a human approves them.
- Periods look like 2026-Q3 or 2026-09. Keep answers short."""


def score_activities(period: str) -> str:
    """Compute this company's cost, revenue contribution and margin per value-chain activity for a period.

    Args:
        period: The period to score, e.g. "2026-Q3" or "2026-09".
    """
    return ""


def rank(
    entity: Literal["account", "product", "segment", "region"],
    metric: Literal["revenue", "margin", "churn_risk", "growth", "cost_to_serve"],
    filters: dict[str, str] | None = None,
    limit: int = 10,
) -> str:
    """Rank accounts, products, segments or regions by a numeric metric, highest first.

    Args:
        entity: What to rank.
        metric: The metric to rank by.
        filters: Optional field equality filters, e.g. {"region": "EMEA", "segment": "SMB"}.
        limit: How many rows to return.
    """
    return ""


def churn_risk(account_id: str) -> str:
    """Churn risk of one account: probability, risk band and the main drivers.

    Args:
        account_id: The account id, e.g. "ACC-00042".
    """
    return ""


def next_best_action(account_id: str, limit: int = 3) -> str:
    """The best next actions for one account, ranked by expected value.

    Args:
        account_id: The account id, e.g. "ACC-00042".
        limit: How many actions to return.
    """
    return ""


def get_account(account_id: str) -> str:
    """Profile of one account: name, segment, region, owner, revenue, products, open opportunities.

    Args:
        account_id: The account id, e.g. "ACC-00042".
    """
    return ""


def search_knowledge(query: str, k: int = 4) -> str:
    """Explain a framework, concept, definition, method or playbook from the knowledge base.

    Use it for every "what is", "what does ... say", "explain" or "how to" question.

    Args:
        query: What to look for, keeping all of the user's key terms.
        k: How many chunks to return.
    """
    return ""


def propose_recommendation(account_id: str, action: str, rationale: str) -> str:
    """Propose an intervention for one account; it waits for a human to approve it.

    Args:
        account_id: The account id, e.g. "ACC-00042".
        action: The proposed action, e.g. "offer a 10% renewal discount".
        rationale: Why, citing the figures it is based on.
    """
    return ""


TOOL_FUNCTIONS: tuple[Callable[..., str], ...] = (
    score_activities,
    rank,
    churn_risk,
    next_best_action,
    get_account,
    search_knowledge,
    propose_recommendation,
)


def tool_schemas() -> list[dict[str, Any]]:
    """OpenAI tool schemas built from the functions' signatures and docstrings."""
    return [convert_to_openai_tool(fn) for fn in TOOL_FUNCTIONS]


def prefix_messages() -> list[dict[str, Any]]:
    """The fixed part of every routing request: the system prompt (tools travel beside it)."""
    return [{"role": "system", "content": SYSTEM_PROMPT}]


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
        "What is the churn risk for account ACC-00042?", "churn_risk", {"account_id": equals("ACC-00042")}
    ),
    RoutingCase(
        "Show me the details of account ACC-01234.", "get_account", {"account_id": equals("ACC-01234")}
    ),
    RoutingCase(
        "Which 5 accounts in EMEA bring the most revenue?",
        "rank",
        {
            "entity": equals("account"),
            "metric": equals("revenue"),
            "filters": holds("EMEA"),
            "limit": equals(5),
        },
    ),
    RoutingCase(
        "Score our value-chain activities for 2026-Q3.", "score_activities", {"period": equals("2026-Q3")}
    ),
    RoutingCase(
        "What should we do next with ACC-00077? Give me the top 2 actions.",
        "next_best_action",
        {"account_id": equals("ACC-00077"), "limit": equals(2)},
    ),
    RoutingCase(
        "What does Porter's value chain framework say about inbound logistics?",
        "search_knowledge",
        {"query": mentions("inbound logistics")},
    ),
    RoutingCase(
        "Propose a 10% renewal discount for ACC-00100 because their usage dropped 40% last quarter.",
        "propose_recommendation",
        {"account_id": equals("ACC-00100"), "action": mentions("discount"), "rationale": mentions("usage")},
    ),
    RoutingCase(
        "Rank our products by margin and show the top 10.",
        "rank",
        {"entity": equals("product"), "metric": equals("margin"), "limit": equals(10)},
    ),
    RoutingCase(
        "Is account ACC-00500 likely to leave us?", "churn_risk", {"account_id": equals("ACC-00500")}
    ),
    RoutingCase(
        "Explain what a margin leak is and how to find one.",
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
