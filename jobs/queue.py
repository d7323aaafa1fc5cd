"""The queues that run jobs, and `submit`, the one way to create one.

- PostgreSQL: procrastinate (kept library: a PostgreSQL-native queue on psycopg 3, with locks,
  retries and a worker; docs/DEPLOY.md "Jobs" says why this one). `submit` writes our row and
  defers the task `valuechain.run_job(job_id)` in procrastinate's tables; any `valuechain worker`
  process picks it up. Procrastinate's schema is created on first use.
- SQLite (the laptop default): a thread of the submitting process runs the jobs one at a time
  (embedding and model training take the CPU). Same rows, same progress; a restart marks what it
  had not finished failed and retryable (`records.reap_stalled`).
"""

from __future__ import annotations

import logging
import queue as stdlib_queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from crm.models import Job
from jobs import records
from jobs.kinds import KINDS
from jobs.run import Live, execute
from tools.errors import ToolInputError

if TYPE_CHECKING:
    from procrastinate import App

    from knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

TASK = "valuechain.run_job"
QUEUE = "valuechain"


class JobQueue(Protocol):
    backend: records.Backend

    def enqueue(self, job_id: str) -> None: ...

    def live(self, job_id: str) -> Live | None: ...

    def close(self, timeout: float = 30.0) -> None: ...


def check_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the job will read them, or a ToolInputError saying what is wrong."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ToolInputError(f"unknown job kind {kind!r}; kinds: {', '.join(sorted(KINDS))}")
    try:
        return spec.params.model_validate(params).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(params)'}: {e['msg']}" for e in exc.errors())
        raise ToolInputError(f"bad parameters for {kind}: {problems}") from None


def submit(sessions: sessionmaker[Session], jobs: JobQueue, kind: str, params: dict[str, Any], *,
           created_by: str, total: int = 0) -> Job:
    """Check, record and queue a job; returns its row. Bad input raises ToolInputError before
    anything is written. If the queue refuses it, the row is kept, marked failed and retryable."""
    checked = check_params(kind, params)
    with sessions() as session:
        job = records.create(session, kind=kind, params=checked, created_by=created_by, backend=jobs.backend,
                             total=total)
        session.commit()
    try:
        jobs.enqueue(job.id)
    except Exception as exc:
        log.exception("job %s could not be queued", job.id)
        with sessions() as session:
            records.finish(session, job.id, "failed", error=f"could not be queued: {type(exc).__name__}: {exc}",
                           retryable=True, message="not queued")
        raise
    return job


def retry(sessions: sessionmaker[Session], jobs: JobQueue, job_id: str, *, created_by: str) -> Job:
    """A new job with the kind and parameters of failed, retryable job `job_id` (an interrupted
    ingest still has its documents in the row). The failed job stays as it was, for the record."""
    with sessions() as session:
        old = session.get(Job, job_id)
        if old is None:
            raise ToolInputError(f"no job {job_id!r}")
        if not (old.state == "failed" and old.retryable):
            raise ToolInputError(f"job {job_id} is {old.state}{' (not retryable)' if old.state == 'failed' else ''}; "
                                 "only a failed, retryable job can be retried")
        kind, params, total = old.kind, dict(old.params), old.total
    return submit(sessions, jobs, kind, params, created_by=created_by, total=total)


