"""The `jobs` rows: what a job is, how far it got, how it ended.

Progress and heartbeats are written in short transactions of their own, so a reader in any
process sees them while the job's own work is still uncommitted. On SQLite a job that holds the
write lock (churn scoring inserts its scores in one transaction) would block such a write; there
the write waits at most `SQLITE_PROGRESS_WAIT_MS` and is skipped, and the in-process queue keeps
the live figures in memory (jobs/queue.py) — the row catches up at the next write and at the end.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crm.models import Job

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
Backend = Literal["inprocess", "procrastinate"]
SQLITE_PROGRESS_WAIT_MS = 200
INTERRUPTED = ("interrupted: the process keeping it stopped (no heartbeat for {stale:g} s); retry it "
               "(POST /api/v1/jobs/{{id}}/retry, `valuechain jobs retry ID`)")


class JobView(BaseModel):
    """A job as the API and the CLI show it."""

    id: str
    kind: str
    state: JobState
    params: dict[str, Any] = Field(description="The job's parameters, as submitted (ingest: document sources only)")
    done: int = Field(description="Units done so far (accounts scored, chunks embedded, steps)")
    total: int = Field(description="Units to do (0 while not yet known)")
    message: str = Field(description="The last progress message, e.g. 'scored 1200/7000 accounts'")
    result: dict[str, Any] | None = Field(default=None, description="What the job produced, once done")
    error: str | None = None
    retryable: bool = Field(description="A failure that may pass on a new attempt (e.g. the worker died)")
    cancel_requested: bool = False
    created_by: str
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    attempts: int = 0
    worker: str | None = None
    backend: Backend


def utcnow() -> dt.datetime:
    """Naive UTC, like every other timestamp column."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def public_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters fit to show: an ingest's document texts are left out (they can be megabytes)."""
    if kind == "knowledge_ingest":
        return {k: v for k, v in params.items() if k != "documents"} | {
            "sources": [d.get("source") for d in params.get("documents", [])]}
    return params


def view(job: Job) -> JobView:
    return JobView(id=job.id, kind=job.kind, state=job.state,
                   params=public_params(job.kind, job.params), done=job.done, total=job.total,
                   message=job.message, result=job.result, error=job.error, retryable=job.retryable,
                   cancel_requested=job.cancel_requested, created_by=job.created_by, created_at=job.created_at,
                   started_at=job.started_at, finished_at=job.finished_at, heartbeat_at=job.heartbeat_at,
                   attempts=job.attempts, worker=job.worker, backend=job.backend)


def create(session: Session, *, kind: str, params: dict[str, Any], created_by: str, backend: Backend,
           total: int = 0) -> Job:
    job = Job(id=uuid.uuid4().hex, kind=kind, params=params, state="queued", backend=backend,
              created_by=created_by, created_at=utcnow(), done=0, total=total, message="queued",
              retryable=False, cancel_requested=False, attempts=0, heartbeat_at=utcnow())
    session.add(job)
    session.flush()
    return job


def list_jobs(session: Session, *, kind: str | None = None, state: str | None = None,
              created_by: str | None = None, limit: int = 50, offset: int = 0) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc(), Job.id)
    if kind:
        query = query.where(Job.kind == kind)
    if state:
        query = query.where(Job.state == state)
    if created_by:
        query = query.where(Job.created_by == created_by)
    return list(session.scalars(query.limit(limit).offset(offset)))


def claim(session: Session, job_id: str, worker: str) -> bool:
    """queued → running for exactly one taker (an atomic UPDATE ... WHERE state = 'queued')."""
    now = utcnow()
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.state == "queued")
        .values(state="running", started_at=now, heartbeat_at=now, worker=worker, attempts=Job.attempts + 1,
                message="started")
    )
    session.commit()
    return getattr(result, "rowcount", 0) == 1


def _short_write(engine: Engine, job_id: str, values: dict[str, Any]) -> bool:
    """One UPDATE of a running job's row in its own transaction; on SQLite, skipped (False) when
    another transaction holds the write lock for longer than SQLITE_PROGRESS_WAIT_MS."""
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as conn:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_PROGRESS_WAIT_MS}")
            try:
                conn.execute(update(Job).where(Job.id == job_id, Job.state == "running").values(**values))
                conn.commit()
            finally:
                if sqlite:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA busy_timeout=30000")  # core.db's value, for the pool's next user
        return True
    except OperationalError as exc:
        if not sqlite:
            raise
        log.debug("job %s: progress write skipped (%s)", job_id, exc)
        return False


def write_progress(engine: Engine, job_id: str, done: int, total: int, message: str) -> bool:
    return _short_write(engine, job_id, {"done": done, "total": total, "message": message[:500],
                                         "heartbeat_at": utcnow()})


def heartbeat(engine: Engine, job_id: str) -> bool:
    return _short_write(engine, job_id, {"heartbeat_at": utcnow()})


def heartbeat_waiting(session: Session, job_ids: list[str]) -> None:
    """The in-process queue's jobs still waiting for their turn are kept alive too."""
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids), Job.state == "queued").values(heartbeat_at=utcnow()))
        session.commit()


def cancel_requested(engine: Engine, job_id: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar())


def finish(session: Session, job_id: str, state: JobState, *, done: int | None = None, total: int | None = None,
           message: str = "", result: dict[str, Any] | None = None, error: str | None = None,
           retryable: bool = False, worker: str | None = None) -> None:
    """Record the end of a job that is running (or still queued, when it is cancelled or
    interrupted before it started); a job already finished is left as it is, except one reaped
    as interrupted while `worker` (which had claimed it) was still at work — a heartbeat that
    could not be written (SQLite locked) or a long pause: the real end is what it records."""
    values: dict[str, Any] = {"state": state, "finished_at": utcnow(), "message": message, "result": result,
                              "error": error, "retryable": retryable}
    if done is not None:
        values["done"] = done
    if total is not None:
        values["total"] = total
    open_: ColumnElement[bool] = Job.state.in_(("queued", "running"))
    if worker is not None:
        open_ = open_ | ((Job.state == "failed") & (Job.message == "interrupted") & (Job.worker == worker))
    session.execute(update(Job).where(Job.id == job_id, open_).values(**values))
    session.commit()


def request_cancel(session: Session, job_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id, Job.state.in_(("queued", "running")))
                    .values(cancel_requested=True))
    session.commit()


def reap_stalled(session: Session, stale_s: float) -> list[str]:
    """Mark `failed` (retryable) every job whose keeper stopped: a `running` job whose heartbeat
    is older than `stale_s` (its worker was killed, ran out of memory, lost its machine), and a
    `queued` in-process job likewise (the process that would run it is gone). Queued jobs of the
    PostgreSQL queue wait in procrastinate's table for any worker and are left alone. Called by
    workers, by queues at start and by every status read, so a dead worker's job is never shown
    `running` for long and never silently lost."""
    cutoff = utcnow() - dt.timedelta(seconds=stale_s)
    stale = (Job.heartbeat_at < cutoff) & (
        (Job.state == "running") | ((Job.state == "queued") & (Job.backend == "inprocess")))
    ids = list(session.scalars(select(Job.id).where(stale)))
    if ids:
        session.execute(update(Job).where(Job.id.in_(ids), stale)
                        .values(state="failed", finished_at=utcnow(), retryable=True,
                                error=INTERRUPTED.format(stale=stale_s), message="interrupted"))
        session.commit()
        log.warning("jobs %s: their worker stopped; marked failed (retryable)", ", ".join(ids))
    return ids
