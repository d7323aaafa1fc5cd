"""Tools benchmark: activity scoring, ranking and account look-ups on a synthetic database.

Builds a throw-away SQLite database (or uses --database-url, which must be empty and is
migrated) with N accounts, their subscriptions and tickets and a value chain of activities,
then times each tool several times and writes bench/results/tools.json.

    .venv/bin/python -m bench.tools_bench [--accounts 100000] [--activities 40] [--repeats 5]

The data is synthetic and seeded (it does not use the demo generator) so the timings measure
the tools, not the generator.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from crm.migrate import upgrade
from crm.models import PORTER_CATEGORIES, Account, AppMeta, Subscription, SupportTicket, ValueChainActivity
from tools.accounts import account_timeline, get_account, list_accounts
from tools.activities import score_activities
from tools.ranking import rank

OUT = Path(__file__).resolve().parent / "results" / "tools.json"
AS_OF = dt.date(2026, 3, 31)
CHUNK = 20_000


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def build(engine: Engine, accounts: int, activities: int, seed: int = 11) -> dict[str, int]:
    """Fill an empty, migrated database with seeded synthetic rows; returns row counts."""
    rng = random.Random(seed)
    segments = ("SMB", "Mid-Market", "Enterprise")
    regions = ("EMEA", "NA", "APAC", "LATAM")
    acc: list[dict[str, Any]] = []
    subs: list[dict[str, Any]] = []
    tickets: list[dict[str, Any]] = []
    for i in range(accounts):
        aid = f"ACME-{i:07d}"
        created = AS_OF - dt.timedelta(days=rng.randint(30, 2000))
        churned = rng.random() < 0.15
        acc.append(
            {
                "id": aid,
                "name": f"Company {i}",
                "segment": rng.choice(segments),
                "industry": rng.choice(("Software", "Retail", "Health", "Finance")),
                "region": rng.choice(regions),
                "plan": rng.choice(("Starter", "Pro", "Enterprise")),
                "arr": float(rng.randint(1, 500) * 1000),
                "created_at": created,
                "owner": f"csm{rng.randint(1, 60):02d}",
                "status": "churned" if churned else "active",
                "churned_at": AS_OF - dt.timedelta(days=rng.randint(1, 25)) if churned else None,
                "attributes": {},
            }
        )
        if not churned:
            start = AS_OF - dt.timedelta(days=rng.randint(0, 364))
            subs.append(
                {
                    "account_id": aid,
                    "plan": "Pro",
                    "seats": rng.randint(5, 200),
                    "mrr": 100.0,
                    "start_date": start,
                    "renewal_date": start + dt.timedelta(days=365),
                    "discount": 0.0,
                    "status": "active",
                }
            )
        for _ in range(rng.randint(0, 3)):
            opened = AS_OF - dt.timedelta(days=rng.randint(0, 400))
            closed = opened + dt.timedelta(days=rng.randint(1, 30)) if rng.random() < 0.8 else None
            tickets.append(
                {
                    "account_id": aid,
                    "priority": rng.choice(("low", "medium", "high", "urgent")),
                    "category": "bug",
                    "opened_at": opened,
                    "closed_at": closed,
                    "csat": None,
                }
            )
    acts: list[dict[str, Any]] = []
    for period in ("2025", "2026"):
        for k in range(activities):
            acts.append(
                {
                    "id": f"ACT-{period}-{k:03d}",
                    "name": f"Activity {k}",
                    "kind": "primary" if k % 2 else "support",
                    "porter_category": PORTER_CATEGORIES[k % len(PORTER_CATEGORIES)],
                    "owner_team": "team",
                    "systems": [],
                    "period": period,
                    "annual_cost": float(rng.randint(10, 5000) * 1000),
                    "value_score": round(rng.uniform(0, 10), 1),
                    "perf_metric": "m",
                    "perf_actual": rng.uniform(50, 150),
                    "perf_target": 100.0,
                    "perf_direction": rng.choice(("higher_is_better", "lower_is_better")),
                    "enables": [],
                    "cost_driver": "units",
                    "std_quantity": float(rng.randint(50, 150)),
                    "actual_quantity": float(rng.randint(50, 150)),
                    "std_price": 10.0,
                    "necessary": rng.random() > 0.1,
                }
            )
    with Session(engine) as s:
        for table, rows in ((Account, acc), (Subscription, subs), (SupportTicket, tickets)):
            for chunk in _chunks(rows):
                s.execute(insert(table), chunk)
        s.execute(insert(ValueChainActivity), acts)
        s.add(AppMeta(key="as_of", value=AS_OF.isoformat()))
        s.commit()
    with engine.connect() as conn:  # fresh statistics, as a loaded production database has
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    return {
        "accounts": len(acc),
        "subscriptions": len(subs),
        "tickets": len(tickets),
        "activities": len(acts),
    }


def _time(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    fn()  # warm caches and the plan
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_ms": round(statistics.median(runs) * 1000, 2), "max_ms": round(max(runs) * 1000, 2)}


def run(engine: Engine, repeats: int) -> dict[str, Any]:
    factory = make_sessionmaker(engine)
    cases: dict[str, Callable[[Session], Any]] = {
        "score_activities": lambda s: score_activities(session=s),
        "rank activities margin_leak": lambda s: rank(session=s, entity="activities", metric="margin_leak"),
        "rank accounts arr": lambda s: rank(session=s, entity="accounts", metric="arr"),
        "rank accounts arr segment=Enterprise": lambda s: rank(
            session=s, entity="accounts", metric="arr", filters={"segment": "Enterprise"}
        ),
        "rank accounts days_to_renewal": lambda s: rank(
            session=s, entity="accounts", metric="days_to_renewal"
        ),
        "rank accounts tenure_days": lambda s: rank(session=s, entity="accounts", metric="tenure_days"),
        "rank accounts open_tickets": lambda s: rank(session=s, entity="accounts", metric="open_tickets"),
        "list_accounts region=EMEA": lambda s: list_accounts(session=s, filters={"region": "EMEA"}),
        "get_account": lambda s: get_account(session=s, account_id="ACME-0000042"),
        "account_timeline": lambda s: account_timeline(session=s, account_id="ACME-0000042"),
    }
    out: dict[str, Any] = {}
    for name, case in cases.items():
        with factory() as s:
            out[name] = _time(partial(case, s), repeats)
        print(f"{name:40s} {out[name]['median_ms']:>10.1f} ms", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=40, help="activities per period (two periods)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--database-url", default=None, help="an EMPTY database to fill (default: temp SQLite)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tools-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        upgrade(engine)
        start = time.perf_counter()
        counts = build(engine, args.accounts, args.activities)
        build_s = time.perf_counter() - start
        print(f"built {counts} in {build_s:.1f} s", file=sys.stderr)
        timings = run(engine, args.repeats)
        dialect = engine.dialect.name
        engine.dispose()

    run_report = {
        "rows": counts,
        "build_seconds": round(build_s, 2),
        "repeats": args.repeats,
        "timings": timings,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }
    # One file, one entry per database dialect: a PostgreSQL run keeps the SQLite one.
    report: dict[str, Any] = {"benchmark": "tools", "runs": {}}
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        if isinstance(previous.get("runs"), dict):
            report["runs"] = previous["runs"]
    report["runs"][dialect] = run_report
    report["runs"] = dict(sorted(report["runs"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
