"""The eval case files: valid against their models, big enough, naming real tools and arguments,
consistent with the fixtures (tools: every case passes; tasks: each gold solution reaches the
expected end state and yields every fact), and their JSON schemas up to date."""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from agent.tools import build_tools
from core.db import make_engine
from crm.dump import database_hash
from evals import faithfulness, selection, tasks, tools_suite
from evals.fixtures import fixture_db, fixture_knowledge, fresh_copy
from evals.schema import export
from tools.registry import ALL_TOOLS, MODEL_TOOLS

TOOLS = {t.name: t for t in build_tools()}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evalwork")


def test_selection_cases_are_many_per_category_and_name_only_offered_tools() -> None:
    cases = selection.load_cases(selection.CASES_DIR / "selection.yaml")
    assert len(cases) >= 120
    assert len({c.id for c in cases}) == len(cases)
    per = Counter(c.category for c in cases)
    assert set(per) == {"single", "multiple", "parallel", "irrelevance"} and min(per.values()) >= 10
    offered = {t.name for t in MODEL_TOOLS}
    assert "list_accounts" not in offered
    dev = {c.question for c in selection.load_cases()}
    for c in cases:
        assert c.question not in dev, f"{c.id} repeats a dev question"
        if c.expect == "none":
            continue
        assert (len(c.expect) >= 2) if c.all else True, c.id
        for e in c.expect:
            assert e.name in offered, (c.id, e.name)
            fields = set(TOOLS[e.name].tool_call_schema.model_json_schema()["properties"])  # type: ignore[union-attr]
            assert set(e.args) | set(e.allowed) | set(e.contains) | set(e.optional) <= fields, c.id
            for key in set(e.args) | set(e.contains):  # every account id the case expects is in the question
                if key in ("account_id", "activity_id"):
                    assert str(e.args[key]).upper() in c.question.upper(), c.id


def test_tool_cases_cover_every_core_and_pass_on_the_golden_fixture(work: Path) -> None:
    cases = tools_suite.load_cases()
    assert {c.tool for c in cases} == {t.name for t in ALL_TOOLS}
    assert sum(1 for c in cases if c.error) >= 10  # the messages the model is shown
    fixture = fixture_db("golden", work)
    before = database_hash(make_engine(f"sqlite:///{fixture}"))
    result = tools_suite.run_tools(cases, fixture=fixture, work_dir=work,
                                   knowledge=cache(lambda: fixture_knowledge(work)))
    assert result.failures == [] and result.metrics["pass_rate"] == 1.0
    assert database_hash(make_engine(f"sqlite:///{fixture}")) == before  # writing cases ran on copies


def test_a_wrong_expectation_fails_with_what_differs(work: Path) -> None:
    wrong = tools_suite.ToolCase.model_validate({
        "id": "w", "tool": "rank", "args": {"entity": "accounts", "metric": "arr"},
        "expect": [{"path": "items.0.id", "equals": "ACME-0003"}, {"path": "items.9.id", "equals": "x"}]})
    err = tools_suite.ToolCase.model_validate({"id": "e", "tool": "get_account", "args": {"account_id": "ACME-0001"},
                                               "error": "no account"})
    result = tools_suite.run_tools([wrong, err], fixture=fixture_db("golden", work), work_dir=work,
                                   knowledge=lambda: pytest.fail("no knowledge case"))
    assert result.metrics["pass_rate"] == 0.0
    assert result.failures[0] == ("w (rank): items.0.id = 'ACME-0001', expected 'ACME-0003'; "
                                  "items.9.id: items has 5 element(s), no [9]")
    assert result.failures[1] == "e (get_account): no error raised; expected 'no account'"
    with pytest.raises(ValueError, match="exactly one of equals"):
        tools_suite.Check.model_validate({"path": "a", "equals": 1, "approx": 1.0})


def test_tasks_are_many_and_each_gold_solution_reaches_the_expected_state(work: Path) -> None:
    all_tasks = tasks.load_tasks()
    assert len(all_tasks) >= 25 and len({t.id for t in all_tasks}) == len(all_tasks)
    assert {t.category for t in all_tasks} == {"file", "read", "safety", "multi_turn"}
    fixture = fixture_db("demo", work)
    engine = make_engine(f"sqlite:///{fixture}")
    baseline = tasks.snapshot(engine)
    engine.dispose()
    offered = {t.name for t in MODEL_TOOLS}

    def no_knowledge() -> Any:
        pytest.fail("gold solutions that search the knowledge base are checked without it")

    for task in all_tasks:
        assert {g.name for g in task.gold} <= offered, task.id
        for fact in task.facts:
            assert {s.tool for s in fact.one_of} <= offered, (task.id, fact.label)
        gold = [g for g in task.gold if g.name != "search_knowledge"]
        copy = fresh_copy(fixture, work / "gold.db")
        try:
            after, calls = tasks.gold_outcome(task.model_copy(update={"gold": gold}), copy, no_knowledge)
        finally:
            copy.dispose()
        assert tasks.state_problems(baseline, after, task.expect_recommendations) == [], task.id
        for fact in task.facts:
            found, value, why = tasks.fact_value(fact, calls)
            assert found and value is not None, (task.id, fact.label, why)
        for mention in task.mentions:  # what the answer must mention comes from the question or a tool
            assert mention in "\n".join(task.turns) or any(mention in str(c[2]) for c in calls), (task.id, mention)


def test_faithfulness_cases_load() -> None:
    cases = faithfulness.load_cases()
    assert len(cases) >= 15 and len({c.id for c in cases}) == len(cases)


def test_json_schemas_are_up_to_date() -> None:
    assert export(check=True) == [], "run `valuechain eval schema` and commit evals/schema/"
