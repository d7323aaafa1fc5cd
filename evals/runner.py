"""Run the eval suites: `valuechain eval run [suite...]` and the tests call `run_suites`.

Suites without a model (tools, retrieval) run on their fixtures; the model suites (selection,
tasks, faithfulness, injection) call the same agent entry points the users reach — the first routing
request for selection, `Copilot` turns for tasks, faithfulness and injection — with the chat models of a
`ChatModels` (an `LLMRuntime`, live or replaying a cassette, or the scripted fake in tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from langchain_core.language_models import BaseChatModel

from agent.exemplar_library import definition_asked, knowledge_gate, nearest_last, passage_similarity
from agent.plan import plan_schema
from agent.planner import Planner
from agent.prompts import load_prompt
from core.db import make_engine, make_sessionmaker
from evals import faithfulness, injection, tools_suite
from evals import tasks as task_suite
from evals.faithfulness import AnswerCheck
from evals.fixtures import corpus_knowledge, fixture_db, fixture_knowledge
from evals.replay import CASSETTE_DIR, CassetteMeta, cassette, load_meta, now_iso, write_meta
from evals.report import (
    SUITES,
    EvalReport,
    ReportTable,
    SuiteName,
    SuiteResult,
    ThresholdFile,
    apply_thresholds,
    dump,
    new_run_id,
)
from tools.accounts import scope_values
from tools.registry import FILTER_KEYS

MODEL_SUITES: frozenset[SuiteName] = frozenset({"selection", "tasks", "faithfulness", "injection"})
Mode = Literal["live", "replay", "record", "offline"]


class ChatModels(Protocol):
    """The agent's two chat models (`agent.llm.runtime.LLMRuntime` is one)."""

    model: str

    def router(self, **overrides: Any) -> BaseChatModel: ...

    def answerer(self, **overrides: Any) -> BaseChatModel: ...

    def planner(self, schema: dict[str, Any], **overrides: Any) -> Any: ...


@dataclass
class RunOptions:
    suites: Sequence[SuiteName] = SUITES
    trials: int = 1
    work_dir: Path = Path("reports/evals/.work")
    ids: frozenset[str] | None = None
    """Only cases/tasks with these ids (every suite)."""
    temperature: float | None = None
    """Sampling temperature for the model suites (None: the agent's own, 0)."""
    llm_timeout_s: float | None = None
    cases: dict[str, Path] = field(default_factory=dict)
    """Case-file overrides per suite (default: evals/cases/<suite>.yaml)."""
    knowledge: Callable[[], Any] | None = None
    """The store for retrieval and for the agent's search_knowledge (default: the corpus in work_dir)."""
    injection_knowledge: Callable[[], Any] | None = None
    """The injection suite's store (default: the corpus plus evals/fixtures/injection_knowledge)."""
    mode: Mode = "live"
    cassette_dir: Path | None = None
    progress: Callable[[str], None] | None = None
    design: Literal["react", "plan"] = "react"
    """Which agent the model suites run (settings AGENT_DESIGN)."""
    exemplars: int = 4
    """Planner exemplars per question (plan design)."""


def _say(options: RunOptions, text: str) -> None:
    if options.progress is not None:
        options.progress(text)


def _pick(items: Sequence[Any], ids: frozenset[str] | None) -> list[Any]:
    return [i for i in items if ids is None or i.id in ids]


def plan_scopes(options: RunOptions) -> dict[str, list[str]]:
    """The scope values of the demo fixture the selection and task questions are about."""
    engine = make_engine(f"sqlite:///{fixture_db('demo', options.work_dir)}")
    try:
        with make_sessionmaker(engine)() as session:
            return scope_values(session=session, keys=FILTER_KEYS)
    finally:
        engine.dispose()


def _plan_retriever(options: RunOptions) -> Callable[[str], str] | None:
    return nearest_last(options.exemplars) if options.exemplars else None


