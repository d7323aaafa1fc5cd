"""Issue #22, batch jobs on the SQLite default: the same rows and progress as on PostgreSQL, run
by a thread of the submitting process; a job whose process died is marked failed and retryable
by the next one, never left `running`; a job with bad input fails with the tool's message."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from core.db import make_sessionmaker
from crm.models import ChurnScore, Job
from jobs import kinds, records
from jobs.queue import InProcessQueue, check_params, submit
from tools.errors import ToolInputError
from valuechain.cli.main import app


def no_knowledge() -> Any:
    raise AssertionError("churn jobs never open the knowledge store")


def queue(sessions: sessionmaker[Session], stale_s: float = 60.0) -> InProcessQueue:
    return InProcessQueue(sessions, no_knowledge, heartbeat_s=0.1, stale_s=stale_s)


def test_churn_scoring_reports_its_progress_step_by_step(demo_sessions: sessionmaker[Session],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "SCORE_CHUNK", 40)
    written: list[tuple[int, int, str]] = []
    real = records.write_progress

    def spy(engine: Engine, job_id: str, done: int, total: int, message: str) -> bool:
        written.append((done, total, message))
        return real(engine, job_id, done, total, message)

    monkeypatch.setattr(records, "write_progress", spy)
    q = queue(demo_sessions)
    try:
        job = submit(demo_sessions, q, "churn_score", {"as_of": "2026-09-30"}, created_by="t")
        assert q.wait(job.id, timeout=120)
    finally:
        q.close()
    with demo_sessions() as s:
        row = s.get(Job, job.id)
        kept = s.scalar(select(func.count()).select_from(ChurnScore).where(ChurnScore.as_of == dt.date(2026, 9, 30)))
    assert row is not None and row.state == "done" and row.result is not None, row and row.error
    n = row.result["accounts"]
    assert n == kept and n > 80
    scored = [m for _, _, m in written if m.startswith("scored")]
    assert scored[:2] == [f"scored 40/{n} accounts", f"scored 80/{n} accounts"] and scored[-1] == f"scored {n}/{n} accounts"
    assert (row.done, row.total, row.message) == (n, n, f"kept {n} scores as of 2026-09-30")


def test_a_job_with_bad_input_fails_with_the_tools_message_and_is_not_retryable(sqlite_engine: Engine) -> None:
    sessions = make_sessionmaker(sqlite_engine)  # migrated, empty: nothing dated to score
    q = queue(sessions)
    try:
        job = submit(sessions, q, "churn_score", {}, created_by="t")
        assert q.wait(job.id, timeout=60)
    finally:
        q.close()
    with sessions() as s:
        row = s.get(Job, job.id)
    assert row is not None and (row.state, row.retryable) == ("failed", False)
    assert row.error == "ToolInputError: the database holds no dated data; pass an explicit as_of date (YYYY-MM-DD)"


def test_parameters_are_checked_before_anything_is_written(sqlite_engine: Engine) -> None:
    sessions = make_sessionmaker(sqlite_engine)
    q = queue(sessions)
    try:
        with pytest.raises(ToolInputError, match="unknown job kind 'score'; kinds: churn_score"):
            submit(sessions, q, "score", {}, created_by="t")
        with pytest.raises(ToolInputError, match="bad parameters for churn_train: source: Input should be"):
            submit(sessions, q, "churn_train", {"source": "crm"}, created_by="t")
        with pytest.raises(ToolInputError, match="bad parameters for knowledge_ingest: documents: Field required"):
            check_params("knowledge_ingest", {})
    finally:
        q.close()
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_jobs_a_dead_process_left_are_marked_failed_and_retryable(sqlite_engine: Engine) -> None:
    """A running and a queued in-process job whose heartbeat stopped (their process died) are
    failed, retryable, with a message saying so, when the next queue starts; a fresh one is kept."""
    sessions = make_sessionmaker(sqlite_engine)
    with sessions() as s:
        running = records.create(s, kind="churn_score", params={}, created_by="t", backend="inprocess")
        waiting = records.create(s, kind="churn_train", params={}, created_by="t", backend="inprocess")
        fresh = records.create(s, kind="churn_score", params={}, created_by="t", backend="inprocess")
        s.commit()
        assert records.claim(s, running.id, "gone:1")
        old = records.utcnow() - dt.timedelta(seconds=120)
        s.execute(update(Job).where(Job.id.in_([running.id, waiting.id])).values(heartbeat_at=old))
        s.commit()
    queue(sessions, stale_s=60.0).close()  # starting a queue reaps; closing it touches nothing it did not hold
    with sessions() as s:
        rows = {j.id: j for j in s.scalars(select(Job))}
    for job_id in (running.id, waiting.id):
        assert (rows[job_id].state, rows[job_id].retryable) == ("failed", True)
        assert (rows[job_id].error or "").startswith("interrupted: the process keeping it stopped (no heartbeat for 60 s)")
    assert rows[fresh.id].state == "queued"


def test_a_job_reaped_while_its_own_worker_was_still_at_work_records_its_real_end(sqlite_engine: Engine) -> None:
    """A heartbeat that could not be written (SQLite locked by the job's own transaction) must not
    lose a result: the worker that claimed it records the end; anyone else's record is refused."""
    sessions = make_sessionmaker(sqlite_engine)
    with sessions() as s:
        job = records.create(s, kind="churn_score", params={}, created_by="t", backend="inprocess")
        s.commit()
        assert records.claim(s, job.id, "host:1")
        s.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=records.utcnow() - dt.timedelta(seconds=90)))
        s.commit()
        assert records.reap_stalled(s, 60.0) == [job.id]
        records.finish(s, job.id, "done", message="late", worker="host:2")
        assert (s.get(Job, job.id, populate_existing=True).state) == "failed"  # type: ignore[union-attr]
        records.finish(s, job.id, "done", message="kept 3 scores", result={"accounts": 3}, worker="host:1")
        row = s.get(Job, job.id, populate_existing=True)
    assert row is not None and (row.state, row.message, row.result, row.retryable) == (
        "done", "kept 3 scores", {"accounts": 3}, False)


