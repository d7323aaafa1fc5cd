"""Deployment benchmark (issue #22): 1 vs 2 API workers in the same run, on PostgreSQL and SQLite.

For each database engine the demo company (`--accounts`, with its churn model, keys and a few
pending recommendations; `bench.load_bench.build_database`) is built once; then for each worker
count a real `valuechain serve --workers N` (uvicorn's workers share one port) is started with
`LLM_AUTOSTART=false` and chat pointed at a loopback fake OpenAI-compatible model that answers at
once, and:

1. **endpoints**: each non-model endpoint (accounts list, account detail, its activity timeline,
   the analysis, recommendations list, churn-risk top-N tool) gets `--requests` requests at each
   `--concurrency` level; requests/s, p50/p95 latency, errors.
2. **chat**: `--chat-sessions` concurrent sessions of `--chat-turns` turns through
   `POST /api/v1/chat`; completed turns per second end to end, p50/p95.
3. **memory**: the RSS of every serve process (supervisor and workers) after the load.

`uptime` is recorded before and after each phase: the figures are only as quiet as the machine.

    nice -n 5 .venv/bin/python -m bench.deploy_bench [--accounts 2000] [--engines postgres,sqlite]
    # chat turns as jobs any worker takes (the PostgreSQL default) vs in the worker that received them, same run:
    .venv/bin/python -m bench.deploy_bench --engines postgres --chat-only --chat-inline --out bench/results/deploy_chat_jobs.json

Results: bench/results/deploy.json and deploy.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.load_bench import FakeModel, build_database, chats, endpoints, free_port, hammer, uptime

RESULTS = Path(__file__).resolve().parent / "results"
VALUECHAIN = Path(sys.executable).with_name("valuechain")
PG_ADMIN_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ENDPOINTS = ("accounts", "account", "timeline", "analysis_json", "recommendations", "churn_risk_top")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (how much of the load that worker took)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            out += [child, *descendants(child)]
    return out


class Deployment:
    """`valuechain serve --workers N` on a free loopback port, until `stop`."""

    def __init__(self, workers: int, database_url: str, data_dir: Path, llm_url: str, **extra_env: str) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir),
               "CHROMA_PATH": str(data_dir / "chroma"), "LLM_BASE_URL": llm_url, "LLM_MODEL": "fake",
               "LLM_API_KEY": "x", "AGENT_DESIGN": "react", "LLM_AUTOSTART": "false"}
        for name in ("CHROMA_HOST", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PLAYBOOK_PATH", "CHAT_JOBS"):
            env.pop(name, None)
        env.update(extra_env)  # the product's default unless asked: turns as jobs on PostgreSQL (api.chat_jobs)
        self.log_path = data_dir / f"serve-{workers}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(VALUECHAIN), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers), "--log-level", "warning"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while not self._all_workers_up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"serve --workers {workers} did not start; see {self.log_path}")
            time.sleep(0.3)

    def _all_workers_up(self) -> bool:
        try:
            if httpx.get(f"{self.url}/healthz", timeout=1).status_code != 200:
                return False
        except httpx.TransportError:
            return False
        # with N > 1 the supervisor forks N workers; wait until each has loaded the app
        return self.workers == 1 or len(self.worker_pids()) >= self.workers

    def worker_pids(self) -> list[int]:
        """The processes answering requests (uvicorn's workers; the serve process itself when N = 1)."""
        if self.workers == 1:
            return [self.proc.pid]
        kids = descendants(self.proc.pid)
        return [p for p in kids if "multiprocessing.resource_tracker" not in _cmdline(p)]

    def memory(self) -> dict[str, Any]:
        workers = [round(rss_mb(p), 1) for p in self.worker_pids()]
        supervisor = round(rss_mb(self.proc.pid), 1) if self.workers > 1 else 0.0
        return {"worker_rss_mb": workers, "supervisor_rss_mb": supervisor,
                "total_rss_mb": round(sum(workers) + supervisor, 1),
                "worker_cpu_s": [round(cpu_s(p), 1) for p in self.worker_pids()]}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pg_database(admin_url: str) -> tuple[str, str]:
    name = f"vc_deploy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{admin_url.rpartition('/')[0]}/{name}", name


def drop_pg_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


async def load(dep: Deployment, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    paths = endpoints(data)
    headers = {"Authorization": f"Bearer {data['key']}"}
    result: dict[str, Any] = {"uptime_before": uptime(), "endpoints": {}}
    for concurrency in [] if args.chat_only else args.concurrency:
        # keep-alive connections of one client stick to the worker that accepted them (measured:
        # 14 of 16 on one of two workers), so by default every request opens its own connection
        limits = httpx.Limits(max_connections=concurrency,
                              max_keepalive_connections=concurrency if args.keepalive else 0)
        async with httpx.AsyncClient(base_url=dep.url, headers=headers, timeout=60, limits=limits) as c:
            for name in ENDPOINTS:
                await hammer(c, paths[name], min(20, args.requests), concurrency)  # warm every worker
                r = await hammer(c, paths[name], args.requests, concurrency)
                result["endpoints"].setdefault(name, {})[str(concurrency)] = r
                print(f"  {dep.workers}w c={concurrency} {name}: {r['rps']}/s p95 {r['p95_ms']} ms "
                      f"errors {r['errors']}", flush=True)
    result["uptime_after_endpoints"] = uptime()
    result["memory_after_endpoints"] = dep.memory()
    phase = await chat_load(dep, data, args)
    result.update(chat=phase["chat"], uptime_after=phase["uptime_after"], memory_after=phase["memory_after"])
    return result


def run_engine(engine: str, url: str, tmp: Path, llm_url: str, args: argparse.Namespace) -> dict[str, Any]:
    t = time.perf_counter()
    data = build_database(url, args.accounts)
    out: dict[str, Any] = {"setup_s": round(time.perf_counter() - t, 1), "by_workers": {}}
    print(f"{engine}: demo of {args.accounts} accounts built in {out['setup_s']} s", flush=True)
    for workers in args.workers:
        dep = Deployment(workers, url, tmp / f"{engine}-{workers}", llm_url)
        try:
            out["by_workers"][str(workers)] = asyncio.run(load(dep, data, args))
        finally:
            dep.stop()
        if args.chat_inline and engine == "postgres":  # the same chat load, each turn in the receiving worker
            dep = Deployment(workers, url, tmp / f"{engine}-{workers}-inline", llm_url, CHAT_JOBS="false")
            try:
                inline = asyncio.run(chat_load(dep, data, args, ", CHAT_JOBS=false"))
                out["by_workers"][str(workers)]["chat_inline"] = inline
            finally:
                dep.stop()
    return out


async def chat_load(dep: Deployment, data: dict[str, Any], args: argparse.Namespace, label: str = "") -> dict[str, Any]:
    """The chat phase of `load` (alone, for the CHAT_JOBS=false run)."""
    result: dict[str, Any] = {"uptime_before": uptime()}
    chat = result["chat"] = await chats(dep.url, data["key"], args.chat_sessions, args.chat_turns)
    chat["turns_per_s"] = round(chat["completed_turns"] / chat["elapsed_s"], 2) if chat["elapsed_s"] else None
    print(f"  {dep.workers}w chat{label}: {chat['completed_turns']} turns, {chat['turns_per_s']}/s, "
          f"p95 {chat['p95_ms']} ms, errors {chat['errors']}", flush=True)
    result["uptime_after"] = uptime()
    result["memory_after"] = dep.memory()
    return result


def chroma_memory(tmp: Path) -> dict[str, Any]:
    """`chroma run` idle, with the product corpus built into it through `CHROMA_HOST`, and after
    the retrieval eval's questions searched (hybrid): RSS of the server, build and search times."""
    from core.settings import Settings
    from knowledge.evaluate import load_suite
    from knowledge.ingest import ensure_corpus_index
    from knowledge.store import KnowledgeStore

    port = free_port()
    log = (tmp / "chroma.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("chroma")), "run", "--path", str(tmp / "chroma"),
                             "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chroma run did not start; see {tmp / 'chroma.log'}")
            time.sleep(0.2)
        out: dict[str, Any] = {"idle_rss_mb": round(rss_mb(proc.pid), 1), "uptime_before": uptime()}
        store = KnowledgeStore.from_settings(Settings(chroma_host="127.0.0.1", chroma_port=port))
        t = time.perf_counter()
        built = ensure_corpus_index(store)
        out |= {"chunks": built.chunks, "build_s": round(time.perf_counter() - t, 1),
                "rss_after_build_mb": round(rss_mb(proc.pid), 1)}
        questions = [c.question for c in load_suite().cases]
        t = time.perf_counter()
        for q in questions:
            store.search(q, 5)
        out |= {"questions": len(questions),
                "hybrid_search_ms_mean": round((time.perf_counter() - t) / len(questions) * 1000, 1),
                "rss_after_searches_mb": round(rss_mb(proc.pid), 1), "uptime_after": uptime()}
        print("chroma", out, flush=True)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


def write_md(out: dict[str, Any], path: Path) -> None:
    ran = f"`{out['command']}` on {out['machine']['cpus']} CPUs, {out['started']}"
    if out["engines"]:
        lines = [
            "# Deployment benchmark: 1 vs 2 API workers", "",
            f"{ran}; demo company of {out['accounts']} accounts; `valuechain serve --workers N` on one "
            "loopback port, `LLM_AUTOSTART=false`, chat against a loopback fake model that answers at once. "
            f"{out['requests']} requests per endpoint and concurrency level after 20 warm-up requests, "
            + ("over kept-alive connections (which stick to the worker that accepted them)."
               if out.get("keepalive") else "each on a new connection (so the kernel spreads them over the workers)."),
            "",
            "**The load clients, the workers and the database share these 2 cores** (load averages "
            "below): the figures compare 1 and 2 workers under the same conditions, not a server's ceiling.", "",
        ]
    else:
        lines = ["# Deployment benchmark: `chroma run`", "", f"{ran}, on a shared 2-core machine.", ""]
    lines += [f"- load before: `{out['uptime_before']}`", f"- load after: `{out['uptime_after']}`", ""]
    for engine, res in out["engines"].items():
        workers = list(res["by_workers"])
        lines += [f"## {engine} (demo built in {res['setup_s']} s)", ""]
        if not out.get("chat_only"):
            head = "| endpoint | clients | " + " | ".join(f"{w} worker(s) req/s | p95 ms" for w in workers) + " |"
            lines += [head, "|---|---|" + "---|---|" * len(workers)]
        for name in [] if out.get("chat_only") else ENDPOINTS:
            for conc in map(str, out["concurrency"]):
                cells = []
                for w in workers:
                    r = res["by_workers"][w]["endpoints"][name][conc]
                    err = f" ({r['errors']} errors)" if r["errors"] else ""
                    cells.append(f"{r['rps']}{err} | {r['p95_ms']}")
                lines.append(f"| {name} | {conc} | " + " | ".join(cells) + " |")
        lines += ["", "| workers | chat turns/s | chat p95 ms | turns ok / asked | errors | worker RSS MB | "
                  "worker CPU s | load after |", "|---|---|---|---|---|---|---|---|"]
        for w in workers:
            default = f"{w} (turns as jobs)" if engine == "postgres" else w
            for label, r in ((default, res["by_workers"][w]),
                             (f"{w}, CHAT_JOBS=false", res["by_workers"][w].get("chat_inline"))):
                if r is None:
                    continue
                c = r["chat"]
                mem = r["memory_after"]
                sup = f" + supervisor {mem['supervisor_rss_mb']}" if mem["supervisor_rss_mb"] else ""
                lines.append(f"| {label} | {c['turns_per_s']} | {c['p95_ms']} | {c['completed_turns']} / "
                             f"{c['sessions'] * c['turns_per_session']} | {c['errors']} | "
                             f"{', '.join(map(str, mem['worker_rss_mb']))}{sup} | "
                             f"{', '.join(map(str, mem.get('worker_cpu_s', [])))} | "
                             f"`{r['uptime_after'].split('load average: ')[-1]}` |")
        lines.append("")
    if (c := out.get("chroma")) is not None:
        lines += ["## `chroma run`", "",
                  f"RSS idle {c['idle_rss_mb']} MB; product corpus ({c['chunks']} chunks) built into it through "
                  f"`CHROMA_HOST` in {c['build_s']} s (embedding in the client), RSS {c['rss_after_build_mb']} MB; "
                  f"after {c['questions']} hybrid searches (mean {c['hybrid_search_ms_mean']} ms each, from the "
                  f"client) RSS {c['rss_after_searches_mb']} MB. Load before `{c['uptime_before']}`, "
                  f"after `{c['uptime_after']}`.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=2000)
    p.add_argument("--requests", type=int, default=200, help="requests per endpoint and concurrency level")
    p.add_argument("--concurrency", type=_ints, default=[4, 16], help="client counts, comma separated")
    p.add_argument("--workers", type=_ints, default=[1, 2], help="worker counts, comma separated")
    p.add_argument("--engines", default="postgres,sqlite")
    p.add_argument("--chat-sessions", type=int, default=20)
    p.add_argument("--chat-turns", type=int, default=2)
    p.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL") or PG_ADMIN_DEFAULT,
                   help="an admin URL on the PostgreSQL server; a throw-away database is made beside it")
    p.add_argument("--keepalive", action="store_true",
                   help="reuse connections (they stick to one worker: 2 workers then measure mostly one)")
    p.add_argument("--chroma", action="store_true",
                   help="also: `chroma run` memory with the product corpus built into it (embeds 230 chunks)")
    p.add_argument("--chat-inline", action="store_true",
                   help="on PostgreSQL, also run the chat load with CHAT_JOBS=false (each turn in the worker that "
                   "received it; the default there is a job any worker takes)")
    p.add_argument("--chat-only", action="store_true", help="skip the endpoint load")
    p.add_argument("--out", type=Path, default=RESULTS / "deploy.json")
    args = p.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - {"postgres", "sqlite"}
    if unknown:
        p.error(f"unknown engine(s) {sorted(unknown)}; valid: postgres, sqlite")

    out: dict[str, Any] = {
        "command": "python -m bench.deploy_bench " + " ".join(sys.argv[1:]),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "accounts": args.accounts, "requests": args.requests, "concurrency": args.concurrency,
        "workers": args.workers, "keepalive": args.keepalive, "chat_only": args.chat_only, "chat_inline": args.chat_inline, "chat_turns_at_once": int(os.environ.get("CHAT_TURNS_AT_ONCE", "1")),
        "uptime_before": uptime(), "engines": {},
    }
    fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeModel)
    fake.daemon_threads = True
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    llm_url = f"http://127.0.0.1:{fake.server_address[1]}/v1"
    try:
        with tempfile.TemporaryDirectory(prefix="vc-deploy-") as tmp:
            for engine in engines:
                if engine == "postgres":
                    url, name = pg_database(args.pg_url)
                    try:
                        out["engines"][engine] = run_engine(engine, url, Path(tmp), llm_url, args)
                    finally:
                        drop_pg_database(args.pg_url, name)
                else:
                    url = f"sqlite:///{tmp}/deploy.db"
                    out["engines"][engine] = run_engine(engine, url, Path(tmp), llm_url, args)
            if args.chroma:
                out["chroma"] = chroma_memory(Path(tmp))
    finally:
        fake.shutdown()
        fake.server_close()
    out["uptime_after"] = uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    write_md(out, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
