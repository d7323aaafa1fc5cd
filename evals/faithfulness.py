"""Faithfulness: every number in an answer must come from a tool output of the same run.

`figures(text)` finds the numbers an answer states ("78,000", "$78k", "65%", "0.65", "1.2M",
"-10 days"), leaving out what is not a figure: identifiers (ACME-0042, A1, INI-007, 2026-Q1),
list markers ("1. "), and numbers the user wrote in the question. `tool_numbers(results)`
collects every number in the run's tool results — numeric fields, numbers inside their text
(explanations, driver phrases), list lengths — and the values the model actually read
(`tools.projection.num` rounds money to units and ratios to 3 decimals).

A figure is *traceable* when some tool number, scaled by the figure's unit (% → ×100 or as is;
k/M/bn → ×10³/10⁶/10⁹), rounds to it at the precision the figure is written with (half a unit of
its last digit; negative numbers compare by magnitude, "10 days overdue" = −10). ISO dates must
appear verbatim in the tool results. Sums or differences the model computed itself are not
traceable, by design: the product's rule is that figures come from tools.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.loop import run_sync
from evals.report import ReportTable, SuiteResult, dump
from tools.projection import num

SCALES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6, "bn": 1e9, "b": 1e9, "billion": 1e9}

_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_PERIOD = re.compile(r"\b\d{4}-(?:Q[1-4]|H[12])\b|\bFY\d{4}\b", re.IGNORECASE)
_IDENT = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*[-_]?\d[A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*\b")
_LIST_MARKER = re.compile(r"^(\s*(?:[-*>#]+\s*)?)\d{1,2}[.)](?=\s)", re.MULTILINE)
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−–])?(?P<cur>[$€£])?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<unit>\s?%|\s?percent\b|\s?(?:k|K|m|M|mn|bn|b)\b|\s(?:thousand|million|billion)\b)?"
)


@dataclass(frozen=True)
class Figure:
    """A number as written in an answer."""

    text: str
    value: float
    decimals: int
    unit: str  # "", "%", or a scale word ("k", "m", "bn", ...)


def _mask(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def figures(text: str, *, question: str = "") -> list[Figure]:
    """The numbers `text` states, without identifiers, dates, list markers and the question's own numbers."""
    masked = _mask(text, _ISO_DATE)
    masked = _mask(masked, _PERIOD)
    masked = _mask(masked, _IDENT)
    masked = _LIST_MARKER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), masked)
    asked = {f.value for f in _raw_figures(question)} if question else set()
    return [f for f in _raw_figures(masked) if not (f.unit == "" and f.value in asked)]


def _raw_figures(text: str) -> list[Figure]:
    out = []
    for m in _NUMBER.finditer(text):
        raw = m.group("num").replace(",", "")
        decimals = len(raw.split(".", 1)[1]) if "." in raw else 0
        value = float(raw)
        if m.group("sign"):
            value = -value
        unit = (m.group("unit") or "").strip().lower()
        if unit == "percent":
            unit = "%"
        out.append(Figure(text=m.group(0).strip(), value=value, decimals=decimals, unit=unit))
    return out


def dates(text: str) -> list[str]:
    return _ISO_DATE.findall(text)


def _walk(node: Any, out: list[float], strings: list[str]) -> None:
    if isinstance(node, bool) or node is None:
        return
    if isinstance(node, int | float):
        if math.isfinite(node):
            out.append(float(node))
        return
    if isinstance(node, str):
        strings.append(node)
        return
    if isinstance(node, dict):
        for v in node.values():
            _walk(v, out, strings)
        return
    if isinstance(node, list | tuple):
        out.append(float(len(node)))
        for v in node:
            _walk(v, out, strings)


