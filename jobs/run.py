"""Running one job: take it (queued → running), run its kind with a context for progress,
cancellation and a heartbeat, and record how it ended. The same code runs under every queue."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from crm.models import Job
from jobs import records
from jobs.kinds import KINDS
from knowledge.ingest import IngestCancelled
from tools.errors import ToolInputError

if TYPE_CHECKING:
    from knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobCancelled(Exception):
    """The job stopped on request before it finished."""


@dataclass
class Live:
    """A running job's figures in memory: what the in-process queue shows when a write to the row
    had to be skipped (SQLite locked by the job's own transaction)."""

    done: int = 0
    total: int = 0
    message: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass
class JobContext:
    job_id: str
    sessions: sessionmaker[Session]
    knowledge: Callable[[], KnowledgeStore]
    live: Live = field(default_factory=Live)
    _cancelled: bool = False

    def progress(self, done: int, total: int, message: str) -> None:
        self.live.done, self.live.total, self.live.message = done, total, message
        engine = self.sessions.kw["bind"]
        records.write_progress(engine, self.job_id, done, total, message)

    def cancelled(self) -> bool:
        """Asked to stop: by the queue (shutdown) or by a cancel request on the row (it may come
        from another process; one primary-key read, between batches that take seconds)."""
        if not (self.live.cancel.is_set() or self._cancelled):
            self._cancelled = records.cancel_requested(self.sessions.kw["bind"], self.job_id)
        return self.live.cancel.is_set() or self._cancelled


def _beat(ctx: JobContext, every_s: float, stop: threading.Event) -> None:
    engine = ctx.sessions.kw["bind"]
    while not stop.wait(every_s):
        try:
            records.heartbeat(engine, ctx.job_id)
        except Exception:  # a lost connection must not kill the job; the next beat tries again
            log.warning("job %s: heartbeat failed", ctx.job_id, exc_info=True)


def execute(job_id: str, *, sessions: sessionmaker[Session], knowledge: Callable[[], KnowledgeStore],
            heartbeat_s: float, live: Live | None = None, worker: str | None = None) -> str:
    """Run job `job_id` if it is still queued; returns its final state (or its current one when
    another worker had taken it, or it had been cancelled or reaped before it started)."""
    worker = worker or worker_name()
    with sessions() as session:
        if not records.claim(session, job_id, worker):
            job = session.get(Job, job_id)
            return job.state if job is not None else "missing"
        job = session.get(Job, job_id)
        assert job is not None
        kind_name, raw, cancel = job.kind, dict(job.params), job.cancel_requested
    ctx = JobContext(job_id, sessions, knowledge, live or Live())
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(ctx, heartbeat_s, stop), name=f"job-beat-{job_id[:8]}", daemon=True)
    beat.start()
    outcome: dict[str, Any]
    try:
        if cancel:
            raise JobCancelled
        kind = KINDS.get(kind_name)
        if kind is None:
            raise ToolInputError(f"unknown job kind {kind_name!r}")
        result = kind.run(ctx, kind.params.model_validate(raw))
        outcome = {"state": "done", "result": result, "message": ctx.live.message or "done"}
    except (JobCancelled, IngestCancelled) as exc:
        outcome = {"state": "cancelled", "message": str(exc) or "cancelled before it started"}
    except (ToolInputError, ValidationError) as exc:  # the input is wrong: another attempt fails alike
        outcome = {"state": "failed", "error": f"{type(exc).__name__}: {exc}", "message": "failed"}
    except Exception as exc:  # a fault or a bug: logged with its traceback, kept on the row, may pass on retry
        log.exception("job %s (%s) failed", job_id, kind_name)
        outcome = {"state": "failed", "error": f"{type(exc).__name__}: {exc}", "message": "failed",
                   "retryable": True}
    finally:
        stop.set()
        beat.join()
    with sessions() as session:
        records.finish(session, job_id, done=ctx.live.done, total=ctx.live.total, worker=worker, **outcome)
    return str(outcome["state"])
