"""Scale benchmark of the demo generator on SQLite: seconds, rows and file size per size.

    .venv/bin/python -m bench.demo_scale            # 10k and 100k accounts
    .venv/bin/python -m bench.demo_scale --full     # also 1,000,000 accounts
    .venv/bin/python -m bench.demo_scale --sizes 2000 10000 --keep

Each size is generated into a fresh temporary SQLite file (WAL mode, as the
product runs it), then checkpointed so the file size is the real database size.
Results are merged into bench/results/demo_scale.json (one entry per size, the
newest run wins), written after every size so a long run keeps what it finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.db import make_engine
from crm.demo import DEFAULT_AS_OF, GENERATOR_VERSION, TRIM_THRESHOLD, generate_demo
from crm.demo.checks import churn_rate_last_year, holdout_auc, single_snapshot_auc
from crm.migrate import upgrade

RESULTS = Path(__file__).parent / "results" / "demo_scale.json"
TIME_SPLIT_MAX_ACCOUNTS = 100_000  # monthly-snapshot AUC above this takes longer than the run


def run_one(
    accounts: int, seed: int, as_of: dt.date, folder: Path, *, check: bool, progress: bool
) -> dict[str, Any]:
    path = folder / f"demo_{accounts}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    began = time.perf_counter()
    summary = generate_demo(engine, accounts=accounts, seed=seed, as_of=as_of, progress=progress)
    seconds = time.perf_counter() - began
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    entry: dict[str, Any] = {
        "accounts": accounts,
        "seed": seed,
        "as_of": as_of.isoformat(),
        "history": "trimmed" if summary.trimmed else "full",
        "seconds": round(seconds, 1),
        "rows_total": summary.total_rows,
        "rows": summary.rows,
        "db_bytes": size,
        "db_gib": round(size / 2**30, 3),
        "bytes_per_account": round(size / accounts),
        "churned": summary.churned,
        "active": summary.active,
    }
    if check:
        began = time.perf_counter()
        entry["churn_rate_last_12_months"] = round(churn_rate_last_year(engine, as_of), 4)
        auc, n_test, n_pos = single_snapshot_auc(engine, as_of)
        entry["snapshot_auc"] = {"auc": round(auc, 4), "test_rows": n_test, "test_positives": n_pos}
        if accounts <= TIME_SPLIT_MAX_ACCOUNTS:
            # Trimmed history holds 52 weeks of usage: monthly snapshots over the last ~7 months.
            months, test_months = (7, 2) if summary.trimmed else (24, 6)
            auc, n_test, n_pos = holdout_auc(engine, as_of, months=months, test_months=test_months)
            entry["time_split_auc"] = {
                "auc": round(auc, 4),
                "train_snapshots": months - test_months,
                "test_snapshots": test_months,
                "test_rows": n_test,
                "test_positives": n_pos,
            }
        entry["check_seconds"] = round(time.perf_counter() - began, 1)
    engine.dispose()
    return entry


def _save(entries: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = {**old.get("runs", {}), **entries}
    doc = {
        "benchmark": "demo generator scale on SQLite (bench/demo_scale.py)",
        "generator_version": GENERATOR_VERSION,
        "trim_threshold_accounts": TRIM_THRESHOLD,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "runs": dict(sorted(runs.items(), key=lambda kv: int(kv[0]))),
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="also generate 1,000,000 accounts")
    parser.add_argument("--sizes", type=int, nargs="*", help="account counts (default 10000 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", default=DEFAULT_AS_OF.isoformat())
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder for the SQLite files (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--no-check", action="store_true", help="skip the churn-rate and AUC check")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    args = parser.parse_args(argv)
    sizes = list(args.sizes or [10_000, 100_000])
    if args.full and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="demo_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    as_of = dt.date.fromisoformat(args.as_of)
    try:
        for accounts in sizes:
            entry = run_one(
                accounts, args.seed, as_of, folder, check=not args.no_check, progress=args.progress
            )
            _save({str(accounts): entry})
            sys.stdout.write(json.dumps(entry) + "\n")
            sys.stdout.flush()
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{folder / f'demo_{accounts}.db'}{suffix}").unlink(missing_ok=True)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
