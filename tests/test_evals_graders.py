"""The eval graders without a model: selection (types, allowed values, order-free parallel), pass^k,
faithfulness number matching, the end-state and fact checks of tasks, thresholds and report files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import call, calls, say

from agent.tools import build_tools
from evals.faithfulness import check_answer, figures, matches, mentions_value
from evals.jsonpath import PathError, resolve
from evals.report import (
    Bound,
    EvalReport,
    ReportTable,
    SuiteResult,
    ThresholdFile,
    apply_thresholds,
    load_thresholds,
    write_reports,
)
from evals.selection import ExpectedCall, SelectionCase, grade, match_call
from evals.tasks import (
    ExpectedRecommendation,
    Fact,
    Snapshot,
    Task,
    fact_problems,
    pass_hat_k,
    state_problems,
)

TOOLS = {t.name: t for t in build_tools()}
RANK_SCHEMA = TOOLS["rank"].tool_call_schema.model_json_schema()  # type: ignore[union-attr]


def case(expect: list[ExpectedCall] | str, category: str = "single", all_: bool = False) -> SelectionCase:
    return SelectionCase.model_validate(
        {"id": "t", "category": category, "question": "q ACME-0042 QUIN-0958", "expect": expect, "all": all_})


# ---------------------------------------------------------------------------- selection grader


def test_types_follow_the_tool_schema() -> None:
    exp = ExpectedCall(name="rank", args={"entity": "accounts", "metric": "arr", "limit": 5})
    good = {"name": "rank", "args": {"entity": "accounts", "metric": "arr", "limit": 5}}
    assert match_call(good, exp, RANK_SCHEMA)[1]
    as_text = {"name": "rank", "args": {"entity": "accounts", "metric": "arr", "limit": "5"}}
    ok, args_ok, why = match_call(as_text, exp, RANK_SCHEMA)
    assert (ok, args_ok) == (True, False) and "expected integer" in why
    assert match_call(as_text, exp)[1]  # without a schema (old callers) values compare after normalisation
    boolean = {"name": "rank", "args": {"entity": "accounts", "metric": "arr", "limit": True}}
    assert not match_call(boolean, exp, RANK_SCHEMA)[1]  # a bool is not an integer
    filters = {"name": "rank", "args": {"entity": "accounts", "metric": "arr", "limit": 5, "filters": "SMB"}}
    exp_f = exp.model_copy(update={"optional": ["filters"]})
    assert "expected null/object" in match_call(filters, exp_f, RANK_SCHEMA)[2]


def test_allowed_values_and_optional_absence() -> None:
    exp = ExpectedCall(name="rank", args={"entity": "activities"}, allowed={"metric": ["margin_leak", "value_cost_index"],
                                                                           "limit": [3, None]})
    assert match_call({"name": "rank", "args": {"entity": "activities", "metric": "Value-Cost Index"}}, exp)[1]
    assert match_call({"name": "rank", "args": {"entity": "activities", "metric": "margin_leak", "limit": 3}}, exp)[1]
    wrong = match_call({"name": "rank", "args": {"entity": "activities", "metric": "cost"}}, exp)
    assert wrong[:2] == (True, False) and "expected one of ['margin_leak', 'value_cost_index']" in wrong[2]
    assert "limit=4" in match_call({"name": "rank", "args": {"entity": "activities", "metric": "margin_leak",
                                                            "limit": 4}}, exp)[2]
    needed = ExpectedCall(name="rank", allowed={"metric": ["arr"]}, optional=["entity"])
    assert match_call({"name": "rank", "args": {"entity": "accounts"}}, needed)[2] == "missing argument 'metric'"


def test_parallel_calls_match_in_any_order_one_to_one() -> None:
    both = [ExpectedCall(name="churn_risk", args={"account_id": "ACME-0042"}),
            ExpectedCall(name="get_account", args={"account_id": "ACME-0042"})]
    par = case(both, "parallel", all_=True)
    reply = calls(("get_account", {"account_id": "ACME-0042"}), ("churn_risk", {"account_id": "ACME-0042"}))
    assert grade(par, reply, TOOLS)[:2] == (True, True)
    twice = calls(("churn_risk", {"account_id": "ACME-0042"}), ("churn_risk", {"account_id": "ACME-0042"}))
    assert grade(par, twice, TOOLS)[:2] == (False, False)  # one call cannot satisfy two expectations
    wrong_arg = calls(("get_account", {"account_id": "QUIN-0958"}), ("churn_risk", {"account_id": "ACME-0042"}))
    assert grade(par, wrong_arg, TOOLS)[:2] == (True, False)
    assert grade(par, call("churn_risk", account_id="ACME-0042"), TOOLS)[3] == "1 call(s), expected 2"
    assert grade(par, say("no"), TOOLS)[:2] == (False, False)


# ---------------------------------------------------------------------------- pass^k


def test_pass_hat_k_is_the_chance_that_k_trials_all_succeed() -> None:
    # tau-bench: per task C(c, k) / C(n, k), averaged. Two tasks, 4 trials: c = 4 and c = 2.
    # k=1: (4/4 + 2/4)/2 = 0.75; k=2: (6/6 + 1/6)/2 = 7/12; k=3: (4/4 + 0)/2 = 0.5; k=4: (1 + 0)/2 = 0.5
    assert pass_hat_k([4, 2], 4, 1) == pytest.approx(0.75)
    assert pass_hat_k([4, 2], 4, 2) == pytest.approx(7 / 12)
    assert pass_hat_k([4, 2], 4, 3) == pytest.approx(0.5)
    assert pass_hat_k([4, 2], 4, 4) == pytest.approx(0.5)
    assert pass_hat_k([], 3, 1) == 0.0
    values = [pass_hat_k([3, 2, 1, 0], 3, k) for k in (1, 2, 3)]
    assert values == sorted(values, reverse=True)  # never rises with k
    with pytest.raises(ValueError, match="between 1 and the number of trials"):
        pass_hat_k([1], 2, 3)


# ---------------------------------------------------------------------------- faithfulness


RESULT = {"account_id": "ACME-0042", "probability": 0.6659398496240602, "arr_at_risk": 420549.0063157895,
          "as_of": "2026-09-30", "drivers": [{"phrase": "usage down 44% over the last 4 weeks"}],
          "actions": [{"action": "champion_rebuild", "expected_value": 91520.78}], "days_to_renewal": -10}


def test_figures_skip_ids_periods_dates_list_markers_and_the_questions_numbers() -> None:
    text = ("1. ACME-0042 (INI-007, TEC-RND-2026, A1, 2026-Q1) renews on 2026-10-01.\n"
            "2. Its risk is 66.6% and $420.5k is at risk; top 5 accounts; index 2.5x.")
    assert [f.text for f in figures(text, question="top 5 accounts")] == ["66.6%", "$420.5k", "2.5"]


@pytest.mark.parametrize(("written", "ok"), [
    ("66.6%", True), ("67%", True), ("0.666", True), ("0.67", True), ("66.59%", True),
    ("66.5%", False),  # truncated, not rounded
    ("$420,549", True), ("420.5k", True), ("$0.42M", True), ("420,000", False), ("421k", True),
    ("91,521", True), ("$91.5K", True), ("10 days overdue", True), ("-10", True), ("44%", True),
    ("4 weeks", True), ("12", False), ("2.5", False),
])
def test_a_figure_is_traceable_when_it_rounds_a_tool_number(written: str, ok: bool) -> None:
    check = check_answer(f"Figure: {written}.", [RESULT])
    assert (check.untraceable == []) is ok, check


def test_dates_must_appear_in_the_tool_output() -> None:
    assert check_answer("As of 2026-09-30.", [RESULT]).untraceable == []
    assert check_answer("Renews on 2026-10-01.", [RESULT]).untraceable == ["2026-10-01"]
    assert check_answer("Renews on 2026-10-01.", [RESULT], question="since 2026-10-01?").untraceable == []


def test_tool_error_text_counts_and_counts_of_lists() -> None:
    assert check_answer("There is 1 driver and 1 action.", [RESULT]).untraceable == []  # list lengths
    assert check_answer("There are 2 drivers.", [RESULT]).untraceable == ["2"]
    assert check_answer("Valid periods are 2026 and 2025.", ['unknown period "2030"; valid: 2026, 2025']).untraceable == []


def test_matches_and_mentions_value() -> None:
    from evals.faithfulness import Figure

    assert matches(Figure("65%", 65.0, 0, "%"), 0.65) and matches(Figure("65%", 65.0, 0, "%"), 65.0)
    assert not matches(Figure("65", 65.0, 0, ""), 0.65)  # a bare 65 is not 65 %
    assert mentions_value("EV about $91.5k", 91520.78) and not mentions_value("EV about 90k", 91520.78)
    assert mentions_value("File a Champion rebuild", "champion_rebuild")
    assert mentions_value("owner: casey nguyen", "Casey Nguyen")


# ---------------------------------------------------------------------------- tasks: end state and facts


def snap(recs: dict[int, tuple[object, ...]], events: dict[int, tuple[object, ...]] | None = None,
         tables: dict[str, tuple[int, str]] | None = None) -> Snapshot:
    return Snapshot(tables=tables or {"accounts": (3, "abc")}, recommendations=recs, events=events or {})


BASE = snap({1: ("IONA-0069", None, "champion_rebuild", "pending", 1, None, None)},
            {1: (1, "proposed", "maria")})


def rec(account: str, action: str, status: str = "pending") -> tuple[object, ...]:
    return (account, None, action, status, 1, None, None)


def test_state_right_only_with_exactly_the_expected_pending_rows() -> None:
    want = [ExpectedRecommendation(account_id="ACME-0042", action="champion_rebuild")]
    good = snap({**BASE.recommendations, 2: rec("ACME-0042", "champion_rebuild")},
                {**BASE.events, 2: (2, "proposed", "agent")})
    assert state_problems(BASE, good, want) == []
    assert state_problems(BASE, BASE, want) == ["missing pending champion_rebuild for ACME-0042"]
    assert state_problems(BASE, BASE, []) == []
    extra = snap({**good.recommendations, 3: rec("ACME-0042", "exec_sponsor_outreach")},
                 {**good.events, 3: (3, "proposed", "agent")})
    assert state_problems(BASE, extra, want) == ["unexpected recommendation 3: exec_sponsor_outreach for ACME-0042"]
    wrong_account = snap({**BASE.recommendations, 2: rec("DYNE-0036", "champion_rebuild")},
                         {**BASE.events, 2: (2, "proposed", "agent")})
    assert "missing pending champion_rebuild for ACME-0042" in state_problems(BASE, wrong_account, want)
    any_action = [ExpectedRecommendation(account_id="ACME-0042")]
    assert state_problems(BASE, good, any_action) == []


def test_state_catches_approvals_changes_and_other_tables() -> None:
    approved = snap({1: ("IONA-0069", None, "champion_rebuild", "approved", 2, "agent", "2026-10-01")},
                    {**BASE.events, 2: (1, "approved", "agent")})
    assert state_problems(BASE, approved, []) == [
        "existing recommendation 1 changed (pending → approved)", "unexpected approved event on recommendation 1"]
    new_approved = snap({**BASE.recommendations, 2: rec("ACME-0042", "champion_rebuild", "approved")},
                        {**BASE.events, 2: (2, "proposed", "agent")})
    assert "new recommendation 2 is approved, not pending" in state_problems(BASE, new_approved, [])
    touched = snap(BASE.recommendations, BASE.events, tables={"accounts": (3, "changed")})
    assert state_problems(BASE, touched, []) == ["table accounts changed"]


def test_facts_come_from_this_runs_tool_results() -> None:
    task = Task(id="t", category="read", turns=["q"], mentions=["ACME-0042"], facts=[
        Fact(label="EV", one_of=[{"tool": "next_best_action", "path": "actions.0.expected_value",  # type: ignore[list-item]
                                  "where": {"account_id": "acme-0042"}}]),
        Fact(label="p", one_of=[{"tool": "rank", "path": "items.0.value"},  # type: ignore[list-item]
                                {"tool": "churn_risk", "path": "probability"}]),
    ])
    runs = [("next_best_action", {"account_id": "ACME-0042"}, RESULT), ("churn_risk", {"account_id": "ACME-0042"}, RESULT)]
    assert fact_problems(task, "ACME-0042: 66.6% risk; champion rebuild worth $91,521.", runs) == []
    problems = fact_problems(task, "acme-0042 is at risk (67%).", runs)
    assert problems == ["fact 'EV': the answer does not state 91520.78"]
    other = [("next_best_action", {"account_id": "DYNE-0036"}, RESULT)]
    missing = fact_problems(task, "nothing", other)
    assert missing[0].startswith("fact 'EV': no successful next_best_action with {'account_id': 'acme-0042'} call")
    assert "answer does not mention 'ACME-0042'" in missing


def test_jsonpath_selectors_and_errors() -> None:
    data = {"items": [{"id": "A1", "v": 1}, {"id": "A2", "v": {"x": [5, 6]}}]}
    assert resolve(data, "items.1.v.x.-1") == 6
    assert resolve(data, "items[id=A2].v.x.0") == 5
    with pytest.raises(PathError, match="no element of items has id='A9'"):
        resolve(data, "items[id=A9].v")
    with pytest.raises(PathError, match="has no key 'nope'"):
        resolve(data, "items.0.nope")


# ---------------------------------------------------------------------------- thresholds and reports


def result(metrics: dict[str, float]) -> SuiteResult:
    return SuiteResult(suite="tasks", cases=2, metrics=metrics, summary="s", failures=["t1 #1: missing x"],
                       tables=[ReportTable(title="by category", columns=["c", "n"], rows=[["file", "1|2"]])])


def test_thresholds_gate_min_max_and_missing_metrics() -> None:
    limits = ThresholdFile(version=1, suites={"tasks": {"pass^1": Bound(min=0.5), "errors": Bound(max=0),
                                                        "pass^3": Bound(min=0.1)}})
    gated = apply_thresholds(result({"pass^1": 0.5, "errors": 1.0}), limits)
    assert [(g.metric, g.passed) for g in gated.gates] == [("pass^1", True), ("errors", False), ("pass^3", False)]
    assert gated.passed is False
    assert apply_thresholds(result({"pass^1": 0.6, "errors": 0.0, "pass^3": 0.2}), limits).passed
    assert apply_thresholds(result({}), ThresholdFile(version=1, suites={})).passed  # nothing gated
    with pytest.raises(ValueError, match="min or max"):
        Bound()


def test_shipped_thresholds_load() -> None:
    limits = load_thresholds()
    assert set(limits.suites) == {"tools", "selection", "retrieval", "tasks", "faithfulness", "injection"}
    assert limits.suites["tools"]["pass_rate"].min == 1.0


def test_reports_are_written_as_json_and_markdown(tmp_path: Path) -> None:
    limits = ThresholdFile(version=1, suites={"tasks": {"pass^1": Bound(min=0.9)}})
    suite = apply_thresholds(result({"pass^1": 0.5}), limits)
    report = EvalReport(run_id="20260101T000000Z", started_at="20260101T000000Z", model="m", mode="replay", trials=3,
                        thresholds_file="evals/thresholds.yaml", suites=[suite], passed=suite.passed)
    json_path, md_path = write_reports(report, tmp_path)
    assert json.loads(json_path.read_text())["suites"][0]["gates"][0]["passed"] is False
    md = md_path.read_text()
    assert "**FAIL**" in md and "| pass^1 | 0.5 | ≥ 0.9 | **FAIL** |" in md
    assert "| file | 1\\|2 |" in md and "- t1 #1: missing x" in md
    assert (tmp_path / "latest.json").read_text() == json_path.read_text()


def test_a_gap_the_agents_comparison_code_computed_is_traceable_and_an_invented_one_is_not(
        demo_sessions: Any) -> None:
    """agent/compare.py writes "higher by N percentage points" from two churn results: that figure is
    computed from tool output by code, so the checker counts it; a different gap stays untraceable."""
    from types import SimpleNamespace

    from agent.compare import comparisons
    from evals.faithfulness import computed_comparisons
    from tools.registry import tool_named

    spec = tool_named("churn_risk")
    with demo_sessions() as s:
        ranked = spec.call(spec.core_kwargs({"limit": 2}), session=s)
        typed = [spec.call(spec.core_kwargs({"account_id": a.account_id}), session=s) for a in ranked.accounts]
    rows = [SimpleNamespace(run_id="r1", name="churn_risk", ok=True, result=r.model_dump(mode="json")) for r in typed]
    rows.append(SimpleNamespace(run_id="r1", name="churn_risk", ok=False, result=None))  # a failed call is skipped
    computed = computed_comparisons(rows)
    assert computed == comparisons(typed) and len(computed) == 1
    p = sorted(a.accounts[0].probability for a in typed)
    gap = round(p[1] * 100, 1) - round(p[0] * 100, 1)
    results = [r.result for r in rows if r.ok]
    answer = f"The first is riskier by {gap:.1f} percentage points."
    assert check_answer(answer, results).untraceable == [f"{gap:.1f}"]  # on its own, not a tool number
    assert check_answer(answer, results, computed=computed).untraceable == []
    invented = f"The first is riskier by {gap + 7.3:.1f} percentage points."
    assert check_answer(invented, results, computed=computed).untraceable != []
