"""What a plan leaves out of a compound question, settled before it runs.

The 1.5B planner often plans one half of a question that asks two things:

- "Give me a quick health check of ACME-0042: churn probability, open tickets and days until
  renewal" planned as `churn_risk` alone. Renewal, open tickets, NPS, the owner: facts only one
  tool returns (its `ToolSpec.asked_by`). When the user asks for one of them about an account a
  step already reads, and no step runs that tool for it, the step is added (`add_asked_steps`: no
  model call; the tools declare what they answer, `tools.registry`).
- "What is margin leak, and which of our activities has the highest one?" planned as a knowledge
  search alone. Passages hold no figures of this company, so a question that also asks about the
  user's own accounts, activities or deals (`data_asked`) is planned again with that said
  (`replan_feedback`, used by `agent.pipeline`: one more model call, the model choosing the tool).
"""

from __future__ import annotations

import re

from agent.plan import ACCOUNT_ID, MAX_STEPS, Plan, Step, ignored_ids
from tools.registry import MODEL_TOOLS, ToolSpec

ACCOUNT_TOOLS = frozenset({"churn_risk", "next_best_action", "get_account", "account_timeline"})
"""Tools that read one account (`account_id`)."""

_ENTITIES = r"(?:accounts?|activit(?:y|ies)|customers?|clients?|deals?|opportunit(?:y|ies)|tickets?|initiatives?)"
_SUPERLATIVE = r"(?:highest|lowest|most|least|top|biggest|largest|smallest|riskiest|worst|best|how\s+many)"
_DATA_ASK = re.compile(
    rf"\b(?:which|what)\s+(?:are\s+|is\s+|were\s+)?(?:one\s+)?(?:of\s+)?(?:our|my)\s+(?:[a-z0-9-]+\s+){{0,2}}?{_ENTITIES}\b"
    rf"|\b(?:which|what)\s+{_ENTITIES}\s+(?:(?:do|did|does|have|has|are|is)\s+)?(?:we|i)\b"
    rf"|\b(?:our|my)\s+(?:[a-z-]+\s+){{0,2}}?{_ENTITIES}\b[^.?!;]{{0,60}}?\b{_SUPERLATIVE}\b"
    rf"|\b{_SUPERLATIVE}\b[^.?!;]{{0,40}}?\b(?:of\s+)?(?:our|my)\s+(?:[a-z-]+\s+){{0,2}}?{_ENTITIES}\b"
    r"|\bhow\s+many\s+(?:[a-z-]+\s+){0,3}?(?:do|did|does|have|has)\s+(?:we|i)\b",
    re.IGNORECASE,
)


def data_asked(question: str) -> str | None:
    """The words of `question` that ask about the user's own data ("which of our activities"), else None."""
    m = _DATA_ASK.search(question)
    return m.group(0) if m else None


def replan_feedback(question: str, plan: Plan) -> str | None:
    """What the planner is told when `plan` leaves part of `question` out and is planned again before
    anything runs: an id the user named that no step uses (`agent.plan.ignored_ids`: the steps would
    answer another question), or the user's own data asked beside a knowledge-only plan (`data_asked`:
    passages hold none of this company's figures); None when neither."""
    ignored = ignored_ids(question, plan)
    if ignored:
        return (f"the user named {', '.join(ignored)} but no step uses it; plan the steps for "
                f"{'those ids' if len(ignored) > 1 else 'that id'}")
    asked = data_asked(question) if knowledge_only(plan) else None
    if asked:
        return (f'it only searches the knowledge base, but the user also asks about their own data ("{asked}"): '
                "add the tool steps that answer that part, and keep the search")
    return None


def knowledge_only(plan: Plan) -> bool:
    """A plan whose every step is a knowledge search."""
    return bool(plan.steps) and all(s.tool == "search_knowledge" for s in plan.steps)


def _asked_tools(question: str, tools: tuple[ToolSpec, ...]) -> list[ToolSpec]:
    return [t for t in tools if t.asked_by is not None and t.asked_by.search(question)]


def add_asked_steps(question: str, plan: Plan,
                    tools: tuple[ToolSpec, ...] = MODEL_TOOLS) -> tuple[Plan, list[str]]:
    """`plan` with a step of each account tool whose facts the user asks for (`ToolSpec.asked_by`)
    for each account a step reads and no step of that tool does; the steps added, as `tool(id)`.

    Only for a plan that answers (in a filing request, "their NPS dropped" is the reason, not a
    question), about accounts named by id (not `#N` references)."""
    if plan.intent != "answer" or not plan.steps:
        return plan, []
    accounts = list(dict.fromkeys(str(s.args["account_id"]).upper() for s in plan.steps
                                  if s.tool in ACCOUNT_TOOLS and ACCOUNT_ID.match(str(s.args.get("account_id", "")))))
    steps, added = list(plan.steps), []
    for tool in _asked_tools(question, tools):
        if tool.name not in ACCOUNT_TOOLS:
            continue
        have = {str(s.args.get("account_id", "")).upper() for s in steps if s.tool == tool.name}
        for account in accounts:
            if account not in have and len(steps) < MAX_STEPS:
                steps.append(Step(tool=tool.name, args={"account_id": account}))
                added.append(f"{tool.name}({account})")
    if not added:
        return plan, []
    # the added reads go after the model's own steps: a `#N` reference keeps pointing where it did
    return plan.model_copy(update={"steps": steps}), added
