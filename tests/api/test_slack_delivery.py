"""Each Slack delivery answered once (issue #19 item 3): retries whose first delivery was lost are
answered, replays of an event or a slash command are not, and two deliveries arriving at once give
one answer. Signed bodies Slack would never send are 400 with a log line (item 4)."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import httpx
import pytest
from agent_fakes import say
from slack_harness import (
    CHANNEL,
    FORM,
    TEAM,
    Env,
    command_body,
    env_fixture,  # noqa: F401 (the `env` fixture)
    fake_slack_fixture,  # noqa: F401 (the `fake_slack` fixture)
    mention_body,
    runs_of,
)
from sqlalchemy import Engine

from api.slack.delivery import claim
from core.db import make_sessionmaker

JSON = "application/json"
SETTLE_S = 0.5
"""How long a test waits for an answer that must not come."""


def settle(env: Env) -> None:
    """Wait until the bot's background work is done, then a little longer for a late duplicate."""
    bot = env.app.state.slack_bot
    deadline = time.monotonic() + 15
    while bot.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(SETTLE_S)


def texts(env: Env) -> list[str]:
    return [m["text"] for m in env.fake.of("chat.postMessage")]


# ------------------------------------------------------------------------------ events


def test_a_retry_whose_first_delivery_was_lost_is_answered(env: Env) -> None:
    env.agent([say("Answered on the retry.")])
    body = mention_body("are you there?", ts="1700001000.000100")
    resp = env.post(body, JSON, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert resp.status_code == 200
    assert env.fake.wait("chat.postMessage")[0]["text"] == "Answered on the retry."
    settle(env)
    assert texts(env) == ["Answered on the retry."]


def test_an_event_replayed_with_the_same_event_id_is_answered_once(env: Env) -> None:
    env.agent([say("Once."), say("Twice!")])
    body = mention_body("hello?", ts="1700001100.000100")
    for retry in (None, None, "1", "2"):  # replays, then Slack's own retries
        headers = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        assert env.post(body, JSON, headers=headers).status_code == 200
    env.fake.wait("chat.postMessage")
    settle(env)
    assert texts(env) == ["Once."]
    assert len(runs_of(env.sessions, f"slack-{TEAM}-{CHANNEL}-1700001100.000100")) == 1


def test_two_deliveries_of_one_event_at_once_give_one_answer(env: Env) -> None:
    env.agent([say("Once."), *[say("Again!")] * 7])
    body = mention_body("race?", ts="1700001200.000100")
    gate = threading.Barrier(8)

    def deliver(i: int) -> int:
        gate.wait()
        headers = {"X-Slack-Retry-Num": str(i % 3)} if i % 2 else None
        return env.post(body, JSON, headers=headers).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(deliver, range(8))) == [200] * 8
    env.fake.wait("chat.postMessage")
    settle(env)
    assert texts(env) == ["Once."]


def test_different_events_in_one_thread_are_each_answered(env: Env) -> None:
    env.agent([say("First."), say("Second.")])
    assert env.post(mention_body("one?", ts="1700001300.000100"), JSON).status_code == 200
    env.fake.wait("chat.postMessage")
    same_text = mention_body("one?", ts="1700001300.000200", thread_ts="1700001300.000100")  # a new event id
    assert env.post(same_text, JSON).status_code == 200
    env.fake.wait("chat.postMessage", 2)
    settle(env)
    assert texts(env) == ["First.", "Second."]


# ------------------------------------------------------------------------------ slash commands


def test_a_slash_command_replayed_three_times_is_answered_once(env: Env) -> None:
    env.agent([say("One answer."), say("Second answer!"), say("Third answer!")])
    body = command_body(env.fake, "where do we lose margin?", trigger_id="trig-replayed")
    acks = [env.post(body, FORM) for _ in range(3)]
    assert [a.status_code for a in acks] == [200, 200, 200]
    assert acks[0].text.startswith("Working on it")
    assert [a.text for a in acks[1:]] == ["", ""]  # a replay is acknowledged with nothing to show
    env.fake.wait("chat.postMessage", 2)
    settle(env)
    assert texts(env) == ["<@UCAROL> asked: where do we lose margin?", "One answer."]


def test_the_same_question_asked_again_is_answered_again(env: Env) -> None:
    env.agent([say("First time."), say("Second time.")])
    for trigger in ("trig-1", "trig-2"):  # typed twice: Slack gives each invocation its own trigger id
        assert env.post(command_body(env.fake, "margin?", trigger_id=trigger), FORM).text.startswith("Working")
    env.fake.wait("chat.postMessage", 4)
    settle(env)
    assert sorted(t for t in texts(env) if not t.startswith("<@")) == ["First time.", "Second time."]


# ------------------------------------------------------------------------------ the claim itself


def test_a_claim_is_won_once_under_concurrency(any_engine: Engine) -> None:
    sessions = make_sessionmaker(any_engine)
    gate = threading.Barrier(12)

    def take(_: int) -> bool:
        gate.wait()
        return claim(sessions, "event:EvRACE", retry_num=0)

    with ThreadPoolExecutor(12) as pool:
        won = list(pool.map(take, range(12)))
    assert won.count(True) == 1
    assert claim(sessions, "event:EvOTHER", retry_num=1) is True


# ------------------------------------------------------------------------------ item 4: malformed bodies

BROKEN_EVENTS = [
    {"type": "event_callback", "event_id": "EvX1", "event": "not an object"},
    {"type": "event_callback", "event_id": "EvX2", "event": [1, 2]},
    {"type": "event_callback", "event_id": "EvX3"},
    {"type": "event_callback", "event": {"type": "app_mention", "channel": CHANNEL, "ts": "1.2"}},  # no event id
    {"type": "event_callback", "event_id": "EvX4", "event": {"type": "app_mention", "text": 3, "ts": "1.2"}},
]
BROKEN_PAYLOADS = [
    {"type": "block_actions", "actions": "not a list", "user": {"id": "UALICE"}},
    {"type": "block_actions", "user": {"id": "UALICE"},
     "actions": [{"action_id": "vcc_approve", "value": "not a button value"}]},
    {"type": "view_submission", "view": "not an object", "user": {"id": "UALICE"}},
    {"type": "view_submission", "user": {"id": "UALICE"},
     "view": {"callback_id": "vcc_reject", "private_metadata": "not JSON", "state": {"values": {}}}},
]


@pytest.mark.parametrize(("body", "content_type"), [
    *[(json.dumps(event), JSON) for event in BROKEN_EVENTS],
    *[(urlencode({"payload": json.dumps(payload)}), FORM) for payload in BROKEN_PAYLOADS],
    (urlencode({"command": "/valuechain", "text": "hi"}), FORM),  # no user, channel or trigger id
])
def test_signed_bodies_of_the_wrong_shape_are_400_with_a_log_line(
    env: Env, body: str, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="api.slack.bot"):
        resp = env.post(body, content_type)
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert resp.json()["error"] == "malformed body"
    assert any("refused a signed but malformed body" in r.getMessage() for r in caplog.records)
    time.sleep(SETTLE_S)
    assert env.fake.calls == []  # refused before bolt: nothing reached Slack or the agent


def test_an_unsigned_malformed_body_is_still_401(env: Env) -> None:
    resp = httpx.post(f"{env.url}/slack/events", content=b"[1, 2]", headers={"Content-Type": JSON})
    assert resp.status_code == 401
