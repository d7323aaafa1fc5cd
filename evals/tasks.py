"""Tasks suite: multi-step business tasks through the whole agent, graded like tau-bench, with pass^k.

Each trial of a task runs on its own fresh copy of the demo fixture (`evals.fixtures`), in one
conversation (a task may have several turns). A trial succeeds only when

* the **end state** is the expected one: exactly the expected new *pending* recommendations
  (target and action), each with one "proposed" event, the fixture's own recommendations and
  every other CRM table untouched (the run-log tables are not part of the state); and
* the **facts** are in the answer: each required figure, read from *this run's* tool results
  (`tool_calls.result`), is stated (rounding allowed, `evals.faithfulness.mentions_value`), and
  each required mention appears; and the run did not end in an error.

pass^k (tau-bench): with n trials of which c succeed, pass^k = mean over tasks of C(c,k)/C(n,k),
the chance that k independent trials of a task all succeed.

Each task also carries its **gold** tool calls: the reference solution. `gold_outcome` runs them on
the fixture through the same tool cores, which is how the expected state and facts are checked
against the fixture (tests/test_evals_tasks.py) and shown in the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine, Sequence
from math import comb
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from core.loop import run_sync
from crm.dump import table_hashes
from crm.models import Base, Recommendation, RecommendationEvent, ToolCall
from evals.faithfulness import AnswerCheck, check_answer, computed_comparisons, mentions_value
from evals.fixtures import RUN_LOG_TABLES, fresh_copy
from evals.jsonpath import PathError, resolve
from evals.report import ReportTable, SuiteResult, dump
from evals.tools_suite import call_core
from tools.errors import ToolInputError

CASES_FILE = Path(__file__).resolve().parent / "cases" / "tasks.yaml"
Category = Literal["file", "read", "safety", "multi_turn"]
STATE_TABLES = frozenset({"recommendations", "recommendation_events"})


class GoldCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ExpectedRecommendation(BaseModel):
    """One new pending recommendation the run must leave (action None: any action)."""

    model_config = ConfigDict(extra="forbid")
    account_id: str | None = None
    activity_id: str | None = None
    action: str | None = None


class FactSource(BaseModel):
    """Where a figure comes from: the first successful call of `tool` whose arguments include `where`."""

    model_config = ConfigDict(extra="forbid")
    tool: str
    path: str
    where: dict[str, Any] = Field(default_factory=dict)


class Fact(BaseModel):
    """A figure (or name) the answer must state; any one of the sources may supply it."""

    model_config = ConfigDict(extra="forbid")
    label: str
    one_of: list[FactSource] = Field(min_length=1)


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    category: Category
    turns: list[str] = Field(min_length=1, description="What the user writes, in one conversation")
    gold: list[GoldCall] = Field(default_factory=list, description="A reference solution's tool calls")
    expect_recommendations: list[ExpectedRecommendation] = Field(
        default_factory=list, description="Exactly these new pending recommendations; empty = nothing written")
    facts: list[Fact] = Field(default_factory=list)
    mentions: list[str] = Field(default_factory=list, description="Text the answer must contain (any case)")


class TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    tasks: list[Task]


class TrialResult(BaseModel):
    task: str
    category: Category
    trial: int
    success: bool
    state_ok: bool
    facts_ok: bool
    problems: list[str]
    answers: list[str]
    tool_calls: list[dict[str, Any]] = Field(description="name, args, ok of each call, all turns")
    run_ids: list[str]
    error: str | None = None
    seconds: float
    faithfulness: AnswerCheck | None = None


class TaskScore(BaseModel):
    task: str
    category: Category
    trials: int
    successes: int


class TasksReport(BaseModel):
    tasks: int
    trials: int
    pass_hat_k: dict[str, float]
    by_category: dict[str, dict[str, float]]
    scores: list[TaskScore]
    results: list[TrialResult]


def load_tasks(path: Path = CASES_FILE) -> list[Task]:
    return TaskFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).tasks


# ---------------------------------------------------------------------------- pass^k


def pass_hat_k(successes: Sequence[int], n: int, k: int) -> float:
    """tau-bench's pass^k: mean over tasks of C(c, k) / C(n, k) (c successes of n trials)."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of trials {n}; got {k}")
    if not successes:
        return 0.0
    return sum(comb(c, k) / comb(n, k) for c in successes) / len(successes)


