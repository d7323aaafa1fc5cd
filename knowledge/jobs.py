"""Knowledge ingests that outlive the request: background jobs with progress and cancellation.

`POST /api/v1/knowledge/documents` runs an upload with more new chunks than `JOB_THRESHOLD_CHUNKS`
as a job (`IngestJobs.start`): a thread embeds it batch by batch, updating `done`/`total`, while
the client polls `GET .../jobs/{id}`. `DELETE .../jobs/{id}` asks it to stop; the ingest checks
between batches (`knowledge.ingest.ingest_documents(cancelled=...)`), deletes the chunks it had
added and ends `cancelled`, so no partial document stays searchable. Jobs run one at a time
(embedding takes the CPU); the others wait `queued`.

Jobs live in the API process, like chat runs (`api/runs.py`): finished ones stay readable for
`KEEP_S` seconds (at most `KEEP_FINISHED`); a restart forgets them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from knowledge.ingest import IngestCancelled, IngestReport, ingest_documents
from knowledge.loaders import Document
from knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

JOB_THRESHOLD_CHUNKS = 32
"""Uploads embedding more new chunks than this (one embedding batch) run as a job."""
KEEP_S = 900.0
KEEP_FINISHED = 100

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[JobState] = frozenset({"done", "failed", "cancelled"})


class IngestJobView(BaseModel):
    """An ingest job as the API shows it."""

    id: str
    state: JobState
    done: int = Field(description="Chunks embedded so far")
    total: int = Field(description="Chunks to embed")
    sources: list[str] = Field(description="Source ids of the documents being ingested")
    created_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None = None
    cancel_requested: bool = False
    report: IngestReport | None = Field(default=None, description="What the ingest did, once done")
    error: str | None = None


@dataclass
class IngestJob:
    id: str
    sources: list[str]
    created_by: str
    total: int
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    state: JobState = "queued"
    done: int = 0
    report: IngestReport | None = None
    error: str | None = None
    finished_at: dt.datetime | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def view(self) -> IngestJobView:
        return IngestJobView(id=self.id, state=self.state, done=self.done, total=self.total, sources=self.sources,
                             created_by=self.created_by, created_at=self.created_at, finished_at=self.finished_at,
                             cancel_requested=self.cancel.is_set(), report=self.report, error=self.error)


class IngestJobs:
    """The process's ingest jobs (one embedding at a time)."""

    def __init__(self) -> None:
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()
        self._slot = threading.Lock()

    def start(self, docs: Sequence[Document], *, store: KnowledgeStore, total: int, created_by: str,
              max_chunks: int | None = None, replace_corpus: Collection[str] = ()) -> IngestJob:
        job = IngestJob(id=uuid.uuid4().hex, sources=[d.source for d in docs], created_by=created_by, total=total)
        job.thread = threading.Thread(target=self._run, args=(job, list(docs), store, max_chunks, list(replace_corpus)),
                                      name=f"ingest-{job.id[:8]}", daemon=True)
        with self._lock:
            self._prune()
            self._jobs[job.id] = job
        job.thread.start()
        return job

    def get(self, job_id: str) -> IngestJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> IngestJob | None:
        """Ask the job to stop before its next batch (a finished job is left as it is)."""
        job = self.get(job_id)
        if job is not None and job.state not in FINISHED:
            job.cancel.set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> IngestJob | None:
        job = self.get(job_id)
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return job

    def close(self, timeout: float = 30.0) -> None:
        """Cancel every unfinished job and wait for them (server shutdown)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)

    def _run(self, job: IngestJob, docs: list[Document], store: KnowledgeStore, max_chunks: int | None,
             replace_corpus: list[str]) -> None:
        with self._slot:
            job.state = "running"

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            try:
                job.report = ingest_documents(docs, store=store, max_chunks=max_chunks, replace_corpus=replace_corpus,
                                              progress=progress, cancelled=job.cancel.is_set)
                job.state = "done"
            except IngestCancelled:
                job.state = "cancelled"
            except Exception as exc:  # a bug or a store fault: kept on the job and logged, never swallowed silently
                log.exception("ingest job %s failed", job.id)
                job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                job.finished_at = dt.datetime.now(dt.UTC)
                job.finished = time.monotonic()

    def _prune(self) -> None:
        now = time.monotonic()
        done = sorted((j for j in self._jobs.values() if j.finished is not None), key=lambda j: j.finished or 0.0)
        for j in done:
            if now - (j.finished or now) > KEEP_S or len(done) > KEEP_FINISHED:
                del self._jobs[j.id]
                done = [d for d in done if d.id != j.id]
