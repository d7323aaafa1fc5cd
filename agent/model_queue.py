"""The model's queue of chat turns, for the whole deployment, in the database (`model_turns`).

Every API worker's turns take a place here (`join`), in ticket order; a turn holds the model once
fewer than `limit` (`CHAT_TURNS_AT_ONCE`) turns hold it and none waits ahead of it (`try_start`,
one conditional UPDATE: atomic on SQLite, under an advisory lock on PostgreSQL, where two
concurrent updates would each count before the other's write); it leaves when it ends (`leave`).
A place whose run is no longer running, or whose worker has ended or stopped its heartbeat, is
removed by whichever worker looks first (`sweep`), so a killed worker never keeps the model.

So two workers sharing one model endpoint let `limit` turns at it, not 2 x `limit`, and a waiting
turn's position counts the turns of every worker ahead of it.

A chat job no API worker has taken yet (`queued` in the run log, `api.chat_jobs`) has no place
here until one takes it; it then joins at the back. So `load` counts it as waiting and `places`
gives it the place it would have: behind every turn waiting for the model and every job queued
before it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from agent.runlog import owner_state, process_owner, utcnow
from core.db import session_scope
from crm.models import AgentRun, ModelTurn, RunWorker

LOCK_KEY = 220023
"""PostgreSQL advisory lock taken by `try_start` (jobs use 220022)."""

_START = text(
    "UPDATE model_turns SET started_at = :now WHERE run_id = :run_id AND started_at IS NULL"
    " AND (SELECT count(*) FROM model_turns h WHERE h.started_at IS NOT NULL)"
    " + (SELECT count(*) FROM model_turns w WHERE w.started_at IS NULL AND w.ticket < :ticket) < :limit"
)


def join(sessions: sessionmaker[Session], run_id: str, owner: str | None = None) -> int:
    """Take a place for `run_id` at the back of the queue; its ticket (a second join keeps the first)."""
    with session_scope(sessions) as s:
        ticket = s.scalar(select(ModelTurn.ticket).where(ModelTurn.run_id == run_id))
        if ticket is not None:
            return int(ticket)
        s.execute(insert(ModelTurn).values(run_id=run_id, owner=owner or process_owner(), queued_at=utcnow()))
        return int(s.scalar(select(ModelTurn.ticket).where(ModelTurn.run_id == run_id)) or 0)


def try_start(sessions: sessionmaker[Session], run_id: str, *, limit: int) -> int:
    """0 when `run_id` holds the model (now or already), else its place in the queue (1: next).

    Raises KeyError when it has no place (never joined, or swept: its worker was judged gone)."""
    with session_scope(sessions) as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        row = s.execute(select(ModelTurn.ticket, ModelTurn.started_at).where(ModelTurn.run_id == run_id)).first()
        if row is None:
            raise KeyError(run_id)
        ticket, started = row
        if started is not None:
            return 0
        done = s.execute(_START, {"now": utcnow(), "run_id": run_id, "ticket": ticket, "limit": limit})
        if getattr(done, "rowcount", 0):
            return 0
        ahead = s.scalar(select(func.count()).select_from(ModelTurn)
                         .where(ModelTurn.started_at.is_(None), ModelTurn.ticket < ticket))
        return int(ahead or 0) + 1


def leave(sessions: sessionmaker[Session], run_id: str) -> None:
    """`run_id` ended (answered, stopped or failed): its place, waiting or holding, is freed."""
    with session_scope(sessions) as s:
        s.execute(delete(ModelTurn).where(ModelTurn.run_id == run_id))


def load(sessions: sessionmaker[Session]) -> tuple[int, int]:
    """(turns holding the model, turns waiting for it or for a worker to take them), over every worker."""
    with sessions() as s:
        rows = s.execute(select(ModelTurn.started_at.is_(None), func.count()).group_by(ModelTurn.started_at.is_(None)))
        counts = {bool(waiting): int(n) for waiting, n in rows}
        jobs = s.scalar(select(func.count()).select_from(AgentRun).where(AgentRun.status == "queued"))
    return counts.get(False, 0), counts.get(True, 0) + int(jobs or 0)


def places(sessions: sessionmaker[Session], run_ids: list[str]) -> dict[str, int]:
    """run id → 0 when it holds the model, else its place in the queue (1: next); a chat job not yet
    taken comes after every waiting turn and the jobs queued before it; other runs left out."""
    if not run_ids:
        return {}
    with sessions() as s:  # jobs first: one taken between the two reads is then in one of them
        jobs = s.execute(select(AgentRun.id).where(AgentRun.status == "queued")
                         .order_by(AgentRun.started_at, AgentRun.id)).scalars().all()
        rows = s.execute(select(ModelTurn.run_id, ModelTurn.ticket, ModelTurn.started_at)).all()
    waiting = sorted(ticket for _, ticket, started in rows if started is None)
    wanted = set(run_ids)
    out = {run_id: 0 if started is not None else waiting.index(ticket) + 1
           for run_id, ticket, started in rows if run_id in wanted}
    held = {run_id for run_id, _, _ in rows}
    ahead = len(waiting)
    for run_id in jobs:
        if run_id in held:  # taken meanwhile: its place in the model's queue stands
            continue
        ahead += 1
        if run_id in wanted:
            out[run_id] = ahead
    return out


def sweep(sessions: sessionmaker[Session], *, stale_s: float) -> list[str]:
    """Remove the places of turns that can no longer end on their own: their run is no longer
    `running` in the run log (marked interrupted, or ended without leaving), or their worker has
    ended on this machine or sent no heartbeat for `stale_s`; the run ids removed. Places of this
    process are left to it."""
    me = process_owner()
    limit = utcnow() - dt.timedelta(seconds=stale_s)
    with sessions() as s:
        rows = s.execute(
            select(ModelTurn.run_id, ModelTurn.owner, AgentRun.status, RunWorker.heartbeat_at)
            .outerjoin(AgentRun, AgentRun.id == ModelTurn.run_id)
            .outerjoin(RunWorker, RunWorker.owner == ModelTurn.owner)
        ).all()
    gone = [run_id for run_id, owner, status, beat in rows
            if owner != me and (status != "running" or owner_state(owner) == "dead"
                                or (beat is not None and beat < limit))]
    if gone:
        with session_scope(sessions) as s:
            s.execute(delete(ModelTurn).where(ModelTurn.run_id.in_(gone)))
    return gone
