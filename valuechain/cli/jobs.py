"""`valuechain jobs submit|show|list` and `valuechain worker`: batch jobs (issue #22).

On PostgreSQL `jobs submit` queues the job for `valuechain worker` processes and returns its id
(`--wait` follows it). On SQLite there is no worker: the job runs in this process, its progress
printed as it goes, and this command returns when it ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.text import Text
from sqlalchemy.orm import Session, sessionmaker

from core.runtime import get_engine, get_sessionmaker
from crm.models import Job
from jobs import records
from jobs.queue import InProcessQueue, JobQueue, queue_for, retry, submit
from jobs.worker import run_worker
from knowledge.store import KnowledgeStore
from tools.errors import ToolInputError
from valuechain.cli.common import DatabaseUrlOption, JsonOption, console, fail, print_json, settings_for

app = typer.Typer(no_args_is_help=True)

POLL_S = 0.5


def _params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    """`--param key=value` (value read as JSON when it parses, else as text) over `--params '{...}'`."""
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise fail(f"--params is not JSON: {exc}", code=2) from None
        if not isinstance(loaded, dict):
            raise fail("--params must be a JSON object, e.g. '{\"as_of\": \"2026-09-30\"}'", code=2)
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--param takes key=value; got {pair!r}", code=2)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _print(view: records.JobView) -> None:
    line = f"job {view.id} {view.kind}: {view.state}"
    if view.total:
        line += f" ({view.done:,}/{view.total:,})"
    console.print(Text(line + (f" — {view.message}" if view.message else "")), soft_wrap=True)
    if view.error:
        console.print(Text(f"error: {view.error}" + (f" (retryable: `valuechain jobs retry {view.id}`)" if view.retryable else "")),
                      soft_wrap=True)


def _read(database_url: str | None, job_id: str) -> records.JobView:
    settings = settings_for(database_url)
    with get_sessionmaker(settings)() as session:
        records.reap_stalled(session, settings.jobs_stale_s)
        job = session.get(Job, job_id)
        if job is None:
            raise fail(f"no job {job_id!r}", code=2)
        return records.view(job)


def _follow(database_url: str | None, job_id: str, as_json: bool) -> records.JobView:
    last = ""
    while True:
        view = _read(database_url, job_id)
        now = f"{view.state} {view.done} {view.total} {view.message}"
        if now != last and not as_json:
            _print(view)
            last = now
        if view.state in records.FINISHED:
            return view
        time.sleep(POLL_S)


@app.command("submit", help="Queue a job: churn_score, churn_train (knowledge ingests: `knowledge ingest`).")
def submit_cmd(
    kind: str = typer.Argument(..., help="churn_score | churn_train"),
    param: list[str] = typer.Option([], "--param", help="key=value (repeatable), e.g. --param as_of=2026-09-30"),
    params_json: str | None = typer.Option(None, "--params", help="All parameters as one JSON object"),
    wait: bool = typer.Option(False, "--wait", help="PostgreSQL: follow the job until it ends"),
    created_by: str = typer.Option("cli", "--as", help="Recorded as the job's submitter"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    if kind == "knowledge_ingest":
        raise fail("knowledge ingests run through `valuechain knowledge ingest` (in this process) or the upload "
                   "API (as jobs)", code=2)
    params = _params(param, params_json)
    _run(database_url, lambda sessions, queue: submit(sessions, queue, kind, params, created_by=created_by),
         wait=wait, as_json=as_json)


@app.command("retry", help="Run a failed, retryable job again (a new job with the same kind and parameters).")
def retry_cmd(
    job_id: str = typer.Argument(..., help="The failed job's id"),
    wait: bool = typer.Option(False, "--wait", help="PostgreSQL: follow the new job until it ends"),
    created_by: str = typer.Option("cli", "--as", help="Recorded as the new job's submitter"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    _run(database_url, lambda sessions, queue: retry(sessions, queue, job_id, created_by=created_by),
         wait=wait, as_json=as_json)


def _run(database_url: str | None, make: Callable[[sessionmaker[Session], JobQueue], Job], *, wait: bool,
         as_json: bool) -> None:
    """Create a job with `make` on this database's queue; on SQLite run it here and wait."""
    settings = settings_for(database_url)
    engine, sessions = get_engine(settings), get_sessionmaker(settings)
    queue = queue_for(engine, sessions, lambda: KnowledgeStore.from_settings(settings),
                      heartbeat_s=settings.jobs_heartbeat_s, stale_s=settings.jobs_stale_s)
    try:
        try:
            job = make(sessions, queue)
        except ToolInputError as exc:
            raise fail(str(exc), code=2) from None
        if isinstance(queue, InProcessQueue):  # SQLite: this process is the worker
            if not as_json:
                console.print(f"job {job.id} runs here (SQLite: no separate worker)")
                _follow(database_url, job.id, as_json)  # prints progress as the row records it
            queue.wait(job.id)
            view = _read(database_url, job.id)
        elif wait:
            view = _follow(database_url, job.id, as_json)
        else:
            view = records.view(job)
            if not as_json:
                console.print(f"queued job {job.id}; follow it with `valuechain jobs show {job.id}`")
    finally:
        queue.close()
    if as_json:
        print_json(view)
    elif view.state in records.FINISHED and not (wait or isinstance(queue, InProcessQueue)):
        _print(view)  # (a followed job's end is printed already)
    if view.state == "failed":
        raise typer.Exit(1)


@app.command("show", help="A job's state, progress, result or error.")
def show_cmd(
    job_id: str = typer.Argument(..., help="The id `jobs submit` printed"),
    follow: bool = typer.Option(False, "--follow", help="Print progress until the job ends"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    view = _follow(database_url, job_id, as_json) if follow else _read(database_url, job_id)
    if as_json:
        print_json(view)
        return
    if not follow:
        _print(view)
    if view.result and view.state == "done":
        console.print(Text(json.dumps(view.result, default=str)[:2000]), soft_wrap=True)


@app.command("list", help="Recent jobs, newest first.")
def list_cmd(
    kind: str | None = typer.Option(None, "--kind"),
    state: str | None = typer.Option(None, "--state"),
    limit: int = typer.Option(20, "--limit", min=1, max=500),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    settings = settings_for(database_url)
    with get_sessionmaker(settings)() as session:
        records.reap_stalled(session, settings.jobs_stale_s)
        views = [records.view(j) for j in records.list_jobs(session, kind=kind, state=state, limit=limit)]
    if as_json:
        print_json([v.model_dump(mode="json") for v in views])
        return
    for view in views:
        _print(view)


def worker(
    concurrency: int = typer.Option(1, "--concurrency", min=1, max=16, help="Jobs run at once by this process"),
    burst: bool = typer.Option(False, "--burst", help="Stop when the queue is empty"),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    try:
        run_worker(settings_for(database_url), concurrency=concurrency, burst=burst)
    except ValueError as exc:
        raise fail(str(exc), code=2) from None
