"""Chat run events in the database and worker liveness (issue #22, `agent.run_events`, `api.runs`):
what lets a reader on any API worker follow a run, and any worker end the runs of a worker that died.
The multi-process proof is tests/api/test_team_deploy.py; these pin the rules on one database."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import api.runs
from agent.copilot import AgentEvent
from agent.run_events import (
    forget_worker,
    heartbeat,
    interrupt_stale,
    prune,
    read_events,
    request_stop,
    stale_note,
    store_events,
    worker_seen,
)
from agent.runlog import RunLog, close_unfinished, process_owner, utcnow
from api.runs import Frame, RunRegistry
from core.db import make_sessionmaker, session_scope
from crm.models import AgentRun, RunWorker

ELSEWHERE = "other-host pid 4242 start abcd-1"
"""A worker on another machine: its pid cannot be checked here, only its heartbeat."""


@pytest.fixture
def sessions(any_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(any_engine)


def _run(sessions: sessionmaker[Session], owner: str | None) -> str:
    log = RunLog.start(sessions, question="Which accounts leak?", conversation_id=None, model="fake", channel="web")
    with session_scope(sessions) as s:
        s.execute(update(AgentRun).where(AgentRun.id == log.run_id).values(owner=owner))
    return log.run_id


def _beat(sessions: sessionmaker[Session], owner: str, age_s: float) -> None:
    heartbeat(sessions, owner)
    with session_scope(sessions) as s:
        s.execute(update(RunWorker).where(RunWorker.owner == owner)
                  .values(heartbeat_at=utcnow() - dt.timedelta(seconds=age_s)))


def _status(sessions: sessionmaker[Session], run_id: str) -> tuple[str, str | None, str | None]:
    with sessions() as s:
        run = s.get(AgentRun, run_id)
        assert run is not None
        return run.status, run.error, run.answer


def test_a_run_whose_worker_went_quiet_is_interrupted_and_others_are_left_alone(
        sessions: sessionmaker[Session]) -> None:
    quiet = _run(sessions, ELSEWHERE)
    _beat(sessions, ELSEWHERE, age_s=20)
    alive_owner = "third-host pid 7 start ef-2"
    alive = _run(sessions, alive_owner)
    _beat(sessions, alive_owner, age_s=1)
    unknown = _run(sessions, "fourth-host pid 9 start 00-3")  # no heartbeat: a terminal chat elsewhere
    mine = _run(sessions, process_owner())

    assert interrupt_stale(sessions, stale_s=15, run_id=alive) == []
    assert interrupt_stale(sessions, stale_s=15) == [quiet]
    assert _status(sessions, quiet) == ("interrupted", stale_note(ELSEWHERE, 15), None)
    assert "pid 4242 on other-host" in stale_note(ELSEWHERE, 15)
    for run_id in (alive, unknown, mine):
        assert _status(sessions, run_id)[0] == "running"
    assert worker_seen(sessions, alive_owner, stale_s=15) and not worker_seen(sessions, ELSEWHERE, stale_s=15)
    forget_worker(sessions, alive_owner)
    assert not worker_seen(sessions, alive_owner, stale_s=15)
    assert interrupt_stale(sessions, stale_s=15) == []  # a worker gone cleanly ended its own runs


def test_events_are_stored_in_order_and_a_number_is_taken_once(sessions: sessionmaker[Session]) -> None:
    run_id = _run(sessions, process_owner())
    store_events(sessions, run_id, [(1, "run_started", {"type": "run_started"}), (2, "token", {"text": "a"})])
    store_events(sessions, run_id, [(3, "token", {"text": "b"})])
    assert [seq for seq, _, _ in read_events(sessions, run_id)] == [1, 2, 3]
    assert read_events(sessions, run_id, after=2) == [(3, "token", {"text": "b"})]
    with pytest.raises(IntegrityError):
        store_events(sessions, run_id, [(3, "token", {"text": "again"})])
    close_unfinished(sessions, run_id, status="stopped", reason="test")
    assert prune(sessions, keep_days=1) == 0  # ended just now: kept
    with session_scope(sessions) as s:
        s.execute(update(AgentRun).where(AgentRun.id == run_id)
                  .values(finished_at=utcnow() - dt.timedelta(days=2)))
    assert prune(sessions, keep_days=1) == 3 and read_events(sessions, run_id) == []


async def _turn(run_id: str, conversation_id: str) -> AsyncIterator[AgentEvent]:
    yield AgentEvent(type="run_started", run_id=run_id, conversation_id=conversation_id)
    for word in ("Two", " accounts", "."):
        yield AgentEvent(type="token", text=word, run_id=run_id)
        await asyncio.sleep(0)
    yield AgentEvent(type="answer", text="Two accounts.", run_id=run_id, conversation_id=conversation_id)


async def _collect(frames: AsyncIterator[Frame | None]) -> list[Frame]:
    return [f async for f in frames if f is not None]


def test_a_run_is_stored_as_it_streams_and_another_registry_replays_it_the_same(
        sessions: sessionmaker[Session]) -> None:
    log = RunLog.start(sessions, question="Which?", conversation_id=None, model="fake", channel="api")

    async def scenario() -> tuple[list[Frame], list[Frame], list[Frame]]:
        owner = RunRegistry(sessions)
        run = await owner.start(_turn(log.run_id, log.conversation_id), question="Which?", user_id=None,
                                channel="api")
        await run.wait()
        for task in list(owner._tasks):
            await task  # the writer has stored the last events when the turn's task ends
        reader = RunRegistry(sessions)  # another worker: the run is not in its memory
        return run.frames, await _collect(reader.follow_stored(run.run_id)), \
            await _collect(reader.follow_stored(run.run_id, after=3))

    local, replayed, after_three = asyncio.run(scenario())
    assert [f.event for f in local] == ["run_started", "token", "token", "token", "answer"]
    assert replayed == local and after_three == local[3:]


def test_a_run_that_ended_without_its_last_event_gets_a_stopped_event(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.runs, "ENDED_GRACE_S", 2.5)
    live_owner = "fifth-host pid 11 start 12-4"
    _beat(sessions, live_owner, age_s=0)
    finishing, closed = _run(sessions, live_owner), _run(sessions, live_owner)
    for run_id in (finishing, closed):
        store_events(sessions, run_id, [(1, "run_started", {"type": "run_started"})])
        close_unfinished(sessions, run_id, status="error", reason="gone")

    async def answer_late() -> list[Frame]:  # a live owner stores its last event after the run row ended
        reader = asyncio.create_task(_collect(RunRegistry(sessions).follow_stored(finishing, poll_s=0.05)))
        await asyncio.sleep(1.5)
        store_events(sessions, finishing, [(2, "answer", {"type": "answer", "text": "Done."})])
        return await reader

    assert [f.event for f in asyncio.run(answer_late())] == ["run_started", "answer"]
    # ...and when it never comes, the reader says the run ended once the grace is over
    frames = asyncio.run(_collect(RunRegistry(sessions).follow_stored(closed, after=1, poll_s=0.05)))
    assert [(f.seq, f.event, f.data["status"], f.data["text"]) for f in frames] == [(2, "stopped", "error", "gone")]

    run_id = _run(sessions, ELSEWHERE)
    store_events(sessions, run_id, [(1, "run_started", {"type": "run_started"}), (2, "token", {"text": "Tw"})])
    _beat(sessions, ELSEWHERE, age_s=60)  # its worker died with the run half-streamed: the reader marks it

    frames = asyncio.run(_collect(RunRegistry(sessions, stale_s=15).follow_stored(run_id, poll_s=0.05)))
    assert [(f.seq, f.event) for f in frames] == [(1, "run_started"), (2, "token"), (3, "stopped")]
    assert frames[-1].data["status"] == "interrupted" and frames[-1].data["text"] == stale_note(ELSEWHERE, 15)
    assert _status(sessions, run_id)[2] is None and [e for _, e, _ in read_events(sessions, run_id)] == [
        "run_started", "token"]


async def _slow_turn(run_id: str, conversation_id: str) -> AsyncIterator[AgentEvent]:
    yield AgentEvent(type="run_started", run_id=run_id, conversation_id=conversation_id)
    yield AgentEvent(type="token", text="Two", run_id=run_id)
    await asyncio.sleep(30)  # the model thinking: a Stop must cut this short
    yield AgentEvent(type="answer", text="Two accounts.", run_id=run_id, conversation_id=conversation_id)


def test_a_stop_asked_on_another_worker_is_carried_out_by_the_one_holding_the_run(
        sessions: sessionmaker[Session]) -> None:
    log = RunLog.start(sessions, question="Which?", conversation_id=None, model="fake", channel="api")

    async def scenario() -> tuple[float, list[Frame]]:
        owner = RunRegistry(sessions)
        owner.start_keep_alive(interval_s=0.2)
        run = await owner.start(_slow_turn(log.run_id, log.conversation_id), question="Which?", user_id=None,
                                channel="api")
        await asyncio.sleep(0.3)
        began = time.monotonic()
        request_stop(sessions, run.run_id, "stopped by alice after 1 s")  # what the other worker's route does
        await run.wait()
        took = time.monotonic() - began
        await owner.shutdown()  # ends the watcher too
        return took, await _collect(RunRegistry(sessions).follow_stored(run.run_id))

    took, frames = asyncio.run(scenario())
    assert took < 5
    assert [f.event for f in frames] == ["run_started", "token", "stopped"]
    assert frames[-1].data["status"] == "stopped" and frames[-1].data["text"] == "stopped by alice after 1 s"
    assert _status(sessions, log.run_id) == ("stopped", "stopped by alice after 1 s", None)
    assert not worker_seen(sessions, process_owner(), stale_s=15)  # the heartbeat left with the watcher


def test_a_queued_chat_job_streams_its_place_then_from_memory_once_this_worker_takes_it(
        sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    """`api.chat_jobs`: the receiving worker follows a job's stored events; while no worker has taken
    it, its place comes unnumbered; once this worker takes it, its frames come from memory."""
    queued = RunLog.start(sessions, question="Which?", conversation_id=None, model="fake", channel="web", queued=True)
    store_events(sessions, queued.run_id, [(1, "run_started", {"type": "run_started"})])
    reads: list[float] = []
    real_read = api.runs.read_events

    def counted(*args: object, **kwargs: object) -> object:
        reads.append(time.monotonic())
        return real_read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api.runs, "read_events", counted)

    async def scenario() -> tuple[list[Frame], list[Frame], float]:
        registry = RunRegistry(sessions)
        follower = registry.follow_stored(queued.run_id, poll_s=0.05)
        seen: list[Frame] = []

        async def read() -> None:
            async for frame in follower:
                if frame is not None:
                    seen.append(frame)

        reader = asyncio.create_task(read())
        await asyncio.sleep(1.5)  # no worker takes jobs: the reader hears the job's place
        assert [(f.seq, f.event, f.data.get("position")) for f in seen] == [(1, "run_started", None),
                                                                           (None, "queue", 1)]
        claimed = RunLog.claim(sessions, queued.run_id)  # this worker takes it (`ChatJobs.take`)
        assert claimed is not None
        run = await registry.start(_turn(claimed.run_id, claimed.conversation_id), question="Which?", user_id=None,
                                   channel="web", prepared=True)
        taken = time.monotonic()
        await asyncio.wait_for(reader, timeout=10)
        return seen, run.frames, taken

    seen, local, taken = asyncio.run(scenario())
    numbered = [f for f in seen if f.seq is not None]
    assert [f.event for f in local] == ["run_started", "token", "token", "token", "answer"]
    assert [f.seq for f in numbered] == [1, 2, 3, 4, 5] and numbered[1:] == local[1:]  # 1: the stored run_started
    assert (seen[2].seq, seen[2].event, seen[2].data["position"]) == (None, "queue", 0)  # taken: the wait is over
    assert len([t for t in reads if t > taken]) <= 1  # from memory: at most the read in flight when it was taken
