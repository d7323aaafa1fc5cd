"""The selection grader (BFCL-style) and the dev case file, without a model."""

from __future__ import annotations

from agent_fakes import call, calls, say

from agent.tools import build_tools
from evals.selection import (
    CaseResult,
    ExpectedCall,
    SelectionCase,
    grade,
    load_cases,
    match_call,
    norm,
    summarise,
)

TOOLS = {t.name: t for t in build_tools()}


def case(expect: list[ExpectedCall] | str, category: str = "single", all_: bool = False) -> SelectionCase:
    return SelectionCase.model_validate(
        {"id": "t", "category": category, "question": "q", "expect": expect, "all": all_}
    )


def test_dev_set_is_large_enough_and_names_only_real_tools() -> None:
    cases = load_cases()
    assert len(cases) >= 40
    assert len({c.id for c in cases}) == len(cases)
    assert {c.category for c in cases} == {"single", "multiple", "parallel", "irrelevance"}
    for c in cases:
        if c.expect != "none":
            for e in c.expect:
                assert e.name in TOOLS, (c.id, e.name)
                fields = set(TOOLS[e.name].tool_call_schema.model_json_schema()["properties"])  # type: ignore[union-attr]
                assert set(e.args) | set(e.contains) | set(e.optional) <= fields, c.id


def test_norm_ignores_case_spaces_and_punctuation() -> None:
    assert norm("ACME-0042") == norm("acme 0042") == "acme0042"
    assert norm({"Segment": "Mid-Market"}) == {"segment": "midmarket"}
    assert norm(5) == norm("5") == 5.0


def test_match_checks_name_required_values_extras_and_phrases() -> None:
    exp = ExpectedCall(name="rank", args={"entity": "accounts", "metric": "arr"}, optional=["limit"])
    assert match_call({"name": "rank", "args": {"entity": "Accounts", "metric": "ARR", "limit": 3}}, exp)[1]
    assert match_call({"name": "rank", "args": {"entity": "accounts"}}, exp)[2] == "missing argument 'metric'"
    extra = match_call({"name": "rank", "args": {"entity": "accounts", "metric": "arr", "filters": {"a": "b"}}}, exp)
    assert extra[:2] == (True, False) and "unexpected" in extra[2]
    # empty optional values count as absent
    assert match_call({"name": "rank", "args": {"entity": "accounts", "metric": "arr", "filters": {}}}, exp)[1]
    kb = ExpectedCall(name="search_knowledge", contains={"query": ["inbound logistics"]})
    assert match_call({"name": "search_knowledge", "args": {"query": "Porter inbound-logistics"}}, kb)[1]
    assert not match_call({"name": "search_knowledge", "args": {"query": "Porter"}}, kb)[1]
    assert match_call({"name": "get_account", "args": {}}, kb)[:2] == (False, False)


def test_grade_irrelevance_parallel_and_alternatives() -> None:
    assert grade(case("none", "irrelevance"), say("I cannot help with that."), TOOLS)[:2] == (True, True)
    assert grade(case("none", "irrelevance"), call("search_knowledge", query="weather"), TOOLS)[0] is False

    both = [ExpectedCall(name="churn_risk", args={"account_id": a}) for a in ("A-1", "B-2")]
    par = case(both, "parallel", all_=True)
    good = calls(("churn_risk", {"account_id": "B-2"}), ("churn_risk", {"account_id": "A-1"}))
    assert grade(par, good, TOOLS)[:2] == (True, True)
    assert grade(par, call("churn_risk", account_id="A-1"), TOOLS)[:2] == (False, False)

    alt = case([ExpectedCall(name="rank", args={"metric": "churn_probability"}, optional=["entity", "limit"]),
                ExpectedCall(name="churn_risk", optional=["limit"])])
    assert grade(alt, call("churn_risk", limit=5), TOOLS)[:2] == (True, True)
    assert grade(alt, say("no idea"), TOOLS)[3] == "no call: answered in text"


def test_grade_flags_schema_invalid_calls() -> None:
    exp = case([ExpectedCall(name="next_best_action", optional=["limit"])])
    name_ok, _args_ok, valid, _ = grade(exp, call("next_best_action", limit="many"), TOOLS)
    assert name_ok and not valid


def test_summary_separates_categories_and_abstention() -> None:
    def r(cid: str, cat: str, name_ok: bool, args_ok: bool, has_call: bool) -> CaseResult:
        return CaseResult(id=cid, category=cat, question="q", calls=[{"name": "x", "args": {}}] if has_call else [],  # type: ignore[arg-type]
                          text="", name_ok=name_ok, args_ok=args_ok, valid=True, detail="", latency_s=1.0,
                          prompt_tokens=None, completion_tokens=None)

    report = summarise([r("a", "single", True, True, True), r("b", "single", True, False, True),
                        r("c", "single", False, False, False), r("d", "irrelevance", True, True, False)], "m")
    assert report.by_category["single"].n == 3
    assert report.tool_selection_accuracy == round(2 / 3, 4)
    assert report.argument_accuracy == round(1 / 3, 4)
    assert report.false_abstention == round(1 / 3, 4)
    assert report.abstention == 1.0


def test_run_selection_measures_the_corrective_retry() -> None:
    from agent_fakes import Script, ScriptedChatModel

    from evals.selection import run_selection

    cases = [
        case([ExpectedCall(name="churn_risk", args={"account_id": "ACME-0042"})]),
        SelectionCase(id="r", category="single", question="Churn risk of the riskiest account?",
                      expect=[ExpectedCall(name="rank", args={"entity": "accounts", "metric": "churn_probability"},
                                           optional=["limit"])]),
    ]
    cases[0] = cases[0].model_copy(update={"question": "Risk of ACME-0042?"})
    script = Script([
        call("churn_risk", account_id="ACME-0042"),
        call("churn_risk", account_id="12345"),  # invented id: the agent would retry
        call("rank", entity="accounts", metric="churn_probability"),
    ])
    report = run_selection(cases, router=ScriptedChatModel(script=script), tools=list(TOOLS.values()),
                           system_prompt="s", model="scripted")
    first, second = report.results
    assert (first.args_ok, first.retried, first.final_args_ok) == (True, False, True)
    assert (second.name_ok, second.retried, second.final_args_ok) == (False, True, True)
    assert "'12345' was not given" in (second.problem or "")
    assert report.invalid_first_replies == 1
    assert (report.tool_selection_accuracy, report.after_retry_selection_accuracy) == (0.5, 1.0)
