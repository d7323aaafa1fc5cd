"""A demo service with something on every page, for the page-wide browser checks and the
screenshots (`bench/ui_screenshots.py`).

`demo_ui(tmp)` runs `create_app` under uvicorn on the 120-account demo company (seed 7) with
pending recommendations in the review queue, a two-document knowledge store and a Copilot on
the scripted fake chat model; it asks one question through the API as carol (so the chat has a
conversation with tool calls, an answer with a citation and a Sources row), one as alice, and
leaves verdicts on both answers (so the run log shows them); the deal model is trained (so the
pipeline page shows a deal's drivers). No real model is reached.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from agent_fakes import Script, ScriptedChatModel, call, say
from sqlalchemy.orm import Session, sessionmaker
from web_harness import serve

CORPUS = Path(__file__).resolve().parent.parent / "knowledge" / "corpus"
CITED = "margin-leak-and-value-cost-index"
QUESTION = "Which accounts are most likely to churn, and what does margin leak measure?"
SECOND = "Which activities leak the most margin?"
NOTE = "Good, but say what to do first."


@dataclass
class DemoUI:
    url: str
    app: Any
    sessions: sessionmaker[Session]
    script: Script
    keys: dict[str, str]  # carol: approver, alice: analyst, victor: viewer
    top: str  # the account with the most ARR at risk
    filed: list[int]  # pending recommendations alice filed
    conversation_id: str  # carol's conversation
    run_id: str  # its run, rated by alice


def _seed(sessions: sessionmaker[Session]) -> tuple[dict[str, str], str, list[int], str]:
    from api.auth import create_key
    from tools.account_actions import propose_account_action
    from tools.churn.scoring import churn_risk
    from tools.deals.model import train_deal_model
    from tools.nba import next_best_action

    with sessions() as s:
        keys = {name: create_key(session=s, name=name, role=role).key
                for name, role in (("carol", "approver"), ("alice", "analyst"), ("victor", "viewer"))}
        ranked = churn_risk(session=s, limit=6, order_by="arr_at_risk").accounts
        filed = []
        for a in ranked[1:]:  # the top account keeps its actions for its page
            options = next_best_action(session=s, account_id=a.account_id).actions
            if options:
                filed.append(propose_account_action(session=s, account_id=a.account_id, action=options[0].action,
                                                    created_by="alice").id)
        top_probability = churn_risk(session=s, limit=1).accounts[0].account_id
        train_deal_model(s, now=dt.datetime(2026, 10, 1))  # the pipeline page shows a deal's drivers
        s.commit()
    return keys, ranked[0].account_id, filed, top_probability


@contextmanager
def demo_ui(tmp: Path, *, template: Path | None = None) -> Iterator[DemoUI]:
    """The demo service on a fresh database in `tmp` (a copy of `template` when given, else a
    new demo company); yields once the seeded questions are answered and rated."""
    from agent.copilot import Copilot
    from api.app import create_app
    from core.db import make_engine, make_sessionmaker
    from core.settings import Settings
    from crm.demo.generator import generate_demo
    from crm.migrate import upgrade
    from knowledge.ingest import ingest_documents, load_documents
    from knowledge.store import KnowledgeStore

    db = tmp / "ui.db"
    engine = make_engine(f"sqlite:///{db}")
    if template is not None:
        shutil.copy(template, db)
    else:
        upgrade(engine)
        generate_demo(engine, accounts=120, seed=7)
    sessions = make_sessionmaker(engine)
    keys, top, filed, riskiest = _seed(sessions)
    store = KnowledgeStore.at_path(tmp / "chroma")
    ingest_documents(load_documents([CORPUS / f"{CITED}.md", CORPUS / "cost-value-quadrants.md"], base=CORPUS),
                     store=store)
    settings = Settings(
        database_url=f"sqlite:///{db}", data_dir=tmp / "data", chroma_path=tmp / "chroma", chroma_host=None,
        llm_base_url=None, llm_autostart=False, playbook_path=None, recommendation_ttl_days=30,
    )  # type: ignore[call-arg]
    app = create_app(settings, knowledge_store=store)
    script = Script([
        call("rank", entity="accounts", metric="churn_probability", limit=5),
        call("search_knowledge", query="what does margin leak measure"),
        say(f"**{riskiest}** is the most likely to churn; the ranking above lists the top five.\n\n"
            f"Margin leak is the cost an activity carries beyond its share of customer value [{CITED}].\n\n"
            "- Start with the accounts in the high band\n- Then review the activities that leak the most"),
        call("score_activities"),
        say("**Procurement** and **Hosting** leak the most margin; see the value chain page for every activity."),
    ])
    try:
        with serve(app) as base:
            app.state.llm.copilot = Copilot(
                sessions=app.state.sessionmaker, knowledge=lambda: store,
                router=ScriptedChatModel(script=script, label="router"),
                answerer=ScriptedChatModel(script=script, label="answerer"), model_name="scripted")

            def ask(who: str, question: str) -> dict[str, Any]:
                r = httpx.post(base + "/api/v1/chat", json={"message": question}, timeout=120,
                               headers={"Authorization": f"Bearer {keys[who]}", "X-Client": "web"})
                r.raise_for_status()
                return dict(r.json())

            def rate(who: str, run_id: str, rating: str, note: str | None = None) -> None:
                httpx.put(f"{base}/api/v1/chat/runs/{run_id}/feedback", json={"rating": rating, "note": note},
                          headers={"Authorization": f"Bearer {keys[who]}"}, timeout=30).raise_for_status()

            first = ask("carol", QUESTION)
            second = ask("alice", SECOND)
            rate("alice", first["run_id"], "down", NOTE)
            rate("carol", first["run_id"], "up")
            rate("alice", second["run_id"], "up")
            yield DemoUI(base, app, sessions, script, keys, top, filed, first["conversation_id"], first["run_id"])
    finally:
        engine.dispose()


# the pages of the UI, in menu order (the sign-in form first); `show` opens each one with its details
PAGES = ("signin", "chat", "review", "value-chain", "accounts", "pipeline", "service", "outcomes", "account", "report",
         "runs")


def sign_in(page: Any, demo: DemoUI, who: str, hash_: str = "#/chat") -> None:
    """Sign `who` in on `page` (a fresh context) at `hash_`."""
    from playwright.sync_api import expect

    page.goto(f"{demo.url}/{hash_}")
    expect(page.locator("#api-key")).to_be_visible()
    page.fill("#api-key", demo.keys[who])
    page.click("#signin-button")
    expect(page.locator("#whoami")).to_contain_text(who)


def show(page: Any, demo: DemoUI, name: str) -> None:
    """Open page `name` (one of PAGES) as a signed-in approver sees it, its details unfolded: the
    conversation with a tool call open, an item of the review queue, a next best action, the
    report in its frame, an answer in the run log. `signin` needs a page not signed in."""
    from playwright.sync_api import expect

    phone = page.viewport_size["width"] < 600
    if name == "signin":
        page.goto(demo.url + "/")
        page.locator(".help summary").click()
        expect(page.locator(".help pre")).to_be_visible()
    elif name == "chat":
        page.goto(f"{demo.url}/#/chat")
        if phone and page.locator("#conversation-list").is_hidden():
            page.click("#toggle-conversations")
        page.locator("#conversation-list li a", has_text=QUESTION).click()
        answer = page.locator(".msg.assistant").last
        expect(answer.locator(".sources .source-chip").first).to_contain_text(CITED)
        answer.locator("details.tool-call[data-tool=rank] summary").click()
        expect(answer.locator("table.result-table")).to_be_visible()
        if phone:
            page.click("#toggle-conversations")  # fold the list away again
    elif name == "review":
        page.goto(f"{demo.url}/#/review/{demo.filed[0]}")
        expect(page.locator("#review-plain")).to_be_visible()
    elif name == "value-chain":
        page.goto(f"{demo.url}/#/value-chain")
        expect(page.locator("#vc-scatter .chart-key li").first).to_be_visible()
        expect(page.locator("#vc-leak .hbar").first).to_be_visible()
    elif name == "accounts":
        page.goto(f"{demo.url}/#/accounts")
        first = page.locator("#risk-table tbody tr[data-account]").first
        first.get_by_role("button", name="Next best action").click()
        expect(page.locator(".nba-row:not([hidden]) ol.nba li").first).to_be_visible()
    elif name == "pipeline":
        page.goto(f"{demo.url}/#/pipeline")
        page.locator("#pipe-risk tbody tr[data-deal] button.deal-open").first.click()
        expect(page.locator(".deal-row:not([hidden]) .deal-drivers li").first).to_be_visible()
    elif name == "service":
        page.goto(f"{demo.url}/#/service")
        expect(page.locator("#svc-table tbody tr[data-ticket]").first).to_be_visible()
    elif name == "outcomes":
        page.goto(f"{demo.url}/#/outcomes")
        expect(page.locator("#out-method")).not_to_be_empty()  # drawn once the report arrived
    elif name == "account":
        page.goto(f"{demo.url}/#/account/{demo.top}")
        expect(page.locator(".action-card").first).to_be_visible()
        expect(page.locator(".timeline li").first).to_be_visible()
    elif name == "report":
        page.goto(f"{demo.url}/#/report")
        expect(page.locator("#report-frame")).to_have_attribute("src", re.compile("^blob:"), timeout=120_000)
        expect(page.frame_locator("#report-frame").locator("figure.chart svg").first).to_be_visible()
    elif name == "runs":
        page.goto(f"{demo.url}/#/runs")
        expect(page.locator("#runs-list .verdict").first).to_be_visible()
        page.locator("#runs-list .run-answer summary").first.click()
    else:
        raise ValueError(f"no page {name!r}; pages: {', '.join(PAGES)}")
    page.evaluate("window.scrollTo(0, 0)")
