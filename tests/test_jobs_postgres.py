"""Issue #22, batch jobs on PostgreSQL for real: procrastinate queues them, `valuechain worker`
processes run them. A job submitted by this process is run by a worker process, its progress
visible here while it runs; a worker killed mid-job leaves the job `failed` with `retryable`
set (reaped once its heartbeat is `JOBS_STALE_S` old), nothing of it written, and the same job
retried (`valuechain jobs retry`) runs to the end on another worker.

Needs TEST_DATABASE_URL (each test gets its own database); under CI=true a missing or
unreachable server fails the test instead of skipping it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_databases import PG_URL, drop_pg_database, fresh_pg_database
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from crm.demo.generator import generate_demo
from crm.migrate import upgrade
from crm.models import ChurnModel, Job
from jobs.queue import PostgresQueue, submit

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
VALUECHAIN = str(Path(sys.executable).with_name("valuechain"))
FIXTURES = Path(__file__).parent / "fixtures" / "knowledge"
STALE_S = 2.0


@pytest.fixture
def pg_demo() -> Iterator[str]:
    """A fresh PostgreSQL database with the 120-account demo company."""
    if os.environ.get("CI") == "true" and not PG_URL:
        pytest.fail("CI=true but TEST_DATABASE_URL is not set: the PostgreSQL job queue tests must run in CI")
    try:
        url, name = fresh_pg_database()
    except OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL at TEST_DATABASE_URL is down: {str(exc).splitlines()[0]}")
        raise
    engine = make_engine(url)
    try:
        upgrade(engine)
        generate_demo(engine, accounts=120, seed=7)
    finally:
        engine.dispose()
    yield url
    drop_pg_database(name)


def env_for(url: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url, "LLM_AUTOSTART": "false", "DATA_DIR": str(tmp_path / "data"),
            "JOBS_HEARTBEAT_S": "0.2", "JOBS_STALE_S": str(STALE_S)}


@pytest.fixture
def start_worker(pg_demo: str, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start() -> subprocess.Popen[bytes]:
        logs.append((tmp_path / f"worker{len(started)}.log").open("wb"))
        proc = subprocess.Popen([VALUECHAIN, "worker"], env=env_for(pg_demo, tmp_path), cwd=tmp_path,
                                stdout=logs[-1], stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for log in logs:
        log.close()


@pytest.fixture
def pg(pg_demo: str) -> Iterator[tuple[sessionmaker[Session], PostgresQueue]]:
    """Sessions on the test database and this process's side of the queue (it only submits)."""
    engine = make_engine(pg_demo)
    queue = PostgresQueue(engine)
    yield make_sessionmaker(engine), queue
    queue.close()
    engine.dispose()