def test_the_cli_runs_a_job_in_process_on_sqlite_and_shows_it(demo_db: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "demo.db"
    shutil.copy(demo_db, copy)
    url = f"sqlite:///{copy}"
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["jobs", "submit", "churn_score", "--param", "as_of=2026-09-30", "--json",
                            "--database-url", url])
    assert r.exit_code == 0, r.output
    job = json.loads(r.stdout)
    assert job["state"] == "done" and job["backend"] == "inprocess" and job["result"]["accounts"] == job["done"] > 80
    shown = runner.invoke(app, ["jobs", "show", job["id"], "--database-url", url])
    assert shown.exit_code == 0 and f"job {job['id']} churn_score: done" in shown.stdout
    bad = runner.invoke(app, ["jobs", "submit", "churn_score", "--param", "as_of=yesterday", "--database-url", url])
    assert bad.exit_code == 2 and "bad parameters for churn_score: as_of:" in bad.output
    assert runner.invoke(app, ["worker", "--database-url", url]).exit_code == 2  # SQLite has no worker


def test_on_sqlite_a_progress_write_never_waits_long_for_the_jobs_own_write_lock(sqlite_engine: Engine) -> None:
    """Churn scoring holds SQLite's write lock while it inserts; its progress write must give up
    quickly (the in-process queue keeps the figures in memory) instead of waiting 30 s for itself."""
    sessions = make_sessionmaker(sqlite_engine)
    with sessions() as s:
        job = records.create(s, kind="churn_score", params={}, created_by="t", backend="inprocess")
        job_id = job.id
        s.commit()
        assert records.claim(s, job_id, "host:1")
    with sqlite_engine.connect() as holder:
        holder.exec_driver_sql("BEGIN IMMEDIATE")  # another transaction holds the write lock
        started = time.monotonic()
        assert records.write_progress(sqlite_engine, job_id, 40, 106, "scored 40/106 accounts") is False
        assert time.monotonic() - started < 5
        holder.rollback()
    assert records.write_progress(sqlite_engine, job_id, 80, 106, "scored 80/106 accounts") is True
    with sessions() as s:
        row = s.get(Job, job_id)
        assert row is not None and (row.done, row.total, row.message) == (80, 106, "scored 80/106 accounts")
        # the pooled connection is back to core.db's busy timeout for its next user
        with sqlite_engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_closing_the_queue_records_jobs_still_waiting_as_cancelled(sqlite_engine: Engine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutdown with a job running and one waiting: the running one is asked to stop, the waiting
    one is recorded `cancelled`, never left `queued` for nobody."""
    sessions = make_sessionmaker(sqlite_engine)
    entered, release = threading.Event(), threading.Event()

    def slow(ctx: Any, params: Any) -> dict[str, Any]:
        entered.set()
        assert release.wait(30)
        return {"ok": True}

    monkeypatch.setitem(kinds.KINDS, "churn_score", kinds.Kind(kinds.ChurnScoreParams, slow, "held"))
    q = queue(sessions)
    first = submit(sessions, q, "churn_score", {}, created_by="t")
    second = submit(sessions, q, "churn_score", {}, created_by="t")
    assert entered.wait(30)
    threading.Timer(0.3, release.set).start()
    q.close()
    with sessions() as s:
        one, two = s.get(Job, first.id), s.get(Job, second.id)
    assert one is not None and one.state == "done"  # it could not be interrupted mid-step and ended normally
    assert two is not None and (two.state, two.message) == ("cancelled", "cancelled: the server shut down first")
