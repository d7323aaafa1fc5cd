"""A chat run's events and its worker's liveness, in the database, so any API worker can serve them.

The process running a turn stores each event it streams (`run_events`, numbered like the SSE
`id:`), whichever process that is (an API worker today, a queue worker later): a reader on
another worker replays and follows the run from these rows. Each API worker refreshes a
heartbeat (`run_workers`); a run still `running` whose owner's heartbeat is older than the
stale limit, or whose process has visibly ended on this machine, is marked `interrupted` by
whichever worker notices first (`interrupt_stale`), through `close_unfinished`: the question
and the calls made so far stay, no partial answer is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.runlog import close_unfinished, ended, owner_state, process_owner, utcnow
from core.db import session_scope
from crm.models import AgentRun, Conversation, RunEvent, RunStop, RunWorker

TERMINAL_EVENTS = ("answer", "stopped")
"""The last event of every run's stream."""

KEEP_DAYS = 7.0
"""How long a finished run's events stay replayable from the table (`prune`)."""
StoredEvent = tuple[int, str, dict[str, Any]]
"""(seq, event, data) of one stored event."""


def store_events(sessions: sessionmaker[Session], run_id: str, events: Sequence[StoredEvent]) -> None:
    """Append events of `run_id` (one transaction); a seq stored twice fails (primary key)."""
    if not events:
        return
    now = utcnow()
    with session_scope(sessions) as s:
        s.add_all(RunEvent(run_id=run_id, seq=seq, event=event, data=data, created_at=now)
                  for seq, event, data in events)


def read_events(sessions: sessionmaker[Session], run_id: str, *, after: int = 0) -> list[StoredEvent]:
    """The stored events of `run_id` numbered above `after`, in order."""
    with sessions() as s:
        rows = s.execute(select(RunEvent.seq, RunEvent.event, RunEvent.data)
                         .where(RunEvent.run_id == run_id, RunEvent.seq > after).order_by(RunEvent.seq)).all()
    return [(seq, event, dict(data)) for seq, event, data in rows]


def count_events(sessions: sessionmaker[Session], run_id: str) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(RunEvent).where(RunEvent.run_id == run_id)) or 0)


def run_state(sessions: sessionmaker[Session], run_id: str) -> tuple[str, str | None, str] | None:
    """(status, error, conversation id) of a run in the run log; None when unknown."""
    with sessions() as s:
        row = s.execute(select(AgentRun.status, AgentRun.error, AgentRun.conversation_id)
                        .where(AgentRun.id == run_id)).first()
    return None if row is None else (row[0], row[1], row[2])


def request_stop(sessions: sessionmaker[Session], run_id: str, reason: str) -> None:
    """Ask the worker holding `run_id` to stop it (a second request keeps the first reason)."""
    with session_scope(sessions) as s:
        if s.get(RunStop, run_id) is None:
            s.add(RunStop(run_id=run_id, requested_at=utcnow(), reason=reason))


def stop_requests(sessions: sessionmaker[Session], run_ids: Sequence[str]) -> dict[str, str]:
    """The stops asked (elsewhere) for any of `run_ids`: run id → reason."""
    if not run_ids:
        return {}
    with sessions() as s:
        rows = s.execute(select(RunStop.run_id, RunStop.reason).where(RunStop.run_id.in_(list(run_ids)))).all()
    return {run_id: reason for run_id, reason in rows}


def running_runs(sessions: sessionmaker[Session], *, user_id: int | None = None,
                 channels: Sequence[str] = ("web", "api")) -> list[tuple[str, str, str, dt.datetime, str]]:
    """(run id, conversation id, question, started at, status) of the runs not yet ended on any
    worker in `channels` (`running`, or `queued` for a worker to take: `api.chat_jobs`), oldest
    first; only `user_id`'s when given."""
    query = (select(AgentRun.id, AgentRun.conversation_id, AgentRun.question, AgentRun.started_at, AgentRun.status)
             .join(Conversation, Conversation.id == AgentRun.conversation_id)
             .where(AgentRun.status.in_(("running", "queued")), Conversation.channel.in_(list(channels)))
             .order_by(AgentRun.started_at))
    if user_id is not None:
        query = query.where(Conversation.user_id == user_id)
    with sessions() as s:
        return [(r[0], r[1], r[2], r[3], r[4]) for r in s.execute(query).all()]


