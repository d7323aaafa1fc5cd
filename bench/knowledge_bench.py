"""Knowledge benchmark: corpus ingest throughput, query latency, retrieval quality.

Builds the bundled corpus into a throw-away embedded Chroma store, times it, runs
every retrieval-eval question several times per ranking mode, and writes
bench/results/knowledge.json.

    .venv/bin/python -m bench.knowledge_bench [--repeats 3] [--out bench/results/knowledge.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from knowledge.chunking import chunk_document
from knowledge.embeddings import DEFAULT_THREADS, MODEL_ID, MiniLMEmbedder
from knowledge.evaluate import load_suite, run_retrieval_eval
from knowledge.ingest import CORPUS_DIR, corpus_files, ensure_corpus_index, load_documents
from knowledge.store import SEARCH_MODES, KnowledgeStore

OUT = Path(__file__).resolve().parent / "results" / "knowledge.json"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def run(repeats: int) -> dict[str, Any]:
    files = corpus_files()
    docs = load_documents(files, base=CORPUS_DIR.parent.parent)
    chunks = [c for d in docs for c in chunk_document(d)]
    words = [len(c.text.split()) for c in chunks]

    # Model throughput alone, on a fresh model (load time reported separately).
    embedder = MiniLMEmbedder()
    start = time.perf_counter()
    embedder.embed(["warm-up"])
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    embedder.embed([c.embed_text for c in chunks])
    embed_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        store = KnowledgeStore.at_path(Path(tmp) / "chroma")
        start = time.perf_counter()
        built = ensure_corpus_index(store)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        reused = ensure_corpus_index(store)
        reuse_s = time.perf_counter() - start

        suite = load_suite()
        samples: dict[str, list[float]] = {mode: [] for mode in SEARCH_MODES}
        for mode in SEARCH_MODES:
            store.search("warm-up query", 5, mode=mode)  # loads the model, builds the BM25 view
        # Modes interleaved per question, so machine load drifts hit both alike.
        for _ in range(repeats):
            for case in suite.cases:
                for mode in SEARCH_MODES:
                    t0 = time.perf_counter()
                    store.search(case.question, 5, mode=mode)
                    samples[mode].append(1000 * (time.perf_counter() - t0))
        latency = {
            mode: {
                "queries": len(values),
                "p50_ms": round(_percentile(values, 0.50), 1),
                "p95_ms": round(_percentile(values, 0.95), 1),
                "max_ms": round(max(values), 1),
            }
            for mode, values in samples.items()
        }
        evaluation = run_retrieval_eval(store)

    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "onnxruntime_threads": DEFAULT_THREADS,
            "python": platform.python_version(),
            "chromadb": version("chromadb"),
            "onnxruntime": version("onnxruntime"),
        },
        "model": MODEL_ID,
        "corpus": {
            "documents": len(docs),
            "chunks": len(chunks),
            "words_per_chunk_mean": round(statistics.mean(words), 1) if words else 0,
            "words_per_chunk_max": max(words, default=0),
        },
        "embedding": {
            "model_load_s": round(load_s, 3),
            "chunks": len(chunks),
            "seconds": round(embed_s, 2),
            "chunks_per_s": round(len(chunks) / embed_s, 1) if embed_s else None,
        },
        "ingest": {
            "status": built.status,
            "chunks": built.chunks,
            "seconds": round(build_s, 2),
            "chunks_per_s": round(built.chunks / build_s, 1) if build_s else None,
            "reuse_status": reused.status,
            "reuse_seconds": round(reuse_s, 3),
        },
        "query_latency_k5": latency,
        "retrieval_eval": {
            "cases": len(suite.cases),
            "default_mode": evaluation.default_mode,
            "passed": evaluation.passed,
            "modes": {
                m.mode: {"recall_at_1": m.recall_at_1, "recall_at_5": m.recall_at_5, "mrr": m.mrr}
                for m in evaluation.modes
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3, help="Passes over the eval questions")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = run(args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