@dataclass
class ToolNumbers:
    values: list[float]
    text: str  # all tool results as JSON, for dates

    @classmethod
    def of(cls, results: Iterable[Any]) -> ToolNumbers:
        numbers: list[float] = []
        strings: list[str] = []
        blobs = []
        for r in results:
            _walk(r, numbers, strings)
            blobs.append(json.dumps(r, default=str))
        for s in strings:
            numbers += [f.value for f in _raw_figures(s)]
        numbers += [float(num(x)) for x in list(numbers)]  # what the model read
        return cls(values=sorted({abs(x) for x in numbers}), text="\n".join(blobs))


def matches(fig: Figure, value: float) -> bool:
    """Is `fig` (as written) a rendering of tool number `value`?"""
    target = abs(value)
    shown = abs(fig.value)
    half = 0.5 * 10 ** (-fig.decimals)
    candidates: list[tuple[float, float]] = []  # (figure in tool units, tolerance)
    if fig.unit == "%":
        candidates += [(shown / 100, half / 100), (shown, half)]
    elif fig.unit in SCALES:
        scale = SCALES[fig.unit]
        candidates.append((shown * scale, half * scale))
    else:
        candidates.append((shown, half))
    return any(abs(target - c) <= tol + 1e-9 * max(1.0, target) for c, tol in candidates)


def traceable(fig: Figure, numbers: ToolNumbers) -> bool:
    return any(matches(fig, v) for v in numbers.values)


class AnswerCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Case or task trial the answer belongs to")
    source: str = Field(description="faithfulness | tasks")
    answer: str
    figures: list[str] = Field(description="Numbers the answer states (as written)")
    untraceable: list[str] = Field(description="Figures and dates no tool output of the run supports")
    tool_calls: int

    @property
    def faithful(self) -> bool:
        return not self.untraceable


def computed_comparisons(rows: Iterable[Any]) -> list[str]:
    """The side-by-side sentences the agent's code (agent/compare.py) writes from each run's results.

    Their differences ("higher by 41.6 percentage points") are computed from tool numbers by code,
    not by the model, so they are as traceable as the numbers themselves. `rows` are logged tool
    calls (`crm.models.ToolCall`); each run's successful results are compared as the agent did."""
    # deferred: the graders load without the agent and tools layers (pandas, sqlalchemy: ~0.5 s)
    from agent.compare import comparisons

    # deferred likewise: the registry imports every tool's core
    from tools.registry import TOOLS_BY_NAME

    by_run: dict[str, list[BaseModel]] = {}
    for row in rows:
        spec = TOOLS_BY_NAME.get(row.name)
        if not row.ok or row.result is None or spec is None:
            continue
        try:
            by_run.setdefault(row.run_id, []).append(spec.result.model_validate(row.result))
        except ValidationError:
            continue
    return [c for results in by_run.values() for c in comparisons(results)]


def check_answer(answer: str, results: Sequence[Any], *, question: str = "", id: str = "",
                 source: str = "faithfulness", computed: Sequence[str] = ()) -> AnswerCheck:
    """Grade `answer` against the run's tool `results` and the sentences code `computed` from them."""
    numbers = ToolNumbers.of([*results, *computed])
    figs = figures(answer, question=question)
    bad = [f.text for f in figs if not traceable(f, numbers)]
    bad += [d for d in dates(answer) if d not in numbers.text and d not in question]
    bad = list(dict.fromkeys(bad))  # the agent's "(Unverified: 12 ...)" note repeats a figure: count it once
    return AnswerCheck(id=id, source=source, answer=answer, figures=[f.text for f in figs],
                       untraceable=bad, tool_calls=len(results))


