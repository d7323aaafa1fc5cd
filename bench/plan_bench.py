"""Plan → execute → answer turns against the floor, and the ReAct agent, on one warm embedded server.

    .venv/bin/python -m bench.plan_bench [--db data/valuechain.db] [--react] [--out bench/results/plan-agent.json]

For each data or framework question, in one run on the same server:
- floor: one raw routing request (system prompt + the tool schemas + the question) that returns
  the tool call, then one raw answer request with that call's result (what any agent must pay:
  one call to choose, one to answer; the question's own tool runs in between, untimed);
- plan: a whole turn of the plan → execute → answer agent (`AGENT_DESIGN=plan`);
- react (with --react): a whole turn of the ReAct agent.
The phases run one after the other, each after warming its own prompt prefixes, so no phase
evicts another's cached prefix. Reports p50/p95 per phase, the ratio of plan to floor per
question, model calls, and the share of time outside the model, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from agent.copilot import AgentAnswer
from agent.llm.runtime import LLMRuntime
from agent.prompts import load_prompt
from agent.service import build_copilot
from agent.tools import build_tools
from bench.agent_bench import pct, scratch_settings
from core.db import session_scope
from core.runtime import get_sessionmaker
from knowledge.store import KnowledgeStore
from tools.registry import tool_named

RESULTS = Path(__file__).resolve().parent / "results" / "plan-agent.json"
QUESTIONS = (
    ("data", "Which 5 accounts are most likely to churn?"),
    ("data", "Which value-chain activity loses the most margin?"),
    ("data", "How likely is ACME-0042 to churn?"),
    ("data", "What should we do next with ACME-0042?"),
    ("data", "Show me the profile of QUIN-0958."),
    ("data", "Rank the top 3 activities by margin leak."),
    ("data", "What happened recently with DYNE-0036?"),
    ("data", "Which Enterprise accounts have the most ARR at risk?"),
    ("framework", "What are the support activities in Porter's value chain?"),
    ("framework", "How is margin leak computed?"),
    ("framework", "What are the five steps of value chain analysis?"),
    ("two-step", "Which 5 accounts are most likely to churn, and what should we do about the first one?"),
    ("parallel", "Compare the churn risk of ACME-0042 and DYNE-0036."),
)


def _turn(kind: str, q: str, r: AgentAnswer) -> dict[str, Any]:
    return {"kind": kind, "question": q, "latency_s": r.latency_s, "llm_s": r.llm_s, "tool_s": r.tool_s,
            "outside_llm_share": round((r.latency_s - r.llm_s) / r.latency_s, 4) if r.latency_s else 0.0,
            "llm_calls": r.llm_calls, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "tools": [c.name for c in r.tool_calls], "error": r.error, "notes": r.notes,
            "load_1m": os.getloadavg()[0], "answer": r.answer}


def _floor(runtime: LLMRuntime, settings: Any, sessions: Any, knowledge: Any, q: str) -> dict[str, Any]:
    """One raw routing call and one raw answer call with the chosen tool's result."""
    system = load_prompt("system.md")
    router = runtime.router().bind_tools(build_tools())
    t0 = time.perf_counter()
    routed = router.invoke([SystemMessage(system), HumanMessage(q)])
    route_s = time.perf_counter() - t0
    assert isinstance(routed, AIMessage)
    messages: list[Any] = [SystemMessage(system), HumanMessage(q)]
    if routed.tool_calls:
        call = routed.tool_calls[0]
        spec = tool_named(call["name"])
        try:
            with session_scope(sessions) as s:
                result = spec.call(spec.core_kwargs(call["args"]), session=s, store=knowledge)
                s.rollback()
            content = spec.view_json(result)
        except Exception as exc:  # the floor measures the model; a wrong call still gets an answer call
            content = f"Error: {exc}"
        messages += [AIMessage(content="", tool_calls=[call]), ToolMessage(content, tool_call_id=call["id"])]
    messages.append(HumanMessage(load_prompt("answer.md")))
    t1 = time.perf_counter()
    answered = runtime.answerer().invoke(messages)
    answer_s = time.perf_counter() - t1
    return {"kind": "floor", "question": q, "latency_s": round(route_s + answer_s, 3),
            "route_s": round(route_s, 3), "answer_s": round(answer_s, 3),
            "tools": [c["name"] for c in routed.tool_calls], "load_1m": os.getloadavg()[0],
            "answer": str(answered.content)[:500]}


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [r["latency_s"] for r in rows]
    out: dict[str, Any] = {"n": len(rows), "latency_p50_s": round(statistics.median(lat), 2),
                           "latency_p95_s": round(pct(lat, 0.95), 2)}
    if rows and "llm_calls" in rows[0]:
        calls = [r["llm_calls"] for r in rows]
        out |= {"llm_calls_p50": statistics.median(calls), "llm_calls_p95": pct([float(c) for c in calls], 0.95),
                "outside_llm_share_mean": round(statistics.fmean(r["outside_llm_share"] for r in rows), 4)}
    out["load_1m_range"] = [round(min(r["load_1m"] for r in rows), 2), round(max(r["load_1m"] for r in rows), 2)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--react", action="store_true", help="also time the ReAct agent's turns")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    settings, _tmp = scratch_settings("plan-bench-", args.db, agent_design="plan")
    rows: list[dict[str, Any]] = []
    with LLMRuntime.open(settings, share=False) as runtime:
        sessions = get_sessionmaker(settings)
        knowledge = cache(lambda: KnowledgeStore.from_settings(settings))
        knowledge()  # load the store before timing
        plan_agent = build_copilot(settings, runtime, sessions=sessions, knowledge=knowledge)
        react_agent = build_copilot(settings.model_copy(update={"agent_design": "react"}), runtime,
                                    sessions=sessions, knowledge=knowledge)
        react_agent.warm(runtime)
        for _cat, q in QUESTIONS:
            rows.append(_floor(runtime, settings, sessions, knowledge, q))
            print(f"floor {rows[-1]['latency_s']:6.1f}s  {q}", flush=True)
        plan_agent.warm(runtime)
        for _cat, q in QUESTIONS:
            rows.append(_turn("plan", q, plan_agent.ask(q)))
            r = rows[-1]
            print(f"plan  {r['latency_s']:6.1f}s calls {r['llm_calls']} {r['tools']}  {q}", flush=True)
        if args.react:
            react_agent.warm(runtime)
            for _cat, q in QUESTIONS:
                rows.append(_turn("react", q, react_agent.ask(q)))
                r = rows[-1]
                print(f"react {r['latency_s']:6.1f}s calls {r['llm_calls']} {r['tools']}  {q}", flush=True)
    floor = {r["question"]: r["latency_s"] for r in rows if r["kind"] == "floor"}
    plan_rows = [r for r in rows if r["kind"] == "plan"]
    for r in plan_rows:
        r["ratio_to_floor"] = round(r["latency_s"] / floor[r["question"]], 3)
    data_q = {q for cat, q in QUESTIONS if cat in ("data", "framework")}
    result = {
        "machine": {"cpus": os.cpu_count()},
        "summary": {kind: _summary([r for r in rows if r["kind"] == kind]) for kind in ("floor", "plan", "react")
                    if any(r["kind"] == kind for r in rows)},
        "data_and_framework": {
            "plan": _summary([r for r in plan_rows if r["question"] in data_q]),
            "floor": _summary([r for r in rows if r["kind"] == "floor" and r["question"] in data_q]),
            "ratio_p50": statistics.median(r["ratio_to_floor"] for r in plan_rows if r["question"] in data_q),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("summary", "data_and_framework")}, indent=2))


if __name__ == "__main__":
    main()
