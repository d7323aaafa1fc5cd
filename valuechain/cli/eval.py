"""`valuechain eval ...`: measure the agent against versioned cases."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import cast

import typer
from rich.table import Table

from agent.llm.model_files import ModelFilesError
from agent.prompts import load_prompt
from core.settings import get_settings
from evals.replay import CASSETTE_DIR, ReplayError, load_meta, paths, recorded_design, replay_runtime
from evals.report import SUITES, THRESHOLDS_FILE, EvalReport, SuiteName, load_thresholds, write_reports
from valuechain.cli.common import JsonOption, console, err_console, fail, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("selection")
def selection(
    cases: Path = typer.Option(None, "--cases", help="Case file (default: evals/cases/agent_dev.yaml)"),
    only: list[str] = typer.Option(None, "--id", help="Run only these case ids (repeatable)"),
    out: Path = typer.Option(None, "--out", help="Also write the JSON report to this file"),
    as_json: bool = JsonOption,
) -> None:
    """Tool-selection, argument accuracy and abstention of the configured model on the dev questions."""
    # [llm] extra: client and server import httpx; the runtime, tools and evals.selection load langchain (~0.5 s)
    from agent.llm.client import LLMConfigError
    from agent.llm.runtime import LLMRuntime
    from agent.llm.server import LLMServerError
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


@app.command("run")
def run(
    suites: list[str] = typer.Argument(None, help="Suites: tools, selection, retrieval, tasks, faithfulness, injection (default: all)"),
    trials: int = typer.Option(1, "--trials", "-k", min=1, help="Trials per task (tasks suite: pass^1..pass^K)"),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (default: LLM_BASE_URL or the embedded model)"),
    model: str = typer.Option(None, "--model", help="Model name at --base-url (default: LLM_MODEL)"),
    temperature: float = typer.Option(None, "--temperature", help="Sampling temperature of the model suites (default: the agent's, 0)"),
    out_dir: Path = typer.Option(Path("reports/evals"), "--out-dir", help="Where report.json and report.md go"),
    live: bool = typer.Option(False, "--live", help="Run the model suites against the endpoint (the default; excludes --replay/--record)"),
    replay: bool = typer.Option(False, "--replay", help="Serve the model suites from evals/cassettes/ (no model needed)"),
    record: bool = typer.Option(False, "--record", help="Run live and record the model suites into evals/cassettes/"),
    cassettes: Path = typer.Option(None, "--cassettes", help="Cassette folder (default: evals/cassettes)"),
    thresholds: Path = typer.Option(None, "--thresholds", help="Thresholds file (default: evals/thresholds.yaml)"),
    only: list[str] = typer.Option(None, "--id", help="Run only these case/task ids (repeatable)"),
    work_dir: Path = typer.Option(None, "--work-dir", help="Fixture databases and knowledge stores (default: OUT_DIR/.work)"),
    as_json: bool = JsonOption,
) -> None:
    """Run eval suites; table in the terminal, report.json + report.md in OUT_DIR; exit 1 below a threshold."""
    # [llm] extra: client and server import httpx, evals.runner loads langchain_core (~0.4 s)
    from agent.llm.client import LLMConfigError
    from agent.llm.server import LLMServerError
    from evals.fixtures import corpus_knowledge
    from evals.runner import MODEL_SUITES, RunOptions, plan_scopes, run_suites

    chosen = list(dict.fromkeys(suites or SUITES))
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        raise fail(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(SUITES)}", code=2)
    if sum((live, replay, record)) > 1:
        raise fail("--live, --replay and --record exclude each other", code=2)
    if (replay or record) and not MODEL_SUITES & set(chosen):
        raise fail(f"--replay/--record apply to the model suites ({', '.join(sorted(MODEL_SUITES))})", code=2)
    if replay and (base_url or model or temperature is not None):
        raise fail("--replay uses the recorded model settings; drop --base-url/--model/--temperature", code=2)
    settings = get_settings()
    if base_url or model:
        settings = settings.model_copy(update={"llm_base_url": base_url or settings.llm_base_url,
                                               "llm_model": model or settings.llm_model})
    try:
        limits = load_thresholds(thresholds or THRESHOLDS_FILE)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read the thresholds: {exc}", code=2) from exc
    options = RunOptions(
        suites=cast("list[SuiteName]", chosen),  # checked against SUITES above
        trials=trials, work_dir=work_dir or out_dir / ".work", ids=frozenset(only) if only else None,
        temperature=temperature, llm_timeout_s=settings.llm_timeout_s,
        mode="replay" if replay else "record" if record else "live", cassette_dir=cassettes,
        progress=None if as_json else lambda line: err_console.print(f"[dim]{line}[/]"),
        design=settings.agent_design, exemplars=settings.plan_exemplars,
    )
    if settings.chroma_host:  # a deployment's Chroma server: search the eval corpus there (docs/DEPLOY.md)
        options = replace(options, knowledge=cache(lambda: corpus_knowledge(options.work_dir, server=settings)))
    label = str(thresholds or "evals/thresholds.yaml")
    try:
        if not MODEL_SUITES & set(chosen):
            report = run_suites(options, models=None, thresholds=limits, thresholds_label=label)
        elif replay:
            folder = cassettes or CASSETTE_DIR
            if not suites:  # "all": a model suite nobody has recorded yet is left out, and said so
                unrecorded = [s for s in chosen if s in MODEL_SUITES and not all(p.is_file() for p in paths(s, folder))]
                for suite in unrecorded:
                    err_console.print(f"[yellow]{suite}: no recording in {folder}, left out of the replay[/]")
                chosen = [s for s in chosen if s not in unrecorded]
                options = replace(options, suites=cast("list[SuiteName]", chosen))
            metas = {suite: load_meta(suite, folder) for suite in chosen if suite in MODEL_SUITES}
            design, exemplars = recorded_design(list(metas.values()))  # replay runs the agent recorded
            options = replace(options, design=design, exemplars=exemplars)
            report = run_suites(options, models=lambda suite: replay_runtime(metas[suite], settings),
                                thresholds=limits, thresholds_label=label)
        else:
            # [llm] extra: the runtime and the tools load langchain (~0.5 s)
            from agent.llm.runtime import LLMRuntime
            from agent.tools import build_tools

            with LLMRuntime.open(settings) as runtime:
                # outside any cassette: not recorded
                if settings.agent_design == "plan":
                    # [llm] extra: the plan agent loads langchain (~0.5 s)
                    from agent.pipeline import warm_prefixes
                    from agent.planner import planner_system_prompt

                    warm_prefixes(runtime, planner_system_prompt(plan_scopes(options)))
                else:
                    runtime.warm(load_prompt("system.md"), build_tools())
                report = run_suites(options, models=lambda _suite: runtime, thresholds=limits, thresholds_label=label)
    except (LLMConfigError, ModelFilesError, LLMServerError, ReplayError, ValueError) as exc:
        raise fail(str(exc), code=2) from exc
    json_path, md_path = write_reports(report, out_dir)
    if as_json:
        print_json(report)
    else:
        _show(report)
        console.print(f"reports: {json_path} · {md_path}")
    if not report.passed:
        raise typer.Exit(1)


def _show(report: EvalReport) -> None:
    table = Table("suite", "cases", "result", "summary", title=f"evals {report.run_id} — {report.model or 'no model'}"
                  f"{f', {report.design} agent' if report.design else ''} ({report.mode})")
    for s in report.suites:
        table.add_row(s.suite, str(s.cases), "[green]pass[/]" if s.passed else "[red]FAIL[/]", s.summary)
    console.print(table)
    for s in report.suites:
        for t in s.tables:
            sub = Table(*t.columns, title=f"{s.suite}: {t.title}")
            for row in t.rows:
                sub.add_row(*row)
            console.print(sub)
        for g in s.gates:
            mark = "[green]ok[/]" if g.passed else "[red]below[/]"
            value = "—" if g.value is None else f"{g.value:.4g}"
            console.print(f"  {mark} {s.suite} {g.metric} = {value} (needs {g.bound})")
        for line in s.failures[:10]:
            console.print(f"  [dim]{s.suite}: {line}[/]")
        if len(s.failures) > 10:
            console.print(f"  [dim]{s.suite}: … {len(s.failures) - 10} more failures in the report[/]")


@app.command("schema")
def schema(
    out_dir: Path = typer.Option(None, "--out-dir", help="Where the JSON schemas go (default: evals/schema)"),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 if a schema file is out of date"),
) -> None:
    """Export the JSON schemas of the eval case files (from their pydantic models)."""
    # [llm] and [knowledge] extras: evals.schema imports every suite's models, the agent's too (~0.85 s)
    from evals.schema import SCHEMA_DIR, export

    stale = export(out_dir or SCHEMA_DIR, check=check)
    if check and stale:
        err_console.print("out of date: " + ", ".join(str(p) for p in stale) + " (run `valuechain eval schema`)")
        raise typer.Exit(1)
    console.print(f"{'checked' if check else 'wrote'} {out_dir or SCHEMA_DIR}" + (f" ({len(stale)} changed)" if stale else ""))
