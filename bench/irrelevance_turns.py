"""Out-of-scope questions through whole agent turns: does the answer decline?

    .venv/bin/python -m bench.irrelevance_turns

Runs the dev set's irrelevance questions (evals/cases/agent_dev.yaml) through `Copilot.ask`
on a copy of the configured database and writes bench/results/irrelevance-turns.json. A turn
counts as declined when no data tool ran and the answer states no figure; read the answers
too (the file keeps them): a short answer from memory would pass that test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from agent.service import open_copilot
from bench.agent_bench import scratch_settings
from evals.selection import load_cases

RESULTS = Path(__file__).resolve().parent / "results" / "irrelevance-turns.json"


def main() -> None:
    settings, tmp = scratch_settings("irrelevance-")
    cases = [c for c in load_cases() if c.category == "irrelevance"]
    rows: list[dict[str, object]] = []
    declined = 0
    with open_copilot(settings) as (copilot, _runtime):
        for case in cases:
            r = copilot.ask(case.question)
            data_tools = [t.name for t in r.tool_calls if t.name != "search_knowledge"]
            rows.append({
                "question": case.question, "tools": [t.name for t in r.tool_calls], "answer": r.answer,
                "notes": r.notes, "llm_calls": r.llm_calls, "latency_s": r.latency_s,
                "declined": not data_tools and not any(ch.isdigit() for ch in r.answer),
            })
            declined += bool(rows[-1]["declined"])
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"declined {declined} of {len(rows)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
