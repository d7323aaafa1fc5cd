"""Churn scoring and next-best-action benchmark on demo databases (SQLite).

    .venv/bin/python -m bench.churn_bench                      # 10k and 100k accounts
    .venv/bin/python -m bench.churn_bench --sizes 10000        # one size
    .venv/bin/python -m bench.churn_bench --full               # also 1M scoring (see below)
    .venv/bin/python -m bench.churn_bench --db 100000=/path/to/demo.db   # reuse a demo database

Per size it (1) trains the history model, (2) computes point-in-time features for every
active account in bulk (SQL + numpy), (3) scores the materialised features (the ≤ 10 s for
1M target), (4) runs the churn_risk tool over all active accounts end to end and `rank` by
churn_probability, (5) times churn_risk and next_best_action for single accounts (p50/p95).
Peak memory: tracemalloc peaks of the feature and scoring steps (a separate traced pass).

`--full` adds 1M scoring. Unless a 1M-account database is given with --db, the 1M feature
table is the largest measured size's table repeated to 1M rows (scoring cost does not depend
on the values); the SQL feature step is then not measured at 1M and the JSON says so.
Results go to bench/results/churn.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Engine, func, select

from crm.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from crm.models import Account
from tools.churn.features import AccountScope, FeatureTable, active_on, compute_features
from tools.churn.model import load_active_model, load_model_report, train
from tools.churn.scoring import churn_risk
from tools.nba import next_best_action
from tools.ranking import rank

AS_OF = dt.date(2026, 9, 30)
SEED = 7
RESULTS = Path(__file__).parent / "results" / "churn.json"
T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _traced_peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 2),
        "max_ms": round(ms[-1], 2),
    }


def _ensure_db(accounts: int, path: Path) -> tuple[Engine, float | None]:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        have = session.scalar(select(func.count()).select_from(Account)) or 0
    if have:
        return engine, None
    from crm.demo import generate_demo

    _, seconds = _timed(lambda: generate_demo(engine, accounts=accounts, seed=SEED, as_of=AS_OF))
    return engine, seconds


def bench_size(
    accounts: int, engine: Engine, *, samples: int, retrain: bool = True
) -> tuple[dict[str, Any], FeatureTable]:
    factory = make_sessionmaker(engine)
    out: dict[str, Any] = {"accounts": accounts}
    with factory() as session:
        stored = None if retrain else load_model_report(session)
        if stored is None or stored.method != "logistic_regression":
            report, out["train_seconds"] = _timed(lambda: train(session, now=dt.datetime(2026, 10, 1)))
            session.commit()
        else:
            report, out["train_seconds"] = stored, None  # measured in an earlier run
        out["model"] = {
            "version": report.model_version,
            "method": report.method,
            "auc": report.auc,
            "brier": report.brier,
            "top_decile_lift": report.top_decile_lift,
            "rule_based_auc": report.rule_based_auc,
            "n_train": report.n_train,
            "n_test": report.n_test,
            "positives": report.positives,
            "features": report.features,
        }
        model = load_active_model(session)
        scope = AccountScope(where=active_on(AS_OF))
        kinds = model.attribute_kinds or None
        table, out["features_seconds"] = _timed(
            lambda: compute_features(session, AS_OF, scope, history=True, attribute_kinds=kinds)
        )
        out["active_accounts"] = len(table)
        linear = model.linear
        if linear is None:
            raise SystemExit("the benchmark needs a trained logistic model")
        _, out["score_seconds"] = _timed(lambda: linear.probability(table))
        out["features_peak_mib"] = round(
            _traced_peak_mib(
                lambda: compute_features(session, AS_OF, scope, history=True, attribute_kinds=kinds)
            ),
            1,
        )
        out["score_peak_mib"] = round(_traced_peak_mib(lambda: linear.probability(table)), 1)
        risk, out["churn_risk_all_seconds"] = _timed(lambda: churn_risk(session=session, limit=50))
        out["churn_risk_all_matched"] = risk.matched
        _, out["rank_churn_probability_seconds"] = _timed(
            lambda: rank(session=session, entity="accounts", metric="churn_probability", limit=50)
        )
        ids = [str(i) for i in table.ids]
        picks = [ids[int(k)] for k in np.linspace(0, len(ids) - 1, num=min(samples, len(ids)))]
        next_best_action(session=session, account_id=picks[0])  # warm: model and playbook caches
        churn_risk(session=session, account_id=picks[0])
        nba_times: list[float] = []
        risk_times: list[float] = []
        for account_id in picks:
            start = time.perf_counter()
            next_best_action(session=session, account_id=account_id)
            nba_times.append(time.perf_counter() - start)
        for account_id in picks:
            start = time.perf_counter()
            churn_risk(session=session, account_id=account_id)
            risk_times.append(time.perf_counter() - start)
        out["next_best_action_single"] = _percentiles(nba_times)
        out["churn_risk_single"] = _percentiles(risk_times)
    return out, table


def bench_million(table: FeatureTable, engine: Engine, rows: int = 1_000_000) -> dict[str, Any]:
    with make_sessionmaker(engine)() as session:
        linear = load_active_model(session).linear
    if linear is None:
        raise SystemExit("the benchmark needs a trained logistic model")
    reps = -(-rows // len(table))
    big = FeatureTable.concat([table] * reps).take(np.arange(rows))
    _, seconds = _timed(lambda: linear.probability(big))
    peak = _traced_peak_mib(lambda: linear.probability(big))
    return {
        "rows": rows,
        "score_seconds": round(seconds, 3),
        "score_peak_mib": round(peak, 1),
        "how": f"features of the {len(table):,} active accounts of the largest measured demo, repeated "
        f"to {rows:,} rows; the scoring step only (SQL feature extraction not measured at 1M)",
    }


def _previous(accounts: int) -> dict[str, Any]:
    if not RESULTS.is_file():
        return {}
    sizes: dict[str, Any] = json.loads(RESULTS.read_text()).get("sizes", {})
    return dict(sizes.get(str(accounts), {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--full", action="store_true", help="also score 1M accounts")
    parser.add_argument("--db", action="append", default=[], help="SIZE=PATH: reuse a demo database")
    parser.add_argument("--db-dir", default="/tmp/churn-bench", help="where generated databases go")
    parser.add_argument("--samples", type=int, default=200, help="single-account calls timed per size")
    parser.add_argument(
        "--reuse-model", action="store_true", help="keep an active trained model (no training)"
    )
    args = parser.parse_args()
    given = {int(k): Path(v) for k, v in (item.split("=", 1) for item in args.db)}
    results: dict[str, Any] = {
        "benchmark": "churn scoring and next-best-action (bench/churn_bench.py)",
        "as_of": AS_OF.isoformat(),
        "seed": SEED,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "sizes": {},
    }
    if RESULTS.is_file():  # keep sizes measured in earlier runs; re-measured ones are replaced
        earlier = json.loads(RESULTS.read_text())
        results["sizes"] = earlier.get("sizes", {})
        if "million" in earlier:
            results["million"] = earlier["million"]
    largest: tuple[FeatureTable, Engine] | None = None
    for accounts in sorted(args.sizes):
        path = given.get(accounts) or Path(args.db_dir) / f"demo_{accounts}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        engine, gen_seconds = _ensure_db(accounts, path)
        load_before = os.getloadavg()[0]
        out, table = bench_size(accounts, engine, samples=args.samples, retrain=not args.reuse_model)
        previous = _previous(accounts)
        if out["train_seconds"] is None and previous.get("train_seconds"):
            out["train_seconds"] = previous["train_seconds"]
            out["train_seconds_note"] = "from the previous run (model reused)"
        out["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # shared 2-core machine
        out["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        out["database"] = str(path)
        out["generated_seconds"] = gen_seconds
        out["db_mib"] = round(path.stat().st_size / 2**20, 1)
        for key, value in list(out.items()):
            if key.endswith("_seconds") and isinstance(value, float):
                out[key] = round(value, 3)
        results["sizes"][str(accounts)] = out
        print(json.dumps(out, indent=2))
        largest = (table, engine)
    if args.full and largest is not None:
        if 1_000_000 in given:
            results["million"] = results["sizes"].get("1000000")
        else:
            results["million"] = bench_million(*largest)
            print(json.dumps(results["million"], indent=2))
    results["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
