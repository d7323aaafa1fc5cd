"""What a plan leaves out of a compound question (`agent.coverage`): the account facts only one tool
returns are added as its step; a data question inside a concept question is recognised."""

from __future__ import annotations

import pytest

from agent.coverage import add_asked_steps, data_asked, knowledge_only
from agent.plan import Plan, Step


def _plan(*steps: tuple[str, dict[str, object]], intent: str = "answer") -> Plan:
    return Plan.model_validate({"intent": intent, "steps": [{"tool": t, "args": a} for t, a in steps]})


def test_profile_facts_asked_about_a_read_account_add_its_profile() -> None:
    plan = _plan(("churn_risk", {"account_id": "ACME-0042"}))
    question = "Give me a quick health check of ACME-0042: churn probability, open tickets and days until renewal."
    done, added = add_asked_steps(question, plan)
    assert added == ["get_account(ACME-0042)"]
    assert done.steps == [Step(tool="churn_risk", args={"account_id": "ACME-0042"}),
                          Step(tool="get_account", args={"account_id": "ACME-0042"})]


@pytest.mark.parametrize("question", [
    "When does ACME-0042 renew, and how risky is it?",
    "What's the NPS and churn risk of ACME-0042?",
    "Who owns ACME-0042 and what should we do next?",
    "When is ACME-0042's contract up, and what should we do?",
    "How many seats does ACME-0042 pay for, and is it at risk?",
])
def test_each_profile_fact_counts(question: str) -> None:
    plan = _plan(("next_best_action", {"account_id": "ACME-0042"}))
    assert add_asked_steps(question, plan)[1] == ["get_account(ACME-0042)"]


def test_every_account_read_gets_its_profile_and_references_keep_their_targets() -> None:
    plan = _plan(("churn_risk", {"account_id": "ACME-0042"}), ("churn_risk", {"account_id": "DYNI-0020"}),
                 ("next_best_action", {"account_id": "#1"}))
    done, added = add_asked_steps("Compare the renewal dates of ACME-0042 and DYNI-0020; what should we do?", plan)
    assert added == ["get_account(ACME-0042)", "get_account(DYNI-0020)"]
    assert done.steps[:3] == plan.steps  # appended: `#1` still means the first step


@pytest.mark.parametrize(("question", "plan"), [
    # nothing asked that only the profile holds
    ("How risky is ACME-0042?", _plan(("churn_risk", {"account_id": "ACME-0042"}))),
    # the profile is already read
    ("ACME-0042: renewal and risk?", _plan(("get_account", {"account_id": "ACME-0042"}),
                                           ("churn_risk", {"account_id": "ACME-0042"}))),
    # no account read by id: a ranking's accounts are the model's to plan
    ("Which accounts renew soonest?", _plan(("rank", {"entity": "accounts", "metric": "days_to_renewal"}))),
    ("Renewal date of the riskiest account?", _plan(("rank", {"entity": "accounts", "metric": "churn_probability"}),
                                                    ("churn_risk", {"account_id": "#1"}))),
    # not an answering plan: in a filing request the facts are the user's reason, not a question
    ("When does ACME-0042 renew?", _plan(intent="clarify")),
    ("File an exec_sponsor_outreach for ACME-0042, their NPS dropped.",
     _plan(("next_best_action", {"account_id": "ACME-0042"}),
           ("propose_recommendation", {"account_id": "ACME-0042", "action": "exec_sponsor_outreach",
                                       "rationale": "NPS dropped"}), intent="file")),
])
def test_left_alone(question: str, plan: Plan) -> None:
    assert add_asked_steps(question, plan) == (plan, [])


def test_no_more_than_the_plan_limit() -> None:
    plan = _plan(*[("churn_risk", {"account_id": f"ACME-00{i:02d}"}) for i in range(6)])
    assert add_asked_steps("Renewal dates of these six?", plan) == (plan, [])


@pytest.mark.parametrize(("question", "asked"), [
    ("What is margin leak, and which of our activities has the highest one?", "which of our activities"),
    ("Explain churn, then tell me which accounts we have at the highest risk.", "which accounts we"),
    ("What does value-chain analysis say, and what are our top 3 customers by ARR?", "what are our top 3 customers"),
    ("How does Porter define support activities and how many deals do we have open?", "how many deals do we"),
    ("Which deals do we stand to lose this quarter, and why does that matter in Porter's terms?",
     "Which deals do we"),
    ("Which of my accounts has the lowest NPS? Also explain NPS.", "Which of my accounts"),
])
def test_data_asked_in_a_concept_question(question: str, asked: str | None) -> None:
    assert data_asked(question) == asked


@pytest.mark.parametrize("question", [
    "What is margin leak?",
    "Which activities are primary in Porter's value chain?",
    "How does CRM support the marketing and sales activities of a value chain?",
    "What are the most common causes of customer churn?",
    "Which metrics matter most for account health?",
])
def test_framework_questions_ask_no_data(question: str) -> None:
    assert data_asked(question) is None


def test_knowledge_only() -> None:
    assert knowledge_only(_plan(("search_knowledge", {"query": "margin leak"})))
    assert not knowledge_only(_plan(("search_knowledge", {"query": "x"}), ("score_activities", {})))
    assert not knowledge_only(_plan(intent="off_topic"))
