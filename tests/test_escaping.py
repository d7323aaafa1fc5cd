"""Issue #18: stored text is escaped wherever it is rendered. `<script>` and `<img onerror=...>`
payloads are stored in account names, activity names and recommendation rationales of the demo
company, then read back through each renderer: the HTML (and Markdown) report as the API serves
it, the web UI in a real headless Chromium (the API's JSON rendered by api/static), and the Slack
blocks of a recommendation and of an answer quoting a name (mrkdwn: `&`, `<`, `>` escaped).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from web_harness import DESKTOP, Watched, launch_chromium, serve

from api.app import create_app
from api.auth import create_key
from api.slack.render import recommendation_blocks, to_mrkdwn
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from crm.models import Account, ValueChainActivity
from tools.churn.scoring import churn_risk
from tools.recommendations import propose_recommendation
from tools.review import get_recommendation

pytestmark = pytest.mark.slow

# each sets window.__xss if it ever runs as markup in the UI
SCRIPT = "<script>window.__xss='script'</script>"
IMG = "<img src=x onerror=\"window.__xss='img'\">"
PAYLOADS = (SCRIPT, IMG)
RAW_MARKUP = ("<script>window", "<img src=x")  # as markup; inside text, `onerror="..."` is harmless


@dataclass
class Stored:
    url: str
    sessions: sessionmaker[Session]
    key: str  # an approver who did not file the recommendations
    account: str  # the first account on the at-risk list, named with SCRIPT
    account_name: str
    activity_name: str  # an activity named with SCRIPT
    recs: list[int]  # filed with payload rationales: one for the account, one for an activity
    rationales: list[str]


@pytest.fixture(scope="module")
def stored(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    tmp = tmp_path_factory.mktemp("escaping")
    shutil.copy(demo_db, tmp / "esc.db")
    url = f"sqlite:///{tmp / 'esc.db'}"
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        key = create_key(session=s, name="carol", role="approver").key
        ranked = [a.account_id for a in churn_risk(session=s, limit=10, order_by="arr_at_risk").accounts]
        for i, account_id in enumerate(ranked):  # every account the at-risk page lists first
            s.execute(update(Account).where(Account.id == account_id).values(name=f"Acme {i} {PAYLOADS[i % 2]} & Co"))
        activities = s.scalars(select(ValueChainActivity)).all()
        for i, act in enumerate(activities):
            act.name = f"{act.name} {PAYLOADS[(i + 1) % 2]} & more"
        rationales = [f"Churn is high {IMG} & renewal {SCRIPT} is close.",
                      f"Cost over value {SCRIPT} & {IMG} for this activity."]
        recs = [
            propose_recommendation(session=s, account_id=ranked[0], action="exec_sponsor_call",
                                   rationale=rationales[0], evidence={"churn_probability": 0.6},
                                   created_by="alice", holdout_share=0.0).id,
            propose_recommendation(session=s, activity_id=activities[0].id, action="automate",
                                   rationale=rationales[1], evidence={"net_benefit": 1000.0},
                                   created_by="alice", holdout_share=0.0).id,
        ]
        s.commit()
        account_name = s.get_one(Account, ranked[0]).name
        activity_name = activities[1].name
    settings = Settings(
        database_url=url, data_dir=tmp / "data", chroma_path=tmp / "chroma", chroma_host=None,
        llm_base_url=None, llm_autostart=False, playbook_path=None, recommendation_ttl_days=30,
    )
    with serve(create_app(settings)) as base:
        yield Stored(base, sessions, key, ranked[0], account_name, activity_name, recs, rationales)
    engine.dispose()


def _get(stored: Stored, path: str) -> Any:
    import httpx

    resp = httpx.get(stored.url + path, headers={"Authorization": f"Bearer {stored.key}"}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp


def test_the_served_reports_show_names_as_text(stored: Stored) -> None:
    html = _get(stored, "/api/v1/analysis?format=html").text
    md = _get(stored, "/api/v1/analysis?format=md").text
    for text in (html, md):
        for raw in RAW_MARKUP:
            assert raw not in text, raw
    assert re.search(r"<[^>]*\son(error|load)\s*=", html) is None  # no event handler attribute in any tag
    assert "&lt;script&gt;window.__xss=" in html and "&lt;img src=x onerror=" in html
    assert "&amp; more" in html and "&lt;script&gt;" in md
    # the escaped payloads are the stored names, shown whole as text (the report names activities;
    # accounts appear in it only as counts and sums)
    assert html_escape(stored.activity_name, quote=False) in html


def test_the_api_returns_the_stored_text_unchanged(stored: Stored) -> None:
    """JSON is data, not markup: the renderer escapes (a client sees what was stored, not `&lt;`)."""
    rec = _get(stored, f"/api/v1/recommendations/{stored.recs[0]}").json()
    assert rec["rationale"] == stored.rationales[0]
    account = _get(stored, f"/api/v1/tools/accounts/{stored.account}").json()
    assert account["name"] == stored.account_name


def mrkdwn_escaped(text: str) -> str:
    """Slack's escaping: exactly `&`, `<`, `>` (quotes stay)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_slack_blocks_escape_rationales_and_names(stored: Stored) -> None:
    with stored.sessions() as s:
        views = [get_recommendation(session=s, recommendation_id=rid) for rid in stored.recs]
    for view, rationale in zip(views, stored.rationales, strict=True):
        text = recommendation_blocks(view)[0]["text"]["text"]
        body = re.sub(r"^>", "", text, flags=re.MULTILINE)  # the product's own quote marker
        assert "<" not in body and ">" not in body, text
        escaped = rationale.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in text
    answer = to_mrkdwn(f"**{stored.account_name}** is the account most at risk.")
    assert "<" not in answer and ">" not in answer, answer
    assert mrkdwn_escaped(stored.account_name) in answer


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as b:
        yield b


