"""The analysis pages in a real headless Chromium (Playwright) against a real uvicorn server, at a
desktop (1366×900) and a phone (390×844) width: the review queue, the value chain, the at-risk
accounts, an account page and the analysis report.

The server runs `create_app` on the 120-account demo company (SQLite). Every page must fit the
window (no horizontal overflow of the document, and no element wider than the window unless it
scrolls inside its own box), and no page may log a console error or a failed request beyond the
refusals a test provokes on purpose. Screenshots of every page at both widths go to
tests/artifacts/pages-*.png (gitignored).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web_harness import ARTIFACTS, DESKTOP, PHONE, Watched, launch_chromium, serve

from api.app import create_app
from api.auth import create_key
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from crm.models import Recommendation
from tools.account_actions import propose_account_action
from tools.churn.scoring import churn_risk
from tools.nba import next_best_action
from tools.recommendations import propose_recommendation

SIZES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]
# formula and tool jargon that must stay out of the report's narrative (the appendix may explain it)
JARGON = ["SQ·SP", "AQ·SP", "(AQ", "eliminate_or_restructure", "invest_and_scale", "score_activities", "rank tool",
          "value_chain_analysis", "net_benefit", "_"]

pytestmark = pytest.mark.slow

# Elements sticking out of the window that no ancestor clips (an ancestor with overflow other than
# `visible` that itself fits the window scrolls or clips them): what makes a phone page pan sideways.
WIDE_ELEMENTS = """() => {
  const W = window.innerWidth;
  const out = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || e.closest(".offscreen")) continue;
    if (r.right <= W + 1 && r.left >= -1) continue;
    let p = e.parentElement, clipped = false;
    while (p && p !== document.body) {
      if (getComputedStyle(p).overflowX !== "visible") {
        const pr = p.getBoundingClientRect();
        if (pr.right <= W + 1 && pr.left >= -1) { clipped = true; break; }
      }
      p = p.parentElement;
    }
    if (!clipped) out.push(`${e.tagName.toLowerCase()}#${e.id}.${e.className && e.className.baseVal !== undefined ? e.className.baseVal : e.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  return out.slice(0, 8);
}"""


# visible controls without an accessible name (a <label>, aria-label(ledby) or, for buttons and links, text)
UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button, a[href], [tabindex]")]
  .filter((e) => e.getClientRects().length && getComputedStyle(e).visibility !== "hidden")
  .filter((e) => !((e.labels && e.labels.length) || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby")
    || (/^(BUTTON|A|TR)$/.test(e.tagName) && e.textContent.trim())))
  .map((e) => `${e.tagName.toLowerCase()}#${e.id}`)"""


@dataclass
class PagesServer:
    url: str
    sessions: sessionmaker[Session]
    carol: str  # approver
    dave: str  # approver
    alice: str  # analyst
    top: str  # the account with the most ARR at risk
    filed: list[int]  # pending recommendations alice filed
    raw: int  # one more of alice's, its evidence in raw floats as a model writes them


@pytest.fixture(scope="module")
def server(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagesServer]:
    tmp = tmp_path_factory.mktemp("webpages")
    shutil.copy(demo_db, tmp / "pages.db")
    url = f"sqlite:///{tmp / 'pages.db'}"
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        carol = create_key(session=s, name="carol", role="approver").key
        dave = create_key(session=s, name="dave", role="approver").key
        alice = create_key(session=s, name="alice", role="analyst").key
        ranked = churn_risk(session=s, limit=8, order_by="arr_at_risk").accounts
        top = ranked[0].account_id
        filed = []
        for a in ranked[1:]:  # the top account is left for the account-page test to propose on
            options = next_best_action(session=s, account_id=a.account_id).actions
            if options:
                filed.append(propose_account_action(session=s, account_id=a.account_id, action=options[0].action,
                                                    created_by="alice").id)
        raw = propose_recommendation(
            session=s, account_id=ranked[1].account_id, action="renegotiate_contract", created_by="alice",
            rationale="Usage is down and the renewal is close.", expected_value=18234.567890123456,
            evidence={"churn_probability": 0.6234567891234567, "arr_at_risk": 123456.78901234567,
                      "renewal_date": "2026-11-30", "open_tickets": 4, "usage_trend": -0.41234567890123456},
        ).id
        s.commit()
    assert len(filed) >= 4, "the demo company should give at least four accounts a worthwhile action"
    settings = Settings(
        database_url=url, data_dir=tmp / "data", chroma_path=tmp / "chroma", chroma_host=None,
        llm_base_url=None, llm_autostart=False, playbook_path=None, recommendation_ttl_days=30,
    )  # type: ignore[call-arg]
    with serve(create_app(settings)) as base:
        yield PagesServer(base, sessions, carol, dave, alice, top, filed, raw)
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as b:
        yield b


def kind(size: dict[str, int]) -> str:
    return "phone" if size["width"] < 600 else "desktop"


def sign_in(server: PagesServer, browser: Any, size: dict[str, int], key: str, hash_: str) -> tuple[Any, Watched]:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport=size)
    watched = Watched.open(context)
    watched.page.goto(f"{server.url}/{hash_}")
    try:
        expect(watched.page.locator("#api-key")).to_be_visible(timeout=15_000)
    except AssertionError:
        context.close()
        raise AssertionError(f"the sign-in form did not show: {watched.errors}") from None
    watched.page.fill("#api-key", key)
    watched.page.click("#signin-button")
    expect(watched.page.locator("#whoami")).not_to_be_empty()
    return context, watched