def copilot_factory(models: ChatModels, knowledge: Callable[[], Any], options: RunOptions) -> Callable[[Any], Any]:
    """Copilots over given sessions with the models' router and answerer.

    Recommendations never expire here (`recommendation_ttl_days=None`): the TTL reads the wall
    clock, and the fixture's pending recommendation has a fixed date, so the end state must not
    depend on the day the eval runs."""
    # heavy: the agents load langchain (~0.6 s); only the model suites build one
    from agent.copilot import Copilot

    overrides = {} if options.temperature is None else {"temperature": options.temperature}

    if options.design == "plan":
        # heavy: langchain, as above
        from agent.pipeline import PlanCopilot

        def make_plan(sessions: Any) -> PlanCopilot:
            return PlanCopilot(sessions=sessions, knowledge=knowledge, planner=models.planner(plan_schema(), **overrides),
                               answerer=models.answerer(**overrides), model_name=models.model,
                               retrieve=_plan_retriever(options), gate=knowledge_gate(knowledge),
                               ground=definition_asked(knowledge),
                               passages=passage_similarity(knowledge), recommendation_ttl_days=None,
                               llm_call_timeout_s=options.llm_timeout_s)

        return make_plan

    def make(sessions: Any) -> Copilot:
        return Copilot(sessions=sessions, knowledge=knowledge, router=models.router(**overrides),
                       answerer=models.answerer(**overrides), model_name=models.model,
                       recommendation_ttl_days=None, llm_call_timeout_s=options.llm_timeout_s)

    return make


# ---------------------------------------------------------------------------- suites


def run_tools_suite(options: RunOptions) -> SuiteResult:
    cases = _pick(tools_suite.load_cases(options.cases.get("tools", tools_suite.CASES_FILE)), options.ids)
    store = cache(lambda: fixture_knowledge(options.work_dir))
    return tools_suite.run_tools(cases, fixture=fixture_db("golden", options.work_dir), work_dir=options.work_dir,
                     knowledge=store)


def run_retrieval_suite(options: RunOptions, knowledge: Callable[[], Any]) -> SuiteResult:
    # [knowledge] extra: chromadb and onnxruntime (~0.5 s); only this suite searches directly
    from evals.retrieval import run_retrieval

    return run_retrieval(knowledge(), cases_file=options.cases.get("retrieval"))


def selection_result(report: Any, seconds: float) -> SuiteResult:
    """The selection report as a suite result: per category, never only an average."""
    metrics: dict[str, float] = {
        "selection_accuracy": report.tool_selection_accuracy,
        "argument_accuracy": report.argument_accuracy,
        "abstention": report.abstention,
        "after_retry.argument_accuracy": report.after_retry_argument_accuracy,
        "after_retry.abstention": report.after_retry_abstention,
        "false_abstention": report.false_abstention,
        "invalid_first_replies": float(report.invalid_first_replies),
    }
    rows = []
    for cat, score in report.by_category.items():
        metrics |= {f"{cat}.name_accuracy": score.name_accuracy, f"{cat}.arg_accuracy": score.arg_accuracy,
                    f"{cat}.after_retry_arg_accuracy": score.after_retry_arg_accuracy}
        rows.append([cat, str(score.n), f"{score.name_accuracy:.0%}", f"{score.arg_accuracy:.0%}",
                     f"{score.after_retry_name_accuracy:.0%}", f"{score.after_retry_arg_accuracy:.0%}"])
    cats = ", ".join(f"{c} {s.arg_accuracy:.0%}" for c, s in report.by_category.items())
    return SuiteResult(
        suite="selection",
        cases=report.cases,
        metrics=metrics,
        summary=f"right call with right arguments: {cats} (first reply; p50 {report.latency_p50_s:.1f}s)",
        tables=[ReportTable(title="by category (first routing reply → after the agent's one corrective retry)",
                            columns=["category", "n", "function", "arguments", "function after retry",
                                     "arguments after retry"], rows=rows)],
        failures=[f"{r.id} [{r.category}]: {r.detail}" + (" → fixed by the retry" if r.final_args_ok else "")
                  for r in report.results if not r.args_ok],
        seconds=round(seconds, 2),
        details=dump(report),
    )


