"""Knowledge ingests that outlive the request: what an ingest job looks like to the API.

`POST /api/v1/knowledge/documents` runs an upload with more new chunks than `JOB_THRESHOLD_CHUNKS`
as a `knowledge_ingest` job of the batch-job queue (jobs/, issue #22): its row in `jobs` keeps
state and progress (chunks done of total), so a job survives a restart of the API and any worker
can show it. `DELETE .../jobs/{id}` asks it to stop; the ingest checks between batches
(`knowledge.ingest.ingest_documents(cancelled=...)`), deletes the chunks it had added and ends
`cancelled`, so no partial document stays searchable. Jobs run one at a time per worker
(embedding takes the CPU); the others wait `queued`.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from knowledge.ingest import IngestReport

JOB_THRESHOLD_CHUNKS = 32
"""Uploads embedding more new chunks than this (one embedding batch) run as a job."""

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
    retryable: bool = Field(default=False, description="Failed in a way a new upload may fix (e.g. the worker died)")
