"""Whether the user's own words ask to file a recommendation, or forbid it.

The planner's `intent` decides filing, and this check only settles the two cases the 1.5B model
gets wrong: it planned `next_best_action` with intent "answer" for "File it and give me the
expected value" (3 of 11 live filing tasks), and a plain refusal ("do not file anything") must
never file whatever the plan says. Everything else stays the model's call.

An explicit request is a filing verb with what to file after it in the same sentence:
- file / submit / queue / propose / lodge + it, that, this, them, one, the/a … action,
  recommendation, play, move, or a playbook action id (`champion_rebuild`);
- log / raise / send / put forward / put in / escalate + "for approval", "for sign-off",
  "recommendation" or a playbook action id (these verbs have everyday uses).
"What would you propose?" or "send me the list" are not requests to file.
"""

from __future__ import annotations

import re

from agent.plan import Plan

_STRONG = r"(?:file|submit|queue|propose|lodge)"
_WEAK = r"(?:log|raise|send|put\s+forward|put\s+in|escalate)"
_ACTION_ID = r"\b[a-z]+(?:_[a-z]+)+\b"
_THING = r"(?:action|recommendation|play|move|option|intervention|one)s?"
_APPROVAL = r"(?:for\s+(?:approval|sign[- ]?off|review)|to\s+(?:my\s+)?(?:manager|approver)s?\s+for|recommendation)"

_STRONG_ASK = re.compile(
    rf"\b{_STRONG}\b\s+(?:(?:it|that|this|them|one|those|these)\b|[^.?!;]{{0,60}}?(?:\b{_THING}\b|{_ACTION_ID}))",
    re.IGNORECASE,
)
_WEAK_ASK = re.compile(rf"\b{_WEAK}\b[^.?!;]{{0,60}}?(?:{_APPROVAL}|{_ACTION_ID})", re.IGNORECASE)
_REFUSAL = re.compile(
    rf"\b(?:do\s+not|don'?t|never|no\s+need\s+to|without|not\s+to|nor)\b[^.?!;]{{0,25}}?\b(?:{_STRONG}|{_WEAK}|creat\w*|filing)\b"
    r"|\bnothing\s+(?:should\s+be\s+)?filed\b|\bno\s+filing\b",
    re.IGNORECASE,
)


def filing_request(text: str) -> bool | None:
    """True when `text` explicitly asks to file, False when it says not to, None when it says neither."""
    if _REFUSAL.search(text):
        return False
    if _STRONG_ASK.search(text) or _WEAK_ASK.search(text):
        return True
    return None


_ACTION_VERBS = (
    r"(?:delete|remove|erase|wipe|e-?mail|send|message|text|book|reserve|schedule|cancel|merge|update|change|edit"
    r"|rename|reassign|approve|reject|decline|refund|pay|buy|sell|order|post|tweet|publish|invite"
    r"|create\s+an?\s+(?:account|invoice|user|ticket|task))"
)
_UNSUPPORTED = re.compile(
    r"(?:^|[.!?;]\s+)(?:(?:please|pls|kindly|ok|okay|now|then|also|and)[,\s]+)*"
    rf"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?)?{_ACTION_VERBS}\b(?!\s+(?:me|us)\b)",
    re.IGNORECASE,
)


def unsupported_action(text: str) -> bool:
    """Whether `text` tells the assistant to do something its tools cannot: change or delete CRM
    data, send a message, book, buy, approve or reject (a person decides recommendations in the
    review queue). An imperative at the start of a sentence ("Delete account ACME-0042", "Could you
    email the list ..."); "update me on ..." and filing requests are not. None of the 255
    answerable exemplars nor the 269 answerable eval questions matches."""
    return filing_request(text) is not True and _UNSUPPORTED.search(text.strip()) is not None


def settle_filing(question: str, plan: Plan) -> tuple[Plan, str | None]:
    """`plan` with its intent settled by the user's words, and a note when that changed it: an
    explicit request to file makes an "answer" plan a filing, an explicit "do not file" makes a
    filing an answer."""
    asked = filing_request(question)
    if asked is True and plan.intent == "answer" and plan.steps:
        return plan.model_copy(update={"intent": "file"}), "intent answer → file: the user asked to file"
    if asked is False and plan.intent == "file":
        return plan.model_copy(update={"intent": "answer"}), "intent file → answer: the user said not to file"
    return plan, None
