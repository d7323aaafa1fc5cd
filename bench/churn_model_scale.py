"""The churn model's own cost at 1M accounts: logistic regression beside LightGBM, one run.

    .venv/bin/python -m bench.churn_model_scale --lr data_lr/valuechain.db --gbm data_gbm/valuechain.db

Each database must hold a demo company with an active model of the named family (train one with
`valuechain churn train --candidate logistic_regression` / `--candidate gradient_boosting`;
both may be the same demo). The point-in-time features of the demo's active accounts are
computed once per database and repeated to `--rows` rows (877,608: the active accounts of the
1M demo), so what is timed is the model alone, side by side on the same rows and in the same
run: probabilities (what scoring every account needs on top of the features) and the top-3
drivers as the batch writes them (`driver_json`: contributions, phrases, JSON). The rest of a
1M scoring run (reading the kept state, the accounts, deriving features) does not depend on the
model family and is measured by `bench/churn_bench.py`. Results: bench/results/churn-model-scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.churn_bench import _timed
from core.db import make_engine, make_sessionmaker
from tools.churn.active import load_active_model
from tools.churn.features import AccountScope, active_on
from tools.churn.scoring import assess, driver_json, resolve_as_of

RESULTS = Path(__file__).resolve().parent / "results" / "churn-model-scale.json"
ACTIVE_1M = 877_608


def measure(db: Path, rows: int, chunk: int) -> dict[str, Any]:
    engine = make_engine(f"sqlite:///{db}")
    with make_sessionmaker(engine)() as session:
        model = load_active_model(session)
        day = resolve_as_of(session, None, model)
        assert day is not None, f"{db} holds no dated data"
        result = assess(session, as_of=day, scope=AccountScope(where=active_on(day)), model=model)
    engine.dispose()
    base = len(result.table)
    table = result.table.take(np.resize(np.arange(base), rows))
    load_before = os.getloadavg()[0]
    prob, prob_s = _timed(lambda: model.probability(table))
    drivers_s = 0.0
    for start in range(0, rows, chunk):  # as write_score_snapshot does it
        part = table.take(np.arange(start, min(rows, start + chunk)))
        _, s = _timed(lambda part=part: driver_json(model, part, 3))
        drivers_s += s
    return {"database": str(db), "model_version": model.version, "method": model.method,
            "distinct_rows": base, "rows": rows, "probability_seconds": round(prob_s, 3),
            "drivers_seconds": round(drivers_s, 3), "mean_probability": round(float(np.mean(prob)), 5),
            "load_1m_before": round(load_before, 2), "load_1m_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lr", type=Path, required=True)
    ap.add_argument("--gbm", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=ACTIVE_1M)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    runs = {"logistic_regression": measure(args.lr, args.rows, args.chunk),
            "gradient_boosting": measure(args.gbm, args.rows, args.chunk)}
    lr, gbm = runs["logistic_regression"], runs["gradient_boosting"]
    doc = {"benchmark": "churn model alone at 1M rows (bench/churn_model_scale.py)", "machine": {"cpus": os.cpu_count()},
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": runs,
           "probability_ratio_gbm_to_lr": round(gbm["probability_seconds"] / max(lr["probability_seconds"], 1e-9), 1),
           "drivers_ratio_gbm_to_lr": round(gbm["drivers_seconds"] / max(lr["drivers_seconds"], 1e-9), 1)}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
