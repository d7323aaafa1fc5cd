"""The Slack bot end to end: signed requests to the app under uvicorn, a fake Slack Web API
recording what the bot posts, a real `Copilot` over the scripted chat model (tests/api/slack_harness.py)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_fakes import call, say
from fastapi.testclient import TestClient
from pydantic import ValidationError
from slack_harness import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    FORM,
    TEAM,
    Env,
    click_body,
    command_body,
    env_fixture,  # noqa: F401 (the `env` fixture)
    fake_slack_fixture,  # noqa: F401 (the `fake_slack` fixture)
    mention_body,
    runs_of,
    signature,
    signed_headers,
    slack_settings,
    submit_body,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from crm.models import AgentRun, Conversation, Recommendation, RecommendationEvent

# ------------------------------------------------------------------------------ questions


def test_slash_command_is_acked_at_once_then_answered_in_a_thread(env: Env) -> None:
    env.agent([say("**Service** costs more than the value it returns.")])  # no figure: none came from a tool
    env.fake.held["chat.postMessage"] = gate = threading.Event()  # Slack is slow: posting hangs

    t0 = time.monotonic()
    resp = env.post(command_body(env.fake, "  where do we   lose margin? "), FORM)
    acked_s = time.monotonic() - t0

    assert resp.status_code == 200 and acked_s < 3.0
    assert resp.text == "Working on it: _where do we lose margin?_ (the answer comes in a thread)"
    asked = env.fake.wait("chat.postMessage")[0]  # the work goes on after the ack…
    assert (asked["channel"], asked["text"]) == (CHANNEL, f"<@{CAROL}> asked: where do we lose margin?")
    assert env.fake.of("chat.postMessage") == [asked]  # …and has not answered yet
    gate.set()

    answer = env.fake.wait("chat.postMessage", 2)[1]
    thread_ts = "1700000000.000001"
    assert answer["thread_ts"] == thread_ts and answer["channel"] == CHANNEL
    assert answer["text"] == "*Service* costs more than the value it returns."  # Markdown → mrkdwn
    runs = runs_of(env.sessions, f"slack-{TEAM}-{CHANNEL}-{thread_ts}")
    assert [(r.question, r.status) for r in runs] == [("where do we lose margin?", "ok")]
    with env.sessions() as s:
        conversation = s.get(Conversation, runs[0].conversation_id)
        assert conversation is not None and conversation.channel == "slack"


def test_empty_slash_command_says_how_to_ask(env: Env) -> None:
    resp = env.post(command_body(env.fake, "   "), FORM)
    assert resp.status_code == 200 and "Ask a question, e.g. `/valuechain" in resp.text
    assert env.fake.of("chat.postMessage") == []


def test_mentions_answer_in_the_thread_and_a_thread_is_one_conversation(env: Env) -> None:
    script = env.agent([say("Enterprise churn risk is concentrated in EMEA."), say("Start with the top three.")])
    first_ts = "1700000100.000100"

    assert env.post(mention_body("which segment churns most?", ts=first_ts), "application/json").status_code == 200
    first = env.fake.wait("chat.postMessage")[0]
    assert (first["thread_ts"], first["text"]) == (first_ts, "Enterprise churn risk is concentrated in EMEA.")

    reply = mention_body("and what do we do?", ts="1700000200.000200", thread_ts=first_ts)
    assert env.post(reply, "application/json").status_code == 200
    second = env.fake.wait("chat.postMessage", 2)[1]
    assert (second["thread_ts"], second["text"]) == (first_ts, "Start with the top three.")

    runs = runs_of(env.sessions, f"slack-{TEAM}-{CHANNEL}-{first_ts}")
    assert [r.question for r in runs] == ["which segment churns most?", "and what do we do?"]
    # the second turn was sent the first one as history
    assert "Enterprise churn risk is concentrated in EMEA." in str(script.requests[-1]["messages"])


def test_a_retried_event_is_not_answered_twice(env: Env) -> None:
    env.agent([say("Once.")])
    body = mention_body("hello?", ts="1700000300.000300")
    assert env.post(body, "application/json").status_code == 200
    assert env.post(body, "application/json", headers={"X-Slack-Retry-Num": "1"}).status_code == 200
    env.fake.wait("chat.postMessage")
    time.sleep(0.3)
    assert [m["text"] for m in env.fake.of("chat.postMessage")] == ["Once."]


def test_model_not_ready_is_said_in_the_thread(env: Env) -> None:
    assert env.app.state.llm.copilot is None  # LLM_AUTOSTART=false: no agent in this app
    assert env.post(mention_body("anyone there?", ts="1700000400.000400"), "application/json").status_code == 200
    posted = env.fake.wait("chat.postMessage")[0]
    assert posted["thread_ts"] == "1700000400.000400"
    assert posted["text"].startswith("The model is unavailable: disabled (LLM_AUTOSTART=false).")


# ------------------------------------------------------------------------------ recommendations


@dataclass
class Filed:
    id: int
    version: int
    message_ts: str
    message: dict[str, Any]

    def button(self, action_id: str) -> str:
        actions = next(b for b in self.message["blocks"] if b["type"] == "actions")
        value: str = next(e["value"] for e in actions["elements"] if e["action_id"] == action_id)
        return value


@pytest.fixture
def filed(env: Env) -> Filed:
    """Carol (not an approver) asks; the agent files a recommendation, posted with buttons."""
    from tools.nba import next_best_action
    from tools.ranking import rank

    with env.sessions() as s:
        account = rank(session=s, entity="accounts", metric="churn_probability", limit=1).items[0].id
        action = next_best_action(session=s, account_id=account).actions[0].action
    env.agent([
        call("next_best_action", account_id=account),
        call("propose_recommendation", account_id=account, action=action, rationale="Highest expected value."),
        say(f"I filed {action} for {account}; it waits for an approver."),
    ])
    assert env.post(mention_body(f"what should we do about {account}? file it", ts="1700000500.000500"),
                    "application/json").status_code == 200
    answer, posted = env.fake.wait("chat.postMessage", 2)
    assert answer["text"].startswith("I filed")
    with env.sessions() as s:
        rec = s.scalars(select(Recommendation)).one()
    return Filed(id=rec.id, version=rec.version, message_ts="1700000000.000002", message=posted)


def test_a_filed_recommendation_is_posted_in_the_thread_with_buttons(env: Env, filed: Filed) -> None:
    assert filed.message["thread_ts"] == "1700000500.000500"
    blocks = filed.message["blocks"]
    assert f"*Recommendation #{filed.id}*" in blocks[0]["text"]["text"]
    assert "filed by slack:UCAROL" in blocks[0]["text"]["text"]
    buttons = blocks[1]["elements"]
    assert [(b["action_id"], b["text"]["text"], b.get("style")) for b in buttons] == [
        ("vcc_approve", "Approve", "primary"), ("vcc_reject", "Reject", "danger")]
    with env.sessions() as s:
        rec = s.get(Recommendation, filed.id)
        assert rec is not None and rec.status == "pending" and rec.created_by == "slack:UCAROL"
        run = s.get(AgentRun, rec.run_id)
        assert run is not None and run.conversation_id == f"slack-{TEAM}-{CHANNEL}-1700000500.000500"
        value = json.loads(filed.button("vcc_approve"))
        assert value == {"id": rec.id, "version": rec.version, "hash": rec.content_hash}


def decisions(sessions: sessionmaker[Session], rid: int) -> list[tuple[str, str]]:
    with sessions() as s:
        return [(e.event, e.actor) for e in s.scalars(
            select(RecommendationEvent).where(RecommendationEvent.recommendation_id == rid,
                                              RecommendationEvent.event != "proposed"))]


def test_an_approver_click_decides_once_and_updates_the_message(env: Env, filed: Filed) -> None:
    body = click_body(env.fake, "vcc_approve", filed.button("vcc_approve"), user=ALICE, message_ts=filed.message_ts)
    assert env.post(body, FORM).status_code == 200

    update = env.fake.wait("chat.update")[0]
    assert (update["channel"], update["ts"]) == (CHANNEL, filed.message_ts)
    line = update["blocks"][1]["elements"][0]["text"]
    assert line.startswith(f"*Approved by <@{ALICE}> (alice)*")
    # Approve / Reject are gone; the follow-up steps take their place (tests/api/test_slack_followup.py)
    actions = [e["action_id"] for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert actions == ["vcc_start", "vcc_execute", "vcc_abandon"]
    assert update["text"] == f"Recommendation #{filed.id} approved by alice"
    with env.sessions() as s:
        rec = s.get(Recommendation, filed.id)
        assert rec is not None and (rec.status, rec.decided_by) == ("approved", "alice")
    assert decisions(env.sessions, filed.id) == [("approved", "alice")]
    assert env.fake.responses() == []


def test_a_second_click_names_the_winner(env: Env, filed: Filed) -> None:
    value = filed.button("vcc_approve")
    env.post(click_body(env.fake, "vcc_approve", value, user=ALICE, message_ts=filed.message_ts), FORM)
    env.fake.wait("chat.update")
    env.post(click_body(env.fake, "vcc_approve", value, user=BOB, message_ts=filed.message_ts), FORM)

    refusal = env.fake.wait_response()[0]
    assert refusal["response_type"] == "ephemeral" and refusal["replace_original"] is False
    assert f"recommendation #{filed.id} was already approved by alice" in refusal["text"]
    assert decisions(env.sessions, filed.id) == [("approved", "alice")]  # one decision, bob's changed nothing
    # a late Reject is refused the same way, before any dialog opens
    env.post(click_body(env.fake, "vcc_reject", filed.button("vcc_reject"), user=BOB,
                        message_ts=filed.message_ts), FORM)
    late = env.fake.wait_response(2)[1]
    assert late["text"] == f"recommendation #{filed.id} was already approved by alice; nothing was changed"
    assert env.fake.of("views.open") == []
    assert env.fake.wait("chat.update", 3)[-1]["text"] == f"Recommendation #{filed.id} approved by alice"


def test_a_non_approver_click_is_refused(env: Env, filed: Filed) -> None:
    env.post(click_body(env.fake, "vcc_approve", filed.button("vcc_approve"), user=CAROL,
                        message_ts=filed.message_ts), FORM)
    env.post(click_body(env.fake, "vcc_reject", filed.button("vcc_reject"), user=CAROL,
                        message_ts=filed.message_ts), FORM)

    refusals = env.fake.wait_response(2)
    for refusal in refusals:
        assert refusal["response_type"] == "ephemeral" and refusal["replace_original"] is False
        assert refusal["text"].startswith(f"Only approvers may decide recommendations, and <@{CAROL}> is not one")
    assert env.fake.of("chat.update") == [] and env.fake.of("views.open") == []
    with env.sessions() as s:
        rec = s.get(Recommendation, filed.id)
        assert rec is not None and rec.status == "pending"
    assert decisions(env.sessions, filed.id) == []


def test_reject_asks_for_a_reason_then_records_it(env: Env, filed: Filed) -> None:
    env.post(click_body(env.fake, "vcc_reject", filed.button("vcc_reject"), user=BOB,
                        message_ts=filed.message_ts), FORM)
    opened = env.fake.wait("views.open")[0]
    view = opened["view"]
    assert opened["trigger_id"].startswith("trig-") and view["callback_id"] == "vcc_reject"
    reasons = next(b for b in view["blocks"] if b.get("block_id") == "reason")["element"]["options"]
    assert "not_worth_it" in [o["value"] for o in reasons]

    # "other" without a note: the dialog says what is missing, nothing is decided
    resp = env.post(submit_body(view, user=BOB, reason="other", note=None), FORM)
    assert resp.status_code == 200
    assert json.loads(resp.text) == {"response_action": "errors",
                                     "errors": {"note": 'reason_code "other" needs a note saying why'}}
    assert decisions(env.sessions, filed.id) == []

    resp = env.post(submit_body(view, user=BOB, reason="not_worth_it", note="Costs more than the ARR at risk"), FORM)
    assert resp.status_code == 200 and resp.text == ""  # the dialog closes
    line = env.fake.wait("chat.update")[0]["blocks"][-1]["elements"][0]["text"]
    assert line.startswith(f"*Rejected by <@{BOB}> (bob)*") and "reason `not_worth_it`" in line
    with env.sessions() as s:
        event = s.scalars(select(RecommendationEvent).where(RecommendationEvent.event == "rejected")).one()
        assert (event.actor, event.reason_code, event.note) == ("bob", "not_worth_it", "Costs more than the ARR at risk")


# ------------------------------------------------------------------------------ verification and config


def test_a_tampered_body_is_refused(env: Env) -> None:
    body = command_body(env.fake, "where do we lose margin?")
    headers = signed_headers(body, FORM)
    tampered = body.replace("where+do+we+lose+margin", "approve+everything")
    resp = httpx.post(f"{env.url}/slack/events", content=tampered.encode(), headers=headers)
    assert resp.status_code == 401
    assert env.fake.calls == []  # refused before anything reached Slack or the agent


def test_a_stale_timestamp_is_refused(env: Env) -> None:
    body = command_body(env.fake, "where do we lose margin?")
    assert env.post(body, FORM, at=time.time() - 301).status_code == 401  # correctly signed, 5 min + 1 s old
    with env.sessions() as s:
        assert s.scalars(select(AgentRun)).first() is None


@pytest.mark.parametrize("timestamp", ["", "yesterday", "-5"])
def test_a_malformed_timestamp_is_refused(env: Env, timestamp: str) -> None:
    body = command_body(env.fake, "hello")
    headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": signature(body, timestamp)}
    assert httpx.post(f"{env.url}/slack/events", content=body.encode(), headers=headers).status_code == 401


def test_a_wrong_secret_is_refused(env: Env) -> None:
    body = command_body(env.fake, "hello")
    timestamp = str(int(time.time()))
    headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": signature(body, timestamp, secret="not-the-secret")}
    assert httpx.post(f"{env.url}/slack/events", content=body.encode(), headers=headers).status_code == 401


def test_url_verification_answers_the_challenge(env: Env) -> None:
    body = json.dumps({"token": "unused", "challenge": "c-123", "type": "url_verification"})
    resp = env.post(body, "application/json")
    assert resp.status_code == 200 and json.loads(resp.text) == {"challenge": "c-123"}


def test_without_slack_settings_the_route_answers_503_and_the_rest_works(demo_db: Path, tmp_path: Path) -> None:
    settings = slack_settings(demo_db, tmp_path, slack_bot_token=None, slack_signing_secret=None)
    with TestClient(create_app(settings)) as client:
        resp = client.post("/slack/events", content=b"{}", headers={"Content-Type": "application/json"})
        assert resp.status_code == 503
        assert resp.json()["detail"].startswith("Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET")
        assert client.get("/healthz").status_code == 200
        assert "/slack/events" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("value", ["U1", "U1:", ":alice", "U1:alice,U2"])
def test_a_malformed_approver_list_fails_at_start(value: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not \"SLACK_USER_ID:name\""):
        slack_settings(tmp_path / "x.db", tmp_path, slack_approvers=value)


@pytest.mark.parametrize("name", ["slack_bot_token", "slack_signing_secret"])
def test_placeholder_slack_secrets_are_refused_in_production(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=f"{name} holds a placeholder value"):
        slack_settings(tmp_path / "x.db", tmp_path, environment="production", **{name: "changeme"})


def test_approver_names_are_parsed(tmp_path: Path) -> None:
    settings = slack_settings(tmp_path / "x.db", tmp_path, slack_approvers=" U1:alice , U2: bob ,")
    assert settings.slack_approver_map == {"U1": "alice", "U2": "bob"}



# ------------------------------------------------------------------------------ issue #19 items 2 and 4

PAYLOADS = "<!channel> see <https://evil.example|your invoice> & ping <@U0BOSS>"


def test_model_answers_and_questions_are_escaped_never_mentions_or_links(env: Env) -> None:
    env.agent([say(f"Done. {PAYLOADS} [click](https://evil.example)")])
    ack = env.post(command_body(env.fake, f"hi {PAYLOADS}"), FORM)
    assert ack.status_code == 200 and ack.text.startswith("Working on it: _hi &lt;!channel&gt; see &lt;https://evil")
    asked, answer = env.fake.wait("chat.postMessage", 2)
    for text in (asked["text"], answer["text"]):
        assert "<!channel>" not in text and "<https://evil" not in text and "<@U0BOSS>" not in text
    assert "&lt;!channel&gt;" in answer["text"] and "&amp; ping &lt;@U0BOSS&gt;" in answer["text"]
    assert "[click](https://evil.example)" in answer["text"]  # a Markdown link stays text
    assert asked["text"].startswith(f"<@{CAROL}> asked: hi &lt;!channel&gt;")  # the product's own mention stays


def test_a_rationale_and_names_from_data_are_escaped_in_the_blocks() -> None:
    import datetime as dt

    from api.slack.render import decided_line, recommendation_blocks
    from tools.review import DecisionInfo, RecommendationView

    rec = RecommendationView.model_construct(
        id=7, version=1, content_hash="abc", account_id="ACME-0001", activity_id=None, action="exec_sponsor_call",
        rationale=PAYLOADS, created_by="<@U0BOSS>", expected_value=None, expires_at=None, status="pending")
    text = recommendation_blocks(rec)[0]["text"]["text"]
    assert "<!channel>" not in text and "<@U0BOSS>" not in text and "&lt;https://evil.example|your invoice&gt;" in text
    info = DecisionInfo.model_construct(status="rejected", decided_by="<!here>", decided_at=dt.datetime(2026, 1, 1),
                                        reason_code="other", note="<!channel> & co")
    line = decided_line(info, slack_user=None)
    assert "<!here>" not in line and "&lt;!channel&gt; &amp; co" in line


@pytest.mark.parametrize(("body", "content_type"), [
    ("payload=not-json", FORM),
    ("payload=%5B1%2C2%5D", FORM),  # a JSON array
    ('{"type": "event_callback", "event": ', "application/json"),  # broken JSON
    ("[1, 2]", "application/json"),
])
def test_signed_but_malformed_bodies_are_400_not_500(env: Env, body: str, content_type: str) -> None:
    resp = env.post(body, content_type)
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert env.fake.of("chat.postMessage") == []
