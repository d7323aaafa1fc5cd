"""Framework questions through the agent: how many answers cite a relevant knowledge passage.

    .venv/bin/python -m bench.framework_citations [--db data/valuechain.db] [--limit N] [--out ...]

Every question of the retrieval eval suite (`evals/cases/retrieval.yaml`, each with the knowledge
documents that answer it) is asked through the product's agent (`AGENT_DESIGN`, default plan) on
one warm embedded server. Per question: the tools it ran, whether the answer cites at least one
passage as `[source § section]`, whether a cited source is one of the question's expected
documents (relevant) — counted on the whole answer (with the "Sources:" line code appends from the
passages retrieved) and on the model's own text alone —, model calls and seconds. Writes JSON with
the rows and a summary.
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

import yaml

from agent.llm.runtime import LLMRuntime
from agent.service import build_copilot
from bench.agent_bench import pct, scratch_settings
from core.runtime import get_sessionmaker
from evals.citations import cited_sources, narrative
from knowledge.ingest import ensure_corpus_index
from knowledge.store import KnowledgeStore

RESULTS = Path(__file__).resolve().parent / "results" / "framework-citations.json"
CASES = Path(__file__).resolve().parents[1] / "evals" / "cases" / "retrieval.yaml"
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--only", nargs="*", help="case ids")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    cases = [c for c in yaml.safe_load(CASES.read_text(encoding="utf-8"))["cases"][: args.limit]
             if not args.only or c["id"] in args.only]
    settings, _tmp = scratch_settings("citations-bench-", args.db)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    t_all = time.perf_counter()
    with LLMRuntime.open(settings, share=False) as runtime:
        knowledge = cache(lambda: KnowledgeStore.from_settings(settings))
        ensure_corpus_index(knowledge())  # the shipped corpus, indexed if this data folder lacks it
        agent = build_copilot(settings, runtime, sessions=get_sessionmaker(settings), knowledge=knowledge)
        agent.warm(runtime)
        for case in cases:
            r = agent.ask(case["question"])
            cited = cited_sources(r.answer)
            own = cited_sources(narrative(r.answer))
            rows.append({"id": case["id"], "question": case["question"], "expected": case["expected"],
                         "tools": [c.name for c in r.tool_calls],
                         "queries": [c.args.get("query") for c in r.tool_calls if c.name == "search_knowledge"],
                         "cited": cited, "any_citation": bool(cited),
                         "relevant_citation": bool(set(cited) & set(case["expected"])),
                         "cited_in_text": own, "relevant_in_text": bool(set(own) & set(case["expected"])),
                         "llm_calls": r.llm_calls,
                         "latency_s": r.latency_s, "error": r.error, "answer": r.answer})
            print(f"{case['id']} {'ok ' if rows[-1]['relevant_citation'] else 'MISS'} {r.latency_s:5.1f}s "
                  f"{rows[-1]['tools']} {cited}", flush=True)
    n = len(rows)
    lat = [r["latency_s"] for r in rows] or [0.0]
    summary = {
        "n": n, "design": settings.agent_design, "model": runtime.model,
        "any_citation": round(sum(r["any_citation"] for r in rows) / n, 4) if n else 0.0,
        "relevant_citation": round(sum(r["relevant_citation"] for r in rows) / n, 4) if n else 0.0,
        "relevant_citation_in_model_text": round(sum(r["relevant_in_text"] for r in rows) / n, 4) if n else 0.0,
        "routed_to_search_knowledge": round(sum("search_knowledge" in r["tools"] for r in rows) / n, 4) if n else 0.0,
        "latency_p50_s": round(statistics.median(lat), 2), "latency_p95_s": round(pct(lat, 0.95), 2),
        "seconds": round(time.perf_counter() - t_all, 1),
        "load_1m_before": round(load_before, 2), "load_1m_after": round(os.getloadavg()[0], 2),
    }
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
