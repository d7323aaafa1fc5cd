"""Recording and replaying the model suites (evals/replay.py), without a model.

The plumbing test records the selection and tasks suites from a fake OpenAI-compatible endpoint
(an httpx2 MockTransport that answers with the scripted fake's replies in OpenAI wire format),
then replays them from the cassette alone — the autouse live-model tripwire is active, so any
request the cassette cannot serve fails — and must reproduce the recorded results. A changed case
must fail the replay loudly. The last test replays the committed recordings in evals/cassettes/
when they exist (`make eval-record` makes them from the embedded model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from agent_fakes import Script, call, calls, say
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from typer.testing import CliRunner

from agent.llm.runtime import LLMRuntime
from core.settings import get_settings
from evals.replay import CASSETTE_DIR, ReplayError, load_meta, paths, recorded_design, replay_runtime
from evals.report import SuiteName, load_thresholds
from evals.runner import RunOptions, run_suites
from valuechain.cli.main import app

FAKE_URL = "http://fake-llm.test/v1"


def _completion(reply: AIMessage, stream: bool) -> httpx2.Response:
    """`reply` as an OpenAI chat completion (JSON, or server-sent events when streaming)."""
    tool_calls = [{"id": c["id"], "type": "function",
                   "function": {"name": c["name"], "arguments": json.dumps(c["args"])}} for c in reply.tool_calls]
    finish = "tool_calls" if tool_calls else "stop"
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    base = {"id": "chatcmpl-fake", "created": 0, "model": "fake"}
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": str(reply.content) or None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        body = {**base, "object": "chat.completion", "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
        return httpx2.Response(200, json=body)
    chunks: list[dict[str, Any]] = []
    if tool_calls:
        chunks.append({"role": "assistant", "tool_calls": [{"index": i, **tc} for i, tc in enumerate(tool_calls)]})
    else:
        chunks += [{"role": "assistant", "content": word} for word in str(reply.content).split(" ")]
    events = [{**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
              for d in chunks]
    events.append({**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


class FakeEndpoint(LLMRuntime):
    """A configured (not embedded) endpoint whose HTTP goes to a MockTransport serving `script`."""

    def __init__(self, script: Script) -> None:
        settings = get_settings().model_copy(update={"llm_base_url": FAKE_URL, "llm_model": "fake"})
        super().__init__(settings, FAKE_URL, "fake")
        self.script = script
        transport = httpx2.MockTransport(self._handle)
        self._clients = {"http_client": httpx2.Client(transport=transport),
                         "http_async_client": httpx2.AsyncClient(transport=transport)}

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/chat/completions"
        body = json.loads(request.content)
        reply = self.script.replies.pop(0)
        assert isinstance(reply, AIMessage)
        return _completion(reply, bool(body.get("stream")))

    def router(self, **overrides: Any) -> BaseChatModel:
        return super().router(**self._clients, **overrides)

    def planner(self, schema: dict[str, Any], **overrides: Any) -> BaseChatModel:
        return super().planner(schema, **self._clients, **overrides)

    def answerer(self, **overrides: Any) -> BaseChatModel:
        return super().answerer(**self._clients, **overrides)


def cases(tmp_path: Path, question: str = "Compare the churn risk of ACME-0042 and ORII-0017.") -> dict[str, Path]:
    sel = tmp_path / "selection.yaml"
    sel.write_text(yaml.safe_dump({"version": 1, "cases": [
        {"id": "s1", "category": "single", "question": "How risky is ACME-0042?",
         "expect": [{"name": "churn_risk", "args": {"account_id": "ACME-0042"}}]},
        {"id": "p1", "category": "parallel", "question": question, "all": True,
         "expect": [{"name": "churn_risk", "args": {"account_id": "ACME-0042"}},
                    {"name": "churn_risk", "args": {"account_id": "ORII-0017"}}]},
    ]}))
    return {"selection": sel}


SCRIPT = [
    call("churn_risk", account_id="ACME-0042"),  # selection s1
    calls(("churn_risk", {"account_id": "ACME-0042"}), ("churn_risk", {"account_id": "ORII-0017"})),  # p1
    # tasks: file-named-account (two trials, the second files the wrong action)
    call("next_best_action", account_id="ACME-0042"),
    call("propose_recommendation", account_id="ACME-0042", action="champion_rebuild", rationale="Champion left."),
    say("Filed champion_rebuild for ACME-0042; expected value $91,521."),
    call("next_best_action", account_id="ACME-0042"),
    call("propose_recommendation", account_id="ACME-0042", action="exec_sponsor_outreach", rationale="x"),
    say("Filed exec_sponsor_outreach for ACME-0042."),
]


def options(tmp_path: Path, mode: str, case_files: dict[str, Path]) -> RunOptions:
    return RunOptions(suites=["selection", "tasks"], trials=2, work_dir=tmp_path / "work",
                      ids=None if mode == "replay" else frozenset({"s1", "p1", "file-named-account"}),
                      cases=case_files, mode=mode,  # type: ignore[arg-type]
                      cassette_dir=tmp_path / "cassettes", knowledge=lambda: pytest.fail("no knowledge here"))


def test_record_then_replay_reproduces_the_results_without_a_model(tmp_path: Path) -> None:
    script = Script(SCRIPT)
    fake = FakeEndpoint(script)
    case_files = cases(tmp_path)
    recorded = run_suites(options(tmp_path, "record", case_files), models=lambda _s: fake, thresholds=load_thresholds())
    assert script.remaining == 0
    folder = tmp_path / "cassettes"
    for suite in ("selection", "tasks"):
        cassette, meta_path = paths(suite, folder)
        assert cassette.is_file() and meta_path.is_file()
        assert "authorization" not in cassette.read_text().lower()  # the API key header is filtered
    meta = load_meta("tasks", folder)
    assert (meta.model, meta.embedded, meta.trials, meta.requests) == ("fake", False, 2, 6)
    assert meta.case_ids == ["file-named-account"] and load_meta("selection", folder).case_ids == ["s1", "p1"]

    # replay: no fake endpoint, no script; the live-model tripwire would fail any unrecorded request
    settings = get_settings()
    replayed = run_suites(options(tmp_path, "replay", case_files),
                          models=lambda suite: replay_runtime(load_meta(suite, folder), settings),
                          thresholds=load_thresholds())
    assert replayed.mode == "replay" and replayed.trials == 2
    for before, after in zip(recorded.suites, replayed.suites, strict=True):
        assert after.metrics == before.metrics, after.suite
        assert after.failures == before.failures
    tasks = {s.suite: s for s in replayed.suites}["tasks"]
    assert (tasks.metrics["pass^1"], tasks.metrics["pass^2"]) == (0.5, 0.0)


def test_replay_fails_loudly_when_the_requests_change(tmp_path: Path) -> None:
    fake = FakeEndpoint(Script(SCRIPT[:2]))
    rec = options(tmp_path, "record", cases(tmp_path))
    rec.suites = ["selection"]
    run_suites(rec, models=lambda _s: fake, thresholds=load_thresholds())
    folder = tmp_path / "cassettes"
    changed = options(tmp_path, "replay", cases(tmp_path, question="Compare churn risk: ACME-0042 vs ORII-0017."))
    changed.suites = ["selection"]
    settings = get_settings()
    with pytest.raises(ReplayError, match="re-record with `make eval-record`"):
        run_suites(changed, models=lambda suite: replay_runtime(load_meta(suite, folder), settings),
                   thresholds=load_thresholds())


def test_replay_refuses_a_model_other_than_the_recorded_one(tmp_path: Path) -> None:
    fake = FakeEndpoint(Script(SCRIPT[:2]))
    rec = options(tmp_path, "record", cases(tmp_path))
    rec.suites = ["selection"]
    run_suites(rec, models=lambda _s: fake, thresholds=load_thresholds())
    meta = load_meta("selection", tmp_path / "cassettes").model_copy(update={"embedded": True})
    with pytest.raises(ReplayError, match="recorded with model 'fake'"):
        replay_runtime(meta, get_settings().model_copy(update={"llm_gguf_path": None}))


@pytest.mark.parametrize("group", [("selection",), ("tasks", "faithfulness"), ("injection",)],
                         ids=["selection", "tasks+faithfulness", "injection"])
def test_committed_recordings_replay_to_the_recorded_result(group: tuple[SuiteName, ...], tmp_path: Path) -> None:
    """The recordings of the embedded model in evals/cassettes/ (`make eval-record`) replay, with no
    model, to exactly the result recorded with them (their trials and cases, evals/runner.py), and
    that result clears evals/thresholds.yaml.

    (faithfulness also grades the tasks' answers, so the two replay together, as recorded)"""
    metas = {suite: load_meta(suite, CASSETTE_DIR) for suite in group}  # ReplayError when missing
    settings = get_settings().model_copy(update={"llm_gguf_path": None})
    design, exemplars = recorded_design(list(metas.values()))
    report = run_suites(RunOptions(suites=list(group), work_dir=tmp_path / "work", mode="replay", design=design,
                                   exemplars=exemplars),
                        models=lambda s: replay_runtime(metas[s], settings), thresholds=load_thresholds())
    for result in report.suites:
        recorded = metas[result.suite].result
        assert result.metrics == recorded.metrics, result.suite
        assert result.failures == recorded.failures, result.suite
        assert result.passed, [g for g in result.gates if not g.passed]


def test_replay_runs_the_design_the_recordings_were_made_with(tmp_path: Path) -> None:
    """Old recordings (no design field) are ReAct; recordings of several designs cannot replay together."""
    old = load_meta("selection", CASSETTE_DIR)
    legacy = old.model_validate({k: v for k, v in old.model_dump().items() if k not in ("design", "exemplars")})
    assert recorded_design([legacy]) == ("react", 4)
    plan = old.model_copy(update={"design": "plan", "exemplars": 6})
    assert recorded_design([plan, plan.model_copy(update={"suite": "tasks"})]) == ("plan", 6)
    with pytest.raises(ReplayError, match="different agent designs"):
        recorded_design([plan, legacy.model_copy(update={"suite": "tasks"})])


def _plan(*steps: tuple[str, dict[str, Any]]) -> AIMessage:
    """A planner reply: the compact plan JSON (a configured endpoint's structured output)."""
    return say(json.dumps({"intent": "answer", "steps": [{"tool": t, "args": a} for t, a in steps]},
                          separators=(",", ":")))


def test_a_plan_recording_keeps_its_design_and_the_cli_replays_that_design(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded with the plan agent and 2 exemplars, the meta says so; `eval run --replay` then runs
    the plan agent with 2 exemplars although the settings say ReAct with 6 (either would send other
    requests, and the replay would fail); metas of different designs refuse to replay together."""
    # no MiniLM here: every question is in scope, and the exemplars name their count (so the planner's
    # prompt, hence the recorded request, depends on it)
    monkeypatch.setattr("evals.runner.knowledge_gate", lambda _k: lambda _q: True)
    monkeypatch.setattr("evals.runner.nearest_last", lambda k: lambda _q: f"(the {k} nearest exemplars)")
    script = Script([
        _plan(("churn_risk", {"account_id": "ACME-0042"})),  # s1
        _plan(("churn_risk", {"account_id": "ACME-0042"}), ("churn_risk", {"account_id": "ORII-0017"})),  # p1
    ])
    fake = FakeEndpoint(script)
    case_files = cases(tmp_path)
    rec = options(tmp_path, "record", case_files)
    rec.suites, rec.design, rec.exemplars = ["selection"], "plan", 2
    recorded = run_suites(rec, models=lambda _s: fake, thresholds=load_thresholds())
    assert script.remaining == 0 and recorded.design == "plan"
    folder = tmp_path / "cassettes"
    meta = load_meta("selection", folder)
    assert (meta.design, meta.exemplars, meta.requests) == ("plan", 2, 2)
    settings = get_settings()
    for design, exemplars in (("react", 2), ("plan", 4)):  # the recording holds only this design's requests
        other = options(tmp_path, "replay", case_files)
        other.suites, other.design, other.exemplars = ["selection"], design, exemplars  # type: ignore[assignment]
        with pytest.raises(ReplayError, match="re-record"):
            run_suites(other, models=lambda suite: replay_runtime(load_meta(suite, folder), settings),
                       thresholds=load_thresholds())

    # the CLI reads the default case file; point it at this test's cases
    monkeypatch.setattr("evals.selection.CASES_DIR", tmp_path)
    react = get_settings().model_copy(update={"agent_design": "react", "plan_exemplars": 6})
    monkeypatch.setattr("valuechain.cli.eval.get_settings", lambda: react)
    runner = CliRunner()
    out = tmp_path / "reports"
    args = ["--replay", "--cassettes", str(folder), "--out-dir", str(out), "--work-dir", str(tmp_path / "work")]
    replayed = runner.invoke(app, ["eval", "run", "selection", *args, "--json"])
    assert replayed.exit_code in (0, 1), replayed.output  # 1: evals/thresholds.yaml gates metrics two cases lack
    report = json.loads(replayed.stdout)
    assert (report["mode"], report["design"]) == ("replay", "plan")
    assert report["suites"][0]["metrics"] == recorded.suites[0].metrics
    assert "agent: plan" in next(out.glob("*/report.md")).read_text()

    # a ReAct recording of another suite beside it: the chosen suites disagree, so no replay
    paths("tasks", folder)[0].write_text(paths("selection", folder)[0].read_text())
    paths("tasks", folder)[1].write_text(meta.model_copy(update={"suite": "tasks", "design": "react"})
                                         .model_dump_json())
    mixed = runner.invoke(app, ["eval", "run", "selection", "tasks", *args])
    assert mixed.exit_code == 2 and "different agent designs" in mixed.output
    assert "selection=plan/2, tasks=react/2" in " ".join(mixed.output.split())  # rich wraps lines
