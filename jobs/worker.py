"""`valuechain worker`: a procrastinate worker that runs the jobs queued on PostgreSQL.

Each job runs in a thread of the worker (procrastinate runs synchronous tasks that way), one at
a time by default. A side thread marks jobs whose worker died (no heartbeat for `jobs_stale_s`)
failed and retryable, in our row and in procrastinate's, so several workers watch over each other.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

from core.runtime import get_engine, get_sessionmaker
from core.settings import Settings
from jobs import records
from jobs.queue import QUEUE, conninfo, ensure_schema, fail_abandoned, procrastinate_app
from jobs.run import execute, worker_name

if TYPE_CHECKING:
    from knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)


def run_worker(settings: Settings, *, concurrency: int = 1, burst: bool = False) -> None:
    """Run jobs until stopped (SIGINT/SIGTERM let the running job finish); `burst`: until the
    queue is empty. Refuses SQLite: there jobs run in the process that submits them."""
    engine = get_engine(settings)
    if engine.dialect.name != "postgresql":
        raise ValueError("`valuechain worker` needs PostgreSQL (DATABASE_URL=postgresql+psycopg://...); "
                         "on SQLite jobs run inside the API or CLI process that submits them")
    ensure_schema(engine)
    sessions = get_sessionmaker(settings)
    name = worker_name()

    @lru_cache(maxsize=1)
    def knowledge() -> KnowledgeStore:
        # deferred: loading Chroma and the embedding model takes seconds; only ingest jobs need them
        from knowledge.store import KnowledgeStore

        return KnowledgeStore.from_settings(settings)

    def run_job(job_id: str) -> None:
        state = execute(job_id, sessions=sessions, knowledge=knowledge, heartbeat_s=settings.jobs_heartbeat_s,
                        worker=name)
        log.info("job %s: %s", job_id, state)

    stop = threading.Event()

    def reap() -> None:
        while not stop.wait(max(1.0, settings.jobs_stale_s / 4)):
            try:
                with sessions() as session:
                    records.reap_stalled(session, settings.jobs_stale_s)
                fail_abandoned(engine, stale_s=settings.jobs_stale_s)
            except Exception:  # the database may be restarting; the next round tries again
                log.warning("jobs: reaping stalled jobs failed", exc_info=True)

    with sessions() as session:
        records.reap_stalled(session, settings.jobs_stale_s)
    fail_abandoned(engine, stale_s=settings.jobs_stale_s)
    reaper = threading.Thread(target=reap, name="jobs-reaper", daemon=True)
    reaper.start()
    app = procrastinate_app(conninfo(engine), run_job)
    try:
        # procrastinate's own heartbeat well inside the stale limit: a live worker's job is never judged abandoned
        beat = max(0.5, min(10.0, settings.jobs_stale_s / 3))
        app.run_worker(queues=[QUEUE], concurrency=concurrency, wait=not burst, name=name,
                       update_heartbeat_interval=beat, stalled_worker_timeout=settings.jobs_stale_s)
    finally:
        stop.set()
