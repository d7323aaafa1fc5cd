"""The pipeline and service-queue pages in a real headless Chromium (Playwright) against a real
uvicorn server on the 120-account demo company (SQLite, deal model trained), at a desktop
(1366×900) and a phone (390×844) width.

What the pages show is compared with what the API answers for the same arguments: the same deals
and tickets in the same order, and their figures as the page formats them (`money` and `pct` of
app.js, ported below); a deal opened shows deal_score's win chance and its drivers in words. The
pages must fit the window and log no console error or failed request.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_web_pages import assert_fits
from web_harness import ARTIFACTS, DESKTOP, PHONE, Watched, launch_chromium, serve

from api.app import create_app
from api.auth import create_key
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tools.deals.model import train_deal_model

SIZES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]

pytestmark = pytest.mark.slow


def fixed(x: float, digits: int) -> str:
    """JavaScript's `x.toFixed(digits)` (ties away from zero on the exact binary value)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def money(x: float | None) -> str:
    """app.js `money` in US dollars: $19.3M, $2.10M, $893k, $9,861."""
    if x is None:
        return "—"
    a, sign = abs(x), "-" if x < 0 else ""
    if a >= 1e6:
        return f"{sign}${fixed(a / 1e6, 1 if a >= 1e7 else 2)}M"
    if a >= 1e4:
        return f"{sign}${fixed(a / 1e3, 0)}k"
    return f"{sign}${int(Decimal(a).quantize(Decimal(1), rounding=ROUND_HALF_UP)):,}"


def pct(x: float, digits: int = 0) -> str:
    return f"{fixed(x * 100, digits)}%"


@dataclass
class RevenueServer:
    url: str
    alice: str  # analyst
    victor: str  # viewer


@pytest.fixture(scope="module")
def server(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevenueServer]:
    tmp = tmp_path_factory.mktemp("webrevenue")
    shutil.copy(demo_db, tmp / "revenue.db")
    url = f"sqlite:///{tmp / 'revenue.db'}"
    engine = make_engine(url)
    with make_sessionmaker(engine)() as s:
        alice = create_key(session=s, name="alice", role="analyst").key
        victor = create_key(session=s, name="victor", role="viewer").key
        report = train_deal_model(s, now=dt.datetime(2026, 10, 1))
        s.commit()
    assert report.trained, report.reason
    settings = Settings(
        database_url=url, data_dir=tmp / "data", chroma_path=tmp / "chroma", chroma_host=None,
        llm_base_url=None, llm_autostart=False, playbook_path=None,
    )  # type: ignore[call-arg]
    with serve(create_app(settings)) as base:
        yield RevenueServer(base, alice, victor)
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as b:
        yield b