def mentions_value(answer: str, value: Any) -> bool:
    """Does `answer` state `value` (a tool output)? Numbers by rounding, text case-insensitively."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() in answer.lower()
    if isinstance(value, int | float):
        return any(matches(f, float(value)) for f in figures(answer))
    text = str(value).lower()
    hay = answer.lower()
    return text in hay or text.replace("_", " ") in hay.replace("_", " ")


# ---------------------------------------------------------------------------- the suite

CASES_FILE = Path(__file__).resolve().parent / "cases" / "faithfulness.yaml"


class FaithfulnessCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    question: str


class FaithfulnessFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int
    cases: list[FaithfulnessCase]


class FaithfulnessReport(BaseModel):
    answers: int
    errors: int = Field(description="Turns that ended in an endpoint error (not graded)")
    with_untraceable: int
    figures: int
    untraceable_figures: int
    checks: list[AnswerCheck]


def load_cases(path: Path = CASES_FILE) -> list[FaithfulnessCase]:
    return FaithfulnessFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).cases


def ask_all(
    cases: Sequence[FaithfulnessCase],
    *,
    fixture: Path,
    make_copilot: Callable[[Any], Any],
    work_dir: Path,
    progress: Callable[[AnswerCheck], None] | None = None,
) -> tuple[list[AnswerCheck], int]:
    """Ask each question in a new conversation on one copy of the fixture; (checks, endpoint errors)."""
    # deferred: the graders load without the database layer (sqlalchemy, crm, fixtures: ~0.4 s)
    from sqlalchemy import select

    # deferred likewise: crm and evals.fixtures are most of that ~0.4 s
    from core.db import make_sessionmaker
    from crm.models import ToolCall
    from evals.fixtures import fresh_copy

    engine = fresh_copy(fixture, work_dir / "faithfulness.db")
    checks: list[AnswerCheck] = []
    errors = 0
    try:
        sessions = make_sessionmaker(engine)
        copilot = make_copilot(sessions)
        for case in cases:
            out = run_sync(copilot.aask(case.question, channel="eval"))
            if out.error:
                errors += 1
                continue
            with sessions() as s:
                rows = list(s.scalars(select(ToolCall).where(ToolCall.run_id == out.run_id).order_by(ToolCall.seq)))
            results = [r.result if r.ok else (r.error or "") for r in rows]
            check = check_answer(out.answer, results, question=case.question, id=case.id,
                                 computed=computed_comparisons(rows))
            checks.append(check)
            if progress is not None:
                progress(check)
    finally:
        engine.dispose()
    return checks, errors


def summarise(checks: Sequence[AnswerCheck], *, errors: int = 0, seconds: float = 0.0, cases: int | None = None) -> SuiteResult:
    """Share of answers with an untraceable figure, overall and per source (own questions, task trials)."""
    def share(rows: Sequence[AnswerCheck]) -> float:
        return round(sum(not c.faithful for c in rows) / len(rows), 4) if rows else 0.0

    sources = sorted({c.source for c in checks})
    metrics = {"untraceable_share": share(checks), "answers": float(len(checks)), "errors": float(errors)}
    for src in sources:
        metrics[f"{src}.untraceable_share"] = share([c for c in checks if c.source == src])
    report = FaithfulnessReport(
        answers=len(checks), errors=errors, with_untraceable=sum(not c.faithful for c in checks),
        figures=sum(len(c.figures) for c in checks), untraceable_figures=sum(len(c.untraceable) for c in checks),
        checks=list(checks),
    )
    rows = []
    for src in sources:
        mine = [c for c in checks if c.source == src]
        rows.append([src, str(len(mine)), str(sum(len(c.figures) for c in mine)),
                     str(sum(not c.faithful for c in mine)), f"{share(mine):.0%}"])
    return SuiteResult(
        suite="faithfulness",
        cases=cases if cases is not None else len(checks),
        metrics=metrics,
        summary=(f"{report.with_untraceable} of {len(checks)} answers state a figure no tool output supports "
                 f"({metrics['untraceable_share']:.0%}); {report.untraceable_figures} of {report.figures} figures"),
        tables=[ReportTable(title="by source", columns=["source", "answers", "figures", "with untraceable", "share"],
                            rows=rows)],
        failures=[f"{c.id}: {', '.join(c.untraceable)}" for c in checks if not c.faithful],
        seconds=round(seconds, 2),
        details=dump(report),
    )
