"""The plan the model writes in one call: what the user wants, and the tool calls that answer it.

A plan is compact JSON, constrained by a JSON schema generated from the tool registry (tool
names are an enum and each step's arguments are typed per tool), e.g.

    {"intent":"answer","steps":[{"tool":"rank","args":{"entity":"accounts","metric":"churn_probability","limit":5}}]}
    {"intent":"file","steps":[{"tool":"next_best_action","args":{"account_id":"ACME-0042"}},
      {"tool":"propose_recommendation","args":{"account_id":"ACME-0042","action":"#1","rationale":"..."}}]}
    {"intent":"off_topic","steps":[]}

Intents: `answer` (read and explain), `file` (the user asked to file / propose an action for
approval), `clarify` (a needed id or detail is missing: ask for it), `off_topic` (outside value
chains, CRM accounts and churn). Only `answer` and `file` have steps.

A step may use an earlier step's result with a reference in place of an id: `#N` is the first
id step N returned (an account of a ranking or list, the best action of next_best_action), and
`#N.K` the K-th (1-based). Steps that reference nothing run in parallel.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.registry import FILTER_KEYS, MODEL_TOOLS, ToolSpec

Intent = Literal["answer", "file", "clarify", "off_topic"]
INTENTS: tuple[Intent, ...] = ("answer", "file", "clarify", "off_topic")
MAX_STEPS = 6
TARGETS = ("account_id", "activity_id")

REF = re.compile(r"^#([1-9])(?:\.([1-9][0-9]?))?$")
"""`#N` or `#N.K`: the (K-th, default first) id of step N's result."""


class Step(BaseModel):
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class Plan(BaseModel):
    intent: Intent
    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)

    def compact(self) -> str:
        """The plan as the compact JSON the model writes (no spaces)."""
        return self.model_dump_json()


def parse_ref(value: Any) -> tuple[int, int] | None:
    """(step, k) both 1-based for a reference like `#2` or `#2.3`; None for anything else."""
    if not isinstance(value, str):
        return None
    m = REF.match(value.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2) or 1)


def refs_of(step: Step) -> list[int]:
    """The earlier steps (1-based) `step` refers to."""
    return sorted({r[0] for v in step.args.values() if (r := parse_ref(v)) is not None})


NAMED_ID = re.compile(r"\b(?:[A-Z]{3,5}[-_][0-9]{2,5}|[A-Z]{2,6}(?:-[A-Z0-9]+)*-[0-9]{4})\b")
"""An account id ("ACME-0042") or an activity id ("MKT-EVENTS-2026") as users write them."""


def ignored_ids(question: str, plan: Plan) -> list[str]:
    """Ids the user wrote in `question` that no step of `plan` uses (the 1.5B model sometimes ranks
    all accounts for "a health check of ACME-0042", or files for the top-ranked activity instead of
    the one named). A knowledge search does not use an id: its passages hold no account's data
    ("How do we save the DYNI-0020 relationship?" planned as a search only)."""
    used = " ".join(str(v) for s in plan.steps if s.tool != "search_knowledge" for v in s.args.values()).upper()
    named = dict.fromkeys(m.group(0).upper() for m in NAMED_ID.finditer(question))
    return [i for i in named if i not in used and i.replace("_", "-") not in used]


ACCOUNT_ID = re.compile(r"^[A-Z]{3,5}[-_][0-9]{2,5}$")


def fan_out(question: str, plan: Plan) -> tuple[Plan, list[str]]:
    """The plan with its per-account steps repeated for the accounts the user named that no step uses
    ("Compare the churn risk of A and B" planned for A alone gets B's call too), and the ids added.

    Only for an answering plan whose steps all name one account the user wrote, without references:
    a plan of other shapes, or one that files, is left to the replan (`ignored_ids`)."""
    missing = [i for i in ignored_ids(question, plan) if ACCOUNT_ID.match(i)]
    said = {m.group(0).upper() for m in NAMED_ID.finditer(question)}
    targets = {str(s.args.get("account_id", "")).upper() for s in plan.steps}
    if (not missing or plan.intent != "answer" or not plan.steps or len(targets) != 1
            or not targets <= said or any(refs_of(s) for s in plan.steps)):
        return plan, []
    room = (MAX_STEPS - len(plan.steps)) // len(plan.steps)
    added = missing[:room]
    steps = [*plan.steps, *(s.model_copy(update={"args": {**s.args, "account_id": i}}) for i in added for s in plan.steps)]
    return plan.model_copy(update={"steps": steps}), added


NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
_N = r"([0-9]{1,3}|" + "|".join(NUMBER_WORDS) + r")"
_ASKED_COUNT = re.compile(
    rf"\b(?:top|first|bottom|best|worst)\s+(?!one\b){_N}\b"
    rf"|\b{_N}\s+(?:(?:of\s+)?(?:our|the|my)\s+)?(?:[a-z-]+\s+){{0,2}}?"
    r"(?:accounts|customers|clients|companies|activities|initiatives|projects|ones)\b",
    re.IGNORECASE,
)


def asked_count(question: str) -> int | None:
    """How many items the user asked for ("the 5 riskiest accounts", "top ten"), when they said one number."""
    found = {m.group(1) or m.group(2) for m in _ASKED_COUNT.finditer(question)}
    numbers = {int(n) if n.isdigit() else NUMBER_WORDS.index(n.lower()) + 1 for n in found}
    return numbers.pop() if len(numbers) == 1 else None


def filters_schema(keys: tuple[str, ...] = FILTER_KEYS) -> dict[str, Any]:
    """Filters in a plan: only the keys a user names a scope by (the ReAct schema allows any key, and
    the 1.5B model put `limit` inside filters in 1 of the first 14 held-out questions); per tool
    (`ToolSpec.filter_keys`: a deal's owner or team, a ticket's priority or category)."""
    return {"type": "object", "properties": {key: {"type": "string"} for key in keys}, "additionalProperties": False}


def _step_schema(spec: ToolSpec[Any, Any]) -> dict[str, Any]:
    params = spec.params.model_json_schema()
    args: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
    props = params.get("properties", {})
    # the target first, as people say it and as the exemplars write it: the grammar keeps this order,
    # and with action and rationale first the model closed the object before account_id (6 of 6 filings)
    order = [n for n in ("account_id", "activity_id") if n in props] + [n for n in props if n not in TARGETS]
    for name in order:
        prop = props[name]
        kept = {k: v for k, v in prop.items() if k not in ("title", "description", "default")}
        args["properties"][name] = filters_schema(spec.filter_keys) if name == "filters" else kept
    if params.get("required"):
        args["required"] = list(params["required"])
    return {
        "type": "object",
        "properties": {"tool": {"const": spec.name}, "args": args},
        "required": ["tool", "args"],
        "additionalProperties": False,
    }


def plan_schema(tools: tuple[ToolSpec[Any, Any], ...] = MODEL_TOOLS) -> dict[str, Any]:
    """The JSON schema a plan must match: intent, and steps typed per tool (for constrained decoding)."""
    return {
        "type": "object",
        "properties": {
            "intent": {"enum": list(INTENTS)},
            "steps": {"type": "array", "items": {"anyOf": [_step_schema(t) for t in tools]},
                      "maxItems": MAX_STEPS},
        },
        "required": ["intent", "steps"],
        "additionalProperties": False,
    }


def compact_grammar(schema: dict[str, Any]) -> str:
    """`schema` as a llama.cpp (llguidance) grammar that also forbids whitespace between tokens.

    The server's own `response_format` path drops llguidance's `x-guidance` options, and with
    flexible whitespace the 1.5B model pretty-prints plans: 101 tokens instead of 38 for a
    two-step plan, ~5 s more at ~13 tokens/s on this machine.
    """
    # deferred: xllamacpp comes with the [llm] extra and only the embedded endpoint needs this
    import xllamacpp

    compact = {**schema, "x-guidance": {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}}
    grammar: str = xllamacpp.json_schema_to_grammar(json.dumps(compact))
    return grammar
