"""The chat page in a real headless Chromium (Playwright) against a real uvicorn server, at a
desktop (1366×900) and a phone (390×844) width.

The server runs `create_app` on the 120-account demo company with a Copilot on the scripted
fake chat model (slowed down or held where a test needs a turn still running) and a
two-document knowledge store. Every test fails on horizontal overflow of the page, on any
console error and on any failed request. Screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_fakes import Script, ScriptedChatModel, call, say
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web_harness import ARTIFACTS, DESKTOP, PHONE, Watched, launch_chromium, serve

from agent.copilot import Copilot
from agent.pipeline import PlanCopilot
from api.app import create_app
from api.auth import create_key
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from crm.models import AgentRun, RunFeedback

CORPUS = Path(__file__).resolve().parent.parent / "knowledge" / "corpus"
CITED = "margin-leak-and-value-cost-index"
# a tool argument with a long unbroken token: it must wrap or scroll in its own box
LONG_QUERY = "what does margin leak measure " + "value-chain-cost-allocation-" * 30
SIZES = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]

pytestmark = pytest.mark.slow


@dataclass
class ChatServer:
    url: str
    app: Any
    sessions: sessionmaker[Session]
    script: Script
    key: str  # carol, approver
    other_key: str  # ann, analyst
    top: str  # the riskiest account
    react: Any = None  # the ReAct Copilot (default)
    plan_agent: Any = None  # the plan agent, for the plan test

    def reset(self, *replies: Any, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.script.replies[:] = list(replies)
        self.script.delay_s = delay_s
        self.script.gate = gate
        self.app.state.llm.copilot = self.react


@pytest.fixture(scope="module")
def server(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    from knowledge.ingest import ingest_documents, load_documents
    from knowledge.store import KnowledgeStore
    from tools.ranking import rank

    tmp = tmp_path_factory.mktemp("webchat")
    shutil.copy(demo_db, tmp / "chat.db")
    url = f"sqlite:///{tmp / 'chat.db'}"
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        key = create_key(session=s, name="carol", role="approver").key
        other = create_key(session=s, name="ann", role="analyst").key
        top = rank(session=s, entity="accounts", metric="churn_probability", limit=1).items[0].id
        s.commit()
    store = KnowledgeStore.at_path(tmp / "chroma")
    ingest_documents(load_documents([CORPUS / f"{CITED}.md", CORPUS / "cost-value-quadrants.md"], base=CORPUS), store=store)
    settings = Settings(
        database_url=url, data_dir=tmp / "data", chroma_path=tmp / "chroma", chroma_host=None,
        llm_base_url=None, llm_autostart=False, playbook_path=None, recommendation_ttl_days=30,
    )  # type: ignore[call-arg]
    app = create_app(settings, knowledge_store=store)
    script = Script([])
    with serve(app) as base:
        react = Copilot(sessions=app.state.sessionmaker, knowledge=lambda: store,
                        router=ScriptedChatModel(script=script, label="router"),
                        answerer=ScriptedChatModel(script=script, label="answerer"), model_name="scripted")
        app.state.llm.copilot = react
        served = ChatServer(base, app, sessions, script, key, other, top, react=react)
        served.plan_agent = PlanCopilot(
            sessions=app.state.sessionmaker, knowledge=lambda: store,
            planner=ScriptedChatModel(script=script, label="planner"),
            answerer=ScriptedChatModel(script=script, label="answerer"), model_name="scripted")
        try:
            yield served
        finally:
            if script.gate is not None:
                script.gate.set()
    engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch_chromium() as b:
        yield b


def open_chat(server: ChatServer, browser: Any, size: dict[str, int]) -> tuple[Any, Watched]:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    context = browser.new_context(viewport=size)
    watched = Watched.open(context)
    page = watched.page
    page.goto(server.url + "/#/chat")
    page.fill("#api-key", server.key)
    page.click("#signin-button")
    expect(page.locator("#whoami")).to_have_text("carol · approver")
    expect(page.locator("#chat-input")).to_be_visible()
    watched.assert_no_overflow("the chat page")
    return context, watched


def ask(page: Any, question: str) -> None:
    page.fill("#chat-input", question)
    page.press("#chat-input", "Enter")


def shot(page: Any, name: str, size: dict[str, int]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"chat-{name}-{'phone' if size['width'] < 600 else 'desktop'}.png"))


@pytest.mark.parametrize("size", SIZES)
def test_ask_read_the_answer_then_a_new_conversation(server: ChatServer, browser: Any, size: dict[str, int]) -> None:
    from playwright.sync_api import expect

    server.reset(
        call("rank", entity="accounts", metric="churn_probability", limit=3),
        call("search_knowledge", query=LONG_QUERY),
        say(f"**{server.top}** is the riskiest account. Margin leak is cost not matched by value [{CITED}]."),
        say("Second answer: the quadrants split at the average share."),
    )
    context, watched = open_chat(server, browser, size)
    page = watched.page
    expect(page.locator("#chat-empty")).to_be_visible()
    expect(page.locator(".suggestion")).to_have_count(3)

    ask(page, "Which account is riskiest, and what is margin leak?")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".answer")).to_contain_text(f"{server.top} is the riskiest account")
    # the Sources row names the cited document and section and opens the passage
    chips = answer.locator(".sources .source-chip")
    expect(chips.first).to_contain_text(CITED)
    expect(chips.first).to_contain_text("§")
    # tool data as a formatted table (currency, %, names with ids), the JSON one click away
    rank_call = answer.locator("details.tool-call[data-tool=rank]")
    expect(rank_call.locator(".tool-label")).to_have_text("Ranking accounts by churn risk")
    rank_call.locator("summary").click()
    table = rank_call.locator("table.result-table")
    expect(table).to_contain_text(server.top)
    expect(table).to_contain_text("%")
    expect(table).to_contain_text("$")
    assert not re.search(r"\b0\.\d{3,}\b", table.inner_text()), "raw ratios in the table"
    rank_call.get_by_role("button", name="Show JSON").click()
    expect(rank_call.locator("pre.tool-json")).to_contain_text('"churn_probability"')
    answer.locator("details.tool-call[data-tool=search_knowledge] summary").click()  # the long argument, open
    watched.assert_no_overflow("the answer with a long tool argument open")
    inner, box = page.evaluate("(() => { const m = document.getElementById('messages'); return [m.scrollWidth, m.clientWidth]; })()")
    assert inner <= box, f"the conversation scrolls sideways: {inner} px of content in a {box} px column"
    bubble = answer.locator(".bubble").bounding_box()
    assert bubble is not None and bubble["x"] + bubble["width"] <= size["width"], bubble
    shot(page, "answer", size)
    chips.first.click()
    expect(page.locator("#citation-panel")).to_be_visible()
    expect(page.locator("#citation-body .chunk").first).to_contain_text(CITED)
    expect(page.locator("#citation-body .chunk-text").first).not_to_be_empty()
    shot(page, "citation", size)
    page.click("#citation-close")

    # New conversation: the empty state and its suggestions come back, and Enter sends again
    page.click("#new-chat")
    expect(page.locator("#chat-empty")).to_be_visible()
    expect(page.locator(".suggestion")).to_have_count(3)
    expect(page.locator(".msg")).to_have_count(0)
    ask(page, "How are the quadrants split?")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.assistant .answer").last).to_contain_text("Second answer")
    expect(page.locator("#chat-input")).to_have_value("")
    if size["width"] < 600:
        page.click("#toggle-conversations")
    expect(page.locator("#conversation-list li a").first).to_have_text("How are the quadrants split?")
    watched.assert_no_overflow("the second conversation")
    shot(page, "new-conversation", size)

    # the first conversation again, from the run log: the same Sources row and tables
    page.locator("#conversation-list li a", has_text="Which account is riskiest").first.click()
    again = page.locator(".msg.assistant").last
    expect(again.locator(".answer")).to_contain_text(f"{server.top} is the riskiest account")
    expect(again.locator(".sources .source-chip").first).to_contain_text(CITED)
    history_rank = again.locator("details.tool-call[data-tool=rank]")
    history_rank.locator("summary").click()
    expect(history_rank.locator("table.result-table")).to_contain_text(re.compile(rf"{server.top}\s*1\s*\d+\.\d%"))
    watched.assert_no_overflow("a conversation from the run log")
    shot(page, "history", size)
    watched.assert_no_errors()
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_reload_mid_answer_still_gets_the_answer(server: ChatServer, browser: Any, size: dict[str, int]) -> None:
    from playwright.sync_api import expect

    gate = threading.Event()  # holds the model until the page has reloaded
    server.reset(call("score_activities"), say("Procurement leaks the most margin."), gate=gate)
    context, watched = open_chat(server, browser, size)
    page = watched.page
    try:
        ask(page, "Which activities leak the most margin?")
        expect(page.locator("#chat-stop")).to_have_attribute("data-run", re.compile("^run-"))
        run_id = page.locator("#chat-stop").get_attribute("data-run")
        progress = page.locator(".msg.assistant .progress")
        expect(progress).to_contain_text(re.compile(r"…\s*[1-9]\d* s"))  # plain words and the time so far
        shot(page, "progress", size)

        page.reload()
        expect(page.locator("#whoami")).to_have_text("carol · approver")
        expect(page.locator(".msg.user")).to_have_text(["Which activities leak the most margin?"])
        # reattached: the run is still going, with its time counted from its start in the server
        expect(progress).to_be_visible()
        expect(progress.locator(".progress-time")).to_have_text(re.compile(r"[1-9]\d* s"))
        expect(page.locator("#chat-stop")).to_have_attribute("data-run", run_id or "")
        assert page.locator(".msg.assistant .answer .md").count() == 0
    finally:
        gate.set()
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".answer")).to_contain_text("Procurement leaks the most margin.")
    expect(answer.locator("details.tool-call")).to_have_count(1)
    expect(page.locator("#chat-stop")).to_be_hidden()
    with server.sessions() as s:
        run = s.get(AgentRun, run_id)
        assert run is not None and (run.status, run.answer) == ("ok", "Procurement leaks the most margin.")
    watched.assert_no_overflow("after the reload")
    watched.assert_no_errors()
    context.close()


def test_stop_feedback_retry_and_copy(server: ChatServer, browser: Any) -> None:
    from playwright.sync_api import expect

    gate = threading.Event()  # the model never answers this one: only Stop ends it
    server.reset(say("never shown"), gate=gate)
    context, watched = open_chat(server, browser, DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = watched.page

    ask(page, "Is anything at risk?")
    expect(page.locator("#chat-stop")).to_have_attribute("data-run", re.compile("^run-"))
    run_id = page.locator("#chat-stop").get_attribute("data-run")
    page.click("#chat-stop")
    expect(page.locator(".msg.assistant .stopped")).to_contain_text("stopped by carol")
    expect(page.locator("#chat-send")).to_be_visible()
    with server.sessions() as s:
        stopped = s.get(AgentRun, run_id)
        assert stopped is not None and (stopped.status, stopped.answer) == ("stopped", None)
    gate.set()

    server.reset(say("Three accounts need attention this week."), say("Retried: three accounts need attention."))
    page.click("#new-chat")
    ask(page, "Which accounts need attention?")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".answer")).to_contain_text("Three accounts need attention")
    answer.get_by_role("button", name="Poor answer").click()
    answer.locator(".feedback-note").fill("It should name the accounts.")
    answer.get_by_role("button", name="Save note").click()
    expect(page.locator("#toast")).to_contain_text("poor answer")
    expect(answer.get_by_role("button", name="Poor answer")).to_have_attribute("aria-pressed", "true")
    answer.get_by_role("button", name="Copy").click()
    expect(page.locator("#toast")).to_contain_text("copied")
    assert page.evaluate("navigator.clipboard.readText()") == "Three accounts need attention this week."
    with server.sessions() as s:
        run_id = s.scalars(select(AgentRun.id).where(AgentRun.answer == "Three accounts need attention this week.")).one()
        fb = s.scalars(select(RunFeedback).where(RunFeedback.run_id == run_id)).one()
        assert (fb.rating, fb.note) == ("down", "It should name the accounts.")
    answer.get_by_role("button", name="Retry").click()
    expect(page.locator(".msg.assistant .answer").last).to_contain_text("Retried: three accounts")
    expect(page.locator(".msg.user")).to_have_count(2)
    shot(page, "feedback", DESKTOP)

    # the rating is there after a reload too (from the run log)
    page.reload()
    first = page.locator(".msg.assistant").first
    expect(first.get_by_role("button", name="Poor answer")).to_have_attribute("aria-pressed", "true")
    watched.assert_no_overflow("feedback")
    watched.assert_no_errors()
    context.close()


def test_model_busy_in_the_header_and_the_place_in_the_queue(server: ChatServer, browser: Any) -> None:
    from playwright.sync_api import expect

    gate = threading.Event()
    server.reset(say("Ann's answer."), say("Carol's answer."), gate=gate)
    context, watched = open_chat(server, browser, DESKTOP)
    page = watched.page
    done: list[str] = []

    def ann_asks() -> None:  # another user's turn holds the model
        with httpx.stream("POST", server.url + "/api/v1/chat", json={"message": "Ann's question"}, timeout=60,
                          headers={"Authorization": f"Bearer {server.other_key}", "Accept": "text/event-stream"}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    done.append(json.loads(line[6:])["type"])

    other = threading.Thread(target=ann_asks, daemon=True)
    other.start()
    try:
        expect(page.locator("#model-status")).to_have_text("model busy", timeout=15_000)
        ask(page, "Carol's question")
        expect(page.locator(".msg.assistant .progress")).to_contain_text("Waiting for the model: 1 turn ahead of yours")
        expect(page.locator("#model-status")).to_have_text("model busy · 1 waiting", timeout=15_000)
        shot(page, "queued", DESKTOP)
    finally:
        gate.set()
    expect(page.locator(".msg.assistant .answer").last).to_contain_text("Carol's answer.")
    other.join(timeout=30)
    assert done[-1] == "answer"
    expect(page.locator("#model-status")).to_have_text("model ready", timeout=15_000)
    watched.assert_no_errors()
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_plan_steps_show_as_they_run(server: ChatServer, browser: Any, size: dict[str, int]) -> None:
    from playwright.sync_api import expect

    from tools.ranking import rank

    with server.sessions() as s:
        a, b = (i.id for i in rank(session=s, entity="accounts", metric="churn_probability", limit=2).items)
    server.reset(
        say(json.dumps({"intent": "answer", "steps": [
            {"tool": "churn_risk", "args": {"account_id": a}}, {"tool": "churn_risk", "args": {"account_id": b}}]})),
        say("Both are shown below."),
        delay_s=2.0,  # each model call: time to see the steps and "Writing the answer"
    )
    server.app.state.llm.copilot = server.plan_agent
    context, watched = open_chat(server, browser, size)
    page = watched.page
    ask(page, f"Compare the churn risk of {a} and {b}")
    plan = page.locator(".msg.assistant .plan")
    expect(plan).to_contain_text("Plan: 2 steps")
    expect(plan.locator(".step")).to_have_text([f"Estimating churn risk for {a}", f"Estimating churn risk for {b}"])
    expect(page.locator(".msg.assistant .progress")).to_contain_text("Writing the answer")
    expect(page.locator(".msg.assistant .answer")).to_contain_text("Both are shown below.")
    expect(plan.locator(".step.done")).to_have_count(2)
    watched.assert_no_overflow("the plan")
    shot(page, "plan", size)
    watched.assert_no_errors()
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_rename_search_and_delete_conversations(server: ChatServer, browser: Any, size: dict[str, int]) -> None:
    from playwright.sync_api import expect

    server.reset(say("Noted."))
    context, watched = open_chat(server, browser, size)
    page = watched.page
    ask(page, "Remember the renewal of the biggest account")
    expect(page.locator(".msg.assistant .answer")).to_contain_text("Noted.")
    if size["width"] < 600:  # on a phone the list folds away above the chat
        expect(page.locator("#conversation-list")).to_be_hidden()
        page.click("#toggle-conversations")
    item = page.locator("#conversation-list li").first
    expect(item.locator("a")).to_have_text("Remember the renewal of the biggest account")

    item.get_by_role("button", name="Rename conversation").click()
    page.fill("#conversation-list .rename-input", f"Renewal watch {size['width']}")
    page.press("#conversation-list .rename-input", "Enter")
    expect(page.locator("#conversation-list li a").first).to_have_text(f"Renewal watch {size['width']}")

    page.fill("#conversation-search", f"watch {size['width']}")
    expect(page.locator("#conversation-list li a")).to_have_text([f"Renewal watch {size['width']}"])
    page.fill("#conversation-search", "zzzz-nothing")
    expect(page.locator("#conversation-list li")).to_have_text(["no conversation matches"])
    page.fill("#conversation-search", f"watch {size['width']}")
    page.once("dialog", lambda d: d.accept())
    page.locator("#conversation-list li").first.get_by_role("button", name="Delete conversation").click()
    expect(page.locator("#conversation-list li")).to_have_text(["no conversation matches"])
    expect(page.locator("#chat-empty")).to_be_visible()  # it was the open conversation
    watched.assert_no_overflow("the conversation list")
    shot(page, "conversations", size)
    watched.assert_no_errors()
    context.close()


def test_a_second_tab_follows_the_run_in_progress(server: ChatServer, browser: Any) -> None:
    from playwright.sync_api import expect

    gate = threading.Event()
    server.reset(call("score_activities"), say("Operations carries the largest leak."), gate=gate)
    context, watched = open_chat(server, browser, DESKTOP)
    first = watched.page
    ask(first, "Where is the largest leak?")
    expect(first.locator("#chat-stop")).to_have_attribute("data-run", re.compile("^run-"))

    try:
        other_context, other = open_chat(server, browser, DESKTOP)  # a new tab: its own session storage
        second = other.page
        expect(second.locator(".msg.user")).to_have_text(["Where is the largest leak?"])
        expect(second.locator(".msg.assistant .progress")).to_be_visible()
        expect(second.locator("#chat-stop")).to_be_visible()
    finally:
        gate.set()
    expect(second.locator(".msg.assistant .answer")).to_contain_text("Operations carries the largest leak.")
    expect(first.locator(".msg.assistant .answer")).to_contain_text("Operations carries the largest leak.")
    other.assert_no_errors()
    watched.assert_no_errors()
    other_context.close()
    context.close()


def test_an_interrupted_run_shows_in_its_conversation(server: ChatServer, browser: Any) -> None:
    from playwright.sync_api import expect

    from agent.runlog import RunLog, close_unfinished
    from api.app import INTERRUPTED_BY_RESTART
    from crm.models import User

    with server.sessions() as s:
        carol = s.scalars(select(User.id).where(User.name == "carol")).one()
    log = RunLog.start(server.sessions, question="What did the restart eat?", conversation_id=None, model="scripted",
                       channel="web", user_id=carol)
    log.message("assistant", "", tool_calls=[{"name": "score_activities", "args": {}}])
    assert close_unfinished(server.sessions, log.run_id, status="interrupted", reason=INTERRUPTED_BY_RESTART)

    context, watched = open_chat(server, browser, DESKTOP)
    page = watched.page
    page.fill("#conversation-search", "restart eat")
    page.locator("#conversation-list li a", has_text="What did the restart eat?").click()
    turn = page.locator(".msg.assistant").last
    expect(turn.locator(".notice")).to_have_text(f"Interrupted: {INTERRUPTED_BY_RESTART}")
    expect(turn.locator(".md")).to_have_count(0)  # no half-written answer
    expect(turn.locator(".answer-actions")).to_be_hidden()
    expect(page.locator("#chat-stop")).to_be_hidden()
    shot(page, "interrupted", DESKTOP)
    watched.assert_no_errors()
    context.close()
