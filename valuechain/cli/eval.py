"""`valuechain eval ...`: measure the agent against versioned cases."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from valuechain.cli.common import JsonOption, console, err_console, fail, print_json
from valuechain.config import get_settings

app = typer.Typer(no_args_is_help=True)


@app.command("selection")
def selection(
    cases: Path = typer.Option(None, "--cases", help="Case file (default: evals/cases/agent_dev.yaml)"),
    only: list[str] = typer.Option(None, "--id", help="Run only these case ids (repeatable)"),
    out: Path = typer.Option(None, "--out", help="Also write the JSON report to this file"),
    as_json: bool = JsonOption,
) -> None:
    """Tool-selection, argument accuracy and abstention of the configured model on the dev questions."""
    from agent.llm.client import LLMConfigError
    from agent.llm.model_files import ModelFilesError
    from agent.llm.runtime import LLMRuntime
    from agent.llm.server import LLMServerError
    from agent.prompts import load_prompt
    from agent.tools import build_tools
    from evals.selection import DEV_CASES, CaseResult, load_cases, run_selection

    try:
        chosen = load_cases(cases or DEV_CASES)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read the cases: {exc}") from exc
    if only:
        chosen = [c for c in chosen if c.id in set(only)]
        if not chosen:
            raise fail(f"no case has id {', '.join(only)}")
    tools = build_tools()
    system_prompt = load_prompt("system.md")

    def show(r: CaseResult) -> None:
        mark = "[green]ok[/]" if r.args_ok else ("[yellow]args[/]" if r.name_ok else "[red]miss[/]")
        if r.retried:
            mark += " → " + ("[green]ok[/]" if r.final_args_ok else "[red]still wrong[/]")
        calls = "; ".join(f"{c['name']}({json.dumps(c['args'])})" for c in r.calls) or "(no call)"
        err_console.print(f"{mark} {r.id:<11} {r.latency_s:5.1f}s {calls} — {r.detail}")

    try:
        with LLMRuntime.open(get_settings()) as runtime:
            runtime.warm(system_prompt, tools)
            report = run_selection(
                chosen, router=runtime.router(), tools=tools, system_prompt=system_prompt,
                model=runtime.model, progress=None if as_json else show,
            )
    except (LLMConfigError, ModelFilesError, LLMServerError) as exc:
        raise fail(str(exc)) from exc
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if as_json:
        print_json(report)
        return
    table = Table("category", "n", "tool selection", "arguments", title=f"tool selection — {report.model}")
    for cat, score in report.by_category.items():
        table.add_row(cat, str(score.n), f"{score.name_accuracy:.0%}", f"{score.arg_accuracy:.0%}")
    console.print(table)
    console.print(
        f"in scope: selection {report.tool_selection_accuracy:.1%}, arguments {report.argument_accuracy:.1%}, "
        f"no call {report.false_abstention:.1%} · out of scope: abstention {report.abstention:.1%} · "
        f"routing latency p50 {report.latency_p50_s:.1f}s p95 {report.latency_p95_s:.1f}s"
    )
    console.print(
        f"after the agent's check and one corrective retry ({report.invalid_first_replies} first replies rejected): "
        f"selection {report.after_retry_selection_accuracy:.1%}, arguments {report.after_retry_argument_accuracy:.1%}, "
        f"abstention {report.after_retry_abstention:.1%}"
    )