INJECTED = """() => ({
  xss: window.__xss || null,
  scripts: [...document.querySelectorAll('script')].filter((e) => !e.src).length,
  handlers: [...document.querySelectorAll('*')].filter((e) => e.hasAttribute('onerror') || e.hasAttribute('onload')).length,
  images: [...document.querySelectorAll('img')].filter((e) => e.getAttribute('src') === 'x').length,
})"""


def test_the_web_ui_shows_payloads_as_text_and_runs_none(stored: Stored, browser: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport=DESKTOP)
    watched = Watched.open(context)
    page = watched.page
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:  # an alert() would mean a payload ran
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        page.goto(f"{stored.url}/#/review/{stored.recs[0]}")
        expect(page.locator("#api-key")).to_be_visible()
        page.fill("#api-key", stored.key)
        page.click("#signin-button")
        expect(page.locator("#whoami")).not_to_be_empty()

        expect(page.get_by_text(stored.rationales[0], exact=False).first).to_be_visible()
        page.goto(f"{stored.url}/#/review/{stored.recs[1]}")
        expect(page.get_by_text(stored.rationales[1], exact=False).first).to_be_visible()

        page.goto(f"{stored.url}/#/accounts")
        expect(page.locator("#risk-table tbody tr[data-account]").first).to_be_visible()
        assert stored.account_name in page.locator("#risk-table").inner_text()

        page.goto(f"{stored.url}/#/account/{stored.account}")
        expect(page.get_by_role("heading", name=f"{stored.account_name} ({stored.account})")).to_be_visible()

        page.goto(f"{stored.url}/#/value-chain")
        expect(page.locator("#vc-table tbody tr").first).to_be_visible()
        assert stored.activity_name in page.locator("#vc-table").inner_text()
        assert stored.activity_name in page.locator(".chart-key").inner_text()

        found = page.evaluate(INJECTED)
        assert found == {"xss": None, "scripts": 0, "handlers": 0, "images": 0}, found
        assert dialogs == []
    finally:
        context.close()