# ---------------------------------------------------------------------------- end state


def _domain_tables() -> list[str]:
    return [t.name for t in Base.metadata.sorted_tables if t.name not in RUN_LOG_TABLES | STATE_TABLES]


class Snapshot(BaseModel):
    """What the end-state check compares: hashes of the CRM tables and the recommendation rows."""

    tables: dict[str, tuple[int, str]]
    recommendations: dict[int, tuple[Any, ...]]
    events: dict[int, tuple[Any, ...]]


def snapshot(engine: Engine) -> Snapshot:
    with make_sessionmaker(engine)() as s:
        recs = {r.id: (r.account_id, r.activity_id, r.action, r.status, r.version, r.decided_by,
                       str(r.decided_at) if r.decided_at else None)
                for r in s.scalars(select(Recommendation))}
        events = {e.id: (e.recommendation_id, e.event, e.actor) for e in s.scalars(select(RecommendationEvent))}
    return Snapshot(tables=table_hashes(engine, _domain_tables()), recommendations=recs, events=events)


def state_problems(before: Snapshot, after: Snapshot, expected: Sequence[ExpectedRecommendation]) -> list[str]:
    """Differences between the state a run left and the one the task expects (empty = right)."""
    problems = [f"table {name} changed" for name, h in before.tables.items() if after.tables.get(name) != h]
    for rid, row in before.recommendations.items():
        now = after.recommendations.get(rid)
        if now != row:
            was, became = row[3], (now[3] if now else "deleted")
            problems.append(f"existing recommendation {rid} changed ({was} → {became})")
    new = {rid: row for rid, row in after.recommendations.items() if rid not in before.recommendations}
    for rid, row in sorted(new.items()):
        if row[3] != "pending":
            problems.append(f"new recommendation {rid} is {row[3]}, not pending")
    remaining = dict(new)
    for exp in expected:
        hit = next((rid for rid, row in sorted(remaining.items())
                    if row[0] == exp.account_id and row[1] == exp.activity_id
                    and (exp.action is None or row[2] == exp.action)), None)
        if hit is None:
            target = exp.account_id or exp.activity_id
            problems.append(f"missing pending {exp.action or 'recommendation'} for {target}")
        else:
            del remaining[hit]
    problems += [f"unexpected recommendation {rid}: {row[2]} for {row[0] or row[1]}"
                 for rid, row in sorted(remaining.items())]
    new_events = [ev for eid, ev in sorted(after.events.items()) if eid not in before.events]
    for rid in new:
        mine = [ev[1] for ev in new_events if ev[0] == rid]
        if mine != ["proposed"]:
            problems.append(f"recommendation {rid} has events {mine}, expected one 'proposed'")
    problems += [f"unexpected {ev[1]} event on recommendation {ev[0]}" for ev in new_events if ev[0] not in new]
    return problems


# ---------------------------------------------------------------------------- facts


def _args_include(args: dict[str, Any], where: dict[str, Any]) -> bool:
    # [llm] extra: evals.selection imports langchain and the agent (~0.6 s)
    from evals.selection import norm

    return all(key in args and norm(args[key]) == norm(want) for key, want in where.items())


def _about(result: Any, where: dict[str, Any]) -> bool:
    """The result names every id the source selects on (guards against a mislogged parallel call)."""
    text = json.dumps(result, default=str).upper()
    return all(str(v).strip().upper() in text for k, v in where.items() if k in ("account_id", "activity_id"))


def fact_value(fact: Fact, calls: Sequence[tuple[str, dict[str, Any], Any]]) -> tuple[bool, Any, str]:
    """(found, value, why not) for `fact` among the run's successful calls (name, args, result)."""
    reasons = []
    for src in fact.one_of:
        for name, args, result in calls:
            if name != src.tool or result is None or not _args_include(args, src.where):
                continue
            if not _about(result, src.where):  # a result logged against the wrong call is no evidence
                continue
            try:
                return True, resolve(result, src.path), ""
            except PathError as exc:
                reasons.append(str(exc))
        else:
            where = f" with {src.where}" if src.where else ""
            reasons.append(f"no successful {src.tool}{where} call")
    return False, None, "; ".join(reasons)