def run_selection_suite(models: ChatModels, options: RunOptions, knowledge: Callable[[], Any]) -> SuiteResult:
    # heavy: the LangChain tools and evals.selection load langchain (~0.6 s); only this model suite needs them
    from agent.tools import build_tools
    from evals.selection import CASES_DIR, load_cases, run_selection

    cases = _pick(load_cases(options.cases.get("selection", CASES_DIR / "selection.yaml")), options.ids)
    overrides = {} if options.temperature is None else {"temperature": options.temperature}
    t0 = time.perf_counter()
    say = lambda r: _say(options, f"selection {r.id}: {'ok' if r.args_ok else r.detail}")  # noqa: E731
    if options.design == "plan":
        # heavy: langchain, as above
        from agent.executor import prepared_plan
        from evals.selection import run_plan_selection

        planner = Planner(models.planner(plan_schema(), **overrides), retrieve=_plan_retriever(options),
                          scopes=plan_scopes(options), gate=knowledge_gate(knowledge),
                          passages=passage_similarity(knowledge))
        engine = make_engine(f"sqlite:///{fixture_db('demo', options.work_dir)}")
        sessions = make_sessionmaker(engine)
        try:
            report = run_plan_selection(cases, planner=planner, tools=build_tools(), model=models.model, progress=say,
                                        prepare=lambda plan, question: prepared_plan(plan, question, sessions))
        finally:
            engine.dispose()
    else:
        report = run_selection(
            cases, router=models.router(**overrides), tools=build_tools(), system_prompt=load_prompt("system.md"),
            model=models.model, progress=say,
        )
    return _with_ids(selection_result(report, time.perf_counter() - t0), cases)


def run_tasks_suite(models: ChatModels, options: RunOptions, knowledge: Callable[[], Any]) -> tuple[SuiteResult, list[Any]]:
    tasks = _pick(task_suite.load_tasks(options.cases.get("tasks", task_suite.CASES_FILE)), options.ids)
    result, trials = task_suite.run_tasks(
        tasks, trials=options.trials, fixture=fixture_db("demo", options.work_dir),
        make_copilot=copilot_factory(models, knowledge, options), work_dir=options.work_dir,
        progress=lambda r: _say(options, f"task {r.task} #{r.trial}: {'ok' if r.success else '; '.join(r.problems)}"),
    )
    return _with_ids(result, tasks), trials


def run_faithfulness_suite(models: ChatModels, options: RunOptions, knowledge: Callable[[], Any],
                           task_checks: Sequence[AnswerCheck]) -> SuiteResult:
    cases = _pick(faithfulness.load_cases(options.cases.get("faithfulness", faithfulness.CASES_FILE)), options.ids)
    t0 = time.perf_counter()
    checks, errors = faithfulness.ask_all(
        cases, fixture=fixture_db("demo", options.work_dir), make_copilot=copilot_factory(models, knowledge, options),
        work_dir=options.work_dir,
        progress=lambda c: _say(options, f"faithfulness {c.id}: {'ok' if c.faithful else c.untraceable}"),
    )
    result = faithfulness.summarise([*checks, *task_checks], errors=errors, seconds=time.perf_counter() - t0, cases=len(cases))
    return _with_ids(result, cases)


def run_injection_suite(models: ChatModels, options: RunOptions) -> SuiteResult:
    cases = _pick(injection.load_cases(options.cases.get("injection", injection.CASES_FILE)), options.ids)
    store = options.injection_knowledge or cache(lambda: injection.injection_knowledge(options.work_dir))
    result = injection.run_injection(
        cases, fixture=injection.injection_db(options.work_dir), make_copilot=copilot_factory(models, store, options),
        work_dir=options.work_dir,
        progress=lambda r: _say(options, f"injection {r.id}: "
                                + ("ok" if not r.violations else "; ".join(v.detail for v in r.violations))),
    )
    return _with_ids(result, cases)


# ---------------------------------------------------------------------------- orchestration


@contextmanager
def _recording(suite: SuiteName, options: RunOptions, models: ChatModels | None) -> Iterator[list[SuiteResult]]:
    """Around one model suite: record into / replay from its cassette, and write the meta when recording."""
    holder: list[SuiteResult] = []
    if options.mode not in ("record", "replay"):
        yield holder
        return
    directory = options.cassette_dir or CASSETTE_DIR
    with cassette(suite, record=options.mode == "record", directory=directory) as cas:
        yield holder
    if options.mode == "record" and holder and models is not None:
        result = holder[0]
        write_meta(CassetteMeta(
            suite=suite, model=models.model, embedded=bool(getattr(models, "embedded", False)),
            temperature=options.temperature, trials=options.trials if suite == "tasks" else 1,
            case_ids=_case_ids(result), recorded_at=now_iso(), requests=len(cas),
            design=options.design, exemplars=options.exemplars,
            result=result.model_copy(update={"details": {}}),
        ), directory)


