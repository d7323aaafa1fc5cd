"""Follow-ups that point back at the last turn's accounts ("file it", "the riskier of the two").

The 1.5B planner answers "File the top one for approval" after "What should we do about
ZELO-0096?" by ranking every account and filing for the first (2 of 3 live multi-turn tasks),
even when shown the last turn's steps. When the question names no id but points back (that
account, it, the top one, the riskier of the two, both) and the plan finds its target with a
fresh list step (a ranking or a churn list), the target becomes the last turn's account:
- the last turn was about one account: that one;
- about several: "riskier/riskiest/most at risk" takes the highest churn probability the last
  turn's results showed, "safer/less risky" the lowest, "first" the first, "second/last/other"
  the last; otherwise nothing is changed (the plan stands).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agent.plan import NAMED_ID, Plan, Step, parse_ref

PreviousStep = tuple[str, dict[str, Any], Any]
"""(tool, args, result JSON) of a step the last turn ran."""

POINTS_BACK = re.compile(
    r"\b(?:that|this|the\s+same)\s+(?:account|customer|client|company|one)\b"
    r"|\b(?:file|submit|propose|queue|do|send)\s+(?:it|them|that|this|those)\b"
    r"|\bthe\s+(?:top|first|second|last|other|riskier|safer|less\s+risky)\s+(?:one|account|of\s+the\s+two)\b"
    r"|\bthe\s+(?:riskier|safer|former|latter)\b|\b(?:the\s+two|both\s+of\s+them)\b",
    re.IGNORECASE,
)
"""Words that point back at accounts already discussed (bare "it" does not: "which accounts are
at risk and why is it so" is a new question)."""
FRESH = re.compile(r"\b(?:find|which|who|list|rank|show\s+me)\b", re.IGNORECASE)
"""Words of a new search: the question asks for accounts anew, whatever else it says."""
_HIGHER = re.compile(r"\b(?:riskier|riskiest|most\s+at\s+risk|higher\s+risk|more\s+at\s+risk|more\s+likely)\b", re.I)
_LOWER = re.compile(r"\b(?:safer|safest|less\s+risky|lower\s+risk|less\s+likely)\b", re.I)
_FIRST = re.compile(r"\b(?:first|former)\b", re.I)
_LAST = re.compile(r"\b(?:second|last|latter|other)\b", re.I)
LIST_STEPS = ("rank", "churn_risk")


def previous_accounts(previous: Sequence[PreviousStep]) -> list[str]:
    """The accounts the last turn's steps were about, in order (ids it passed as account_id)."""
    return list(dict.fromkeys(str(args["account_id"]) for _, args, _ in previous if args.get("account_id")))


def _risk(previous: Sequence[PreviousStep]) -> dict[str, float]:
    """Churn probability per account, as the last turn's results showed it."""
    out: dict[str, float] = {}
    for tool, args, result in previous:
        if not isinstance(result, dict):
            continue
        if tool == "churn_risk":
            for a in result.get("accounts", []):
                out[str(a.get("account_id"))] = float(a.get("probability", 0.0))
        elif tool == "next_best_action" and result.get("p_churn") is not None and args.get("account_id"):
            out[str(args["account_id"])] = float(result["p_churn"])
    return out


def pick_target(question: str, previous: Sequence[PreviousStep]) -> str | None:
    """The last turn's account `question` points back at, or None when it does not or it is unclear."""
    if NAMED_ID.search(question) or FRESH.search(question) or not POINTS_BACK.search(question):
        return None
    accounts = previous_accounts(previous)
    if len(accounts) == 1:
        return accounts[0]
    if len(accounts) < 2:
        return None
    risk = _risk(previous)
    if _HIGHER.search(question) and all(a in risk for a in accounts):
        return max(accounts, key=lambda a: risk[a])
    if _LOWER.search(question) and all(a in risk for a in accounts):
        return min(accounts, key=lambda a: risk[a])
    if _FIRST.search(question):
        return accounts[0]
    if _LAST.search(question):
        return accounts[-1]
    return None


def retarget(plan: Plan, question: str, previous: Sequence[PreviousStep]) -> tuple[Plan, str | None]:
    """`plan` with targets taken from a fresh list step replaced by the account the follow-up points
    back at (the list step dropped when nothing else uses it), and a note; unchanged otherwise."""
    target = pick_target(question, previous)
    if target is None:
        return plan, None
    lists = {i for i, s in enumerate(plan.steps, 1) if s.tool in LIST_STEPS and not s.args.get("account_id")}
    fed = [(i, k) for i, s in enumerate(plan.steps, 1) for k, v in s.args.items()
           if k == "account_id" and (r := parse_ref(v)) is not None and r[0] in lists]
    if not fed:
        return plan, None
    steps = [Step(tool=s.tool, args=dict(s.args)) for s in plan.steps]
    for i, k in fed:
        steps[i - 1].args[k] = target
    still_used = {r[0] for s in steps for v in s.args.values() if (r := parse_ref(v)) is not None}
    dropped = {i for i in lists if i not in still_used}
    new_index = {}
    kept: list[Step] = []
    for i, s in enumerate(steps, 1):
        if i in dropped:
            continue
        kept.append(s)
        new_index[i] = len(kept)
    for s in kept:
        for k, v in list(s.args.items()):
            r = parse_ref(v)
            if r is not None and r[0] in new_index:
                s.args[k] = f"#{new_index[r[0]]}" + (f".{r[1]}" if r[1] != 1 else "")
    note = f"follow-up: the target is {target} from the last turn, not a new ranking"
    return Plan(intent=plan.intent, steps=kept), note
