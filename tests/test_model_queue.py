"""The deployment-wide queue for the model (`agent.model_queue`): ticket order, the limit over every
worker, a place freed when its turn ends or its worker is gone, and no double start under a race."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent import model_queue
from agent.run_events import heartbeat
from agent.runlog import RunLog, close_unfinished, utcnow
from core.db import make_sessionmaker, session_scope
from crm.models import ModelTurn, RunWorker

OTHER = "otherhost/abc pid 999999 started 1"
"""A worker on another machine: its liveness is known only from its heartbeat."""


@pytest.fixture
def sessions(any_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(any_engine)


def runs(sessions: sessionmaker[Session], n: int) -> list[str]:
    return [RunLog.start(sessions, question=f"q{i}", conversation_id=None, model="m", channel="web").run_id for i in range(n)]


def test_turns_hold_the_model_in_ticket_order_up_to_the_limit(sessions: sessionmaker[Session]) -> None:
    a, b, c = runs(sessions, 3)
    for run_id in (a, b, c):
        model_queue.join(sessions, run_id)
    assert [model_queue.try_start(sessions, r, limit=1) for r in (a, b, c)] == [0, 1, 2]
    assert model_queue.try_start(sessions, c, limit=1) == 2  # b waits ahead of it
    assert model_queue.load(sessions) == (1, 2)
    model_queue.leave(sessions, a)
    assert model_queue.try_start(sessions, c, limit=1) == 2  # never before b, which was first
    assert model_queue.try_start(sessions, b, limit=1) == 0
    assert model_queue.try_start(sessions, b, limit=1) == 0  # holding stays holding
    assert model_queue.try_start(sessions, c, limit=1) == 1  # next
    model_queue.leave(sessions, b)
    assert model_queue.try_start(sessions, c, limit=2) == 0
    assert model_queue.load(sessions) == (1, 0)


def test_two_turns_at_once_when_the_limit_is_two(sessions: sessionmaker[Session]) -> None:
    a, b, c = runs(sessions, 3)
    for run_id in (a, b, c):
        model_queue.join(sessions, run_id)
    assert [model_queue.try_start(sessions, r, limit=2) for r in (a, b, c)] == [0, 0, 1]


def test_a_place_whose_turn_is_no_longer_running_or_whose_worker_is_silent_is_swept(
        sessions: sessionmaker[Session]) -> None:
    interrupted, silent, alive, mine = runs(sessions, 4)
    for run_id in (interrupted, silent, alive):
        model_queue.join(sessions, run_id, owner=OTHER if run_id != alive else "live/abc pid 1 started 1")
    model_queue.join(sessions, mine)
    close_unfinished(sessions, interrupted, status="interrupted", reason="its worker was killed")
    heartbeat(sessions, owner="live/abc pid 1 started 1")
    heartbeat(sessions, owner=OTHER)
    assert model_queue.sweep(sessions, stale_s=30) == [interrupted]
    with session_scope(sessions) as s:  # OTHER's heartbeat goes stale
        s.execute(update(RunWorker).where(RunWorker.owner == OTHER).values(heartbeat_at=utcnow().replace(year=2000)))
    assert model_queue.sweep(sessions, stale_s=30) == [silent]
    with sessions() as s:
        assert sorted(s.scalars(select(ModelTurn.run_id)).all()) == sorted([alive, mine])  # this worker's own stays
    with pytest.raises(KeyError):
        model_queue.try_start(sessions, silent, limit=1)


def test_turns_racing_for_one_place_start_once(sessions: sessionmaker[Session]) -> None:
    ids = runs(sessions, 8)
    for run_id in ids:
        model_queue.join(sessions, run_id)
    barrier = threading.Barrier(len(ids))
    started: list[str] = []
    errors: list[BaseException] = []

    def race(run_id: str) -> None:
        barrier.wait()
        try:
            if model_queue.try_start(sessions, run_id, limit=1) == 0:
                started.append(run_id)
        except BaseException as exc:  # a lock error would be a defect too
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(r,)) for r in reversed(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and started == [ids[0]]  # only the first ticket, whoever asked first


def test_a_chat_job_not_yet_taken_waits_behind_the_waiting_turns_and_the_jobs_queued_before_it(
        sessions: sessionmaker[Session]) -> None:
    holding, waiting = runs(sessions, 2)
    first, second = (RunLog.start(sessions, question=f"job{i}", conversation_id=None, model="m", channel="web",
                                  queued=True).run_id for i in range(2))
    for run_id in (holding, waiting):
        model_queue.join(sessions, run_id)
    assert model_queue.try_start(sessions, holding, limit=1) == 0
    assert model_queue.places(sessions, [holding, waiting, first, second]) == {holding: 0, waiting: 1, first: 2,
                                                                                second: 3}
    assert model_queue.load(sessions) == (1, 3)  # the jobs no worker has taken wait too
    assert RunLog.claim(sessions, first) is not None  # a worker takes the first job: it joins the model's queue
    model_queue.join(sessions, first)
    assert model_queue.places(sessions, [first, second]) == {first: 2, second: 3}
    model_queue.leave(sessions, holding)
    assert model_queue.places(sessions, [first, second]) == {first: 2, second: 3}  # nobody holds: still behind
    assert model_queue.try_start(sessions, waiting, limit=1) == 0
    assert model_queue.places(sessions, [first, second]) == {first: 1, second: 2}