# ---------------------------------------------------------------------------- liveness


def heartbeat(sessions: sessionmaker[Session], owner: str | None = None) -> None:
    """Record that `owner` (this process by default) is alive and answering its runs."""
    owner = owner or process_owner()
    now = utcnow()
    with session_scope(sessions) as s:
        done = s.execute(update(RunWorker).where(RunWorker.owner == owner).values(heartbeat_at=now))
        if not getattr(done, "rowcount", 0):
            s.add(RunWorker(owner=owner, started_at=now, heartbeat_at=now))


def prune(sessions: sessionmaker[Session], *, keep_days: float = KEEP_DAYS) -> int:
    """Delete the stored events of runs that ended over `keep_days` ago (their conversation keeps the
    question, calls and answer) and heartbeats that old (their runs were marked long since); events deleted."""
    cutoff = utcnow() - dt.timedelta(days=keep_days)
    with session_scope(sessions) as s:
        ended = select(AgentRun.id).where(AgentRun.finished_at < cutoff).scalar_subquery()
        done = s.execute(delete(RunEvent).where(RunEvent.run_id.in_(ended)))
        s.execute(delete(RunWorker).where(RunWorker.heartbeat_at < cutoff))
    return int(getattr(done, "rowcount", 0) or 0)


def forget_worker(sessions: sessionmaker[Session], owner: str | None = None) -> None:
    """A worker shutting down cleanly: its runs were ended by itself, nothing to judge stale."""
    with session_scope(sessions) as s:
        s.execute(delete(RunWorker).where(RunWorker.owner == (owner or process_owner())))


def worker_seen(sessions: sessionmaker[Session], owner: str | None, *, stale_s: float) -> bool:
    """Whether `owner` is an API worker whose heartbeat is fresh (younger than `stale_s`)."""
    if not owner:
        return False
    with sessions() as s:
        beat = s.scalar(select(RunWorker.heartbeat_at).where(RunWorker.owner == owner))
    return beat is not None and utcnow() - beat <= dt.timedelta(seconds=stale_s)


def owner_gone(sessions: sessionmaker[Session], run_id: str, *, stale_s: float) -> bool:
    """Whether the process that ran `run_id` can no longer write to it: ended on this machine, or no
    API worker with a fresh heartbeat (a terminal chat elsewhere counts as gone: it streams nothing)."""
    with sessions() as s:
        owner = s.scalar(select(AgentRun.owner).where(AgentRun.id == run_id))
    return owner_state(owner) == "dead" or not worker_seen(sessions, owner, stale_s=stale_s)


def stale_note(owner: str, stale_s: float) -> str:
    return (f"the API worker answering it ({_who(owner)}) stopped answering (no heartbeat for over "
            f"{stale_s:g} s) before the answer; ask again")


def interrupt_stale(sessions: sessionmaker[Session], *, stale_s: float, run_id: str | None = None) -> list[str]:
    """Mark `interrupted` the runs (or the one run `run_id`) left `running` by another process that is
    gone: its heartbeat is older than `stale_s`, or it has ended on this machine; their ids.

    Runs of this process, of live workers and of processes without a heartbeat that cannot be
    checked (a terminal chat on another machine) are left alone."""
    me = process_owner()
    query = select(AgentRun.id, AgentRun.owner, RunWorker.heartbeat_at).outerjoin(
        RunWorker, RunWorker.owner == AgentRun.owner).where(AgentRun.status == "running")
    if run_id is not None:
        query = query.where(AgentRun.id == run_id)
    with sessions() as s:
        rows = s.execute(query).all()
    limit = utcnow() - dt.timedelta(seconds=stale_s)
    ids = []
    for rid, owner, beat in rows:
        if not owner or owner == me:
            continue
        if owner_state(owner) == "dead":
            note = ended(owner)
        elif beat is not None and beat < limit:
            note = stale_note(owner, stale_s)
        else:
            continue
        if close_unfinished(sessions, rid, status="interrupted", reason=note):
            ids.append(rid)
    return ids


def _who(owner: str) -> str:
    parts = owner.split(" ")
    return f"pid {parts[2]} on {parts[0].split('/')[0]}" if len(parts) >= 3 and parts[1] == "pid" else owner
