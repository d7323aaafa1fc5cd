"""Request matching when the eval cassettes replay: vcrpy's `body` matcher vs `evals.replay.same_body`.

    .venv/bin/python -m bench.replay_matcher [--suite tasks] [--pairs 300]

vcrpy serves a request by walking the cassette from the top and asking the matchers about every
recording until one matches and is unplayed; each `body` mismatch builds a difflib diff for its
error message. This benchmark loads a committed cassette (evals/cassettes/<suite>.yaml), counts
the comparisons a whole replay makes (the walk, simulated with byte equality, which is what
`same_body` does), and times both matchers on the same sample of non-matching pairs and of the
matching pairs. Projected matching time = comparisons × time per comparison; `same_body` is also
timed over the whole simulated walk. Results go to bench/results/replay-matcher.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

from vcr import matchers
from vcr.persisters.filesystem import FilesystemPersister
from vcr.serializers import yamlserializer
from vcr.util import read_body

from evals.replay import CASSETTE_DIR, same_body

RESULTS = Path(__file__).resolve().parent / "results" / "replay-matcher.json"


def _per_call(matcher: Any, pairs: list[tuple[Any, Any]]) -> float:
    start = time.perf_counter()
    for r1, r2 in pairs:
        with contextlib.suppress(AssertionError):
            matcher(r1, r2)
    return (time.perf_counter() - start) / len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="tasks")
    parser.add_argument("--pairs", type=int, default=300, help="non-matching pairs timed per matcher")
    args = parser.parse_args(argv)

    path = CASSETTE_DIR / f"{args.suite}.yaml"
    t0 = time.perf_counter()
    requests, _responses = FilesystemPersister.load_cassette(str(path), serializer=yamlserializer)
    load_s = time.perf_counter() - t0
    bodies = [read_body(r) for r in requests]

    # the walk a replay makes: request i is compared with recordings from the top until the first
    # unplayed one with the same body (the recording order is the order the run sends them in)
    played = [False] * len(requests)
    comparisons = mismatches = 0
    t0 = time.perf_counter()
    for i in range(len(requests)):
        for j in range(len(requests)):
            comparisons += 1
            try:
                same_body(requests[i], requests[j])
            except AssertionError:
                mismatches += 1
                continue
            if not played[j]:
                played[j] = True
                break
    walk_same_body_s = time.perf_counter() - t0

    rng = random.Random(0)
    different = [(requests[i], requests[j]) for i, j in
                 ((rng.randrange(len(requests)), rng.randrange(len(requests))) for _ in range(args.pairs * 3))
                 if bodies[i] != bodies[j]][: args.pairs]
    vcr_mismatch = _per_call(matchers.body, different)
    ours_mismatch = _per_call(same_body, different)
    equal = [(r, r) for r in requests[: min(len(requests), args.pairs)]]
    vcr_match = _per_call(matchers.body, equal)
    ours_match = _per_call(same_body, equal)
    matches = comparisons - mismatches

    result = {
        "benchmark": "cassette request matching during an eval replay (bench/replay_matcher.py)",
        "cassette": str(path.relative_to(CASSETTE_DIR.parent.parent)),
        "cassette_mib": round(path.stat().st_size / 2**20, 1),
        "requests": len(requests),
        "load_seconds": round(load_s, 2),
        "comparisons_in_a_replay": comparisons,
        "of_which_mismatches": mismatches,
        "pairs_timed": len(different),
        "vcr_body_ms_per_mismatch": round(vcr_mismatch * 1000, 3),
        "same_body_ms_per_mismatch": round(ours_mismatch * 1000, 4),
        "vcr_body_ms_per_match": round(vcr_match * 1000, 3),
        "same_body_ms_per_match": round(ours_match * 1000, 4),
        "projected_vcr_body_seconds": round(mismatches * vcr_mismatch + matches * vcr_match, 1),
        "projected_same_body_seconds": round(mismatches * ours_mismatch + matches * ours_match, 2),
        "measured_same_body_walk_seconds": round(walk_same_body_s, 2),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