def watch(sessions: sessionmaker[Session], job_id: str, until: Callable[[Job], bool],
          timeout_s: float = 180.0) -> tuple[Job, list[tuple[str, int, int, str]]]:
    """Poll the row (as any process would) until `until`; returns it and every distinct state seen."""
    seen: list[tuple[str, int, int, str]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        with sessions() as s:
            job = s.get(Job, job_id)
            assert job is not None
            now = (job.state, job.done, job.total, job.message)
            if not seen or seen[-1] != now:
                seen.append(now)
            if until(job):
                return job, seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


def test_a_worker_process_runs_a_job_submitted_here_with_visible_progress(
        pg: tuple[sessionmaker[Session], PostgresQueue], start_worker: Callable[[], subprocess.Popen[bytes]]) -> None:
    sessions, queue = pg
    job = submit(sessions, queue, "churn_train", {}, created_by="test")
    assert job.backend == "procrastinate" and job.state == "queued"
    worker = start_worker()
    done, seen = watch(sessions, job.id, lambda j: j.state in records_finished)
    assert done.state == "done", (done.error, seen)
    assert ("running", 0, 1, "training and evaluating the candidates") in seen  # progress seen from another process
    assert done.worker is not None and done.worker.endswith(f":{worker.pid}") and done.attempts == 1
    assert done.result is not None and done.message == f"trained {done.result['model_version']} ({done.result['method']})"
    scored = submit(sessions, queue, "churn_score", {"as_of": "2026-09-30"}, created_by="test")
    ended, _ = watch(sessions, scored.id, lambda j: j.state in records_finished)
    assert ended.state == "done" and ended.result is not None
    assert (ended.done, ended.total) == (ended.result["accounts"], ended.result["accounts"]) and ended.done > 80


records_finished = ("done", "failed", "cancelled")


def show(url: str, tmp_path: Path, job_id: str) -> dict[str, Any]:
    """`valuechain jobs show --json` in a process of its own: what an operator would see."""
    out = subprocess.run([VALUECHAIN, "jobs", "show", job_id, "--json"], env=env_for(url, tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True)
    body: dict[str, Any] = json.loads(out.stdout)
    return body


def test_a_worker_killed_mid_job_leaves_it_failed_and_retryable(
        pg: tuple[sessionmaker[Session], PostgresQueue], pg_demo: str, tmp_path: Path,
        start_worker: Callable[[], subprocess.Popen[bytes]]) -> None:
    sessions, queue = pg
    with sessions() as s:
        models_before = s.scalar(select(func.count()).select_from(ChurnModel)) or 0
    job = submit(sessions, queue, "churn_train", {}, created_by="test")
    worker = start_worker()
    running, _ = watch(sessions, job.id, lambda j: j.state != "queued")
    assert running.state == "running", running.state
    worker.send_signal(signal.SIGKILL)  # no chance to record anything
    worker.wait(30)
    with sessions() as s:
        assert s.get(Job, job.id).state == "running"  # type: ignore[union-attr]  # nobody has looked yet
    time.sleep(STALE_S + 0.5)
    seen = show(pg_demo, tmp_path, job.id)  # any reader marks it: the heartbeat is older than JOBS_STALE_S
    assert (seen["state"], seen["retryable"], seen["message"]) == ("failed", True, "interrupted")
    assert seen["error"].startswith(f"interrupted: the process keeping it stopped (no heartbeat for {STALE_S:g} s)")
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(ChurnModel)) == models_before  # nothing half-written
    # `valuechain jobs retry` queues it again; a new worker runs it to the end; the dead one's job stays failed
    start_worker()
    out = subprocess.run([VALUECHAIN, "jobs", "retry", job.id, "--wait", "--json"], env=env_for(pg_demo, tmp_path),
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    ended = json.loads(out.stdout)
    assert (ended["state"], ended["kind"], ended["attempts"]) == ("done", "churn_train", 1) and ended["id"] != job.id
    with sessions() as s:
        assert s.get(Job, job.id).state == "failed"  # type: ignore[union-attr]
        assert s.scalar(select(func.count()).select_from(ChurnModel)) == models_before + 1
        # procrastinate's record of the dead worker's job is finished too, not left `doing`
        statuses = s.scalars(text("SELECT status FROM procrastinate_jobs WHERE args->>'job_id' = :id"),
                             {"id": job.id}).all()
        assert statuses == ["failed"]


def test_a_worker_process_embeds_an_ingest_into_the_chroma_server_every_worker_searches(
        pg: tuple[sessionmaker[Session], PostgresQueue], pg_demo: str, tmp_path: Path) -> None:
    """The team set-up: an upload queued by an API worker is embedded by a `valuechain worker`
    into the `chroma run` server, and the passages are then found from this process."""
    # deferred: the knowledge stack (Chroma, the embedding model) only this test needs
    from chroma_server import running_chroma

    from core.settings import Settings
    from jobs.kinds import document_params
    from knowledge.loaders import load_document
    from knowledge.search import search_knowledge
    from knowledge.store import KnowledgeStore

    sessions, queue = pg
    docs = [load_document(FIXTURES / name) for name in ("tidal-pools.md", "espresso-machines.md")]
    with running_chroma(tmp_path / "chroma") as chroma:
        env = {**env_for(pg_demo, tmp_path), "CHROMA_HOST": chroma.host, "CHROMA_PORT": str(chroma.port)}
        job = submit(sessions, queue, "knowledge_ingest", {"documents": document_params(docs)}, created_by="test")
        out = subprocess.run([VALUECHAIN, "worker", "--burst"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        done, seen = watch(sessions, job.id, lambda j: j.state in records_finished, timeout_s=10)
        assert done.state == "done", (done.error, seen)
        assert done.result is not None and done.result["files"] == 2 and done.result["added"] == done.result["chunks"] > 0
        assert (done.done, done.total) == (done.result["embedded"], done.result["embedded"])
        store = KnowledgeStore.from_settings(Settings(chroma_host=chroma.host, chroma_port=chroma.port))
        assert store.count() == done.result["chunks"]  # on the server, not in the worker's DATA_DIR
        assert not (tmp_path / "data" / "chroma").exists()
        hits = search_knowledge(store=store, query="which creatures live in rock pools at low tide?", k=2)
        assert hits.results and hits.results[0].source == docs[0].source
