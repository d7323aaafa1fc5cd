"""Churn scoring of all accounts, rank by churn, and next-best-action on demo databases (SQLite).

    .venv/bin/python -m bench.churn_bench                      # 10k and 100k accounts
    .venv/bin/python -m bench.churn_bench --full               # also 1,000,000 accounts
    .venv/bin/python -m bench.churn_bench --sizes 10000        # one size
    .venv/bin/python -m bench.churn_bench --db 100000=/path/to/demo.db   # reuse a demo database

Databases are generated (``valuechain demo --seed 7``, as of 2026-09-30) into --db-dir unless
they exist; a 1M database takes ~10–18 min and 5.5 GB, so make it once and reuse it. Each is
migrated to head first (the index migration of an existing 1M database is timed once).

Per size, in this order:

1. the churn model: trained, or reused (--reuse-model; --model-from copies the active model of
   another demo database, e.g. the 100k one for 1M, where training was not attempted);
2. point-in-time features of every active account (bulk SQL + numpy), and the model scoring
   of those features alone;
3. with no kept snapshot: ``rank(accounts, churn_probability, limit=20)`` and list-mode
   ``churn_risk(limit=20)``, which compute every filtered account;
4. **batch scoring of all accounts** (``write_score_snapshot``: features, probabilities, top
   drivers, bulk insert into churn_scores, commit) with no kept feature state: everything is
   read from the event tables (and the state is built and kept);
5. the same ``rank`` and ``churn_risk`` calls reading the kept snapshot;
6. ``churn_risk`` and ``next_best_action`` for single accounts (p50/p95);
7. **with the kept feature state** (tools/churn/state.py) of 1 and of 7 days before: the state
   build itself, scoring every active account (features + probabilities, state advanced and
   kept), and the whole batch as a nightly run writes it (a new date: the rows of the date
   are deleted first, untimed). The batch rows must equal the from-scratch batch's (checked).
   The issue #3 target is ≤ 10 s at 1M.

Times are wall-clock of one run. Peak memory is the tracemalloc peak of a separate traced
pass of the same step (numpy buffers included; tracing slows Python code, so it is not timed).
The 1-minute load average before and after each size is recorded: the machine is shared.
Results are merged into bench/results/churn.json (one entry per size, the newest run wins).
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
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from crm.migrate import current_revision, upgrade
from crm.models import Account, ChurnFeatureState, ChurnModel, ChurnScore
from tools.churn import state as churn_state
from tools.churn import state_store
from tools.churn.features import AccountScope, FeatureTable, active_on, compute_features
from tools.churn.model import load_active_model, load_model_report, train
from tools.churn.scoring import assess, churn_risk, write_score_snapshot
from tools.nba import next_best_action
from tools.ranking import rank

AS_OF = dt.date(2026, 9, 30)
SEED = 7
TOP = 20
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
        return round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
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


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _ensure_db(accounts: int, path: Path) -> tuple[Engine, dict[str, Any]]:
    engine = make_engine(f"sqlite:///{path}")
    info: dict[str, Any] = {"generated_seconds": None, "migrated_from": current_revision(engine)}
    _, seconds = _timed(lambda: upgrade(engine))
    if info["migrated_from"] != current_revision(engine):
        info["migration_seconds"] = round(seconds, 1)
    with make_sessionmaker(engine)() as session:
        have = session.scalar(select(func.count()).select_from(Account)) or 0
    if not have:
        from crm.demo import generate_demo

        _, info["generated_seconds"] = _timed(
            lambda: generate_demo(engine, accounts=accounts, seed=SEED, as_of=AS_OF)
        )
    return engine, info


def _copy_model(source: Path, engine: Engine) -> str:
    """Make the active model of another database the active model here."""
    src = make_engine(f"sqlite:///{source}")
    with make_sessionmaker(src)() as s:
        row = s.scalars(select(ChurnModel).where(ChurnModel.active.is_(True))).first()
        if row is None:
            raise SystemExit(f"{source} has no active churn model")
        values = {c.name: getattr(row, c.name) for c in ChurnModel.__table__.columns}
    src.dispose()
    with make_sessionmaker(engine).begin() as s:
        s.execute(update(ChurnModel).values(active=False))
        s.execute(delete(ChurnModel).where(ChurnModel.version == values["version"]))
        s.add(ChurnModel(**values))
    return str(values["version"])


def _model(engine: Engine, *, retrain: bool, model_from: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if model_from is not None:
        out["model_from"] = str(model_from)
        _copy_model(model_from, engine)
    with make_sessionmaker(engine)() as session:
        report = None if retrain and model_from is None else load_model_report(session)
        out["train_seconds"] = None
        if model_from is None and (report is None or report.method == "rule_based"):
            report, seconds = _timed(lambda: train(session, now=dt.datetime(2026, 10, 1)))
            session.commit()
            out["train_seconds"] = round(seconds, 1)
        if report is None:
            raise SystemExit("no churn model")
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
    return out


def _features_and_scoring(session: Session) -> dict[str, Any]:
    """Bulk point-in-time features of every active account, then scoring those features alone."""
    out: dict[str, Any] = {}
    model = load_active_model(session)
    if model.scorer is None:
        raise SystemExit("the benchmark needs a trained model (logistic regression or boosted trees)")
    scope = AccountScope(where=active_on(AS_OF))
    kinds = model.attribute_kinds or None

    def features() -> FeatureTable:
        return compute_features(session, AS_OF, scope, history=True, attribute_kinds=kinds)

    table, out["features_seconds"] = _timed(features)
    out["active_accounts"] = len(table)
    _, out["score_features_seconds"] = _timed(lambda: model.probability(table))
    out["features_peak_mib"] = _traced_peak_mib(features)
    out["score_features_peak_mib"] = _traced_peak_mib(lambda: model.probability(table))
    return out


def bench_size(engine: Engine, *, samples: int) -> dict[str, Any]:
    factory = make_sessionmaker(engine)
    out: dict[str, Any] = {}
    with factory() as session:
        out.update(_features_and_scoring(session))
        session.execute(delete(ChurnScore).where(ChurnScore.as_of == AS_OF))
        session.commit()

        def top_rank() -> Any:
            return rank(session=session, entity="accounts", metric="churn_probability", limit=TOP)

        def top_risk() -> Any:
            return churn_risk(session=session, limit=TOP)

        computed_rank, out["rank_top20_computed_seconds"] = _timed(top_rank)
        computed_risk, out["churn_risk_top20_computed_seconds"] = _timed(top_risk)
        out["rank_top20_computed_peak_mib"] = _traced_peak_mib(top_rank)
        if (computed_rank.source, computed_risk.source) != ("computed", "computed"):
            raise SystemExit("expected the computed path with no snapshot kept")

        def batch() -> Any:
            session.execute(delete(ChurnFeatureState))  # from scratch: no kept feature state
            result = write_score_snapshot(session, as_of=AS_OF)
            session.commit()
            if result.features != "built":
                raise SystemExit(f"expected a batch from scratch, got {result.features}")
            return result

        written, out["batch_score_all_seconds"] = _timed(batch)
        out["batch_accounts"] = written.accounts
        out["batch_band_counts"] = written.band_counts
        out["batch_score_all_peak_mib"] = _traced_peak_mib(batch)  # rewrites the same rows

        kept_rank, out["rank_top20_snapshot_seconds"] = _timed(top_rank)
        kept_risk, out["churn_risk_top20_snapshot_seconds"] = _timed(top_risk)
        out["rank_top20_snapshot_peak_mib"] = _traced_peak_mib(top_rank)
        out["churn_risk_top20_snapshot_peak_mib"] = _traced_peak_mib(top_risk)
        if (kept_rank.source, kept_risk.source) != ("snapshot", "snapshot"):
            raise SystemExit("expected the snapshot path after the batch")
        same_rank = [(i.id, i.value) for i in kept_rank.items] == [
            (i.id, i.value) for i in computed_rank.items
        ]
        same_risk = [(a.account_id, a.probability) for a in kept_risk.accounts] == [
            (a.account_id, a.probability) for a in computed_risk.accounts
        ] and (kept_risk.total_arr_at_risk, kept_risk.band_counts) == (
            computed_risk.total_arr_at_risk,
            computed_risk.band_counts,
        )
        out["snapshot_equals_computed"] = same_rank and same_risk

        ids = sorted(str(a) for a in session.scalars(select(ChurnScore.account_id)))
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
        out.update(_with_kept_state(session))
    for key, value in list(out.items()):
        if key.endswith("_seconds") and isinstance(value, float):
            out[key] = round(value, 3)
    return out


def _scores(session: Session) -> dict[str, float]:
    rows = session.execute(
        select(ChurnScore.account_id, ChurnScore.probability).where(ChurnScore.as_of == AS_OF)
    ).all()
    return {str(a): float(p) for a, p in rows}


def _keep_state_at(session: Session, day: dt.date) -> float:
    """Build and keep the feature state as of `day`; returns the build time (SQL → numpy)."""
    built, seconds = _timed(lambda: churn_state.build(session, day))
    state_store.save(session, built)
    session.commit()
    return seconds


def _with_kept_state(session: Session) -> dict[str, Any]:
    """Scoring with the kept feature state 1 and 7 days behind the scoring date."""
    out: dict[str, Any] = {}
    reference = _scores(session)  # the from-scratch batch's rows
    scope = AccountScope(where=active_on(AS_OF))
    for days in (1, 7):
        out[f"state_build_{days}d_seconds"] = round(
            _keep_state_at(session, AS_OF - dt.timedelta(days=days)), 3
        )

        def score() -> Any:
            source = churn_state.KeptSource()
            result = assess(session, as_of=AS_OF, scope=scope, source=source)
            if source.use is None or source.use.how != "advanced":
                raise SystemExit(f"expected the kept state to be advanced, got {source.use}")
            return result

        scored, seconds = _timed(score)
        session.rollback()  # keep the state where it was for the batch below
        out[f"score_all_state_{days}d_seconds"] = round(seconds, 3)
        session.execute(delete(ChurnScore).where(ChurnScore.as_of == AS_OF))
        session.commit()

        def batch() -> Any:
            result = write_score_snapshot(session, as_of=AS_OF)
            session.commit()
            return result

        written, seconds = _timed(batch)
        out[f"batch_state_{days}d_seconds"] = round(seconds, 3)
        if written.features != "advanced":
            raise SystemExit(f"expected the batch to advance the kept state, got {written.features}")
        kept = _scores(session)
        same = (
            kept == reference
            and dict(zip(scored.table.ids.tolist(), scored.probability.tolist(), strict=True)) == kept
        )
        out[f"state_{days}d_equals_from_scratch"] = same
        if not same:
            raise SystemExit(f"scores with the state {days} d behind differ from the from-scratch batch")
    payload = session.execute(select(func.length(ChurnFeatureState.payload))).scalar()
    out["state_payload_mib"] = round((payload or 0) / 2**20, 1)
    _keep_state_at(session, AS_OF - dt.timedelta(days=1))
    session.execute(delete(ChurnScore).where(ChurnScore.as_of == AS_OF))
    session.commit()
    out["batch_state_1d_peak_mib"] = _traced_peak_mib(lambda: write_score_snapshot(session, as_of=AS_OF))
    session.rollback()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--full", action="store_true", help="also 1,000,000 accounts")
    parser.add_argument("--db", action="append", default=[], help="SIZE=PATH: reuse a demo database")
    parser.add_argument("--db-dir", default="/tmp/churn-bench", help="where generated databases go")
    parser.add_argument("--samples", type=int, default=200, help="single-account calls timed per size")
    parser.add_argument("--reuse-model", action="store_true", help="keep an active trained model")
    parser.add_argument(
        "--model-from",
        action="append",
        default=[],
        help="SIZE=PATH: copy the active model of another database instead of training (e.g. for 1M)",
    )
    args = parser.parse_args()
    given = {int(k): Path(v) for k, v in (item.split("=", 1) for item in args.db)}
    model_from = {int(k): Path(v) for k, v in (item.split("=", 1) for item in args.model_from)}
    sizes = sorted(set(args.sizes) | ({1_000_000} if args.full else set()))
    doc: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    doc.pop("million", None)  # replaced by a measured 1M database
    doc.update(
        {
            "benchmark": "churn scoring of all accounts, rank by churn, next-best-action (bench/churn_bench.py)",
            "as_of": AS_OF.isoformat(),
            "seed": SEED,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
        }
    )
    doc.setdefault("sizes", {})
    for accounts in sizes:
        path = given.get(accounts) or Path(args.db_dir) / f"demo_{accounts}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        engine, info = _ensure_db(accounts, path)
        load_before = _load()
        out: dict[str, Any] = {"accounts": accounts}
        out.update(_model(engine, retrain=not args.reuse_model, model_from=model_from.get(accounts)))
        previous = doc["sizes"].get(str(accounts), {})
        if out["train_seconds"] is None and "model_from" not in out and previous.get("train_seconds"):
            out["train_seconds"] = previous["train_seconds"]
            out["train_seconds_note"] = "from an earlier run (model reused)"
        out.update(bench_size(engine, samples=args.samples))
        out["load_avg_1m"] = [load_before, _load()]  # shared 2-core machine
        out["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        out["database"] = str(path)
        out.update(info)
        out["db_mib"] = round(path.stat().st_size / 2**20, 1)
        engine.dispose()
        doc["sizes"][str(accounts)] = out
        doc["sizes"] = dict(sorted(doc["sizes"].items(), key=lambda kv: int(kv[0])))
        doc["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(doc, indent=2) + "\n")  # after every size: a long run keeps it
        print(json.dumps(out, indent=2), flush=True)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
