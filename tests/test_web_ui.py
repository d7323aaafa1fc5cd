"""The web UI end to end in a real headless Chromium (Playwright) against a real uvicorn server.

The server runs `create_app` on a small demo company (120 accounts) with a Copilot on the
scripted fake chat model and a two-document knowledge store. One journey: sign in, ask a
question and watch the streamed answer with its tool calls and a citation, approve (as a second approver) the
recommendation the agent filed in the review queue, then the value-chain chart, the at-risk
accounts and the analysis report. Screenshots go to tests/artifacts/ (gitignored).

Also here: `valuechain init`'s first admin key and `valuechain serve`'s sign-in hint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_fakes import Script, ScriptedChatModel, call, say
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web_harness import launch_chromium, serve

from agent.copilot import Copilot
from api.app import create_app
from api.auth import authenticate, create_key
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from crm.demo.generator import generate_demo
from crm.migrate import upgrade
from crm.models import Conversation, Recommendation, User

ARTIFACTS = Path(__file__).parent / "artifacts"
CORPUS = Path(__file__).resolve().parent.parent / "knowledge" / "corpus"
CITED = "margin-leak-and-value-cost-index"
QUESTION = "Which activities leak the most margin, and what should we do about our riskiest account?"


@dataclass
class Served:
    url: str
    sessions: sessionmaker[Session]
    approver_key: str
    second_approver_key: str  # dave: decides what carol's run filed (nobody decides their own request)
    viewer_key: str
    account: str
    action: str
    script: Script


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from knowledge.ingest import ingest_documents, load_documents
    from knowledge.store import KnowledgeStore
    from tools.nba import next_best_action
    from tools.ranking import rank

    tmp = tmp_path_factory.mktemp("webui")
    url = f"sqlite:///{tmp / 'ui.db'}"
    engine = make_engine(url)
    upgrade(engine)
    generate_demo(engine, accounts=120, seed=7)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        approver = create_key(session=s, name="carol", role="approver").key
        second = create_key(session=s, name="dave", role="approver").key
        viewer = create_key(session=s, name="victor", role="viewer").key
        account = rank(session=s, entity="accounts", metric="churn_probability", limit=1).items[0].id
        action = next_best_action(session=s, account_id=account).actions[0].action
        s.commit()
    store = KnowledgeStore.at_path(tmp / "chroma")
    files = [CORPUS / f"{CITED}.md", CORPUS / "cost-value-quadrants.md"]
    ingest_documents(load_documents(files, base=CORPUS), store=store)

    settings = Settings(
        database_url=url, data_dir=tmp / "data", chroma_path=tmp / "chroma", chroma_host=None,
        llm_base_url=None, llm_autostart=False, playbook_path=None, recommendation_ttl_days=30,
    )  # type: ignore[call-arg]
    app = create_app(settings, knowledge_store=store)
    try:
        with serve(app) as base:  # the lifespan sets app.state.llm: the copilot goes in once it runs
            script = Script([
                call("score_activities"),
                call("rank", entity="accounts", metric="churn_probability", limit=1),
                call("next_best_action", account_id=account),
                call("propose_recommendation", account_id=account, action=action,
                     rationale="Highest expected value for the riskiest account."),
                # last: once knowledge passages are in, the agent answers from them
                call("search_knowledge", query="what does margin leak measure"),
                say(f"**Margin leak** is cost not matched by value [{CITED}].\n\n"
                    f"- {account} is the riskiest account\n- I filed `{action}` for approval."),
            ])
            app.state.llm.copilot = Copilot(
                sessions=app.state.sessionmaker,
                knowledge=lambda: store,
                router=ScriptedChatModel(script=script, label="router"),
                answerer=ScriptedChatModel(script=script, label="answerer"),
                model_name="scripted",
            )
            yield Served(base, sessions, approver, second, viewer, account, action, script)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as browser:
        yield browser


@pytest.mark.slow
def test_sign_in_chat_review_and_value_chain_in_a_real_browser(served: Served, browser: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # --- sign in: a wrong key is refused with a message, the right one opens the app
    page.goto(served.url + "/")
    expect(page.locator("#signin-form")).to_be_visible()
    page.fill("#api-key", "vck_00000000_" + "x" * 43)
    page.click("#signin-button")
    expect(page.locator("#signin-error")).to_contain_text("not accepted")
    errors.clear()  # the browser logs the refused request (401) as a console error
    page.fill("#api-key", served.approver_key)
    page.click("#signin-button")
    expect(page.locator("#whoami")).to_have_text("carol · approver")
    expect(page.locator("#model-status")).to_have_text("model ready")

    # --- chat: the streamed events show each tool call, then the answer with a citation
    page.fill("#chat-input", QUESTION)
    page.press("#chat-input", "Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".meta")).to_contain_text("5 tool calls")
    expect(answer.locator(".answer")).to_contain_text(f"{served.account} is the riskiest account")
    expect(answer.locator(".answer strong")).to_have_text("Margin leak")
    tools = answer.locator("details.tool-call")
    expect(tools).to_have_count(5)
    expect(tools.locator(".tool-name")).to_have_text(
        ["score_activities", "rank", "next_best_action", "propose_recommendation", "search_knowledge"]
    )
    expect(tools.locator(".tool-status")).to_have_text(["ok"] * 5)
    first = tools.first
    first.locator("summary").click()
    expect(first.locator(".tool-result")).to_contain_text("total margin leak")  # a table, not JSON
    first.get_by_role("button", name="Show JSON").click()
    expect(first.locator(".tool-json")).to_contain_text('"total_margin_leak"')
    answer.locator("button.citation").click()
    expect(page.locator("#citation-panel")).to_be_visible()
    expect(page.locator("#citation-body .chunk").first).to_contain_text(CITED)
    expect(page.locator("#citation-body .chunk-text").first).not_to_be_empty()
    expect(page.locator("#conversation-list li a").first).to_have_text(QUESTION)
    page.screenshot(path=str(ARTIFACTS / "ui-chat.png"))
    page.click("#citation-close")

    with served.sessions() as s:
        conv = s.scalars(select(Conversation)).one()
        rec = s.scalars(select(Recommendation)).one()
        carol = s.scalar(select(User.id).where(User.name == "carol"))
    assert (conv.channel, conv.user_id) == ("web", carol)
    assert (rec.status, rec.account_id, rec.action) == ("pending", served.account, served.action)

    # --- review queue: the filed recommendation, its evidence and audit trail; another approver
    # (dave) approves it: carol asked the run that filed it, so carol may not decide it
    expect(page.locator("#pending-count")).to_have_text("1")
    page.click("#signout")
    page.fill("#api-key", served.second_approver_key)
    page.click("#signin-button")
    expect(page.locator("#whoami")).to_have_text("dave · approver")
    page.click("#nav a[data-page=review]")
    row = page.locator(f"#review-table tbody tr[data-id='{rec.id}']")
    expect(row).to_contain_text(served.account)
    row.click()
    detail = page.locator("#review-detail")
    expect(detail.locator("h2")).to_contain_text(f"#{rec.id}")
    expect(detail.locator(".evidence-facts dt").first).to_be_visible()  # formatted facts, the JSON folded
    expect(detail).to_contain_text("v1")
    expect(detail.locator("table")).to_contain_text("proposed")
    page.select_option("#decision-reason", "agree")
    page.fill("#decision-note", "Exec sponsor call booked for Monday.")
    expect(page.locator("#decision-submit")).to_have_text("Approve v1")
    page.click("#decision-submit")
    expect(page.locator("#toast")).to_contain_text(f"#{rec.id} approved by dave")
    expect(detail.locator(".status-badge")).to_have_text("approved")
    expect(detail.locator("table")).to_contain_text("Exec sponsor call booked for Monday.")
    expect(page.locator("#pending-count")).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "ui-review.png"))
    with served.sessions() as s:
        decided = s.get(Recommendation, rec.id)
        assert decided is not None
        assert (decided.status, decided.decided_by, decided.version) == ("approved", "dave", 1)

    # --- value chain: one point per activity in the four quadrants, margin-leak bars
    page.click("#nav a[data-page=value-chain]")
    expect(page.locator("#vc-scatter svg.scatter")).to_be_visible()
    n = int(page.locator("#vc-summary .stat").first.locator(".muted").last.inner_text().split()[0])
    expect(page.locator("#vc-scatter .point")).to_have_count(n)
    expect(page.locator("#vc-scatter .legend li")).to_have_text(
        ["Invest & scale", "Optimize", "Eliminate / restructure", "Maintain"]
    )
    expect(page.locator("#vc-scatter .chart-key li")).to_have_count(n)
    assert page.locator("#vc-leak .hbar").count() >= 1
    expect(page.locator("#vc-table tbody tr")).to_have_count(n)
    page.screenshot(path=str(ARTIFACTS / "ui-value-chain.png"), full_page=True)

    # --- at-risk accounts with drivers, and a next best action on demand
    page.click("#nav a[data-page=accounts]")
    page.select_option("#risk-order", "probability")  # default: by ARR at risk
    page.click("#risk-refresh")
    first_risk = page.locator("#risk-table tbody tr[data-account]").first
    expect(first_risk).to_contain_text(served.account)
    assert first_risk.locator(".drivers li").count() >= 1
    first_risk.get_by_role("button", name="Next best action").click()
    # the action just approved is in its cool-down, so another one is suggested (or none)
    nba = page.locator("#risk-table .nba-row").first
    expect(nba).to_be_visible()
    expect(nba).to_contain_text(re.compile("worth .* for a cost of|No playbook action is worth doing"))
    page.screenshot(path=str(ARTIFACTS / "ui-accounts.png"))

    # --- the analysis report, rendered by the same code as `valuechain analysis report`
    page.click("#nav a[data-page=report]")
    frame = page.frame_locator("#report-frame")
    expect(frame.locator("h1").first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "ui-report.png"))

    assert errors == []
    context.close()


@pytest.mark.slow
def test_a_viewer_sees_the_queue_but_cannot_decide_or_chat(served: Served, browser: Any) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    page = browser.new_page()
    page.goto(served.url + "/#/review")
    page.fill("#api-key", served.viewer_key)
    page.click("#signin-button")
    expect(page.locator("#whoami")).to_have_text("victor · viewer")
    page.select_option("#review-status", "")
    page.locator("#review-table tbody tr[data-id]").first.click()
    expect(page.locator("#review-detail h2")).to_be_visible()
    expect(page.locator("#decision-form")).to_have_count(0)
    page.click("#nav a[data-page=chat]")
    page.fill("#chat-input", "hello")
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg.assistant .error-box")).to_contain_text("may not analyze")
    page.click("#signout")
    expect(page.locator("#signin-form")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.close()


def test_init_prints_a_first_admin_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from valuechain.cli.setup import _first_admin_key

    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    settings = Settings(database_url=str(engine.url), data_dir=tmp_path)  # type: ignore[call-arg]

    _first_admin_key(sessions, Settings(database_url=str(engine.url), data_dir=tmp_path,  # type: ignore[call-arg]
                                         environment="production"))
    assert "no API key yet" in capsys.readouterr().out
    _first_admin_key(sessions, settings)
    out = capsys.readouterr().out
    key = next(w for w in out.split() if w.startswith("vck_") and len(w) > 20)
    with sessions() as s:
        principal = authenticate(s, key)
    assert principal is not None and (principal.name, principal.role) == ("admin", "admin")
    _first_admin_key(sessions, settings)  # a key exists: nothing new, nothing printed
    assert "vck_" not in capsys.readouterr().out
    engine.dispose()


def test_serve_tells_how_to_sign_in(tmp_path: Path) -> None:
    from valuechain.cli.serve import _key_hint, _llm_hint

    url = f"sqlite:///{tmp_path / 's.db'}"
    settings = Settings(database_url=url, data_dir=tmp_path, llm_autostart=False)  # type: ignore[call-arg]
    assert "valuechain init" in _key_hint(settings)
    engine = make_engine(url)
    upgrade(engine)
    assert "no API key exists yet" in _key_hint(settings)
    with make_sessionmaker(engine)() as s:
        create_key(session=s, name="ann", role="analyst")
        s.commit()
    assert "sign in with an API key" in _key_hint(settings)
    assert "LLM_AUTOSTART=false" in _llm_hint(settings)
    engine.dispose()
