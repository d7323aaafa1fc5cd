"""Every page of the web UI in a real headless Chromium (Playwright) at a desktop (1366×900) and a
phone (390×844) width: AA text contrast, chart text legible without hovering, and the run log
showing each answer's verdicts.

The server is `tests/web_demo.py`'s demo (the 120-account company, pending recommendations, a
chat conversation with tool calls and a cited answer, verdicts from two users). The contrast
check (`web_harness.CONTRAST_JS`) measures every rendered text, input value and placeholder,
chart labels included, against what is painted behind it: 4.5:1, or 3:1 for large text. Every
page must also fit the window and log no console error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_demo import NOTE, PAGES, QUESTION, SECOND, DemoUI, demo_ui, show, sign_in
from web_harness import DESKTOP, PHONE, Watched, launch_chromium, low_contrast

SIZES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]
MIN_CHART_PX = 11  # chart text on a phone: no smaller than this, without zooming

pytestmark = pytest.mark.slow

# every SVG text of the charts on the page (and in the report's frame): its text and rendered size
CHART_TEXT = """(sel) => [...document.querySelectorAll(sel)].filter((t) => t.getClientRects().length).map((t) => {
  const m = t.getScreenCTM();
  return [t.textContent.trim(), parseFloat(getComputedStyle(t).fontSize) * (m ? Math.hypot(m.a, m.b) : 1)];
})"""


@pytest.fixture(scope="module")
def demo(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoUI]:
    with demo_ui(tmp_path_factory.mktemp("weba11y"), template=demo_db) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as b:
        yield b


def signed_in(demo: DemoUI, browser: Any, size: dict[str, int], who: str, hash_: str) -> tuple[Any, Watched]:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport=size)
    watched = Watched.open(context)
    sign_in(watched.page, demo, who, hash_)
    return context, watched


def report_frame(page: Any) -> Any:
    return next(f for f in page.frames if f.url.startswith("blob:"))


@pytest.mark.parametrize("size", SIZES)
def test_every_page_has_aa_contrast(demo: DemoUI, browser: Any, size: dict[str, int]) -> None:
    from playwright.sync_api import expect

    found: dict[str, list[dict[str, Any]]] = {}
    checked: dict[str, int] = {}

    def measure(where: str) -> None:
        result = low_contrast(watched.page)
        checked[where] = result["checked"]
        assert result["unknown"] == [], f"{where}: text over a background image cannot be measured: {result['unknown']}"
        if result["failures"]:
            found[where] = result["failures"]
        watched.assert_no_overflow(where)

    context = browser.new_context(viewport=size)
    watched = Watched.open(context)
    show(watched.page, demo, "signin")
    measure("sign in")
    context.close()

    context, watched = signed_in(demo, browser, size, "carol", "#/chat")
    page = watched.page
    try:
        expect(page.locator("#chat-empty")).to_be_visible()
        expect(page.locator("#model-status")).to_have_text("model ready")
        measure("chat, empty")
        show(page, demo, "chat")
        answer = page.locator(".msg.assistant").last
        answer.get_by_role("button", name="Good answer").click()  # carol's verdict already: the log keeps it
        expect(answer.locator(".feedback-note")).to_be_visible()
        expect(page.locator("#toast")).to_be_visible()
        measure("chat: an answer, a tool call open, the Sources row, the feedback note and a toast")
        answer.locator(".source-chip").first.click()
        expect(page.locator("#citation-body .chunk-text").first).not_to_be_empty()
        measure("chat: the cited passage")
        page.click("#citation-close")

        for name in PAGES[2:]:
            show(page, demo, name)
            if name == "review":
                page.get_by_label(f"Select #{demo.filed[1]} for a bulk decision").check()
                expect(page.locator("#bulk-form")).to_be_visible()
            if name == "account":
                page.locator(".action-card details summary").first.click()
            measure(name)
        watched.assert_no_errors()
    finally:
        context.close()
    assert all(n > 10 for n in checked.values()), f"too little text measured: {checked}"
    assert found == {}, "text below AA contrast:\n" + "\n".join(
        f"{where}: {f}" for where, fails in found.items() for f in fails)


def test_chart_labels_legends_and_values_are_readable_on_a_phone(demo: DemoUI, browser: Any) -> None:
    from playwright.sync_api import expect

    context, watched = signed_in(demo, browser, PHONE, "carol", "#/value-chain")
    page = watched.page
    try:
        expect(page.locator("#vc-scatter .chart-key li").first).to_be_visible()
        small = [(t, round(px, 1)) for t, px in page.evaluate(CHART_TEXT, "#vc-scatter svg text") if px < MIN_CHART_PX]
        assert small == [], f"value-chain chart text under {MIN_CHART_PX} px on a phone: {small}"
        # every point's activity, figures and quadrant in the key; every bar's name and value printed
        names = page.locator("#vc-table tbody tr td:first-child").all_inner_texts()
        keyed = page.locator("#vc-scatter .chart-key li").all_inner_texts()
        assert len(keyed) == len(names) and all(re.search(r"\d+\.\d% of cost, \d+\.\d% of value · \w", k) for k in keyed)
        expect(page.locator("#vc-scatter .legend li")).to_have_count(4)
        bars = page.locator("#vc-leak .hbar")
        assert bars.count() > 0
        for i in range(bars.count()):
            assert bars.nth(i).locator(".hbar-label").inner_text().strip()
            expect(bars.nth(i).locator(".hbar-value")).to_have_text(re.compile(r"^\$[\d.]+[kM]? \(\d+%\)$"))
        font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#vc-leak .hbar')).fontSize)")
        assert font >= MIN_CHART_PX
        watched.assert_no_overflow("the value chain")

        page.goto(f"{demo.url}/#/report")
        expect(page.locator("#report-frame")).to_have_attribute("src", re.compile("^blob:"), timeout=120_000)
        expect(page.frame_locator("#report-frame").locator("figure.chart svg").first).to_be_visible()
        report = report_frame(page)
        texts = report.evaluate(CHART_TEXT, "figure.chart svg text")
        assert len(texts) > 20, texts
        small = [(t, round(px, 1)) for t, px in texts if px < MIN_CHART_PX]
        assert small == [], f"report chart text under {MIN_CHART_PX} px on a phone: {small[:12]}"
        clipped = [t for t, _ in texts if t.endswith("…")]
        assert clipped == [], f"clipped chart labels: {clipped}"
        # the charts scroll in their own box: the report itself is no wider than its frame
        width, inner = report.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"the report is {width} px wide in its {inner} px frame"
        watched.assert_no_overflow("the report")
        watched.assert_no_errors()
    finally:
        context.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_run_log_shows_each_answers_verdicts(demo: DemoUI, browser: Any, size: dict[str, int]) -> None:
    from playwright.sync_api import expect

    context, watched = signed_in(demo, browser, size, "carol", "#/chat")
    page = watched.page
    try:
        nav = page.locator("#nav a[data-page=runs]")
        expect(nav).to_be_visible()
        nav.click()
        entries = page.locator("#runs-list .run-entry")
        expect(entries).to_have_count(2)
        expect(page.locator("#runs-summary")).to_contain_text("2 runs")
        expect(page.locator("#runs-summary")).to_contain_text("2 helpful, 1 not helpful")
        second, first = entries.nth(0), entries.nth(1)  # newest first
        expect(second.locator(".run-question")).to_have_text(SECOND)
        expect(second).to_contain_text("alice")
        expect(first.locator(".run-question")).to_have_text(QUESTION)
        expect(first.locator(".run-head")).to_contain_text("carol")
        expect(first).to_contain_text("Tools: rank, search_knowledge")
        verdicts = first.locator(".verdict")
        expect(verdicts).to_have_count(2)
        expect(verdicts.nth(0)).to_contain_text("Not helpful")
        expect(verdicts.nth(0)).to_contain_text("alice")
        expect(verdicts.nth(0).locator(".verdict-note")).to_have_text(NOTE)
        expect(verdicts.nth(1)).to_contain_text("Helpful")
        expect(verdicts.nth(1)).to_contain_text("carol")
        watched.assert_no_overflow("the run log")

        page.select_option("#runs-rated", "down")
        expect(entries).to_have_count(1)
        expect(entries.first.locator(".run-question")).to_have_text(QUESTION)
        # open the run's conversation: the chat shows it with the analyst's own verdict
        entries.first.get_by_role("button", name="Open the conversation").click()
        expect(page).to_have_url(re.compile("#/chat$"))
        answer = page.locator(".msg.assistant").last
        expect(answer.locator(".answer")).to_contain_text("Margin leak is the cost")
        expect(answer.get_by_role("button", name="Good answer")).to_have_attribute("aria-pressed", "true")
        watched.assert_no_errors()
    finally:
        context.close()

    # a viewer has no run log
    context, watched = signed_in(demo, browser, size, "victor", "#/runs")
    try:
        expect(watched.page.locator("#nav a[data-page=runs]")).to_be_hidden()
        expect(watched.page.locator("#runs-summary")).to_contain_text("for analysts")
        expect(watched.page.locator("#runs-list .run-entry")).to_have_count(0)
        watched.assert_no_errors()
    finally:
        context.close()