class InProcessQueue:
    """Jobs run by one thread of this process, in the order submitted."""

    backend: records.Backend = "inprocess"

    def __init__(self, sessions: sessionmaker[Session], knowledge: Callable[[], KnowledgeStore], *,
                 heartbeat_s: float, stale_s: float) -> None:
        self._sessions = sessions
        self._knowledge = knowledge
        self._heartbeat_s = heartbeat_s
        self._ids: stdlib_queue.Queue[str | None] = stdlib_queue.Queue()
        self._live: dict[str, Live] = {}
        self._waiting: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        with sessions() as session:
            records.reap_stalled(session, stale_s)  # what a previous process left behind
        self._thread = threading.Thread(target=self._work, name="jobs-inprocess", daemon=True)
        self._thread.start()
        self._keeper = threading.Thread(target=self._keep_waiting_alive, name="jobs-waiting", daemon=True)
        self._keeper.start()

    def enqueue(self, job_id: str) -> None:
        if self._closed.is_set():
            raise RuntimeError("the job queue is shut down")
        with self._lock:
            self._live[job_id] = Live()
            self._waiting.append(job_id)
        self._ids.put(job_id)

    def live(self, job_id: str) -> Live | None:
        with self._lock:
            return self._live.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job has left this queue (tests, the CLI); False on timeout."""
        live = self.live(job_id)
        return live is None or live.ended.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Shut down: the running job is asked to stop (an ingest stops between batches and keeps
        nothing); waiting jobs are recorded as cancelled, never left queued."""
        self._closed.set()
        with self._lock:
            for live in self._live.values():
                live.cancel.set()
            waiting = list(self._waiting)
        self._ids.put(None)
        self._thread.join(timeout)
        with self._sessions() as session:
            for job_id in waiting:
                records.finish(session, job_id, "cancelled", message="cancelled: the server shut down first")

    def _work(self) -> None:
        while True:
            job_id = self._ids.get()
            if job_id is None:
                return
            with self._lock:
                if job_id in self._waiting:
                    self._waiting.remove(job_id)
                live = self._live.get(job_id)
            try:
                if live is not None and not self._closed.is_set():
                    execute(job_id, sessions=self._sessions, knowledge=self._knowledge,
                            heartbeat_s=self._heartbeat_s, live=live)
                elif live is not None:
                    with self._sessions() as session:
                        records.finish(session, job_id, "cancelled", message="cancelled: the server shut down first")
            except Exception:  # recording the end failed (database down): logged; the row is reaped later
                log.exception("job %s: could not be run or recorded", job_id)
            finally:
                with self._lock:
                    self._live.pop(job_id, None)
                if live is not None:
                    live.ended.set()

    def _keep_waiting_alive(self) -> None:
        while not self._closed.wait(self._heartbeat_s):
            with self._lock:
                waiting = list(self._waiting)
            try:
                with self._sessions() as session:
                    records.heartbeat_waiting(session, waiting)
            except Exception:  # the next beat tries again
                log.warning("jobs: heartbeat of waiting jobs failed", exc_info=True)


def conninfo(engine: Engine) -> str:
    """libpq connection string of a SQLAlchemy PostgreSQL engine (procrastinate speaks psycopg)."""
    return make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)


def procrastinate_app(dsn: str, run: Callable[[str], None] | None = None) -> App:
    """A procrastinate App on `dsn`; with `run`, the task that runs a job (the worker's side)."""
    # deferred: only the PostgreSQL path needs procrastinate (and its psycopg pool)
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))
    if run is not None:
        app.task(name=TASK, queue=QUEUE)(run)
    return app


def ensure_schema(engine: Engine) -> None:
    """Create procrastinate's tables once per database (under an advisory lock: two workers
    starting together must not both try)."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(220022)"))
        if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            # deferred: only the PostgreSQL path needs procrastinate
            from procrastinate.schema import SchemaManager

            with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
                cursor.execute(SchemaManager.get_schema())  # no parameters: its '%' are not placeholders
            log.info("created procrastinate's schema")


def fail_abandoned(engine: Engine, *, stale_s: float, queue: str = QUEUE, task: str = TASK) -> list[int]:
    """Finish as `failed` procrastinate's own record of our jobs whose worker died mid-job (its
    heartbeat older than `stale_s`, or the worker pruned): procrastinate would show them `doing`
    for ever. Uses procrastinate's own queries. Our row says the same (`records.reap_stalled`) and
    is what `valuechain jobs retry` re-queues; the ids finished here are procrastinate's."""
    from procrastinate import sql  # deferred: only the PostgreSQL path needs procrastinate

    with engine.begin() as conn, conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(sql.queries["select_stalled_jobs_by_heartbeat"],
                       {"queue": queue, "task_name": task, "seconds_since_heartbeat": stale_s})
        ids = [int(row[0]) for row in cursor.fetchall()]
        for job_id in ids:
            cursor.execute(sql.queries["finish_job"], {"job_id": job_id, "status": "failed", "delete_job": False})
    if ids:
        log.warning("procrastinate jobs %s: their worker stopped; finished as failed", ", ".join(map(str, ids)))
    return ids


class PostgresQueue:
    """Jobs deferred to procrastinate; `valuechain worker` processes run them."""

    backend: records.Backend = "procrastinate"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        ensure_schema(engine)
        self._app = procrastinate_app(conninfo(engine))
        self._app.open()  # a connection pool kept for the queue's life (thread-safe)

    def enqueue(self, job_id: str) -> None:
        self._app.configure_task(TASK, queue=QUEUE).defer(job_id=job_id)

    def live(self, job_id: str) -> Live | None:
        return None  # the worker is another process: the row is the only record

    def close(self, timeout: float = 30.0) -> None:
        self._app.close()


def queue_for(engine: Engine, sessions: sessionmaker[Session], knowledge: Callable[[], KnowledgeStore], *,
              heartbeat_s: float, stale_s: float) -> JobQueue:
    """procrastinate on PostgreSQL, a thread on SQLite."""
    if engine.dialect.name == "postgresql":
        return PostgresQueue(engine)
    return InProcessQueue(sessions, knowledge, heartbeat_s=heartbeat_s, stale_s=stale_s)
