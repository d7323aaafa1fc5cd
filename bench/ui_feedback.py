"""Time to first visible feedback and to the final answer in the web UI, real model, real browser.

    valuechain serve --port 8077 &          # the service on embedded defaults, model warm
    .venv/bin/python -m bench.ui_feedback --url http://127.0.0.1:8077 --key vck_... [--out ...]

For each question, in headless Chromium (Debian's, through Playwright) at 1366×900: sign in, type
the question, press Enter, then measure (wall clock from the key press) when the assistant's
bubble first shows something (the progress line, a plan step or text) and when the answer is
final (the answer's meta line with the model calls appears). Writes JSON with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "ui-feedback.json"
QUESTIONS = (
    "Which account has the most ARR at risk, and what should we do about it?",
    "What are the support activities in Porter's value chain?",
)


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(args.url + "/#/chat")
        page.fill("#api-key", args.key)
        page.click("#signin-button")
        page.wait_for_selector("#chat-input", state="visible")
        for question in QUESTIONS:
            before = page.locator(".msg.assistant").count()
            load = os.getloadavg()[0]
            page.fill("#chat-input", question)
            t0 = time.perf_counter()
            page.press("#chat-input", "Enter")
            bubble = page.locator(".msg.assistant").nth(before)
            bubble.locator(".progress:not([hidden]), .plan, .answer:not(:empty)").first.wait_for(timeout=300_000)
            first = time.perf_counter() - t0
            bubble.locator(".meta:not(:empty)").wait_for(timeout=600_000)
            final = time.perf_counter() - t0
            rows.append({"question": question, "first_feedback_s": round(first, 2), "final_answer_s": round(final, 2),
                         "meta": bubble.locator(".meta").inner_text(), "load_1m_before": round(load, 2)})
            print(json.dumps(rows[-1]))
        browser.close()
    args.out.write_text(json.dumps({"benchmark": "web UI feedback (bench/ui_feedback.py)", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