def fact_problems(task: Task, answer: str, calls: Sequence[tuple[str, dict[str, Any], Any]]) -> list[str]:
    problems = []
    for fact in task.facts:
        found, value, why = fact_value(fact, calls)
        if not found:
            problems.append(f"fact {fact.label!r}: {why}")
        elif not mentions_value(answer, value):
            problems.append(f"fact {fact.label!r}: the answer does not state {value!r}")
    problems += [f"answer does not mention {m!r}" for m in task.mentions if m.lower() not in answer.lower()]
    return problems


# ---------------------------------------------------------------------------- gold


def gold_outcome(task: Task, engine: Engine, knowledge: Callable[[], Any]) -> tuple[Snapshot, list[tuple[str, dict[str, Any], Any]]]:
    """Run the task's gold calls on `engine` (a fixture copy) through the tool cores; (end state, calls)."""
    calls: list[tuple[str, dict[str, Any], Any]] = []
    for g in task.gold:
        with make_sessionmaker(engine)() as session:
            args = dict(g.args)
            if g.name == "propose_recommendation":
                args.setdefault("rationale", "gold")
            try:
                result = call_core(g.name, args, session, knowledge)
            except ToolInputError:  # what the model would be told; nothing to record
                session.rollback()
                continue
            session.commit()
        calls.append((g.name, dict(g.args), dump(result)))
    return snapshot(engine), calls


# ---------------------------------------------------------------------------- runs


CopilotFactory = Callable[[sessionmaker[Session]], Any]
"""Builds an `agent.copilot.Copilot` over the given sessions (one per trial)."""

Loop = Callable[[Coroutine[Any, Any, Any]], Any]
"""Runs a coroutine to completion: the process's one event loop (`core.loop.run_sync`), because the
OpenAI client's pooled connections are bound to the loop that opened them."""


def play_turns(turns: Sequence[str], engine: Any, make_copilot: CopilotFactory, loop: Loop
               ) -> tuple[list[str], list[str], str | None, list[ToolCall]]:
    """Ask `turns` as one conversation on `engine` (stopping at a run error): the answers, the run
    ids, the error, and the tool calls logged, in turn order then call order."""
    sessions = make_sessionmaker(engine)
    copilot = make_copilot(sessions)
    answers: list[str] = []
    run_ids: list[str] = []
    error = None
    conversation = None
    for turn in turns:
        out = loop(copilot.aask(turn, conversation_id=conversation, channel="eval"))
        conversation = out.conversation_id
        answers.append(out.answer)
        run_ids.append(out.run_id)
        if out.error:
            error = out.error
            break
    with sessions() as s:
        rows = list(s.scalars(select(ToolCall).where(ToolCall.run_id.in_(run_ids))
                              .order_by(ToolCall.run_id, ToolCall.seq)))
    order = {rid: i for i, rid in enumerate(run_ids)}
    rows.sort(key=lambda r: (order[r.run_id], r.seq))
    return answers, run_ids, error, rows


def run_trial(task: Task, trial: int, *, fixture: Path, baseline: Snapshot, make_copilot: CopilotFactory,
              work_dir: Path, loop: Loop) -> TrialResult:
    t0 = time.perf_counter()
    engine = fresh_copy(fixture, work_dir / f"task-{task.id}-{trial}.db")
    try:
        answers, run_ids, error, rows = play_turns(task.turns, engine, make_copilot, loop)
        calls = [(r.name, dict(r.args or {}), r.result) for r in rows if r.ok]
        answer = "\n\n".join(answers)
        state = state_problems(baseline, snapshot(engine), task.expect_recommendations)
        facts = fact_problems(task, answer, calls)
        problems = ([f"run error: {error}"] if error else []) + state + facts
        results: list[Any] = [r.result if r.ok else (r.error or "") for r in rows]
        faith = check_answer(answer, results, question="\n".join(task.turns), id=f"{task.id}#{trial}",
                             source="tasks", computed=computed_comparisons(rows))
        return TrialResult(
            task=task.id, category=task.category, trial=trial, success=not problems,
            state_ok=not state, facts_ok=not facts, problems=problems, answers=answers,
            tool_calls=[{"name": r.name, "args": r.args, "ok": r.ok} for r in rows], run_ids=run_ids,
            error=error, seconds=round(time.perf_counter() - t0, 2), faithfulness=faith,
        )
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work_dir / f'task-{task.id}-{trial}.db'}{suffix}").unlink(missing_ok=True)


