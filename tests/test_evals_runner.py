"""`run_suites` and `valuechain eval run|schema` without a model: the scripted fake drives the model
suites; thresholds decide the exit code; reports land in the out dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_fakes import Script, ScriptedModels, call, say
from typer.testing import CliRunner

from evals.report import Bound, ThresholdFile, load_thresholds
from evals.runner import RunOptions, run_suites
from valuechain.cli.main import app


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runwork")


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def small_cases(tmp_path: Path) -> dict[str, Path]:
    return {
        "selection": write(tmp_path / "selection.yaml", {"version": 1, "cases": [
            {"id": "s1", "category": "single", "question": "How risky is ACME-0042?",
             "expect": [{"name": "churn_risk", "args": {"account_id": "ACME-0042"}}]},
            {"id": "i1", "category": "irrelevance", "question": "Tell me a joke.", "expect": "none"},
        ]}),
        "faithfulness": write(tmp_path / "faithfulness.yaml", {"version": 1, "cases": [
            {"id": "f1", "question": "How likely is ACME-0042 to churn?"}]}),
    }


def test_model_suites_run_with_the_scripted_fake_and_are_gated(tmp_path: Path, work: Path) -> None:
    script = Script([
        call("churn_risk", account_id="ACME-0042"),  # selection s1: right
        call("search_knowledge", query="joke"),  # selection i1: should not call
        # tasks: file-named-account, right
        call("next_best_action", account_id="ACME-0042"),
        call("propose_recommendation", account_id="ACME-0042", action="champion_rebuild", rationale="r"),
        say("Filed champion_rebuild for ACME-0042; expected value 91,521."),
        # faithfulness f1: one invented figure
        call("churn_risk", account_id="ACME-0042"),
        say("ACME-0042 is at 66.6% with 99 open tickets."),
        say("ACME-0042 is at 66.6% with 99 open tickets."),  # the agent's rewrite request: unchanged
    ])
    limits = ThresholdFile(version=1, suites={
        "selection": {"single.arg_accuracy": Bound(min=1.0), "irrelevance.name_accuracy": Bound(min=1.0)},
        "tasks": {"pass^1": Bound(min=1.0)},
        "faithfulness": {"untraceable_share": Bound(max=0.0)},
    })
    options = RunOptions(suites=["selection", "tasks", "faithfulness"], work_dir=work,
                         ids=frozenset({"s1", "i1", "file-named-account", "f1"}), cases=small_cases(tmp_path),
                         knowledge=lambda: pytest.fail("no knowledge here"))
    report = run_suites(options, models=lambda _suite: ScriptedModels(script), thresholds=limits)

    assert script.remaining == 0
    by = {s.suite: s for s in report.suites}
    assert [s.suite for s in report.suites] == ["selection", "tasks", "faithfulness"]
    assert by["selection"].metrics["single.arg_accuracy"] == 1.0
    assert by["selection"].metrics["irrelevance.name_accuracy"] == 0.0
    assert [(g.metric, g.passed) for g in by["selection"].gates] == [
        ("single.arg_accuracy", True), ("irrelevance.name_accuracy", False)]
    assert by["tasks"].passed and by["tasks"].metrics["pass^1"] == 1.0
    # faithfulness covers its own question and the task's answer: 1 of 2 has an untraceable figure
    assert by["faithfulness"].metrics["untraceable_share"] == 0.5
    assert by["faithfulness"].metrics["tasks.untraceable_share"] == 0.0
    assert by["faithfulness"].failures == ["f1: 99"]
    assert report.passed is False and report.model == "scripted" and report.mode == "live"


def test_model_suites_need_a_model(work: Path) -> None:
    with pytest.raises(ValueError, match="need a model endpoint"):
        run_suites(RunOptions(suites=["tasks"], work_dir=work), models=None, thresholds=load_thresholds())
    with pytest.raises(ValueError, match="unknown suite"):
        run_suites(RunOptions(suites=["nope"], work_dir=work), models=None, thresholds=load_thresholds())  # type: ignore[list-item]


def test_cli_runs_the_tools_suite_writes_reports_and_exits_on_thresholds(tmp_path: Path, work: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "reports"
    ok = runner.invoke(app, ["eval", "run", "tools", "--out-dir", str(out), "--work-dir", str(work),
                             "--id", "act-latest-period", "--id", "rank-arr-ties-by-id"])
    assert ok.exit_code == 0, ok.output
    assert "2/2 tool cases pass" in ok.stdout
    report = json.loads((out / "latest.json").read_text())
    assert report["passed"] is True and report["mode"] == "offline"
    assert report["suites"][0]["gates"] == [{"metric": "pass_rate", "bound": "≥ 1", "value": 1.0, "passed": True}]
    assert (out / report["run_id"] / "report.md").is_file()

    strict = write(tmp_path / "strict.yaml", {"version": 1, "suites": {"tools": {"failed": {"max": -1}}}})
    failed = runner.invoke(app, ["eval", "run", "tools", "--out-dir", str(out), "--work-dir", str(work),
                                 "--id", "act-latest-period", "--thresholds", str(strict), "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["suites"][0]["gates"][0]["passed"] is False


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["eval", "run", "nope"])
    assert bad.exit_code == 2 and "unknown suite(s) nope" in bad.output
    both = runner.invoke(app, ["eval", "run", "tasks", "--replay", "--record"])
    assert both.exit_code == 2 and "exclude each other" in both.output
    live = runner.invoke(app, ["eval", "run", "tasks", "--live", "--replay"])
    assert live.exit_code == 2 and "exclude each other" in live.output
    missing = runner.invoke(app, ["eval", "run", "tasks", "--replay", "--cassettes", str(tmp_path),
                                  "--out-dir", str(tmp_path / "r"), "--work-dir", str(tmp_path / "w")])
    assert missing.exit_code == 2 and "no recording of the tasks suite" in missing.output
    assert "make eval-record" in missing.output


def test_cli_schema_check() -> None:
    result = CliRunner().invoke(app, ["eval", "schema", "--check"])
    assert result.exit_code == 0, result.output
