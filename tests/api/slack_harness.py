"""The harness of the Slack tests: the app under uvicorn on loopback receives requests signed with
the real v0 HMAC-SHA256 scheme; a fake Slack Web API (a small HTTP server in a thread) records what
the bot posts (chat.postMessage / chat.update / views.open and response_url calls); the agent is
a real `Copilot` over the scripted chat model on a small demo company.

Test modules take the `fake_slack` and `env` fixtures by importing `fake_slack_fixture` and
`env_fixture` (pytest registers them under their `name`)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import uvicorn
from agent_fakes import Script, ScriptedChatModel
from fastapi import FastAPI
from langchain_core.messages import AIMessage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Copilot
from api.app import create_app
from core.settings import Settings
from crm.models import AgentRun

SECRET = "8f3c1e0d9b7a6f5e4d3c2b1a0f9e8d7c"
TOKEN = "xoxb-1-test-token"
TEAM, CHANNEL, BOT = "T0TEST", "C0TEST", "UBOT"
ALICE, BOB, CAROL = "UALICE", "UBOB", "UCAROL"  # alice and bob approve; carol may only ask
WAIT_S = 15.0


# ------------------------------------------------------------------------------ fake Slack Web API


class FakeSlack:
    """Slack's Web API and response_url endpoints on loopback; records every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.held: dict[str, threading.Event] = {}
        self._ts = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    data = json.loads(raw or "{}")
                else:
                    data = dict(parse_qsl(raw))
                name = self.path.removeprefix("/api/") if self.path.startswith("/api/") else self.path
                with fake.cond:
                    fake.calls.append((name, data))
                    fake.cond.notify_all()
                gate = fake.held.get(name)
                if gate is not None:
                    gate.wait(WAIT_S)
                body = fake.reply(name, data)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, name: str, data: dict[str, Any]) -> bytes:
        out: dict[str, Any] = {"ok": True}
        if name == "auth.test":
            out.update(team_id=TEAM, user_id=BOT, bot_id="BBOT", url="https://test.slack.com/")
        elif name == "chat.postMessage":
            out.update(channel=data.get("channel"), ts=f"1700000000.{next(self._ts):06d}")
        elif name == "chat.update":
            out.update(channel=data.get("channel"), ts=data.get("ts"))
        return json.dumps(out).encode()

    def of(self, name: str) -> list[dict[str, Any]]:
        with self.cond:
            return [d for n, d in self.calls if n == name]

    def wait(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        """The first `count` calls to `name`, once they arrived."""
        with self.cond:
            if not self.cond.wait_for(lambda: len([n for n, _ in self.calls if n == name]) >= count, WAIT_S):
                raise AssertionError(f"{count} × {name} expected; the fake Slack got {self.calls}")
        return self.of(name)[:count]

    def responses(self) -> list[dict[str, Any]]:
        with self.cond:
            return [d for n, d in self.calls if n.startswith("/respond/")]

    def wait_response(self, count: int = 1) -> list[dict[str, Any]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.responses()) >= count, WAIT_S):
                raise AssertionError(f"{count} response_url calls expected; got {self.calls}")
        return self.responses()


@pytest.fixture(name="fake_slack")
def fake_slack_fixture() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    fake.thread.start()
    yield fake
    for gate in fake.held.values():
        gate.set()
    fake.server.shutdown()
    fake.server.server_close()


# ------------------------------------------------------------------------------ signed requests


def signature(body: str, timestamp: str, secret: str = SECRET) -> str:
    """Slack's v0 scheme: HMAC-SHA256 of `v0:<timestamp>:<body>` with the signing secret."""
    return "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()


def signed_headers(body: str, content_type: str, *, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(body, timestamp),
    }


FORM = "application/x-www-form-urlencoded"


def command_body(fake: FakeSlack, text: str, user: str = CAROL, trigger_id: str = "trig-cmd") -> str:
    return urlencode({
        "token": "unused", "team_id": TEAM, "channel_id": CHANNEL, "user_id": user, "user_name": user.lower(),
        "command": "/valuechain", "text": text, "response_url": f"{fake.url}/respond/cmd", "trigger_id": trigger_id,
    })