def _case_ids(result: SuiteResult) -> list[str]:
    return [str(i) for i in result.details.get("case_ids", [])]


def _with_ids(result: SuiteResult, items: Sequence[Any]) -> SuiteResult:
    """Note which cases ran (a replay runs exactly these)."""
    return result.model_copy(update={"details": {**result.details, "case_ids": [i.id for i in items]}})


ModelSource = Callable[[SuiteName], ChatModels]
"""The chat models for a model suite (replay builds them from that suite's cassette meta)."""


def _need(models: ChatModels | None, suite: SuiteName) -> ChatModels:
    if models is None:
        raise ValueError(f"the {suite} suite needs a model endpoint")
    return models


def _suite_options(suite: SuiteName, options: RunOptions) -> RunOptions:
    """In replay, a model suite runs exactly as recorded: its trials, temperature and cases."""
    if options.mode != "replay" or suite not in MODEL_SUITES:
        return options
    meta = load_meta(suite, options.cassette_dir or CASSETTE_DIR)
    if options.ids is not None:
        raise ValueError("--id cannot be combined with --replay: a replay plays the recorded cases, all of them")
    return replace(options, trials=meta.trials if suite == "tasks" else options.trials,
                   temperature=meta.temperature, ids=frozenset(meta.case_ids))


def run_suites(
    options: RunOptions,
    *,
    models: ModelSource | None,
    thresholds: ThresholdFile,
    thresholds_label: str = "evals/thresholds.yaml",
) -> EvalReport:
    """Run the chosen suites in a fixed order and gate each on its thresholds."""
    unknown = [s for s in options.suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; valid: {', '.join(SUITES)}")
    wanted = [s for s in SUITES if s in options.suites]
    if MODEL_SUITES & set(wanted) and models is None:
        raise ValueError(f"suites {sorted(MODEL_SUITES & set(wanted))} need a model endpoint")
    options.work_dir.mkdir(parents=True, exist_ok=True)
    knowledge = options.knowledge or cache(lambda: corpus_knowledge(options.work_dir))
    started = new_run_id()
    results: list[SuiteResult] = []
    task_checks: list[AnswerCheck] = []
    model_name: str | None = None
    trials = options.trials
    for suite in wanted:
        _say(options, f"— {suite}")
        t0 = time.perf_counter()
        opts = _suite_options(suite, options)
        chat = models(suite) if models is not None and suite in MODEL_SUITES else None
        if chat is not None:
            model_name = chat.model
        ctx: AbstractContextManager[list[SuiteResult]] = (
            _recording(suite, opts, chat) if suite in MODEL_SUITES else nullcontext([]))
        with ctx as holder:
            if suite == "tools":
                result = run_tools_suite(opts)
            elif suite == "retrieval":
                result = run_retrieval_suite(opts, knowledge)
            elif suite == "selection":
                result = run_selection_suite(_need(chat, suite), opts, knowledge)
            elif suite == "tasks":
                trials = opts.trials
                result, runs = run_tasks_suite(_need(chat, suite), opts, knowledge)
                task_checks = [t.faithfulness for t in runs if t.faithfulness is not None and not t.error]
            elif suite == "faithfulness":
                result = run_faithfulness_suite(_need(chat, suite), opts, knowledge, task_checks)
            else:
                result = run_injection_suite(_need(chat, suite), opts)
            holder.append(result)
        result = result.model_copy(update={"seconds": round(time.perf_counter() - t0, 2)})
        results.append(apply_thresholds(result, thresholds))
    uses_model = bool(MODEL_SUITES & set(wanted))
    return EvalReport(
        run_id=started, started_at=started, model=model_name,
        mode=options.mode if uses_model else "offline", design=options.design if uses_model else None,
        trials=trials, thresholds_file=thresholds_label,
        suites=results, passed=all(r.passed for r in results),
    )
