"""Churn model candidates (logistic regression vs LightGBM) on three data sets, through the product.

    .venv/bin/python -m bench.churn_candidates [--telco PATH] [--work DIR]

1. **Telco** (`valuechain import accounts telco-customer-churn.csv --mapping
   examples/mappings/telco-accounts.yaml`, then `valuechain churn train --json`): attribute
   path, 5-fold stratified CV. Target: AUC ≥ 0.85.
2. **Demo company** (`valuechain demo --seed 7`, 2,000 accounts, as of 2026-09-30, then
   `valuechain churn train --json`): history path, time-based holdout. Target: ≥ 0.889.
3. **Synthetic bank file**, 10,000 rows (`bench/bank_churn_synth.py`, seed 0), imported and
   trained the same way; the wall time of `valuechain churn train` (a fresh process: Python
   start, reading the accounts, both candidates' 5-fold evaluation with LightGBM's inner
   tuning, the refit, storing) is the figure against the ≤ 30 s target.

Then the cost of scoring with each model family on 100,000 rows (the bank rows repeated ten
times): probabilities (batch predict on numpy matrices) and the per-group driver
contributions (TreeSHAP for the trees).

Every database is a fresh SQLite file in --work. The 1-minute load average is recorded before
and after each step (the machine is shared). Results: bench/results/churn-candidates.json and
a short .md next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bank_churn_synth import generate_with_truth
from bench.bank_churn_synth import write as write_bank
from core.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from tools.churn.active import load_active_model
from tools.churn.features import AccountScope
from tools.churn.metrics import roc_auc
from tools.churn.scoring import assess, group_contributions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "churn-candidates.json"
TELCO = Path("/work/shared/data/telco-customer-churn.csv")
VALUECHAIN = [sys.executable, "-m", "valuechain.cli.main"]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cli(*args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    out = subprocess.run(
        [*VALUECHAIN, *args, "--json"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}): {out.stderr or out.stdout}")
    return json.loads(out.stdout), seconds


def _fresh_db(path: Path) -> str:
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _summary(report: dict[str, Any], train_seconds: float, load_before: float) -> dict[str, Any]:
    return {
        "load_1min_before": load_before,
        "load_1min_after": _load(),
        "train_cli_seconds": round(train_seconds, 2),
        "model_version": report["model_version"],
        "chosen": report["method"],
        "choice": report["choice"],
        "source": report["source"],
        "n_train": report["n_train"],
        "n_test": report.get("n_test"),
        "positives": report["positives"],
        "auc": report["auc"],
        "auc_std": report.get("auc_std"),
        "brier": report["brier"],
        "brier_uncalibrated": report.get("brier_uncalibrated"),
        "rule_based_auc": report.get("rule_based_auc"),
        "calibration_fit": report.get("calibration_fit"),
        "calibration": report["calibration"],
        "candidates": [
            {
                k: c[k]
                for k in (
                    "method",
                    "chosen",
                    "auc",
                    "auc_std",
                    "fold_aucs",
                    "brier",
                    "brier_uncalibrated",
                    "top_decile_lift",
                    "features",
                    "seconds",
                )
            }
            | {"picked_per_split": c["settings"].get("picked_per_split")}
            for c in report["candidates"]
        ],
        "attributes": [
            {"name": a["name"], "kind": a["kind"], "reason": a["reason"]}
            for a in report.get("attributes", [])
        ],
    }


def _imported(name: str, csv_path: Path, mapping: Path, work: Path) -> tuple[str, dict[str, Any]]:
    url = _fresh_db(work / f"{name}.db")
    load = _load()
    _cli("import", "accounts", str(csv_path), "--mapping", str(mapping), "--database-url", url)
    report, seconds = _cli("churn", "train", "--database-url", url)
    return url, _summary(report, seconds, load)


def _demo(work: Path) -> dict[str, Any]:
    url = _fresh_db(work / "demo.db")
    _cli("demo", "--seed", "7", "--database-url", url)
    load = _load()
    report, seconds = _cli("churn", "train", "--database-url", url)
    return _summary(report, seconds, load)


def _timed(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def _scoring(url: str) -> dict[str, Any]:
    """Model-only cost per family on 100,000 rows (the 10k bank rows ×10)."""
    out: dict[str, Any] = {}
    engine = make_engine(url)
    for family in ("logistic_regression", "gradient_boosting"):
        _cli("churn", "train", "--candidate", family, "--database-url", url)
        with make_sessionmaker(engine)() as session:
            model = load_active_model(session)
            base = assess(session, as_of=None, scope=AccountScope(), model=model).table
        table = base.take(np.tile(np.arange(len(base)), 10))
        out[family] = {
            "rows": len(table),
            "probability_seconds": _timed(lambda m=model, t=table: m.probability(t)),
            "driver_contributions_seconds": _timed(
                lambda m=model, t=table: group_contributions(m, t), repeat=1
            ),
        }
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--telco", type=Path, default=TELCO)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="churn-candidates-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "run_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "uptime_before": _uptime(),
    }
    if args.telco.is_file():
        _, result["telco"] = _imported(
            "telco", args.telco, ROOT / "examples" / "mappings" / "telco-accounts.yaml", work
        )
        print("telco", json.dumps({k: result["telco"][k] for k in ("chosen", "auc", "train_cli_seconds")}))
    result["demo_2000"] = _demo(work)
    print("demo", json.dumps({k: result["demo_2000"][k] for k in ("chosen", "auc", "train_cli_seconds")}))
    bank_csv = work / "bank-10k.csv"
    mapping = write_bank(bank_csv, rows=10_000, seed=0)
    bank_url, result["bank_10k"] = _imported("bank", bank_csv, mapping, work)
    rows, truth = generate_with_truth(10_000, 0)
    # the ceiling: the AUC of the generator's own churn probabilities on the drawn labels
    result["bank_10k"]["oracle_auc"] = roc_auc(np.array([r["Exited"] == 1 for r in rows]), truth)
    print("bank", json.dumps({k: result["bank_10k"][k] for k in ("chosen", "auc", "train_cli_seconds")}))
    load = _load()
    result["scoring_100k"] = _scoring(bank_url) | {"load_1min_before": load, "load_1min_after": _load()}
    print("scoring", json.dumps(result["scoring_100k"]))
    result["uptime_after"] = _uptime()
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
