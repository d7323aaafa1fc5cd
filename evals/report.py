"""What every suite returns, the thresholds that gate it, and the report files.

A suite returns a `SuiteResult`: named metrics (what thresholds refer to), tables for the
terminal and the Markdown report (per category, never only an average), short failure lines
and the suite's own detailed report. `apply_thresholds` compares the metrics with
`evals/thresholds.yaml`; `write_reports` writes ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

SuiteName = Literal["tools", "selection", "retrieval", "tasks", "faithfulness", "injection"]
SUITES: tuple[SuiteName, ...] = ("tools", "selection", "retrieval", "tasks", "faithfulness", "injection")
THRESHOLDS_FILE = Path(__file__).resolve().parent / "thresholds.yaml"
MAX_FAILURE_LINES = 60


class Bound(BaseModel):
    """A metric must be ≥ `min` and/or ≤ `max`."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_side(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min or max")
        return self

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"≥ {self.min:g}")
        if self.max is not None:
            parts.append(f"≤ {self.max:g}")
        return " and ".join(parts)

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min - 1e-12) and (self.max is None or value <= self.max + 1e-12)


class ThresholdFile(BaseModel):
    """`evals/thresholds.yaml`: per suite, metric name → bound."""

    model_config = ConfigDict(extra="forbid")
    version: int
    suites: dict[SuiteName, dict[str, Bound]]


def load_thresholds(path: Path = THRESHOLDS_FILE) -> ThresholdFile:
    return ThresholdFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


class Gate(BaseModel):
    metric: str
    bound: str
    value: float | None
    passed: bool


class ReportTable(BaseModel):
    title: str
    columns: list[str]
    rows: list[list[str]]


class SuiteResult(BaseModel):
    suite: SuiteName
    cases: int = Field(description="Cases (or tasks) run; trials not multiplied in")
    metrics: dict[str, float]
    summary: str = Field(description="One line for the terminal")
    tables: list[ReportTable] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list, description="`case id: why`, one per failed case")
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True
    seconds: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict, description="The suite's own full report")


class EvalReport(BaseModel):
    run_id: str
    started_at: str
    model: str | None = Field(description="The model endpoint's model name; None when no suite used a model")
    mode: Literal["live", "replay", "record", "offline"]
    design: str | None = Field(default=None, description="The agent design the model suites ran (plan / react)")
    trials: int
    thresholds_file: str
    suites: list[SuiteResult]
    passed: bool


def apply_thresholds(result: SuiteResult, thresholds: ThresholdFile) -> SuiteResult:
    """Gate `result` on its suite's bounds; a bounded metric the suite did not report fails."""
    gates = []
    for metric, bound in (thresholds.suites.get(result.suite) or {}).items():
        value = result.metrics.get(metric)
        gates.append(Gate(metric=metric, bound=bound.describe(), value=value,
                          passed=value is not None and bound.holds(value)))
    return result.model_copy(update={"gates": gates, "passed": all(g.passed for g in gates)})


def new_run_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def to_markdown(report: EvalReport) -> str:
    lines = [
        f"# Eval report {report.run_id}",
        "",
        f"Model: `{report.model or '—'}` · agent: {report.design or '—'} · mode: {report.mode} · trials: {report.trials} · "
        f"thresholds: `{report.thresholds_file}` · **{'PASS' if report.passed else 'FAIL'}**",
        "",
        "| suite | cases | result | summary |",
        "|---|---|---|---|",
    ]
    for s in report.suites:
        lines.append(f"| {s.suite} | {s.cases} | {'pass' if s.passed else '**FAIL**'} | {s.summary} |")
    for s in report.suites:
        lines += ["", f"## {s.suite}", "", s.summary, "", f"{s.seconds:.1f} s.", ""]
        if s.gates:
            lines += ["| threshold | value | bound | result |", "|---|---|---|---|"]
            lines += [f"| {g.metric} | {_fmt(g.value)} | {g.bound} | {'pass' if g.passed else '**FAIL**'} |"
                      for g in s.gates]
            lines.append("")
        for t in s.tables:
            lines += [f"**{t.title}**", "", "| " + " | ".join(t.columns) + " |",
                      "|" + "---|" * len(t.columns)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
            lines.append("")
        if s.failures:
            shown = s.failures[:MAX_FAILURE_LINES]
            lines += [f"**Failures ({len(s.failures)})**", ""]
            lines += [f"- {f}" for f in shown]
            if len(s.failures) > len(shown):
                lines.append(f"- … {len(s.failures) - len(shown)} more in report.json")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_reports(report: EvalReport, out_dir: Path) -> tuple[Path, Path]:
    """``<out_dir>/<run_id>/report.json`` and ``report.md``; also ``latest.json``/``latest.md``."""
    folder = out_dir / report.run_id
    folder.mkdir(parents=True, exist_ok=True)
    as_json = report.model_dump_json(indent=2) + "\n"
    as_md = to_markdown(report)
    json_path, md_path = folder / "report.json", folder / "report.md"
    json_path.write_text(as_json, encoding="utf-8")
    md_path.write_text(as_md, encoding="utf-8")
    (out_dir / "latest.json").write_text(as_json, encoding="utf-8")
    (out_dir / "latest.md").write_text(as_md, encoding="utf-8")
    return json_path, md_path


def dump(obj: BaseModel) -> dict[str, Any]:
    """A suite's detailed report as plain JSON data."""
    return json.loads(obj.model_dump_json())
