"""Issue #22, batch jobs over HTTP on the SQLite default: an admin queues churn scoring, anyone
who may see the job follows its progress to the result; bad input is a 422 problem and queues
nothing; other users' jobs are invisible (404)."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apihelp import bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from core.db import make_engine
from crm.models import ChurnScore, Job
from jobs import records

JOBS = "/api/v1/jobs"


@pytest.fixture
def db_engine(demo_db: Path, tmp_path: Path) -> Iterator[Engine]:
    """This test's copy of the 120-account demo company (the scoring needs dated history)."""
    copy = tmp_path / "demo.db"
    shutil.copy(demo_db, copy)
    engine = make_engine(f"sqlite:///{copy}")
    yield engine
    engine.dispose()


@pytest.fixture
def jclient(db_engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(db_engine, tmp_path)), raise_server_exceptions=False) as c:
        yield c


def follow(client: TestClient, key: str, location: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(location, headers=bearer(key))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in ("done", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_an_admin_queues_churn_scoring_and_follows_it_to_the_result(jclient: TestClient, keys: dict[str, str],
                                                                     db_engine: Engine) -> None:
    r = jclient.post(JOBS, json={"kind": "churn_score", "params": {"as_of": "2026-09-30"}},
                     headers=bearer(keys["admin"]))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "queued" and job["kind"] == "churn_score" and job["backend"] == "inprocess"
    assert r.headers["location"] == f"{JOBS}/{job['id']}"
    done = follow(jclient, keys["admin"], r.headers["location"])
    assert done["state"] == "done", done
    with Session(db_engine) as s:
        kept = s.scalar(select(func.count()).select_from(ChurnScore).where(ChurnScore.as_of.isnot(None)))
    assert kept and done["result"]["accounts"] == kept == done["done"] == done["total"]
    assert done["message"] == f"kept {kept:,} scores as of 2026-09-30" and done["attempts"] == 1
    listed = jclient.get(JOBS, headers=bearer(keys["admin"]), params={"kind": "churn_score"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    # the submitter and admins see it; an analyst who did not submit it gets the same 404 as an unknown id
    assert jclient.get(r.headers["location"], headers=bearer(keys["analyst"])).status_code == 404
    assert jclient.get(JOBS, headers=bearer(keys["analyst"])).json()["jobs"] == []


@pytest.mark.parametrize(("body", "detail"), [
    ({"kind": "churn_scor"}, "unknown job kind 'churn_scor'; kinds: churn_score, churn_train"),
    ({"kind": "churn_score", "params": {"bogus": 1}}, "bad parameters for churn_score: bogus: Extra inputs"),
    ({"kind": "churn_score", "params": {"as_of": "30/09/2026"}}, "bad parameters for churn_score: as_of:"),
    ({"kind": "churn_train", "params": {"c": -1}}, "bad parameters for churn_train: c: Input should be greater"),
    ({"kind": "churn_train", "params": {"candidates": ["svm"]}}, "bad parameters for churn_train: candidates.0:"),
    ({"kind": "knowledge_ingest", "params": {}}, "knowledge_ingest jobs are submitted by uploading documents"),
])
def test_bad_input_is_a_422_problem_and_queues_nothing(jclient: TestClient, keys: dict[str, str], db_engine: Engine,
                                                       body: dict[str, Any], detail: str) -> None:
    r = jclient.post(JOBS, json=body, headers=bearer(keys["admin"]))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["detail"].startswith(detail), r.json()
    with Session(db_engine) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_roles_and_ids(jclient: TestClient, keys: dict[str, str]) -> None:
    body = {"kind": "churn_score"}
    assert jclient.post(JOBS, json=body, headers=bearer(keys["analyst"])).status_code == 403
    assert jclient.post(JOBS, json=body).status_code == 401
    assert jclient.post(JOBS, json={"kind": "churn_score", "extra": 1},
                        headers=bearer(keys["admin"])).status_code == 422
    assert jclient.get(f"{JOBS}/{'0' * 32}", headers=bearer(keys["admin"])).status_code == 404
    assert jclient.get(f"{JOBS}/not-a-job", headers=bearer(keys["admin"])).status_code == 422
    assert jclient.get(JOBS, headers=bearer(keys["admin"]), params={"state": "lost"}).status_code == 422
    assert jclient.get(JOBS, headers=bearer(keys["viewer"])).status_code == 403


def test_a_job_whose_worker_died_is_retried_as_a_new_job(jclient: TestClient, keys: dict[str, str],
                                                         db_engine: Engine) -> None:
    """A job left `running` by a process that is gone (its heartbeat is old) reads as failed and
    retryable; POST .../retry queues the same kind and parameters as a new job, which runs."""
    with Session(db_engine) as s:
        dead = records.create(s, kind="churn_score", params={"as_of": "2026-09-30", "rebuild": False},
                              created_by="admin1", backend="inprocess")
        dead_id = dead.id
        s.commit()
        assert records.claim(s, dead_id, "gone:1")
        s.execute(update(Job).where(Job.id == dead_id).values(heartbeat_at=records.utcnow() - dt.timedelta(hours=1)))
        s.commit()
    h = bearer(keys["admin"])
    seen = jclient.get(f"{JOBS}/{dead_id}", headers=h).json()
    assert (seen["state"], seen["retryable"], seen["message"]) == ("failed", True, "interrupted")
    r = jclient.post(f"{JOBS}/{dead_id}/retry", headers=h)
    assert r.status_code == 202, r.text
    again = follow(jclient, keys["admin"], r.headers["location"])
    assert again["state"] == "done" and again["params"] == {"as_of": "2026-09-30", "rebuild": False}
    assert jclient.get(f"{JOBS}/{dead_id}", headers=h).json()["state"] == "failed"  # kept for the record
    refused = jclient.post(f"{JOBS}/{again['id']}/retry", headers=h)
    assert refused.status_code == 409 and "only a failed, retryable job can be retried" in refused.json()["detail"]
    assert jclient.post(f"{JOBS}/{'0' * 32}/retry", headers=h).status_code == 404