def assert_fits(watched: Watched, where: str) -> None:
    wide = watched.page.evaluate(WIDE_ELEMENTS)
    if watched.overflow()[0] > watched.overflow()[1]:
        wide += watched.page.evaluate("""() => [...document.querySelectorAll('body *')].map(e => [e.getBoundingClientRect().right, e.tagName + '#' + e.id + '.' + e.className + ' w=' + e.getBoundingClientRect().width + ' ox=' + getComputedStyle(e).overflowX]).sort((a, b) => b[0] - a[0]).slice(0, 8)""")
    assert wide == [], f"{where}: elements wider than the {watched.page.viewport_size['width']} px window: {wide}"
    watched.assert_no_overflow(where)
    unlabelled = watched.page.evaluate(UNLABELLED)
    assert unlabelled == [], f"{where}: controls without a label: {unlabelled}"


def shot(page: Any, name: str, size: dict[str, int]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"pages-{name}-{kind(size)}.png"), full_page=True)


def api(server: PagesServer, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw)


@pytest.mark.parametrize("size", SIZES)
def test_every_page_fits_the_window_without_console_errors(
    server: PagesServer, browser: Any, size: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    context, watched = sign_in(server, browser, size, server.carol, f"#/review/{server.filed[0]}")
    page = watched.page
    try:
        expect(page.locator("#review-plain")).to_be_visible()
        expect(page.locator("#review-table tbody tr")).to_have_count(len(server.filed) + 1)
        assert_fits(watched, "the review queue")
        shot(page, "review", size)

        page.goto(f"{server.url}/#/value-chain")
        expect(page.locator(".chart-key li").first).to_be_visible()
        expect(page.locator("#vc-table tbody tr").first).to_be_visible()
        # every activity has its full name and figures in the key, without hovering
        names = page.locator("#vc-table tbody tr td:first-child").all_inner_texts()
        key_text = page.locator(".chart-key").inner_text()
        for name in names:
            assert name.splitlines()[0] in key_text
        assert page.locator("#vc-leak .hbar-value").count() > 0
        font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.chart .tick')).fontSize)")
        scale = page.evaluate("(() => { const s = document.querySelector('#vc-scatter svg'); return s.getBoundingClientRect().width / s.viewBox.baseVal.width; })()")
        assert font * scale >= 10, f"chart ticks render at {font * scale:.1f} px"
        assert_fits(watched, "the value chain")
        shot(page, "value-chain", size)

        page.goto(f"{server.url}/#/accounts")
        expect(page.locator("#risk-table tbody tr[data-account]").first).to_be_visible()
        at_risk = [float(re.sub(r"[^0-9.]", "", t)) * (1000 if t.endswith("k") else 1e6 if t.endswith("M") else 1)
                   for t in page.locator("#risk-table tbody tr[data-account] td:nth-child(3)").all_inner_texts()]
        assert at_risk == sorted(at_risk, reverse=True), "the at-risk list is sorted by ARR at risk"
        first = page.locator("#risk-table tbody tr[data-account]").first
        assert first.get_attribute("data-account") == server.top
        first.get_by_role("button", name="Next best action").click()
        nba = page.locator(".nba-row:not([hidden])")
        expect(nba.locator("ol.nba li").first).to_be_visible()
        assert "×" not in nba.inner_text() and "p_churn" not in nba.inner_text()  # words, not the formula
        assert_fits(watched, "the at-risk accounts")
        shot(page, "accounts", size)

        first.get_by_role("link", name=server.top).click()
        expect(page).to_have_url(re.compile(f"#/account/{server.top}$"))
        expect(page.locator(".action-card").first).to_be_visible()
        expect(page.locator(".timeline li").first).to_be_visible()
        expect(page.locator(".churn-drivers li").first).to_be_visible()
        assert_fits(watched, "the account page")
        shot(page, "account", size)

        page.goto(f"{server.url}/#/report")
        frame_el = page.locator("#report-frame")
        expect(frame_el).to_have_attribute("src", re.compile("^blob:"), timeout=120_000)
        frame = page.frame_locator("#report-frame")
        expect(frame.locator("nav a").first).to_be_visible()
        assert_fits(watched, "the report page")
        report = next(f for f in page.frames if f.url.startswith("blob:"))
        width, inner = report.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"the report is {width} px wide in its {inner} px frame"
        # the table of contents works inside the frame (no navigation away, no CSP refusal)
        links = frame.locator("nav a")
        last = links.nth(min(2, links.count() - 1))  # a section with more report after it, so it can reach the top
        target = last.get_attribute("href")
        assert target and target.startswith("#")
        last.click()
        where = f"[window.scrollY, document.getElementById({target[1:]!r}).getBoundingClientRect().top, location.href]"
        for _ in range(50):
            scrolled, top, href = report.evaluate(where)
            if scrolled > 0 and abs(top) < 40:
                break
            page.wait_for_timeout(100)
        assert scrolled > 0 and abs(top) < 40, f"the contents link did not scroll the report: {scrolled, top, href, watched.errors}"
        assert report.url.endswith(target), report.url  # the same document, scrolled to the section
        shot(page, "report", size)
        watched.assert_no_errors()
    finally:
        context.close()


@pytest.mark.parametrize("size", SIZES)
def test_review_reads_in_plain_words_and_a_refused_decision_refreshes_the_item(
    server: PagesServer, browser: Any, size: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    rec_id = server.filed[1] if kind(size) == "desktop" else server.raw
    context, watched = sign_in(server, browser, size, server.carol, "#/review")
    page = watched.page
    try:
        # rows are reachable by keyboard: focus the row, Enter opens it
        row = page.locator(f"#review-table tbody tr[data-id='{rec_id}']")
        row.focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(f"#/review/{rec_id}$"))
        summary = page.locator("#review-plain")
        expect(summary).to_contain_text("Proposed by alice: ")
        assert "null" not in page.locator("#review-detail").inner_text()
        expect(summary).to_contain_text("expected value $")
        # the decision form sits right under the summary, in view without scrolling the pane
        form = page.locator("#decision-form")
        expect(form).to_be_visible()
        expect(page.locator("#decision-submit")).to_be_in_viewport()
        box = form.bounding_box()
        assert box is not None and box["y"] < page.viewport_size["height"] * 0.75, box
        order = page.evaluate(
            "(() => { const p = document.getElementById('review-plain'), f = document.getElementById('decision-form');"
            " return !!(p.compareDocumentPosition(f) & Node.DOCUMENT_POSITION_FOLLOWING); })()")
        assert order, "the summary comes before the decision form"
        # evidence as formatted facts: no long raw decimals in view, the JSON folded away
        facts = page.locator(".evidence-facts").first.inner_text()
        assert not re.search(r"\d\.\d{5,}", facts), facts  # (the formula line keeps its 4-decimal probability)
        assert "%" in facts and "$" in facts
        if rec_id == server.raw:
            for shown in ("62.3%", "$123k", "Nov 30, 2026", "-0.41"):  # a number of unknown unit: rounded
                assert shown in facts, (shown, facts)
        expect(page.locator(".raw-json pre")).to_be_hidden()
        page.locator(".raw-json summary").click()
        expect(page.locator(".raw-json pre")).to_contain_text('"churn_probability"')
        assert_fits(watched, "the review detail")
        shot(page, "review-detail", size)

        # dave decides first; carol's reject is refused (409) and the item shows its real state
        version = api(server, server.dave, "GET", f"/api/v1/recommendations/{rec_id}").json()["version"]
        r = api(server, server.dave, "POST", f"/api/v1/recommendations/{rec_id}/approve", json={"expected_version": version})
        assert r.status_code == 200, r.text
        page.get_by_role("button", name="Reject", exact=True).click()
        page.select_option("#decision-reason", index=1)
        page.click("#decision-submit")
        expect(page.locator("#review-notice")).to_contain_text("already approved by dave")
        expect(page.locator("#review-detail .status-badge")).to_have_text("approved")
        expect(page.locator("#decision-submit")).to_have_count(0)
        expect(page.locator(f"#review-table tbody tr[data-id='{rec_id}']")).to_have_count(0)  # left the pending list
        watched.errors[:] = [e for e in watched.errors if not re.search(rf"(409 POST .*/{rec_id}/reject|status of 409)", e)]
        watched.assert_no_errors()
    finally:
        context.close()


def test_propose_from_an_account_page_waits_for_another_approver(server: PagesServer, browser: Any) -> None:
    from playwright.sync_api import expect

    context, watched = sign_in(server, browser, PHONE, server.carol, f"#/account/{server.top}")
    page = watched.page
    try:
        card = page.locator(".action-card").first
        expect(card).to_be_visible()
        action = card.get_attribute("data-action")
        expect(card).to_contain_text("Expected value")
        expect(card).to_contain_text("Cost")
        card.get_by_role("button", name=re.compile("^Propose")).click()
        expect(card.locator(".propose-result")).to_contain_text("Filed for approval as #")
        with server.sessions() as s:
            rec = s.scalars(select(Recommendation).where(Recommendation.account_id == server.top,
                                                         Recommendation.action == action)).one()
            assert (rec.status, rec.created_by) == ("pending", "carol")
            rec_id = rec.id
        # carol filed it, so carol may not approve it: the refusal shows, the item stays pending
        card.locator(".propose-result a").click()
        expect(page.locator("#decision-form")).to_be_visible()
        page.click("#decision-submit")
        expect(page.locator("#review-notice")).to_contain_text("Not recorded")
        expect(page.locator("#review-detail .status-badge")).to_have_text("pending")
        with server.sessions() as s:
            assert s.get(Recommendation, rec_id).status == "pending"  # type: ignore[union-attr]
        watched.errors[:] = [e for e in watched.errors if not re.search(rf"(403 POST .*/{rec_id}/approve|status of 403)", e)]
        watched.assert_no_errors()
    finally:
        context.close()
    # another approver can
    version = api(server, server.dave, "GET", f"/api/v1/recommendations/{rec_id}").json()["version"]
    r = api(server, server.dave, "POST", f"/api/v1/recommendations/{rec_id}/approve", json={"expected_version": version})
    assert r.status_code == 200 and r.json()["decided_by"] == "dave"


def test_bulk_review_with_one_reason(server: PagesServer, browser: Any) -> None:
    from playwright.sync_api import expect

    with server.sessions() as s:  # dave's own proposal among them: it must be refused
        top_actions = next_best_action(session=s, account_id=server.top).actions
        own = propose_account_action(session=s, account_id=server.top, action=top_actions[-1].action, created_by="dave").id
        s.commit()
    bulk = [server.filed[3], server.filed[4] if len(server.filed) > 4 else server.filed[3], own]
    context, watched = sign_in(server, browser, DESKTOP, server.dave, "#/review")
    page = watched.page
    try:
        for rec_id in dict.fromkeys(bulk):
            page.get_by_label(f"Select #{rec_id} for a bulk decision").check()
        expect(page.locator("#bulk-form")).to_be_visible()
        page.select_option("#bulk-decision", "reject")
        page.select_option("#bulk-reason", index=1)
        page.fill("#bulk-note", "Not this quarter.")
        page.click("#bulk-submit")
        expect(page.locator("#bulk-result")).to_contain_text("rejected")
        expect(page.locator("#bulk-result")).to_contain_text(f"#{own}:")
        shot(page, "review-bulk", DESKTOP)
        with server.sessions() as s:
            rows = {r.id: r for r in s.scalars(select(Recommendation).where(Recommendation.id.in_(bulk)))}
        for rec_id in dict.fromkeys(bulk):
            if rec_id == own:
                assert rows[rec_id].status == "pending"
            else:
                assert (rows[rec_id].status, rows[rec_id].decided_by) == ("rejected", "dave")
        watched.errors[:] = [e for e in watched.errors if not re.search(rf"(403 POST .*/{own}/reject|status of 403)", e)]
        watched.assert_no_errors()
    finally:
        context.close()
