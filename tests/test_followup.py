"""`agent.followup`: a follow-up that points back at the last turn's account keeps that account."""

from __future__ import annotations

import pytest

from agent.followup import pick_target, retarget
from agent.plan import Plan

ONE = [("next_best_action", {"account_id": "ZELO-0096"}, {"p_churn": 0.5, "actions": []})]
TWO = [("churn_risk", {"account_id": "DYNI-0020"}, {"accounts": [{"account_id": "DYNI-0020", "probability": 0.25}]}),
       ("churn_risk", {"account_id": "ZELO-0096"}, {"accounts": [{"account_id": "ZELO-0096", "probability": 0.5}]})]


@pytest.mark.parametrize(("question", "previous", "target"), [
    ("File the top one for approval.", ONE, "ZELO-0096"),
    ("OK. File the best next action for that account.", ONE, "ZELO-0096"),
    ("File the best next action for the riskier of the two.", TWO, "ZELO-0096"),
    ("And the safer one: what should we do?", TWO, "DYNI-0020"),
    ("What should we do about the first one?", TWO, "DYNI-0020"),
    ("File it.", TWO, None),  # two accounts, no way to tell which
    ("Find our riskiest account and file the best action for that account.", ONE, None),  # a new search
    ("Which accounts renew next?", ONE, None),
    ("File the best action for ACME-0042 too.", ONE, None),  # names its own account
    ("File the top one for approval.", [("rank", {"entity": "accounts"}, {"items": []})], None),  # no account yet
])
def test_pick_target(question: str, previous: list, target: str | None) -> None:
    assert pick_target(question, previous) == target


def test_retarget_replaces_a_fresh_ranking_by_the_account_pointed_at() -> None:
    plan = Plan.model_validate({"intent": "file", "steps": [
        {"tool": "rank", "args": {"entity": "accounts", "metric": "churn_probability"}},
        {"tool": "next_best_action", "args": {"account_id": "#1"}},
        {"tool": "propose_recommendation", "args": {"account_id": "#1", "action": "#2"}}]})
    new, note = retarget(plan, "File the best next action for the riskier of the two.", TWO)
    assert [(s.tool, s.args) for s in new.steps] == [
        ("next_best_action", {"account_id": "ZELO-0096"}),
        ("propose_recommendation", {"account_id": "ZELO-0096", "action": "#1"})]
    assert note == "follow-up: the target is ZELO-0096 from the last turn, not a new ranking"


def test_retarget_leaves_a_plan_that_already_names_its_account() -> None:
    plan = Plan.model_validate({"intent": "file", "steps": [{"tool": "next_best_action", "args": {"account_id": "ZELO-0096"}}]})
    assert retarget(plan, "File the top one for approval.", ONE) == (plan, None)
