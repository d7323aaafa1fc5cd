"""Scale benchmark of the revenue and service tools (issue #20): pipeline_health, deal_score on a
batch of open deals, and service_queue, on demo companies of growing size.

    nice -n 19 .venv/bin/python -m bench.revenue_service_bench                  # 10k and 100k accounts
    nice -n 19 .venv/bin/python -m bench.revenue_service_bench --sizes 1000000 --train-max 0

For each size a fresh SQLite demo company (`crm.demo.generate_demo`, seed 7, WAL, as the product
runs it) is generated into a temporary folder, then each tool is timed through its core, as the
API and the CLI call it:

- `pipeline_health` grouped by team and by owner, with the stage table (no deal model yet);
- `deal_score` on a batch of open deals (the ones `pipeline_health` lists at risk), one call each;
- `service_queue` (top 10; CLV from the churn fallback, no churn model is trained here);
- with `--train-max` ≥ the size: `valuechain deals train`'s core (timed, AUC and Brier kept), then
  `pipeline_health` and the `deal_score` batch again with the deal model.

- with `--model-from DB` (and no training at that size): the active deal model of another
  database copied in for the run and removed after, then the deal-model timings with it;
- with `--memory`: each tool's peak RSS for one call, each in a fresh interpreter.

Every timing keeps the wall-clock and the CPU milliseconds of the process (SQLite runs in it):
the machine load (`uptime`) is recorded before and after each size, and on a shared box the CPU
time is the steadier figure. To time older code with the same script, run it with a copy of that
`tools/` package first on the path (the memory children import the same one). Results are merged into
bench/results/revenue_service.json (one entry per size, newest wins) after every size, and a
readable bench/results/revenue_service.md is rewritten from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

import tools
from core.db import make_engine, make_sessionmaker
from crm.demo import DEFAULT_AS_OF, GENERATOR_VERSION, TRIM_THRESHOLD, generate_demo
from crm.migrate import upgrade
from crm.models import CLOSED_STAGES, DealModel, Opportunity, SupportTicket
from tools.deals.model import active_deal_model, train_deal_model
from tools.deals.score import deal_score
from tools.pipeline.health import pipeline_health
from tools.service_queue.queue import service_queue

RESULTS = Path(__file__).resolve().parent / "results" / "revenue_service.json"


def load() -> dict[str, Any]:
    """The machine's load averages (1, 5, 15 min) and the `uptime` line as printed."""
    line = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    one, five, fifteen = os.getloadavg()
    return {"uptime": line, "load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2)}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, float], Any]:
    """Run `fn` `repeats` times; (median / min / max wall ms, median CPU ms, the last result).
    CPU time (this process, SQLite included: it runs in-process) is what a loaded, shared machine
    distorts least; the wall time is what a user waits."""
    times, cpu, result = [], [], None
    for _ in range(repeats):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1), "cpu_ms": round(statistics.median(cpu), 1), "runs": repeats}, result


def deal_batch(session: Session, refs: list[str]) -> tuple[dict[str, Any], list[float]]:
    """One deal_score call per deal; per-call median / max and the whole batch's seconds."""
    times, cpu, probs = [], [], []
    began = time.perf_counter()
    for ref in refs:
        t0, c0 = time.perf_counter(), time.process_time()
        probs.append(deal_score(session=session, opportunity_id=ref).probability)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return {"deals": len(refs), "batch_seconds": round(time.perf_counter() - began, 2),
            "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "cpu_ms": round(statistics.median(cpu), 1)}, probs


def _rss_mb() -> float:
    """This process's resident memory now (MiB)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one_call(path: Path, call: str, refs: list[str]) -> dict[str, float]:
    """Call one tool once on `path`; this process's memory before and its peak after (MiB)."""
    engine = make_engine(f"sqlite:///{path}")
    with make_sessionmaker(engine)() as s:
        before = _rss_mb()
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now: imports peaked higher
        if call == "pipeline_health":
            pipeline_health(session=s, group_by="team", limit=10)
        elif call == "service_queue":
            service_queue(session=s, limit=10)
        else:
            for ref in refs:
                deal_score(session=s, opportunity_id=ref)
        status = Path("/proc/self/status").read_text().splitlines()
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # kB
    engine.dispose()
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1), "growth_mb": round(peak - before, 1)}


_CHILD = """
import json, sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:0] = {paths!r}
from pathlib import Path
from bench.revenue_service_bench import one_call
print(json.dumps(one_call(Path({path!r}), {call!r}, {refs!r})))
"""


