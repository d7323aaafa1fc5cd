"""Agent turn latency on the embedded model: cold vs warm, time outside the LLM, calls and tokens.

    .venv/bin/python -m bench.agent_bench [--warm-turns 10] [--cold-turns 2] [--db data/valuechain.db]

Runs on a throw-away copy of the database (the agent files recommendations). "Cold" is the
first turn after the model server starts with no warm-up; "warm" turns follow a warm-up of
the fixed prefix (what `valuechain serve` does at start). Per turn it records wall time,
time waiting for the model (`llm_s`), time in tools, the rest (`other_s`: graph, logging,
serialisation), LLM calls and tokens. Results go to bench/results/agent.json with the load
average, because the model shares the machine's two cores with everything else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.copilot import AgentAnswer
from agent.llm.runtime import LLMRuntime
from agent.service import build_copilot
from core.settings import Settings, get_settings

RESULTS = Path(__file__).resolve().parent / "results" / "agent.json"
QUESTIONS = (
    "Which 5 accounts are most likely to churn and what should we do about the first one?",
    "How likely is ACME-0042 to churn?",
    "Which value-chain activities cost the most and add the least?",
    "What are the support activities in Porter's value chain?",
    "What should we do next with ACME-0042?",
    "Show me the profile of QUIN-0958.",
    "Rank the top 3 activities by margin leak.",
    "What happened recently with DYNE-0036?",
    "What's the weather in Paris tomorrow?",
    "Run a value chain analysis for 2026.",
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def turn_record(kind: str, question: str, r: AgentAnswer) -> dict[str, Any]:
    other = max(0.0, r.latency_s - r.llm_s - r.tool_s)
    return {
        "kind": kind, "question": question, "latency_s": r.latency_s, "llm_s": r.llm_s, "tool_s": r.tool_s,
        "other_s": round(other, 3), "outside_llm_share": round((r.latency_s - r.llm_s) / r.latency_s, 4),
        "llm_calls": r.llm_calls, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "tools": [c.name for c in r.tool_calls], "error": r.error, "load_1m": os.getloadavg()[0],
        "answer": r.answer,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    lat = [r["latency_s"] for r in rows]
    return {
        "n": len(rows),
        "latency_p50_s": round(statistics.median(lat), 2),
        "latency_p95_s": round(pct(lat, 0.95), 2),
        "outside_llm_share_mean": round(statistics.fmean(r["outside_llm_share"] for r in rows), 4),
        "outside_llm_share_max": round(max(r["outside_llm_share"] for r in rows), 4),
        "tool_s_mean": round(statistics.fmean(r["tool_s"] for r in rows), 3),
        "other_s_mean": round(statistics.fmean(r["other_s"] for r in rows), 3),
        "llm_calls_mean": round(statistics.fmean(r["llm_calls"] for r in rows), 2),
        "prompt_tokens_mean": round(statistics.fmean(r["prompt_tokens"] for r in rows)),
        "completion_tokens_mean": round(statistics.fmean(r["completion_tokens"] for r in rows)),
        "load_1m_range": [min(r["load_1m"] for r in rows), max(r["load_1m"] for r in rows)],
    }


def scratch_settings(prefix: str, db: Path | None = None, **overrides: Any) -> tuple[Settings, Path]:
    """Settings on a throw-away copy of `db` (default: the configured SQLite file), and its folder.

    Agent runs write (runs, recommendations); benchmarks must not touch the user's database.
    """
    base = get_settings()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copy(db or Path(base.resolved_database_url.removeprefix("sqlite:///")), tmp / "bench.db")
    return base.model_copy(update={"database_url": f"sqlite:///{tmp / 'bench.db'}", **overrides}), tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warm-turns", type=int, default=len(QUESTIONS))
    ap.add_argument("--cold-turns", type=int, default=2)
    ap.add_argument("--db", type=Path, default=None, help="database to copy (default: the configured SQLite file)")
    args = ap.parse_args()
    settings, tmp = scratch_settings("agent-bench-", args.db, llm_base_url=None)
    rows: list[dict[str, Any]] = []
    starts: list[float] = []
    warm_s: float | None = None
    for i in range(args.cold_turns):
        with LLMRuntime.open(settings, share=False) as runtime:
            starts.append(runtime.timings.get("server_start_s", 0.0))
            copilot = build_copilot(settings, runtime)
            q = QUESTIONS[i % len(QUESTIONS)]
            rows.append(turn_record("cold", q, copilot.ask(q)))
            print(f"cold  {rows[-1]['latency_s']:6.1f}s  {q}", flush=True)
    with LLMRuntime.open(settings, share=False) as runtime:
        starts.append(runtime.timings.get("server_start_s", 0.0))
        copilot = build_copilot(settings, runtime)
        warm_s = copilot.warm(runtime)
        print(f"warm-up {warm_s:.1f}s", flush=True)
        for q in QUESTIONS[: args.warm_turns]:
            rows.append(turn_record("warm", q, copilot.ask(q)))
            r = rows[-1]
            print(f"warm  {r['latency_s']:6.1f}s llm {r['llm_s']:6.1f}s calls {r['llm_calls']} {r['tools']}  {q}",
                  flush=True)
        model = runtime.model
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": model,
        "server_start_s": starts,
        "warm_up_s": warm_s,
        "cold": summarise([r for r in rows if r["kind"] == "cold"]),
        "warm": summarise([r for r in rows if r["kind"] == "warm"]),
        "turns": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("server_start_s", "warm_up_s", "cold", "warm")}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
