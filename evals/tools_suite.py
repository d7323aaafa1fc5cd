"""Tools suite: every tool core on the golden fixture database against hand-checked outputs.

A case names a core, its arguments and either checks on the result's JSON (`equals`,
`approx`, `contains`, `length` at a path, see `evals.jsonpath`) or the exact message of the
error the caller can fix (`ToolInputError` / `ValueError`: what the model is shown). The
arithmetic behind each expected value is written next to it in `evals/cases/tools.yaml`.
Each case runs in its own session, rolled back afterwards, so writes never leak between cases.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from evals.fixtures import fresh_copy
from evals.jsonpath import PathError, resolve
from evals.report import ReportTable, SuiteResult, dump
from tools.errors import ToolInputError
from tools.registry import ALL_TOOLS, TOOL_NAMES, tool_named

CASES_FILE = Path(__file__).resolve().parent / "cases" / "tools.yaml"
FIXED_NOW = dt.datetime(2026, 3, 31, 12, 0)
"""`propose_recommendation`'s audit timestamp in this suite (the wall clock otherwise)."""



class Check(BaseModel):
    """One assertion on the result: exactly one of equals / approx / contains / length."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="Where in the result's JSON, e.g. activities[id=A1].margin_leak")
    equals: Any = Field(default=None, description="Exact JSON value (null allowed)")
    approx: float | None = Field(default=None, description="A number equal within 1e-9 relative")
    contains: str | None = Field(default=None, description="A substring of the text at path")
    length: int | None = Field(default=None, description="Number of elements of the list at path")

    @model_validator(mode="after")
    def _exactly_one(self) -> Check:
        given = [k for k in ("equals", "approx", "contains", "length") if k in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(f"a check needs exactly one of equals, approx, contains, length; got {given or 'none'}")
        return self


class ToolCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    tool: str = Field(description="A tool of the registry (tools.registry.ALL_TOOLS)",
                      json_schema_extra={"enum": list(TOOL_NAMES)})
    args: dict[str, Any] = Field(default_factory=dict)
    note: str = Field(default="", description="The hand arithmetic behind the expected values")
    expect: list[Check] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Exact message of the expected fixable error")
    error_contains: str | None = None

    @field_validator("tool")
    @classmethod
    def _registered(cls, tool: str) -> str:
        try:
            tool_named(tool)
        except ToolInputError as exc:  # pydantic reports ValueErrors as the case's validation error
            raise ValueError(str(exc)) from None
        return tool

    @model_validator(mode="after")
    def _expects_something(self) -> ToolCase:
        if not self.expect and self.error is None and self.error_contains is None:
            raise ValueError(f"case {self.id!r} expects nothing: give expect, error or error_contains")
        if self.expect and (self.error is not None or self.error_contains is not None):
            raise ValueError(f"case {self.id!r} expects both a result and an error")
        return self


class ToolCaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    cases: list[ToolCase]


class ToolCaseResult(BaseModel):
    id: str
    tool: str
    passed: bool
    problems: list[str]
    seconds: float


class ToolsReport(BaseModel):
    cases: int
    passed: int
    by_tool: dict[str, dict[str, int]]
    results: list[ToolCaseResult]


def load_cases(path: Path = CASES_FILE) -> list[ToolCase]:
    return ToolCaseFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).cases


def call_core(tool: str, args: dict[str, Any], session: Session, knowledge: Callable[[], Any]) -> BaseModel:
    """Call the core of registry tool `tool` with core keyword `args` (what the agent binds, minus serialisation)."""
    spec = tool_named(tool)
    if "provenance" in spec.needs:  # what an agent run attaches; fixed here so results are reproducible
        args = {"evidence": {}, "now": FIXED_NOW, **args}
    return spec.call(args, session=session, store=knowledge)


def check(result: Any, c: Check) -> str | None:
    """None when the check holds, else what differs."""
    try:
        got = resolve(result, c.path)
    except PathError as exc:
        return f"{c.path}: {exc}"
    if "equals" in c.model_fields_set:
        if isinstance(got, float) and isinstance(c.equals, int | float) and not isinstance(c.equals, bool):
            ok = got == float(c.equals)
        else:
            ok = got == c.equals
        return None if ok else f"{c.path} = {got!r}, expected {c.equals!r}"
    if c.approx is not None:
        ok = isinstance(got, int | float) and not isinstance(got, bool) and math.isclose(
            float(got), c.approx, rel_tol=1e-9, abs_tol=1e-9)
        return None if ok else f"{c.path} = {got!r}, expected ≈ {c.approx!r}"
    if c.contains is not None:
        return None if isinstance(got, str) and c.contains in got else f"{c.path} = {got!r} does not contain {c.contains!r}"
    n = len(got) if isinstance(got, list | dict) else None
    return None if n == c.length else f"{c.path} has {n} element(s), expected {c.length}"


def run_case(case: ToolCase, session: Session, knowledge: Callable[[], Any]) -> ToolCaseResult:
    t0 = time.perf_counter()
    problems: list[str] = []
    try:
        result = call_core(case.tool, dict(case.args), session, knowledge)
    except ToolInputError as exc:
        message = str(exc)
        if case.error is not None and message != case.error:
            problems.append(f"error {message!r}, expected {case.error!r}")
        elif case.error_contains is not None and case.error_contains not in message:
            problems.append(f"error {message!r} does not contain {case.error_contains!r}")
        elif case.expect:
            problems.append(f"raised {type(exc).__name__}: {message}")
    except Exception as exc:  # a bug in a core is a failed case here, reported with its type
        problems.append(f"bug: {type(exc).__name__}: {exc}")
    else:
        if case.error is not None or case.error_contains is not None:
            problems.append(f"no error raised; expected {case.error or case.error_contains!r}")
        data = dump(result)
        problems += [p for c in case.expect if (p := check(data, c)) is not None]
    finally:
        session.rollback()
    return ToolCaseResult(id=case.id, tool=case.tool, passed=not problems, problems=problems,
                          seconds=round(time.perf_counter() - t0, 4))


WRITING_TOOLS = frozenset(t.name for t in ALL_TOOLS if t.writes)


def run_tools(
    cases: Sequence[ToolCase],
    *,
    fixture: Path,
    work_dir: Path,
    knowledge: Callable[[], Any],
) -> SuiteResult:
    """Run `cases` on copies of the `fixture` file: one shared by the readers, a fresh one per writing case.

    (A rollback is not enough to undo a write on SQLite: the tool's SAVEPOINT, released outside
    a transaction, commits.)"""
    t0 = time.perf_counter()
    results = []
    shared = fresh_copy(fixture, work_dir / "tools-run.db")
    try:
        for case in cases:
            engine = fresh_copy(fixture, work_dir / "tools-write.db") if case.tool in WRITING_TOOLS else shared
            try:
                with make_sessionmaker(engine)() as session:
                    results.append(run_case(case, session, knowledge))
            finally:
                if engine is not shared:
                    engine.dispose()
    finally:
        shared.dispose()
    by_tool: dict[str, dict[str, int]] = {}
    for r in results:
        row = by_tool.setdefault(r.tool, {"cases": 0, "passed": 0})
        row["cases"] += 1
        row["passed"] += r.passed
    passed = sum(r.passed for r in results)
    n = len(results)
    report = ToolsReport(cases=n, passed=passed, by_tool=by_tool, results=results)
    return SuiteResult(
        suite="tools",
        cases=n,
        metrics={"pass_rate": round(passed / n, 4) if n else 0.0, "failed": float(n - passed)},
        summary=f"{passed}/{n} tool cases pass on the golden fixture",
        tables=[ReportTable(title="by tool", columns=["tool", "cases", "passed"],
                            rows=[[t, str(v["cases"]), str(v["passed"])] for t, v in sorted(by_tool.items())])],
        failures=[f"{r.id} ({r.tool}): {'; '.join(r.problems)}" for r in results if not r.passed],
        seconds=round(time.perf_counter() - t0, 2),
        details=dump(report),
    )
