"""Issue #19 item 7: runs left `running` by a process that died (kill -9) are marked `interrupted`
at the next start, on every channel, and say so in the API (run detail, conversation, run log).

The runs are opened by real child processes through the run log (`RunLog.start`, as the API,
Slack and `valuechain chat` open them); one child is killed with SIGKILL (a crash), another
stays alive (a second worker or a terminal chat still answering)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.runlog import interrupt_orphans, owner_state
from api.app import INTERRUPTED_BY_RESTART, create_app
from core.settings import Settings
from crm.models import AgentRun, User

ROOT = Path(__file__).resolve().parents[2]

OPEN_RUNS = """
import os, signal, sys
from agent.runlog import RunLog
from core.db import make_engine, make_sessionmaker

sessions = make_sessionmaker(make_engine(sys.argv[1]))
for spec in sys.argv[3:]:
    channel, user = spec.split(":")
    log = RunLog.start(sessions, question=f"asked on {channel}", conversation_id=None, model="m",
                       channel=channel, user_id=int(user) if user else None)
    print(channel, log.run_id, flush=True)
if sys.argv[2] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()  # still answering until the test lets it go
"""


def open_runs(url: str, how: str, *specs: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A child process that opens one run per `channel:user_id` spec, then crashes or stays; {channel: run id}."""
    child = subprocess.Popen([sys.executable, "-c", OPEN_RUNS, url, how, *specs], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None
    runs = dict(child.stdout.readline().split() for _ in specs)
    return child, runs


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)  # reaps it and closes its pipes


def test_runs_of_a_killed_process_are_interrupted_at_start_up_on_every_channel(
        settings: Settings, keys: dict[str, str], factory: sessionmaker[Session],
        children: list[subprocess.Popen[str]]) -> None:
    url = settings.resolved_database_url
    with factory() as s:
        analyst = s.scalars(select(User.id).where(User.name == "analyst1")).one()
    crashed, dead = open_runs(url, "crash", f"api:{analyst}", f"web:{analyst}", "slack:", "cli:")
    children.append(crashed)
    assert crashed.wait(timeout=30) == -signal.SIGKILL  # died mid-answer: its runs stay `running`
    alive, live = open_runs(url, "stay", f"api:{analyst}", "cli:")
    children.append(alive)
    with factory() as s:
        assert {r.status for r in s.scalars(select(AgentRun))} == {"running"}
        assert owner_state(s.get(AgentRun, dead["cli"]).owner) == "dead"  # type: ignore[union-attr]
        assert owner_state(s.get(AgentRun, live["cli"]).owner) == "alive"  # type: ignore[union-attr]

    with TestClient(create_app(settings)) as app:  # the next server start
        admin = bearer(keys["admin"])
        for channel in ("api", "web", "slack", "cli"):
            info = app.get(f"/api/v1/chat/runs/{dead[channel]}", headers=admin).json()
            assert (info["status"], info["live"]) == ("interrupted", False), channel
        log = app.get("/api/v1/feedback", headers=admin).json()
        statuses = {e["run_id"]: (e["channel"], e["status"], e["error"]) for e in log["items"]}
        where = {e["run_id"]: e["conversation_id"] for e in log["items"]}
        conversations = {c: app.get(f"/api/v1/conversations/{where[dead[c]]}", headers=admin).json()
                         for c in ("api", "cli")}
        still = app.get(f"/api/v1/chat/runs/{live['api']}/events", headers=admin)

    ended = f"the process answering it (pid {crashed.pid} on "
    for channel in ("api", "web", "slack"):  # the server's own channels: the previous server is gone
        assert statuses[dead[channel]] == (channel, "interrupted", INTERRUPTED_BY_RESTART)
    channel, status, error = statuses[dead["cli"]]  # a terminal chat whose process was killed
    assert (channel, status) == ("cli", "interrupted") and error.startswith(ended) and error.endswith("; ask again")
    # a process still answering (another worker, a terminal chat beside the server) is left alone
    assert statuses[live["api"]][1] == statuses[live["cli"]][1] == "running"
    assert still.status_code == 409  # "running in another server process", not interrupted under it
    for channel, conversation in conversations.items():  # the conversation shows it, with the note and no answer
        [run] = conversation["runs"]
        assert (run["status"], run["answer"]) == ("interrupted", None) and run["error"] == statuses[dead[channel]][2]

    alive.kill()  # now it dies too: the next start (a terminal chat's `open_copilot`) ends its runs
    alive.communicate(timeout=30)
    assert sorted(interrupt_orphans(factory)) == sorted(live.values())
    with factory() as s:
        assert {r.status for r in s.scalars(select(AgentRun))} == {"interrupted"}
