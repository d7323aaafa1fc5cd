"""Which interrupted Slack runs another worker answers again (`api.slack.resume.claim`): each once,
only recent ones, never a second answer's own interruption."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from agent.runlog import RunLog, close_unfinished, utcnow
from api.slack.resume import claim, remember
from core.db import make_sessionmaker, session_scope
from crm.models import AgentRun


@pytest.fixture
def sessions(any_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(any_engine)


def asked(sessions: sessionmaker[Session], question: str, *, resumed_from: str | None = None) -> str:
    run_id = RunLog.start(sessions, question=question, conversation_id=None, model="m", channel="slack").run_id
    remember(sessions, run_id, team="T1", channel="C1", thread_ts="1700000000.0001", user="U1",
             resumed_from=resumed_from)
    return run_id


def test_an_interrupted_slack_run_is_claimed_once_with_its_thread_and_question(
        sessions: sessionmaker[Session]) -> None:
    cut = asked(sessions, "which accounts churn?")
    running = asked(sessions, "still going")
    close_unfinished(sessions, cut, status="interrupted", reason="its worker was killed")
    got = claim(sessions)
    assert [(a.run_id, a.channel, a.thread_ts, a.user, a.question) for a in got] == [
        (cut, "C1", "1700000000.0001", "U1", "which accounts churn?")]
    assert claim(sessions) == []  # claimed: no second answer from this or any worker
    assert running not in [a.run_id for a in got]


def test_a_second_answer_interrupted_again_and_an_old_interruption_are_left_alone(
        sessions: sessionmaker[Session]) -> None:
    first = asked(sessions, "q")
    again = asked(sessions, "q", resumed_from=first)
    old = asked(sessions, "an hour ago")
    for run_id in (again, old):
        close_unfinished(sessions, run_id, status="interrupted", reason="killed")
    with session_scope(sessions) as s:
        s.execute(update(AgentRun).where(AgentRun.id == old).values(finished_at=utcnow() - dt.timedelta(hours=1)))
    assert claim(sessions) == []


def test_two_workers_claiming_together_answer_once(sessions: sessionmaker[Session]) -> None:
    cut = asked(sessions, "q")
    close_unfinished(sessions, cut, status="interrupted", reason="killed")
    barrier, got = threading.Barrier(4), []

    def worker() -> None:
        barrier.wait()
        got.extend(a.run_id for a in claim(sessions))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [cut]
