"""Run the held-out selection suite against the plan → execute → answer agent's planner (live model).

    python -m bench.plan_selection [--cases evals/cases/selection.yaml] [--k 4] [--out bench/results/plan-selection.json]

One planning call per case on the embedded model (or LLM_BASE_URL), the same grading as
`valuechain eval run selection`; prints the per-category table and writes the report.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage

from agent.exemplar_library import in_scope
from agent.llm.runtime import LLMRuntime
from agent.plan import plan_schema
from agent.planner import Planner
from agent.tools import build_tools
from core.settings import get_settings
from evals.runner import RunOptions, plan_scopes
from evals.selection import load_cases, run_plan_selection


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=Path, default=Path("evals/cases/selection.yaml"))
    parser.add_argument("--k", type=int, default=4, help="exemplars retrieved per question (0: none)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/plan-selection.json"))
    parser.add_argument("--only", nargs="*", help="case ids")
    parser.add_argument("--no-gate", dest="gate", action="store_false", help="no off-topic similarity gate")
    parser.add_argument("--no-scopes", dest="scopes", action="store_false",
                        help="leave the data's filter values out of the planner prompt")
    args = parser.parse_args()
    settings = get_settings()
    cases = [c for c in load_cases(args.cases) if not args.only or c.id in args.only]
    load0 = os.getloadavg()[0]
    with LLMRuntime.open(settings, share=False) as runtime:
        retrieve = None
        if args.k:
            from agent.exemplar_library import nearest_last

            retrieve = nearest_last(args.k)
        scopes = plan_scopes(RunOptions(work_dir=Path("reports/evals/.work")))
        planner = Planner(runtime.planner(plan_schema()), retrieve=retrieve, scopes=scopes if args.scopes else None,
                          gate=in_scope if args.gate else None)
        runtime.router(max_tokens=1).invoke([SystemMessage(planner.system), HumanMessage("hello")])  # warm the slot
        t0 = time.perf_counter()
        report = run_plan_selection(
            cases, planner=planner, tools=build_tools(), model=runtime.model,
            progress=lambda r: print(f"{r.id:16} {'ok ' if r.args_ok else 'fn ' if r.name_ok else 'NO '}"
                                     f"{r.latency_s:5.1f}s {r.text[:150]}", flush=True),
        )
        seconds = time.perf_counter() - t0
    print(f"{'category':12} {'n':>4} {'function':>9} {'arguments':>9}")
    for cat, score in report.by_category.items():
        print(f"{cat:12} {score.n:4} {score.name_accuracy:9.1%} {score.arg_accuracy:9.1%}")
    print(f"abstention {report.abstention:.1%}  p50 {report.latency_p50_s:.1f}s  p95 {report.latency_p95_s:.1f}s  "
          f"{seconds:.0f}s total, load {load0:.2f} → {os.getloadavg()[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"k": args.k, "scopes": args.scopes, "gate": args.gate, "seconds": round(seconds, 1), "load_before": load0,
                                    "report": report.model_dump(mode="json")}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