def call(server: RevenueServer, tool: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/v1/tools/call/{tool}", json=body, timeout=60,
                   headers={"Authorization": f"Bearer {server.alice}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def open_page(server: RevenueServer, browser: Any, size: dict[str, int], key: str, hash_: str) -> tuple[Any, Watched]:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport=size)
    watched = Watched.open(context)
    watched.page.goto(f"{server.url}/{hash_}")
    expect(watched.page.locator("#api-key")).to_be_visible()
    watched.page.fill("#api-key", key)
    watched.page.click("#signin-button")
    expect(watched.page.locator("#whoami")).not_to_be_empty()
    return context, watched


def cell(row: Any, label: str) -> str:
    return str(row.locator(f"td[data-label='{label}']").inner_text()).strip()


@pytest.mark.parametrize("size", SIZES)
def test_the_pipeline_page_shows_the_apis_figures_and_a_deals_drivers(
    server: RevenueServer, browser: Any, size: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    want = call(server, "pipeline_health", group_by="team", limit=25)  # the page's defaults
    assert want["inputs"]["probability_source"] == "deal_model"
    assert len(want["deals_at_risk"]) >= 3, "the demo company has deals at risk"
    context, watched = open_page(server, browser, size, server.alice, "#/pipeline")
    page = watched.page
    try:
        rows = page.locator("#pipe-risk tbody tr[data-deal]")
        expect(rows.first).to_be_visible()
        # the same deals, in the API's order (weighted amount at risk, descending)
        shown = [rows.nth(i).get_attribute("data-deal") for i in range(rows.count())]
        assert shown == [d["opportunity_id"] for d in want["deals_at_risk"]]
        for i, d in enumerate(want["deals_at_risk"][:5]):
            row = rows.nth(i)
            assert cell(row, "Win chance") == pct(d["probability"])
            assert cell(row, "Weighted") == money(d["weighted_amount"])
            assert cell(row, "Amount").startswith(money(d["amount"]))
            assert cell(row, "Stage") == d["stage"].replace("_", " ")
            assert row.locator("td.why-cell").inner_text().strip() == d["why"]
        # the groups and the total, with their figures
        groups = page.locator("#pipe-groups tbody tr")
        assert [groups.nth(i).get_attribute("data-group") for i in range(groups.count())] == \
            [g["key"] for g in want["groups"]] + ["all"]
        for i, g in enumerate([*want["groups"], want["total"]]):
            cells = groups.nth(i).locator("td").all_inner_texts()
            assert cells[1] == str(g["open_deals"])
            assert cells[2:4] == [money(g["open_pipeline"]), money(g["weighted_pipeline"])]
            assert cells[6] == money(g["expected_won_amount"])
            assert cells[8].startswith(f"{fixed(g['coverage'], 2)}×")
            assert ("below goal" in cells[8]) is bool(g["below_coverage_goal"])
        t = want["total"]
        expect(page.locator("#pipe-summary")).to_contain_text(money(t["open_pipeline"]))
        expect(page.locator("#pipe-summary")).to_contain_text(f"{t['open_deals']} open deals")
        expect(page.locator("#pipe-explanation")).to_have_text(want["explanation"])

        # a deal opened: deal_score's win chance and its drivers in words, in the tool's order
        first = want["deals_at_risk"][0]["opportunity_id"]
        score = call(server, "deal_score", opportunity_id=first)
        assert score["source"] == "deal_model" and score["drivers"]
        rows.first.get_by_role("button", name=f"Win chance and reasons of deal {first}").click()
        detail = page.locator(f"#deal-{first}")
        expect(detail.locator(".deal-chance")).to_contain_text(f"Win chance {pct(score['probability'])}")
        drivers = detail.locator(".deal-drivers li")
        expect(drivers).to_have_count(len(score["drivers"]))
        for i, d in enumerate(score["drivers"]):
            text = drivers.nth(i).inner_text()
            assert d["phrase"] in text and ("raises it" if d["direction"] == "raises" else "lowers it") in text, text
        assert "_" not in detail.inner_text()  # words, not feature names
        assert_fits(watched, "the pipeline page with a deal open")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"revenue-pipeline-{'phone' if size is PHONE else 'desktop'}.png"),
                        full_page=True)

        # grouped by owner and filtered to one team: the API's groups for the same arguments
        team = want["groups"][0]["key"]
        owners = call(server, "pipeline_health", group_by="owner", limit=25, filters={"team": team})
        page.fill("#pipe-filter", f"team={team}")
        page.select_option("#pipe-group", "owner")
        expect(page.locator("#pipe-group-head")).to_have_text("Owner")
        expect(groups).to_have_count(len(owners["groups"]) + 1)
        assert [groups.nth(i).get_attribute("data-group") for i in range(groups.count())] == \
            [g["key"] for g in owners["groups"]] + ["all"]
        expect(rows).to_have_count(len(owners["deals_at_risk"]))
        assert all(team in rows.nth(i).locator("td[data-label='Owner · team']").inner_text() for i in range(rows.count()))
        watched.assert_no_errors()
    finally:
        context.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_service_queue_page_shows_the_apis_ranking_and_reasons(
    server: RevenueServer, browser: Any, size: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    want = call(server, "service_queue", limit=25)  # the page's default
    assert len(want["items"]) >= 10, "the demo company has open tickets"
    context, watched = open_page(server, browser, size, server.alice, "#/service")
    page = watched.page
    try:
        rows = page.locator("#svc-table tbody tr[data-ticket]")
        expect(rows.first).to_be_visible()
        # the same tickets in the same order: p_sla_breach × CLV, descending
        assert [int(rows.nth(i).get_attribute("data-ticket")) for i in range(rows.count())] == \
            [q["ticket_id"] for q in want["items"]]
        scores = [q["score"] for q in want["items"]]
        assert scores == sorted(scores, reverse=True)
        for i, q in enumerate(want["items"][:10]):
            row = rows.nth(i)
            assert cell(row, "CLV") == money(q["clv"])
            assert cell(row, "Score") == money(q["score"])
            assert cell(row, "Chance of breach") == pct(q["p_sla_breach"])
            assert cell(row, "Deadline").startswith(q["deadline"][:16].replace("T", " "))
            left = cell(row, "Time left")
            assert left.endswith("overdue") if q["hours_left"] < 0 else left.endswith("left"), left
            assert q["account_id"] in cell(row, "Account") and q["account_name"] in cell(row, "Account")
            assert q["why"] in row.locator("td.why-cell").inner_text()
        summary = page.locator("#svc-summary")
        expect(summary).to_contain_text(money(want["clv_exposed"]))
        expect(summary).to_contain_text(str(want["breached"]))
        expect(page.locator("#svc-explanation")).to_have_text(want["explanation"])
        assert_fits(watched, "the service queue")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"revenue-service-{'phone' if size is PHONE else 'desktop'}.png"),
                        full_page=True)

        # filters: one priority, then a segment too; the API's tickets for the same filters
        urgent = call(server, "service_queue", limit=25, filters={"priority": "urgent"})
        page.select_option("#svc-priority", "urgent")
        expect(rows).to_have_count(len(urgent["items"]))
        assert [int(rows.nth(i).get_attribute("data-ticket")) for i in range(rows.count())] == \
            [q["ticket_id"] for q in urgent["items"]]
        assert all(cell(rows.nth(i), "Priority · category").startswith("urgent") for i in range(rows.count()))
        page.select_option("#svc-priority", "")
        both = call(server, "service_queue", limit=10, filters={"segment": "Enterprise"})
        page.select_option("#svc-limit", "10")
        page.fill("#svc-filter", "segment=Enterprise")
        page.press("#svc-filter", "Enter")
        expect(page.locator("#svc-summary")).to_contain_text(f"{both['open_tickets']}")
        expect(rows).to_have_count(len(both["items"]))
        assert [int(rows.nth(i).get_attribute("data-ticket")) for i in range(rows.count())] == \
            [q["ticket_id"] for q in both["items"]]
        # a mistake in the filter is the tool's message, listing what is valid
        page.fill("#svc-filter", "colour=blue")
        page.press("#svc-filter", "Enter")
        expect(page.locator("#svc-summary .error-box")).to_contain_text("colour")
        watched.errors[:] = [e for e in watched.errors if "422" not in e]
        watched.assert_no_errors()
    finally:
        context.close()


def test_a_viewer_is_told_the_pages_are_for_analysts(server: RevenueServer, browser: Any) -> None:
    from playwright.sync_api import expect

    context, watched = open_page(server, browser, PHONE, server.victor, "#/pipeline")
    page = watched.page
    try:
        expect(page.locator("#pipe-summary")).to_contain_text("for analysts")
        page.goto(f"{server.url}/#/service")
        expect(page.locator("#svc-summary")).to_contain_text("for analysts")
        expect(page.locator("#svc-table tbody tr")).to_have_count(0)
        watched.assert_no_errors()  # no refused tool call was made
    finally:
        context.close()
