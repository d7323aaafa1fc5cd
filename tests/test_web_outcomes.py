"""The outcomes page (#/outcomes) and the follow-up controls of the review page in a real headless
Chromium (Playwright) against a real uvicorn server, on a 600-account demo company generated with
its simulated interventions (so there are executed, rejected, abandoned and held-out units with
outcomes, and the stated true effects), at a desktop and a phone width.

What the charts draw is checked against GET /api/v1/outcomes for the same filters: each drawn
mark carries the number it was drawn from (data-value, data-low, data-high), those must equal
the API's, and the bar lengths must be those numbers on the chart's scale; the table's cells are
the API's figures as the page formats them. The follow-up controls take an approved
recommendation through start → executed, each step an audit event, and abandon another with a
reason; a viewer gets no controls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_web_pages import assert_fits
from web_harness import ARTIFACTS, DESKTOP, PHONE, Watched, launch_chromium, serve

from api.app import create_app
from api.auth import create_key
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from crm.demo import generate_demo
from crm.demo.interventions import TRUE_P_SUCCESS, TRUE_UPLIFT
from crm.migrate import upgrade
from crm.models import Account
from tools.recommendations import propose_recommendation
from tools.review import decide_recommendation

SIZES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]

pytestmark = pytest.mark.slow


def fixed(x: float, digits: int) -> str:
    """JavaScript's `x.toFixed(digits)` (ties away from zero on the exact binary value)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{fixed(x * 100, digits)}%"


def signed(x: float) -> str:
    return f"{'+' if x >= 0 else ''}{fixed(x, 3)}"


def interval(iv: dict[str, float] | None) -> str:
    return "—" if iv is None else f"{signed(iv['estimate'])} [{signed(iv['low'])}, {signed(iv['high'])}]"


def rate(arm: dict[str, Any]) -> str:
    return f"{arm['events']}/{arm['n']} = {pct(arm['rate']['estimate'])}" if arm["rate"] else f"0/{arm['n']}"


@dataclass
class OutcomesServer:
    url: str
    keys: dict[str, str]  # carol approver, alice analyst, victor viewer
    approved: list[int]  # three approved recommendations with no follow-up yet


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcomesServer]:
    tmp = tmp_path_factory.mktemp("weboutcomes")
    url = f"sqlite:///{tmp / 'outcomes.db'}"
    engine = make_engine(url)
    upgrade(engine)
    generate_demo(engine, accounts=600, seed=7, interventions=True)
    now = dt.datetime(2026, 9, 30, 12, 0)
    with make_sessionmaker(engine)() as s:
        keys = {name: create_key(session=s, name=name, role=role).key
                for name, role in (("carol", "approver"), ("alice", "analyst"), ("victor", "viewer"))}
        approved = []
        alive = s.scalars(select(Account.id).where(Account.churned_at.is_(None)).order_by(Account.id)).all()
        for account in alive[:3]:
            rec = propose_recommendation(
                session=s, account_id=account, action="health_check_qbr", rationale="Quarterly review due.",
                evidence={"test": True}, expected_value=500.0, now=now, holdout_share=0.0,
            )
            decide_recommendation(session=s, recommendation_id=rec.id, decision="approved", actor="carol",
                                  role="approver", expected_version=1, now=now)
            approved.append(rec.id)
        s.commit()
    settings = Settings(
        database_url=url, data_dir=tmp / "data", chroma_path=tmp / "chroma", chroma_host=None,
        llm_base_url=None, llm_autostart=False, playbook_path=None,
    )
    with serve(create_app(settings)) as base:
        yield OutcomesServer(base, keys, approved)
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as b:
        yield b


