"""Load benchmark (issue #18): the service under bounded loopback load, a soak, and concurrent chats.

Builds a throw-away SQLite database with the demo company (and its churn model), starts a real
`valuechain serve` process on a free loopback port with chat pointed at a fake OpenAI-compatible
model on loopback that answers at once (so the model's speed is not measured), and then:

1. **endpoints**: for each non-model GET endpoint, `--requests` requests from `--concurrency`
   async clients (httpx); requests/s, p50/p95/max latency, non-2xx count.
2. **chat**: `--chat-sessions` concurrent chat sessions (20 by default), each `--chat-turns` turns
   in its own conversation over `POST /api/v1/chat`; completed turns, errors, p50/p95 latency.
   Turns queue behind `CHAT_TURNS_AT_ONCE` (1 by default), as in production.
3. **soak**: `--soak-s` seconds (600 by default) of mixed load (the endpoints in turn, plus a chat
   turn every few seconds), the server's RSS sampled every `--sample-s` seconds; reports the RSS
   at start and end, the peak and the least-squares slope (MB per minute) after the first minute.

The load average (`uptime`) is recorded before and after. Results: bench/results/load.json and
load.md.

    nice -n 19 .venv/bin/python -m bench.load_bench [--accounts 2000] [--soak-s 600] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from api.auth import create_key
from core.db import make_engine, make_sessionmaker, session_scope
from crm.demo import generate_demo
from crm.migrate import upgrade
from crm.models import Account
from tools.churn.model import train
from tools.recommendations import propose_recommendation

RESULTS = Path(__file__).resolve().parent / "results"
VALUECHAIN = Path(sys.executable).with_name("valuechain")
ANSWER = "The accounts most at risk are listed on the at-risk page."


# ------------------------------------------------------------------ the fake model


class FakeModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible `/v1/chat/completions` that answers at once with a short text, streamed
    (server-sent events) when the request asks for a stream."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        head = {"id": "fake", "created": 1, "model": "fake"}
        if body.get("stream"):
            chunks = [
                {**head, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}, "finish_reason": None}]},
                {**head, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}},
            ]
            data = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
            kind = "text/event-stream"
        else:
            data = json.dumps({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # /health, /v1/models
        data = b'{"status": "ok", "data": [{"id": "fake"}]}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


# ------------------------------------------------------------------ set-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_database(url: str, accounts: int) -> dict[str, Any]:
    """The demo company, its churn model, keys and a few pending recommendations; ids to request."""
    engine = make_engine(url)
    upgrade(engine)
    generate_demo(engine, accounts=accounts, seed=7)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as s:
        train(s, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    with session_scope(factory) as s:
        ids = list(s.scalars(select(Account.id).order_by(Account.id).limit(5)))
        analyst = create_key(session=s, name="load-analyst", role="analyst").key
        recs = [propose_recommendation(session=s, account_id=a, action="exec_sponsor_call",
                                       rationale="Load test.", evidence={"n": i}, holdout_share=0.0).id for i, a in enumerate(ids)]
    engine.dispose()
    return {"accounts": ids, "key": analyst, "recs": recs}


class Server:
    def __init__(self, database_url: str, data_dir: Path, llm_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir),
               "CHROMA_PATH": str(data_dir / "chroma"), "LLM_BASE_URL": llm_url, "LLM_MODEL": "fake",
               "LLM_API_KEY": "x", "AGENT_DESIGN": "react", "LLM_AUTOSTART": "false"}
        for name in ("CHROMA_HOST", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PLAYBOOK_PATH"):
            env.pop(name, None)
        self.log = (data_dir / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [str(VALUECHAIN), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {data_dir / 'serve.log'}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ------------------------------------------------------------------ measuring


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    return {"requests": len(latencies) + errors, "ok": len(latencies), "errors": errors,
            "rps": round(len(latencies) / elapsed, 1) if elapsed else None,
            "p50_ms": round(pct(latencies, 0.5) * 1000, 1), "p95_ms": round(pct(latencies, 0.95) * 1000, 1),
            "max_ms": round(max(latencies, default=float("nan")) * 1000, 1), "elapsed_s": round(elapsed, 2)}


def endpoints(data: dict[str, Any]) -> dict[str, str]:
    a = data["accounts"][0]
    return {
        "healthz": "/healthz",
        "recommendations": "/api/v1/recommendations?limit=20",
        "recommendation": f"/api/v1/recommendations/{data['recs'][0]}",
        "accounts": "/api/v1/tools/accounts?limit=20",
        "account": f"/api/v1/tools/accounts/{a}",
        "timeline": f"/api/v1/tools/accounts/{a}/timeline?limit=20",
        "churn_risk_one": f"/api/v1/tools/churn-risk/{a}",
        "churn_risk_top": "/api/v1/tools/churn-risk?limit=10",
        "next_best_action": f"/api/v1/tools/next-best-action/{a}",
        "rank": "/api/v1/tools/rank/accounts/arr_at_risk?limit=10",
        "activity_scores": "/api/v1/tools/activity-scores",
        "analysis_json": "/api/v1/analysis",
        "conversations": "/api/v1/conversations?limit=20",
        "metrics": "/metrics",
    }


async def hammer(client: httpx.AsyncClient, path: str, total: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    left = total

    async def worker() -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            t = time.perf_counter()
            try:
                r = await client.get(path)
                ok = r.status_code < 300
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - start, errors)


async def chat_turn(client: httpx.AsyncClient, message: str, conversation: str | None) -> tuple[bool, float, str | None]:
    t = time.perf_counter()
    body: dict[str, Any] = {"message": message}
    if conversation:
        body["conversation_id"] = conversation
    try:
        r = await client.post("/api/v1/chat", json=body, timeout=300)
    except httpx.HTTPError:
        return False, time.perf_counter() - t, conversation
    elapsed = time.perf_counter() - t
    if r.status_code != 200:
        return False, elapsed, conversation
    out = r.json()
    return out.get("error") is None and bool(out.get("answer")), elapsed, out.get("conversation_id")


async def chats(url: str, key: str, sessions: int, turns: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0

    async def session(n: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            conversation = None
            for t in range(turns):
                ok, elapsed, conversation = await chat_turn(client, f"Session {n}, question {t}: who is at risk?",
                                                            conversation)
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(session(n) for n in range(sessions)))
    out = summary(latencies, time.perf_counter() - start, errors)
    out.update(sessions=sessions, turns_per_session=turns, completed_turns=len(latencies))
    return out


async def soak(server: Server, data: dict[str, Any], seconds: float, sample_s: float,
               concurrency: int) -> dict[str, Any]:
    paths = list(endpoints(data).values())
    samples: list[tuple[float, float]] = []
    counts = {"requests": 0, "errors": 0, "chat_turns": 0, "chat_errors": 0}
    start = time.monotonic()
    stop = start + seconds
    headers = {"Authorization": f"Bearer {data['key']}"}

    async def sampler() -> None:
        while time.monotonic() < stop:
            samples.append((time.monotonic() - start, server.rss_mb()))
            await asyncio.sleep(sample_s)
        samples.append((time.monotonic() - start, server.rss_mb()))

    async def worker(n: int) -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
            i = n
            while time.monotonic() < stop:
                try:
                    r = await client.get(paths[i % len(paths)])
                    counts["errors"] += r.status_code >= 300
                except httpx.HTTPError:
                    counts["errors"] += 1
                counts["requests"] += 1
                i += 1

    async def chatter() -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            conversation = None
            while time.monotonic() < stop:
                ok, _, conversation = await chat_turn(client, "Which accounts are at risk?", conversation)
                counts["chat_turns"] += 1
                counts["chat_errors"] += not ok
                if counts["chat_turns"] % 20 == 0:
                    conversation = None  # a new conversation now and then, as users start them
                await asyncio.sleep(2)

    await asyncio.gather(sampler(), chatter(), *(worker(n) for n in range(concurrency)))
    late = [(t, m) for t, m in samples if t >= min(60.0, seconds / 3)]
    slope = None
    if len(late) >= 3:
        mt = statistics.fmean(t for t, _ in late)
        mm = statistics.fmean(m for _, m in late)
        slope = sum((t - mt) * (m - mm) for t, m in late) / sum((t - mt) ** 2 for t, _ in late) * 60
    return {"seconds": seconds, "sample_every_s": sample_s, "concurrency": concurrency, **counts,
            "rps": round(counts["requests"] / seconds, 1),
            "rss_start_mb": round(samples[0][1], 1), "rss_end_mb": round(samples[-1][1], 1),
            "rss_peak_mb": round(max(m for _, m in samples), 1),
            "rss_slope_mb_per_min_after_warmup": None if slope is None else round(slope, 3),
            "samples": [[round(t, 1), round(m, 1)] for t, m in samples]}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def write_md(out: dict[str, Any], path: Path) -> None:
    lines = [
        "# Load benchmark", "",
        f"`{out['command']}` on {out['machine']['cpus']} CPUs, {out['started']}; demo company of "
        f"{out['accounts']} accounts on SQLite; chat against a loopback fake model that answers at once.", "",
        f"- load before: `{out['uptime_before']}`", f"- load after: `{out['uptime_after']}`", "",
        f"## Endpoints ({out['requests_per_endpoint']} requests each, {out['concurrency']} concurrent clients)", "",
        "| endpoint | requests/s | p50 ms | p95 ms | max ms | errors |", "|---|---|---|---|---|---|",
    ]
    for name, r in out["endpoints"].items():
        lines.append(f"| {name} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['errors']} |")
    c = out["chat"]
    lines += ["", f"## Chat ({c['sessions']} concurrent sessions × {c['turns_per_session']} turns)", "",
              f"{c['completed_turns']} of {c['sessions'] * c['turns_per_session']} turns completed, "
              f"{c['errors']} errors, p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms, max {c['max_ms']} ms, "
              f"{c['elapsed_s']} s in all (turns at once: {out['chat_turns_at_once']})."]
    if (s := out.get("soak")) is not None:
        lines += ["", f"## Soak ({s['seconds']:.0f} s, {s['concurrency']} clients + one chat every ~2 s)", "",
                  f"{s['requests']} requests ({s['rps']}/s), {s['errors']} errors; {s['chat_turns']} chat turns, "
                  f"{s['chat_errors']} errors. RSS {s['rss_start_mb']} MB at start, {s['rss_end_mb']} MB at end, "
                  f"peak {s['rss_peak_mb']} MB; slope after warm-up {s['rss_slope_mb_per_min_after_warmup']} MB/min."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=2000)
    p.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--chat-sessions", type=int, default=20)
    p.add_argument("--chat-turns", type=int, default=3)
    p.add_argument("--soak-s", type=float, default=600.0, help="soak length; 0 skips the soak")
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = p.parse_args()

    out: dict[str, Any] = {
        "command": "python -m bench.load_bench " + " ".join(sys.argv[1:]),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "accounts": args.accounts, "requests_per_endpoint": args.requests, "concurrency": args.concurrency,
        "chat_turns_at_once": int(os.environ.get("CHAT_TURNS_AT_ONCE", "1")),
        "uptime_before": uptime(),
    }
    fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeModel)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="vc-load-") as tmp:
        db = f"sqlite:///{tmp}/load.db"
        t = time.perf_counter()
        data = build_database(db, args.accounts)
        out["setup_s"] = round(time.perf_counter() - t, 1)
        server = Server(db, Path(tmp), f"http://127.0.0.1:{fake.server_address[1]}/v1")
        try:
            async def run() -> None:
                headers = {"Authorization": f"Bearer {data['key']}"}
                limits = httpx.Limits(max_connections=args.concurrency)
                async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60, limits=limits) as c:
                    out["endpoints"] = {}
                    for name, path in endpoints(data).items():
                        await hammer(c, path, min(20, args.requests), args.concurrency)  # warm caches
                        out["endpoints"][name] = await hammer(c, path, args.requests, args.concurrency)
                        print(name, out["endpoints"][name], flush=True)
                out["rss_after_endpoints_mb"] = round(server.rss_mb(), 1)
                out["chat"] = await chats(server.url, data["key"], args.chat_sessions, args.chat_turns)
                print("chat", out["chat"], flush=True)
                if args.soak_s > 0:
                    out["soak"] = await soak(server, data, args.soak_s, args.sample_s, max(2, args.concurrency // 2))
                    print("soak", {k: v for k, v in out["soak"].items() if k != "samples"}, flush=True)

            asyncio.run(run())
        finally:
            server.stop()
            fake.shutdown()
    out["uptime_after"] = uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    write_md(out, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
