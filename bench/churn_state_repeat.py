"""Repeat "score every active account with the kept feature state one day behind" (the issue #3
measure) N times on one demo database, to show the spread on this shared machine.

    .venv/bin/python -m bench.churn_state_repeat --db /tmp/churn-bench/demo_1000000.db [--runs 6]

The database needs an active logistic model (see bench/churn_bench.py). The state is built
once as of the day before 2026-09-30; every run loads it, moves it on by one day, keeps it
(rolled back after the run, so every run does the same work), reads the accounts, derives the
features and runs the model. Results: bench/results/churn-state-repeat.json (newest run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path

from core.db import make_engine, make_sessionmaker
from tools.churn import state as churn_state
from tools.churn import state_store
from tools.churn.features import AccountScope, active_on
from tools.churn.scoring import assess

AS_OF = dt.date(2026, 9, 30)
RESULTS = Path(__file__).parent / "results" / "churn-state-repeat.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a migrated demo database (SQLite file)")
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    engine = make_engine(f"sqlite:///{args.db}")
    seconds: list[float] = []
    load_before = os.getloadavg()[0]
    with make_sessionmaker(engine)() as session:
        state_store.save(session, churn_state.build(session, AS_OF - dt.timedelta(days=1)))
        session.commit()
        for _ in range(args.runs):
            source = churn_state.KeptSource()
            start = time.perf_counter()
            result = assess(session, as_of=AS_OF, scope=AccountScope(where=active_on(AS_OF)), source=source)
            seconds.append(round(time.perf_counter() - start, 3))
            if source.use is None or source.use.how != "advanced":
                raise SystemExit(f"expected the kept state to be advanced, got {source.use}")
            session.rollback()
    doc = {
        "benchmark": "score all active accounts with the kept feature state 1 day behind (bench/churn_state_repeat.py)",
        "database": args.db,
        "accounts_scored": len(result.table),
        "seconds": seconds,
        "median_seconds": round(statistics.median(seconds), 3),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