def get(server: OutcomesServer, path: str, who: str = "carol", **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{server.url}{path}", params=params, timeout=60,
                  headers={"Authorization": f"Bearer {server.keys[who]}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def open_page(server: OutcomesServer, browser: Any, size: dict[str, int], who: str, hash_: str) -> tuple[Any, Watched]:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport=size)
    watched = Watched.open(context)
    watched.page.goto(f"{server.url}/{hash_}")
    expect(watched.page.locator("#api-key")).to_be_visible()
    watched.page.fill("#api-key", server.keys[who])
    watched.page.click("#signin-button")
    expect(watched.page.locator("#whoami")).not_to_be_empty()
    return context, watched


def active(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in report["actions"] if a["proposals"] or a["treated"]["n"] or a["holdout"]["n"]
            or a["treated"]["pending"] or a["holdout"]["pending"]]


def num(node: Any, name: str) -> float:
    return float(node.get_attribute(name))


def check_page_against(page: Any, report: dict[str, Any]) -> None:
    """Every chart mark and table cell of the page equals the report's numbers."""
    from playwright.sync_api import expect

    actions = active(report)
    rows = page.locator("#out-actions tbody tr")
    expect(rows).to_have_count(len(actions))
    assert [rows.nth(i).get_attribute("data-action") for i in range(rows.count())] == [a["action"] for a in actions]
    chart = page.locator("#out-rate-chart")
    top = num(chart, "data-max")
    for i, a in enumerate(actions):
        row = rows.nth(i)

        def cell(label: str, row: Any = row) -> str:
            return str(row.locator(f"td[data-label='{label}']").inner_text()).strip()

        assert cell("Proposals") == str(a["proposals"])
        assert cell("Approval rate") == pct(a["approval_rate"])
        assert cell("Executed").startswith(str(a["executions"]))
        assert cell("Treated").startswith(rate(a["treated"]))
        assert cell("Holdout").startswith(rate(a["holdout"]))
        assert cell("Difference") == interval(a["difference"])
        assert cell("Estimated uplift") == ("—" if a["kind"] == "growth" else interval(a["uplift"]))
        assert cell("True effect") == ("—" if a["true_effect"] is None else f"{a['true_effect']:g}")
        assert cell("Learned").startswith(fixed(a["learned"]["learned"], 3))
        for code, count in a["rejection_reasons"].items():
            assert f"{code.replace('_', ' ')} {count}" in cell("Rejection reasons")
        # the rate chart: one bar and whisker per arm, drawn from the API's rate and Wilson interval
        for arm in ("treated", "holdout"):
            group = chart.locator(f"g[data-action='{a['action']}'][data-arm='{arm}']")
            assert int(group.get_attribute("data-n")) == a[arm]["n"]
            assert int(group.get_attribute("data-events")) == a[arm]["events"]
            if a[arm]["rate"] is None:
                expect(group.locator("rect")).to_have_count(0)
                continue
            bar, whisker = group.locator("rect.out-bar"), group.locator("line.out-whisker").first
            assert num(bar, "data-value") == pytest.approx(a[arm]["rate"]["estimate"], abs=1e-12)
            assert num(whisker, "data-low") == pytest.approx(a[arm]["rate"]["low"], abs=1e-12)
            assert num(whisker, "data-high") == pytest.approx(a[arm]["rate"]["high"], abs=1e-12)
            plot = 500 - 180  # the plot area's width in the chart's own units (outcomes.js OUT)
            assert num(bar, "width") == pytest.approx(plot * a[arm]["rate"]["estimate"] / top, abs=1e-6)
            assert pct(a[arm]["rate"]["estimate"]) in str(group.locator("text").text_content())
        # the effect chart: retention's uplift, growth's difference in win rate, with its interval, the
        # prior, the learned value and the true effect
        u = page.locator(f"#out-uplift-chart g[data-action='{a['action']}']")
        assert u.get_attribute("data-kind") == a["kind"]
        assert num(u.locator(".out-prior"), "data-value") == a["learned"]["prior"]
        assert num(u.locator(".out-learned"), "data-value") == pytest.approx(a["learned"]["learned"], abs=1e-12)
        effect = a["uplift"] if a["kind"] == "retention" else a["difference"]
        if effect is None:
            expect(u.locator(".out-estimate")).to_have_count(0)
        else:
            assert num(u.locator(".out-estimate"), "data-value") == pytest.approx(effect["estimate"], abs=1e-12)
            assert num(u.locator(".out-interval"), "data-low") == pytest.approx(effect["low"], abs=1e-12)
            assert num(u.locator(".out-interval"), "data-high") == pytest.approx(effect["high"], abs=1e-12)
        if a["true_effect"] is None:
            expect(u.locator(".out-true")).to_have_count(0)
        else:
            assert num(u.locator(".out-true"), "data-value") == a["true_effect"]


@pytest.mark.parametrize("size", SIZES)
def test_the_outcomes_page_draws_the_apis_numbers_with_the_true_effects(
    server: OutcomesServer, browser: Any, size: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    want = get(server, "/api/v1/outcomes")
    assert want["demo_truth"] is True
    # the demo's stated effects are what the report shows beside its estimates
    assert {a["action"]: a["true_effect"] for a in want["actions"] if a["true_effect"] is not None} == \
        TRUE_UPLIFT | TRUE_P_SUCCESS
    assert {a["kind"] for a in active(want)} == {"retention", "growth"}
    assert sum(a["executions"] for a in want["actions"]) > 20 and sum(a["holdout"]["n"] for a in want["actions"]) > 3
    context, watched = open_page(server, browser, size, "victor", "#/outcomes")  # any role reads it
    page = watched.page
    try:
        expect(page.locator("#out-actions tbody tr").first).to_be_visible()
        check_page_against(page, want)
        summary = page.locator("#out-summary")
        expect(summary).to_contain_text(str(sum(a["proposals"] for a in want["actions"])))
        expect(summary).to_contain_text(str(sum(a["executions"] for a in want["actions"])))
        expect(page.locator("#out-method")).to_contain_text("demo company")
        expect(page.locator(".out-legend li")).to_have_count(6)
        assert_fits(watched, "the outcomes page")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"outcomes-{'phone' if size is PHONE else 'desktop'}.png"), full_page=True)

        # filters: a segment, then an approver and a period too; the API's report for the same filters
        enterprise = get(server, "/api/v1/outcomes", segment="Enterprise")
        assert active(enterprise) != active(want)
        page.select_option("#out-segment", "Enterprise")
        expect(page.locator("#out-actions tbody tr")).to_have_count(len(active(enterprise)))
        check_page_against(page, enterprise)
        page.select_option("#out-segment", "")
        narrowed = get(server, "/api/v1/outcomes", approver="Nora Quinn", period_from="2025-09-01",
                       period_to="2026-03-31")
        page.fill("#out-approver", "Nora Quinn")
        page.fill("#out-from", "2025-09-01")
        page.fill("#out-to", "2026-03-31")
        page.click("#out-refresh")
        expect(page.locator("#out-summary")).to_contain_text(
            str(sum(a["proposals"] for a in narrowed["actions"])))
        check_page_against(page, narrowed)
        # a bad period is the API's message, nothing else changes
        page.fill("#out-from", "2026-04-01")
        page.click("#out-refresh")
        expect(page.locator("#out-summary .error-box")).to_contain_text("after period_to")
        watched.errors[:] = [e for e in watched.errors if "422" not in e]
        watched.assert_no_errors()
    finally:
        context.close()


def test_the_follow_up_controls_start_execute_and_abandon(server: OutcomesServer, browser: Any) -> None:
    from playwright.sync_api import expect

    first, second, _ = server.approved
    context, watched = open_page(server, browser, DESKTOP, "carol", f"#/review/{first}")
    page = watched.page
    try:
        form = page.locator("#follow-up")
        expect(form).to_be_visible()
        page.fill("#follow-owner", "dana")
        page.fill("#follow-due", "2026-10-15")
        page.click("#follow-assign")
        expect(page.locator("#fact-owner")).to_have_text("dana")
        expect(page.locator("#fact-due")).to_have_text("2026-10-15")
        page.click("#follow-start")
        expect(page.locator("#review-detail h2 .status-badge")).to_have_text("in_progress")
        expect(page.locator("#follow-start")).to_have_count(0)  # started already
        page.click("#follow-execute")
        expect(page.locator("#review-detail h2 .status-badge")).to_have_text("executed")
        expect(page.locator("#follow-up")).to_have_count(0)  # finished: no more steps
        expect(page.locator("#fact-executed")).not_to_have_text("—")
        rec = get(server, f"/api/v1/recommendations/{first}")
        assert rec["status"] == "executed" and rec["owner"] == "dana" and rec["due_date"] == "2026-10-15"
        assert [e["event"] for e in rec["events"]][-3:] == ["assigned", "started", "executed"]
        assert all(e["actor"] == "carol" for e in rec["events"][-3:])

        page.goto(f"{server.url}/#/review/{second}")
        expect(page.locator("#follow-abandon")).to_be_visible()
        page.click("#follow-abandon")  # no reason: refused in the page, nothing sent
        expect(page.locator("#follow-up-message")).to_have_text("Abandoning needs a reason.")
        assert get(server, f"/api/v1/recommendations/{second}")["status"] == "approved"
        page.select_option("#follow-reason", "superseded")
        page.click("#follow-abandon")
        expect(page.locator("#review-detail h2 .status-badge")).to_have_text("abandoned")
        rec = get(server, f"/api/v1/recommendations/{second}")
        assert rec["events"][-1]["event"] == "abandoned" and rec["events"][-1]["reason_code"] == "superseded"
        watched.assert_no_errors()
    finally:
        context.close()


def test_a_viewer_sees_no_follow_up_steps(server: OutcomesServer, browser: Any) -> None:
    from playwright.sync_api import expect

    rid = server.approved[2]
    context, watched = open_page(server, browser, PHONE, "victor", f"#/review/{rid}")
    try:
        page = watched.page
        expect(page.locator("#follow-up")).to_contain_text("Its owner, an approver or an admin records the steps")
        for control in ("#follow-assign", "#follow-start", "#follow-execute", "#follow-abandon"):
            expect(page.locator(control)).to_have_count(0)
        assert get(server, f"/api/v1/recommendations/{rid}")["status"] == "approved"
        watched.assert_no_errors()
    finally:
        context.close()