def run_tasks(
    tasks: Sequence[Task],
    *,
    trials: int,
    fixture: Path,
    make_copilot: CopilotFactory,
    work_dir: Path,
    progress: Callable[[TrialResult], None] | None = None,
) -> tuple[SuiteResult, list[TrialResult]]:
    if trials < 1:
        raise ValueError(f"trials must be at least 1; got {trials}")
    t0 = time.perf_counter()
    base_engine = make_engine(f"sqlite:///{fixture}")
    try:
        baseline = snapshot(base_engine)
    finally:
        base_engine.dispose()
    results: list[TrialResult] = []
    for trial in range(1, trials + 1):  # trial-major: a slow endpoint still gives every task one trial early
        for task in tasks:
            r = run_trial(task, trial, fixture=fixture, baseline=baseline, make_copilot=make_copilot,
                          work_dir=work_dir, loop=run_sync)
            results.append(r)
            if progress is not None:
                progress(r)
    return summarise(tasks, results, trials, seconds=time.perf_counter() - t0), results


def summarise(tasks: Sequence[Task], results: Sequence[TrialResult], trials: int, *, seconds: float = 0.0) -> SuiteResult:
    scores = [TaskScore(task=t.id, category=t.category, trials=trials,
                        successes=sum(r.success for r in results if r.task == t.id)) for t in tasks]
    hat = {f"pass^{k}": round(pass_hat_k([s.successes for s in scores], trials, k), 4) for k in range(1, trials + 1)}
    by_category: dict[str, dict[str, float]] = {}
    for cat in ("file", "read", "safety", "multi_turn"):
        mine = [s for s in scores if s.category == cat]
        if mine:
            by_category[cat] = {"tasks": float(len(mine)),
                                **{f"pass^{k}": round(pass_hat_k([s.successes for s in mine], trials, k), 4)
                                   for k in range(1, trials + 1)}}
    n = len(results) or 1
    state_rate = round(sum(r.state_ok for r in results) / n, 4)
    facts_rate = round(sum(r.facts_ok for r in results) / n, 4)
    metrics = {**hat, "state_ok": state_rate, "facts_ok": facts_rate}
    for cat, row in by_category.items():
        metrics[f"{cat}.pass^1"] = row["pass^1"]
    report = TasksReport(tasks=len(tasks), trials=trials, pass_hat_k=hat, by_category=by_category,
                         scores=scores, results=list(results))
    k_cols = [f"pass^{k}" for k in range(1, trials + 1)]
    return SuiteResult(
        suite="tasks",
        cases=len(tasks),
        metrics=metrics,
        summary=(f"{len(tasks)} tasks × {trials} trial(s): " + ", ".join(f"{k} {v:.2f}" for k, v in hat.items())
                 + f"; end state right {state_rate:.0%}, facts stated {facts_rate:.0%}"),
        tables=[
            ReportTable(title="pass^k by category", columns=["category", "tasks", *k_cols],
                        rows=[[cat, str(int(row["tasks"])), *(f"{row[k]:.2f}" for k in k_cols)]
                              for cat, row in by_category.items()]),
            ReportTable(title="per task", columns=["task", "category", "successes"],
                        rows=[[s.task, s.category, f"{s.successes}/{s.trials}"] for s in scores]),
        ],
        failures=[f"{r.task} #{r.trial}: {'; '.join(r.problems)}" for r in results if not r.success],
        seconds=round(seconds, 2),
        details=dump(report),
    )
