"""Retrieval eval: questions with the documents that should answer them.

Metrics over the sources of the top-k chunks returned (the chunks the agent sees):

- recall@k: share of a case's expected sources among the top-k chunks' sources,
  divided by min(k, number expected), averaged over cases (1.0 = perfect);
- MRR: mean of 1 / rank of the first chunk from an expected source (0 if none in
  the top `depth`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from knowledge.store import SEARCH_MODES, KnowledgeStore, SearchMode

CASES_FILE = Path(__file__).resolve().parent.parent / "evals" / "cases" / "retrieval.yaml"
DEPTH = 10
THRESHOLDS = {"recall_at_5": 0.95, "mrr": 0.80}


class RetrievalCase(BaseModel):
    id: str
    question: str
    expected: list[str] = Field(min_length=1)


class RetrievalSuite(BaseModel):
    version: Literal[1]
    cases: list[RetrievalCase]


class CaseResult(BaseModel):
    id: str
    question: str
    expected: list[str]
    retrieved: list[str]  # sources of the top chunks, in rank order
    first_rank: int | None  # 1-based rank of the first relevant chunk
    recall_at_1: float
    recall_at_5: float


class ModeReport(BaseModel):
    mode: SearchMode
    cases: int
    recall_at_1: float
    recall_at_5: float
    mrr: float
    mean_latency_ms: float
    passed: bool
    failures: list[CaseResult]  # cases whose first relevant chunk is not at rank 1


class RetrievalEvalReport(BaseModel):
    suite: str
    chunks: int
    default_mode: SearchMode
    thresholds: dict[str, float]
    modes: list[ModeReport]
    passed: bool


def load_suite(path: Path = CASES_FILE) -> RetrievalSuite:
    """Read and validate the cases file."""
    with path.open(encoding="utf-8") as fh:
        return RetrievalSuite.model_validate(yaml.safe_load(fh))


def _recall(expected: set[str], retrieved: list[str], k: int) -> float:
    found = expected & set(retrieved[:k])
    return len(found) / min(k, len(expected))


def evaluate_mode(store: KnowledgeStore, suite: RetrievalSuite, mode: SearchMode) -> ModeReport:
    """Run every case in `mode` and aggregate the metrics."""
    results: list[CaseResult] = []
    elapsed = 0.0
    for case in suite.cases:
        start = time.perf_counter()
        hits = store.search(case.question, DEPTH, mode=mode)
        elapsed += time.perf_counter() - start
        retrieved = [h.source for h in hits]
        expected = set(case.expected)
        first = next((i for i, s in enumerate(retrieved, start=1) if s in expected), None)
        results.append(
            CaseResult(
                id=case.id,
                question=case.question,
                expected=case.expected,
                retrieved=retrieved,
                first_rank=first,
                recall_at_1=_recall(expected, retrieved, 1),
                recall_at_5=_recall(expected, retrieved, 5),
            )
        )
    n = len(results) or 1
    r1 = sum(r.recall_at_1 for r in results) / n
    r5 = sum(r.recall_at_5 for r in results) / n
    mrr = sum(1.0 / r.first_rank for r in results if r.first_rank) / n
    return ModeReport(
        mode=mode,
        cases=len(results),
        recall_at_1=round(r1, 4),
        recall_at_5=round(r5, 4),
        mrr=round(mrr, 4),
        mean_latency_ms=round(1000 * elapsed / n, 1),
        passed=r5 >= THRESHOLDS["recall_at_5"] and mrr >= THRESHOLDS["mrr"],
        failures=[r for r in results if r.first_rank != 1],
    )


def run_retrieval_eval(
    store: KnowledgeStore,
    *,
    modes: tuple[SearchMode, ...] = SEARCH_MODES,
    cases_file: Path = CASES_FILE,
) -> RetrievalEvalReport:
    """Evaluate `store` in each of `modes`.

    The run passes when the store's own mode (the one the agent uses) meets the
    thresholds, or, when that mode is not evaluated, when every evaluated mode does.
    """
    suite = load_suite(cases_file)
    reports = [evaluate_mode(store, suite, mode) for mode in modes]
    gating = [r for r in reports if r.mode == store.mode] or reports
    return RetrievalEvalReport(
        suite=str(cases_file),
        chunks=store.count(),
        default_mode=store.mode,
        thresholds=THRESHOLDS,
        modes=reports,
        passed=all(r.passed for r in gating),
    )