def memory(path: Path, refs: list[str]) -> dict[str, Any]:
    """Peak resident memory of one call of each tool, each in a fresh interpreter (a process's
    peak only grows, so calls in one process would hide each other's; a fork would inherit
    LightGBM's OpenMP threads and hang). The child imports the same `tools` this process runs
    (so the bench can time a copy of older code). `growth_mb` is the peak minus the child's
    memory before the call, after its imports: what the call itself took."""
    paths = [str(Path(tools.__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent)]
    found = {}
    for call in ("pipeline_health", "service_queue", "deal_score"):
        code = _CHILD.format(paths=paths, path=str(path), call=call, refs=refs)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        found[call] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _copy_model(source: Path, engine: Any) -> str:
    """Put the active deal model of `source` into this database, active (for the timings with a
    deal model where training here would take too long); returns its version."""
    src = make_engine(f"sqlite:///{source}")
    with make_sessionmaker(src)() as s:
        row = s.scalars(select(DealModel).where(DealModel.active.is_(True))).one()
        values = {c.name: getattr(row, c.key) for c in DealModel.__table__.columns}
    src.dispose()
    with make_sessionmaker(engine)() as s:
        s.execute(delete(DealModel).where(DealModel.version == values["version"]))
        s.add(DealModel(**values))
        s.commit()
    return str(values["version"])


def _drop_model(engine: Any, version: str) -> None:
    with make_sessionmaker(engine)() as s:
        s.execute(delete(DealModel).where(DealModel.version == version))
        s.commit()


def run_one(
    accounts: int, seed: int, folder: Path, *, repeats: int, batch: int, train: bool, reuse: bool,
    checkpoint: Callable[[dict[str, Any]], None], model_from: Path | None = None, measure_memory: bool = False,
) -> dict[str, Any]:
    """Generate (or reuse) one size's demo company and time the tools on it; `checkpoint` gets the
    entry after every step, so a run stopped part-way keeps what it measured."""
    path = folder / f"revenue_{accounts}.db"
    entry: dict[str, Any] = {"accounts": accounts, "seed": seed, "load_before": load(), "finished": False}
    if reuse and path.exists():
        engine = make_engine(f"sqlite:///{path}")
        entry["generate_seconds"] = None  # generated earlier (--reuse): not timed here
        entry["history"] = "trimmed" if accounts > TRIM_THRESHOLD else "full"
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        began = time.perf_counter()
        summary = generate_demo(engine, accounts=accounts, seed=seed, as_of=DEFAULT_AS_OF)
        entry["generate_seconds"] = round(time.perf_counter() - began, 1)
        entry["history"] = "trimmed" if summary.trimmed else "full"
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    entry["db_bytes"] = path.stat().st_size
    if model_from is not None:  # a copy left by a run stopped part-way
        _drop_model(engine, _copy_model(model_from, engine))
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        entry["rows"] = {
            "opportunities": s.scalar(select(func.count()).select_from(Opportunity)),
            "open_opportunities": s.scalar(
                select(func.count()).select_from(Opportunity).where(Opportunity.stage.not_in(CLOSED_STAGES))),
            "support_tickets": s.scalar(select(func.count()).select_from(SupportTicket)),
        }
        if active_deal_model(s) is not None:  # the "stage table" timings below would be the model's
            raise SystemExit(f"{path} already has a trained deal model: use a fresh database")
        t: dict[str, Any] = {}
        entry["timings"] = t  # filled step by step, checkpointed after each
        checkpoint(entry)
        t["pipeline_health team (stage table)"], health = timed(
            lambda: pipeline_health(session=s, group_by="team", limit=batch), repeats)
        t["pipeline_health owner (stage table)"], _ = timed(
            lambda: pipeline_health(session=s, group_by="owner", limit=batch), repeats)
        checkpoint(entry)
        refs = [d.opportunity_id for d in health.deals_at_risk][:batch]
        t["deal_score batch (stage table)"], _ = deal_batch(s, refs)
        t["service_queue top 10"], queue = timed(lambda: service_queue(session=s, limit=10), repeats)
        entry["pipeline"] = {
            "open_deals": health.total.open_deals, "open_pipeline": round(health.total.open_pipeline),
            "weighted_stage_table": round(health.total.weighted_pipeline), "at_risk": health.at_risk_count,
            "probability_source": health.inputs.probability_source,
        }
        entry["queue"] = {
            "open_tickets": queue.open_tickets, "breached": queue.breached,
            "likely_to_breach": queue.likely_to_breach, "clv_exposed": round(queue.clv_exposed),
            "churn_method": queue.inputs.churn_method, "history_tickets": queue.inputs.history_tickets,
            "top_ticket": queue.items[0].ticket_id if queue.items else None,
        }
        checkpoint(entry)
        if train:
            t0 = time.perf_counter()
            report = train_deal_model(s, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
            s.commit()
            entry["deal_model"] = {
                "train_seconds": round(time.perf_counter() - t0, 1), "trained": report.trained,
                "method": report.method, "auc": report.auc, "brier": report.brier,
                "n_train": report.n_train, "n_test": report.n_test, "reason": report.reason,
            }
            checkpoint(entry)
            if report.trained:
                t["pipeline_health team (deal model)"], health_m = timed(
                    lambda: pipeline_health(session=s, group_by="team", limit=batch), max(1, repeats - 1))
                entry["pipeline"]["weighted_deal_model"] = round(health_m.total.weighted_pipeline)
                checkpoint(entry)
                t["deal_score batch (deal model)"], _ = deal_batch(s, refs)
        if model_from is not None and not train:
            s.close()
            version = _copy_model(model_from, engine)
            entry["deal_model_copied_from"] = model_from.name
            try:
                with sessions() as m:
                    t["pipeline_health team (deal model)"], health_m = timed(
                        lambda: pipeline_health(session=m, group_by="team", limit=batch), max(1, repeats - 1))
                    entry["pipeline"]["weighted_deal_model"] = round(health_m.total.weighted_pipeline)
                    checkpoint(entry)
                    t["deal_score batch (deal model)"], entry["deal_probabilities"] = deal_batch(m, refs)
                    checkpoint(entry)
                if measure_memory:
                    entry["memory_deal_model"] = memory(path, refs)
            finally:
                _drop_model(engine, version)
    if measure_memory:
        entry["memory_stage_table"] = memory(path, refs)
    engine.dispose()
    entry["load_after"] = load()
    entry["finished"] = True
    return entry


def _machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "nice": os.nice(0)}


def save(entries: dict[str, Any], *, started: dict[str, Any], results: Path | None = None) -> None:
    results = results or RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = json.loads(results.read_text()) if results.exists() else {}
    runs = {**old.get("runs", {}), **entries}
    doc = {
        "benchmark": "revenue and service tools at scale (bench/revenue_service_bench.py)",
        "generator_version": GENERATOR_VERSION,
        "trim_threshold_accounts": TRIM_THRESHOLD,
        "as_of": DEFAULT_AS_OF.isoformat(),
        "machine": _machine(),
        "load_at_start": started,
        "load_now": load(),
        "runs": dict(sorted(runs.items(), key=lambda kv: int(kv[0]))),
    }
    results.write_text(json.dumps(doc, indent=2) + "\n")
    results.with_suffix(".md").write_text(markdown(doc))


def markdown(doc: dict[str, Any]) -> str:
    """The results as a Markdown page: one table of timings, one of what the tools found."""
    runs = doc["runs"]
    sizes = list(runs)
    names = list(dict.fromkeys(k for r in runs.values() for k in r.get("timings", {})))
    lines = [
        "# Revenue and service tools at scale",
        "",
        f"`nice -n 19 .venv/bin/python -m bench.revenue_service_bench` — demo generator v{doc['generator_version']}, "
        f"seed 7, as of {doc['as_of']}, SQLite; {doc['machine']['cpus']} CPUs shared with other jobs "
        f"(load below). Wall-clock milliseconds, median of the runs (deal_score: per call), and the "
        f"median CPU milliseconds of the process (SQLite included), which the shared machine's load distorts less.",
        "",
        "| | " + " | ".join(f"{int(s):,} accounts" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
        "| generate demo (s) | " + " | ".join(
            "reused, not timed" if runs[s]["generate_seconds"] is None else str(runs[s]["generate_seconds"])
            for s in sizes) + " |",
        "| run finished | " + " | ".join("yes" if runs[s].get("finished", True) else "no (stopped part-way)"
                                         for s in sizes) + " |",
        "| opportunities / open | " + " | ".join(
            f"{runs[s]['rows']['opportunities']:,} / {runs[s]['rows']['open_opportunities']:,}" for s in sizes) + " |",
        "| support tickets | " + " | ".join(f"{runs[s]['rows']['support_tickets']:,}" for s in sizes) + " |",
    ]
    for name in names:
        cells = []
        for s in sizes:
            m = runs[s].get("timings", {}).get(name)
            if m is None:
                cells.append("—")
            elif "batch_seconds" in m:
                cells.append(f"{m['median_ms']:,} ms/call ({m['deals']} deals: {m['batch_seconds']} s)"
                             + (f"; CPU {m['cpu_ms']:,}" if "cpu_ms" in m else ""))
            else:
                cells.append(f"{m['median_ms']:,} (max {m['max_ms']:,})"
                             + (f"; CPU {m['cpu_ms']:,}" if "cpu_ms" in m else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| deal model training (s) | " + " | ".join(
        str(runs[s]["deal_model"]["train_seconds"]) if "deal_model" in runs[s] else "not run" for s in sizes) + " |")
    lines.append("| deal model holdout AUC / Brier | " + " | ".join(
        f"{runs[s]['deal_model']['auc']:.3f} / {runs[s]['deal_model']['brier']:.3f}"
        if runs[s].get("deal_model", {}).get("trained") else "—" for s in sizes) + " |")
    lines.append("| load before → after (1 min) | " + " | ".join(
        f"{runs[s]['load_before']['load_1m']} → {runs[s]['load_after']['load_1m']}" for s in sizes) + " |")
    for kind in ("stage_table", "deal_model"):
        for call in ("pipeline_health", "service_queue", "deal_score"):
            if any(call in runs[s].get(f"memory_{kind}", {}) for s in sizes):
                lines.append(f"| peak RSS MiB, {call} ({kind.replace('_', ' ')}; growth in the call) | " + " | ".join(
                    (lambda m: f"{m['peak_rss_mb']:,} (+{m['growth_mb']:,})" if m else "—")(
                        runs[s].get(f"memory_{kind}", {}).get(call)) for s in sizes) + " |")
    lines += ["", "What the tools found:", "",
              "| | " + " | ".join(f"{int(s):,}" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for label, get in (
        ("open deals", lambda r: f"{r['pipeline']['open_deals']:,}"),
        ("open pipeline", lambda r: f"{r['pipeline']['open_pipeline']:,}"),
        ("deals at risk", lambda r: f"{r['pipeline']['at_risk']:,}"),
        ("open tickets (active accounts)", lambda r: f"{r['queue']['open_tickets']:,}"),
        ("breached / likely to breach", lambda r: f"{r['queue']['breached']:,} / {r['queue']['likely_to_breach']:,}"),
        ("CLV exposed", lambda r: f"{r['queue']['clv_exposed']:,}"),
        ("CLV churn method", lambda r: r["queue"]["churn_method"]),
    ):
        lines.append(f"| {label} | " + " | ".join(_cell(get, runs[s]) for s in sizes) + " |")
    lines += ["", "Load (`uptime`) per size:", ""]
    for s in sizes:
        lines.append(f"- {int(s):,}: before `{runs[s]['load_before']['uptime']}`; after `{runs[s]['load_after']['uptime']}`")
    return "\n".join(lines) + "\n"


def _cell(get: Callable[[dict[str, Any]], str], run: dict[str, Any]) -> str:
    try:
        return get(run)
    except KeyError:  # a run stopped before that step
        return "—"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", help="account counts (default 10000 100000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10, help="open deals scored one by one with deal_score")
    parser.add_argument("--train-max", type=int, default=100_000,
                        help="train the deal model (and time the tools with it) up to this many accounts")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the SQLite files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="JSON file the runs are merged into (a .md beside it); default %(default)s")
    parser.add_argument("--reuse", action="store_true",
                        help="use a database already in --dir for a size instead of generating it (not timed)")
    parser.add_argument("--model-from", type=Path, default=None,
                        help="time the deal-model path with the active deal model of this database, copied in "
                             "for the run and removed after (where training at this size would take too long)")
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS of one call of each tool, each in a forked child")
    args = parser.parse_args(argv)
    sizes = list(args.sizes or [10_000, 100_000])
    folder = args.dir or Path(tempfile.mkdtemp(prefix="revenue_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    started = load()
    try:
        for accounts in sizes:
            def checkpoint(partial: dict[str, Any], size: int = accounts) -> None:
                save({str(size): {**partial, "load_after": load()}}, started=started, results=args.results)

            entry = run_one(accounts, args.seed, folder, repeats=args.repeats, batch=args.batch,
                            train=accounts <= args.train_max, reuse=args.reuse, checkpoint=checkpoint,
                            model_from=args.model_from, measure_memory=args.memory)
            save({str(accounts): entry}, started=started, results=args.results)
            sys.stdout.write(json.dumps(entry) + "\n")
            sys.stdout.flush()
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{folder / f'revenue_{accounts}.db'}{suffix}").unlink(missing_ok=True)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
