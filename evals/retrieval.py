"""Retrieval suite: `knowledge.evaluate` (recall@k, MRR over `evals/cases/retrieval.yaml`) as a suite.

Scored in the store's own ranking mode (what the agent uses, hybrid by default) and in vector
mode for comparison; the metrics that thresholds gate are the store mode's. The store holds the
product's corpus only (`evals.fixtures.corpus_knowledge`), so users' documents never move the numbers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from evals.report import ReportTable, SuiteResult, dump
from knowledge.evaluate import CASES_FILE, run_retrieval_eval
from knowledge.store import SEARCH_MODES


def run_retrieval(store: Any, *, cases_file: Path | None = None) -> SuiteResult:
    t0 = time.perf_counter()
    modes = tuple(dict.fromkeys((store.mode, *SEARCH_MODES)))
    report = run_retrieval_eval(store, modes=modes, cases_file=cases_file or CASES_FILE)
    main = next(m for m in report.modes if m.mode == store.mode)
    metrics = {"recall_at_1": main.recall_at_1, "recall_at_5": main.recall_at_5, "mrr": main.mrr}
    for m in report.modes:
        if m.mode != store.mode:
            metrics |= {f"{m.mode}.recall_at_5": m.recall_at_5, f"{m.mode}.mrr": m.mrr}
    return SuiteResult(
        suite="retrieval",
        cases=main.cases,
        metrics=metrics,
        summary=(f"{main.mode}: recall@1 {main.recall_at_1:.3f}, recall@5 {main.recall_at_5:.3f}, "
                 f"MRR {main.mrr:.3f} over {main.cases} questions, {report.chunks} chunks"),
        tables=[ReportTable(title="by ranking mode", columns=["mode", "cases", "recall@1", "recall@5", "MRR", "ms/query"],
                            rows=[[m.mode + (" (agent)" if m.mode == store.mode else ""), str(m.cases),
                                   f"{m.recall_at_1:.3f}", f"{m.recall_at_5:.3f}", f"{m.mrr:.3f}",
                                   f"{m.mean_latency_ms:.0f}"] for m in report.modes])],
        failures=[f"{f.id}: expected {f.expected}, first relevant at rank {f.first_rank or '-'}; top {f.retrieved[:3]}"
                  for f in main.failures],
        seconds=round(time.perf_counter() - t0, 2),
        details=dump(report),
    )