_events = itertools.count(1)


def mention_body(text: str, *, ts: str, thread_ts: str | None = None, user: str = CAROL) -> str:
    event: dict[str, Any] = {"type": "app_mention", "user": user, "text": f"<@{BOT}> {text}", "ts": ts,
                             "channel": CHANNEL, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return json.dumps({"token": "unused", "team_id": TEAM, "api_app_id": "A0TEST", "type": "event_callback",
                       "event_id": f"Ev{next(_events)}", "event_time": int(time.time()), "event": event})


_actions = itertools.count(1)


def click_body(fake: FakeSlack, action_id: str, value: str, *, user: str, message_ts: str) -> str:
    payload = {
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "A0TEST",
        "trigger_id": f"trig-{next(_actions)}", "response_url": f"{fake.url}/respond/act-{next(_actions)}",
        "container": {"type": "message", "channel_id": CHANNEL, "message_ts": message_ts},
        "channel": {"id": CHANNEL}, "message": {"ts": message_ts},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "decide", "value": value,
                     "action_ts": str(time.time())}],
    }
    return urlencode({"payload": json.dumps(payload)})


def submit_body(view: dict[str, Any], *, user: str, reason: str, note: str | None) -> str:
    values = {
        "reason": {"code": {"type": "static_select", "selected_option": {"value": reason}}},
        "note": {"text": {"type": "plain_text_input", "value": note}},
    }
    payload = {
        "type": "view_submission", "team": {"id": TEAM}, "user": {"id": user}, "api_app_id": "A0TEST",
        "view": {"id": "V0TEST", "type": "modal", "callback_id": view["callback_id"],
                 "private_metadata": view["private_metadata"], "state": {"values": values}},
    }
    return urlencode({"payload": json.dumps(payload)})


# ------------------------------------------------------------------------------ the app under uvicorn


def slack_settings(db: Path, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{db}", "data_dir": tmp_path / "data", "chroma_path": tmp_path / "chroma",
        "chroma_host": None, "llm_base_url": None, "llm_autostart": False, "playbook_path": None,
        "recommendation_ttl_days": 30, "slack_bot_token": TOKEN, "slack_signing_secret": SECRET,
        "slack_approvers": f"{ALICE}:alice, {BOB}:bob",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Env:
    app: FastAPI
    url: str
    fake: FakeSlack

    @property
    def sessions(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.app.state.sessionmaker
        return factory

    def agent(self, replies: list[AIMessage]) -> Script:
        """Give the app a ready agent answering from `replies`."""
        script = Script(replies)
        self.app.state.llm.copilot = Copilot(
            sessions=self.sessions,
            knowledge=lambda: pytest.fail("these tests do not use the knowledge store"),
            router=ScriptedChatModel(script=script, label="router"),
            answerer=ScriptedChatModel(script=script, label="answerer"),
            model_name="scripted",
        )
        return script

    def post(self, body: str, content_type: str, *, at: float | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        sent = {**signed_headers(body, content_type, at=at), **(headers or {})}
        return httpx.post(f"{self.url}/slack/events", content=body.encode(), headers=sent, timeout=WAIT_S)


@pytest.fixture(name="env")
def env_fixture(demo_db: Path, tmp_path: Path, fake_slack: FakeSlack) -> Iterator[Env]:
    db = tmp_path / "run.db"
    shutil.copy(demo_db, db)
    app = create_app(slack_settings(db, tmp_path, slack_api_url=f"{fake_slack.url}/api/"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Env(app=app, url=f"http://127.0.0.1:{port}", fake=fake_slack)
    finally:
        for gate in fake_slack.held.values():
            gate.set()
        bot = getattr(app.state, "slack_bot", None)
        while bot is not None and bot.pending and time.monotonic() < deadline + WAIT_S:
            time.sleep(0.02)  # let the bot's background posts finish before the loop stops
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def runs_of(sessions: sessionmaker[Session], conversation_id: str) -> list[AgentRun]:
    with sessions() as s:
        return list(s.scalars(select(AgentRun).where(AgentRun.conversation_id == conversation_id)
                              .order_by(AgentRun.started_at, AgentRun.id)))
