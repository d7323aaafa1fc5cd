"""Batch jobs (issue #22): submit churn scoring or retraining (admin), follow any job's progress.

The app's queue (`jobs.queue.queue_for`) is created on first use: procrastinate on PostgreSQL
(run by `valuechain worker` processes), a thread of this process on SQLite. A job is read by the
user who submitted it and by admins; other users get the same 404 as for an unknown id, so ids
cannot be probed. Every read first marks jobs whose worker died failed and retryable
(`jobs.records.reap_stalled`), so a killed worker's job is never shown `running` for long.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal
from api.deps import AUTH_RESPONSES, AdminDep, AnalystDep, SessionDep
from crm.models import Job
from jobs import records
from jobs.kinds import KINDS
from jobs.queue import JobQueue, queue_for, retry, submit

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JobId = Annotated[str, PathParam(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$",
                                 description="The job id `POST /api/v1/jobs` answered with")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such job (or not yours to see)"}}
API_KINDS = sorted(name for name, kind in KINDS.items() if kind.api)

_queue_lock = threading.Lock()


def get_job_queue(request: Request) -> JobQueue:
    """The app's job queue, created on first use (closed at shutdown by the app's lifespan)."""
    with _queue_lock:
        queue: JobQueue | None = getattr(request.app.state, "jobs", None)
        if queue is None:
            settings = request.app.state.settings
            queue = request.app.state.jobs = queue_for(
                request.app.state.engine, request.app.state.sessionmaker, request.app.state.knowledge,
                heartbeat_s=settings.jobs_heartbeat_s, stale_s=settings.jobs_stale_s)
        return queue


def job_view(request: Request, job: Job) -> records.JobView:
    """The row, with this process's live figures while it runs the job here (see jobs/records.py)."""
    view = records.view(job)
    queue: JobQueue | None = getattr(request.app.state, "jobs", None)
    live = queue.live(job.id) if queue is not None else None
    if live is not None and view.state == "running" and live.total:
        view.done, view.total, view.message = live.done, live.total, live.message
    return view


def visible_job(request: Request, session: SessionDep, job_id: str, user: Principal, *,
                kind: str | None = None) -> Job:
    """The job if `user` may see it (its submitter, or an admin), after reaping dead workers' jobs."""
    records.reap_stalled(session, request.app.state.settings.jobs_stale_s)
    job = session.get(Job, job_id)
    if job is None or (kind is not None and job.kind != kind) or (
            job.created_by != user.name and not user.can("admin")):
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (or not yours to see)")
    session.refresh(job)
    return job


class JobRequest(BaseModel):
    """A job to run: its kind and that kind's parameters."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description=f"One of: {', '.join(API_KINDS)}", examples=["churn_score"])
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="churn_score: `as_of` (YYYY-MM-DD), `rebuild`; churn_train: `source` (history | attributes), "
        "`as_of`, `c`, `candidates`, `exclude_attributes`. Unknown keys are refused.",
        examples=[{"as_of": "2026-09-30"}])


class JobList(BaseModel):
    jobs: list[records.JobView]


@router.post(
    "",
    response_model=records.JobView,
    status_code=202,
    summary="Queue a batch job (churn scoring or retraining); follow it at the `Location`",
    responses={**AUTH_RESPONSES,
               422: {"description": "Unknown kind, a kind not submitted here (ingests: the upload route), "
                     "or bad parameters; nothing was queued"}},
)
def submit_route(body: JobRequest, request: Request, response: Response, user: AdminDep) -> records.JobView:
    if body.kind in KINDS and not KINDS[body.kind].api:
        raise HTTPException(status_code=422, detail=f"{body.kind} jobs are submitted by uploading documents "
                            "(POST /api/v1/knowledge/documents), which checks them first")
    if body.kind not in KINDS:
        raise HTTPException(status_code=422, detail=f"unknown job kind {body.kind!r}; kinds: {', '.join(API_KINDS)}")
    queue = get_job_queue(request)
    job = submit(request.app.state.sessionmaker, queue, body.kind, body.params, created_by=user.name)
    response.headers["Location"] = f"{router.prefix}/{job.id}"
    return records.view(job)


@router.get(
    "/{job_id}",
    response_model=records.JobView,
    summary="A job's state, progress (done of total, message), result or error",
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)
def job_route(job_id: JobId, request: Request, session: SessionDep, user: AnalystDep) -> records.JobView:
    return job_view(request, visible_job(request, session, job_id, user))


@router.get(
    "",
    response_model=JobList,
    summary="Jobs, newest first: yours, or everyone's for an admin",
    responses={**AUTH_RESPONSES},
)
def list_route(
    request: Request,
    session: SessionDep,
    user: AnalystDep,
    kind: Annotated[str | None, Query(max_length=32, description="Only this kind")] = None,
    state: Annotated[str | None, Query(pattern="^(queued|running|done|failed|cancelled)$",
                                       description="Only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> JobList:
    records.reap_stalled(session, request.app.state.settings.jobs_stale_s)
    rows = records.list_jobs(session, kind=kind, state=state, limit=limit, offset=offset,
                             created_by=None if user.can("admin") else user.name)
    return JobList(jobs=[job_view(request, j) for j in rows])


@router.post(
    "/{job_id}/retry",
    response_model=records.JobView,
    status_code=202,
    summary="Run a failed, retryable job again (e.g. its worker died): a new job, same kind and parameters",
    responses={**AUTH_RESPONSES, **NOT_FOUND,
               409: {"description": "The job is not failed and retryable (running, done, or failed on its input)"}},
)
def retry_route(job_id: JobId, request: Request, response: Response, session: SessionDep,
                user: AnalystDep) -> records.JobView:
    job = visible_job(request, session, job_id, user)
    if not (job.state == "failed" and job.retryable):
        raise HTTPException(status_code=409, detail=f"job {job_id} is {job.state}"
                            f"{' (not retryable: fix its input and submit a new one)' if job.state == 'failed' else ''}; "
                            "only a failed, retryable job can be retried")
    again = retry(request.app.state.sessionmaker, get_job_queue(request), job_id, created_by=user.name)
    response.headers["Location"] = f"{router.prefix}/{again.id}"
    return records.view(again)
