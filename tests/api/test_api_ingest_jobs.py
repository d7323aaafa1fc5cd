"""Issue #18, large knowledge ingest as a background job: an upload with more new chunks than the
job threshold answers 202 with a job; GET shows its progress (chunks done of total) and its
report; DELETE cancels it between batches, and nothing of the cancelled upload stays in the store
(a previous version of the document is left as it was)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from apihelp import bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.app import create_app
from crm.models import Job
from knowledge import ingest, jobs
from knowledge.store import KnowledgeStore

DOCS = "/api/v1/knowledge/documents"


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


@pytest.fixture
def store(tmp_path: Path) -> KnowledgeStore:
    return KnowledgeStore.at_path(tmp_path / "chroma")


@pytest.fixture
def kclient(db_engine: Engine, tmp_path: Path, store: KnowledgeStore,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """Uploads of more than 3 new chunks run as jobs, embedded one chunk per batch; at most 20 chunks."""
    monkeypatch.setattr(jobs, "JOB_THRESHOLD_CHUNKS", 3)
    monkeypatch.setattr(ingest, "EMBED_BATCH", 1)
    settings = settings_for(db_engine, tmp_path, knowledge_upload_max_chunks=20)
    with TestClient(create_app(settings, knowledge_store=store), raise_server_exceptions=False) as c:
        yield c  # leaving the client shuts the app down, which cancels any job still running


def md(source: str, sections: int, word: str = "zorblatt") -> bytes:
    body = "".join(f"## Part {i}\n\nThe {word} widget part {i} is returned within {i} days.\n\n" for i in range(sections))
    return f"---\nid: {source}\ntitle: Notes\n---\n{body}".encode()


def upload(client: TestClient, key: str, name: str, data: bytes) -> Any:
    return client.post(DOCS, files=[("files", (name, data, "text/markdown"))], headers=bearer(key))


def follow(client: TestClient, key: str, location: str, *, until: tuple[str, ...] = ("done", "failed", "cancelled"),
           timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(location, headers=bearer(key))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in until:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_a_small_upload_is_ingested_in_the_request(kclient: TestClient, keys: dict[str, str],
                                                   store: KnowledgeStore) -> None:
    r = upload(kclient, keys["analyst"], "small.md", md("small", 3))
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 3
    assert len(store.ids_for_source("small", "user")) == 3


def test_a_large_upload_runs_as_a_job_with_progress_and_a_report(kclient: TestClient, keys: dict[str, str],
                                                                  store: KnowledgeStore) -> None:
    r = upload(kclient, keys["analyst"], "big.md", md("big", 6))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running", "done") and job["total"] == 6 and job["sources"] == ["big"]
    assert r.headers["location"] == f"/api/v1/knowledge/jobs/{job['id']}"
    done = follow(kclient, keys["analyst"], r.headers["location"])
    assert (done["state"], done["done"], done["total"]) == ("done", 6, 6)
    assert done["report"]["added"] == 6 and done["finished_at"] is not None and done["created_by"] == "analyst1"
    assert len(store.ids_for_source("big", "user")) == 6
    hits = kclient.get("/api/v1/knowledge/search", params={"q": "zorblatt widget part 5"}, headers=bearer(keys["analyst"]))
    assert hits.json()["results"][0]["source"] == "big"
    # a finished job cannot be cancelled; another user does not see it
    gone = kclient.delete(r.headers["location"], headers=bearer(keys["analyst"]))
    assert gone.status_code == 409 and "already finished (done)" in gone.json()["detail"]
    assert kclient.get(r.headers["location"], headers=bearer(keys["approver"])).status_code == 404
    assert kclient.get(r.headers["location"], headers=bearer(keys["admin"])).status_code == 200


def test_cancelling_stops_between_batches_and_keeps_nothing(kclient: TestClient, keys: dict[str, str],
                                                            store: KnowledgeStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert upload(kclient, keys["analyst"], "doc.md", md("doc", 2, word="first")).status_code == 200
    before = store.ids_for_source("doc", "user")
    assert len(before) == 2

    real_embed = store.embed
    second_batch, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_embed(texts: Any) -> np.ndarray:
        calls.append(len(texts))
        if len(calls) == 2:  # hold the second batch until the test has asked to cancel
            second_batch.set()
            assert release.wait(30)
        return real_embed(texts)

    monkeypatch.setattr(store, "embed", slow_embed)
    r = upload(kclient, keys["analyst"], "doc.md", md("doc", 8, word="second"))
    assert r.status_code == 202, r.text
    assert second_batch.wait(30)
    running = kclient.get(r.headers["location"], headers=bearer(keys["analyst"])).json()
    assert (running["state"], running["done"], running["total"]) == ("running", 1, 8)
    stop = kclient.delete(r.headers["location"], headers=bearer(keys["analyst"]))
    assert stop.status_code == 202 and stop.json()["cancel_requested"] is True
    release.set()
    ended = follow(kclient, keys["analyst"], r.headers["location"])
    assert ended["state"] == "cancelled" and ended["report"] is None
    assert len(calls) == 2  # stopped before the third batch
    # the chunks the job added are gone; the first version is untouched and still found
    assert store.ids_for_source("doc", "user") == before
    hits = kclient.get("/api/v1/knowledge/search", params={"q": "second widget part 7"}, headers=bearer(keys["analyst"]))
    assert all("second" not in h["text"] for h in hits.json()["results"])


def test_over_the_chunk_cap_is_still_refused_whole(kclient: TestClient, keys: dict[str, str],
                                                   store: KnowledgeStore) -> None:
    r = upload(kclient, keys["analyst"], "huge.md", md("huge", 21))
    assert r.status_code == 413 and r.json()["detail"].startswith("these documents make 21 new chunks to embed")
    assert store.ids_for_source("huge", "user") == set()


def test_unknown_and_malformed_job_ids(kclient: TestClient, keys: dict[str, str]) -> None:
    h = bearer(keys["analyst"])
    assert kclient.get(f"/api/v1/knowledge/jobs/{'0' * 32}", headers=h).status_code == 404
    assert kclient.delete(f"/api/v1/knowledge/jobs/{'0' * 32}", headers=h).status_code == 404
    assert kclient.get("/api/v1/knowledge/jobs/not-a-job", headers=h).status_code == 422
    assert kclient.get(f"/api/v1/knowledge/jobs/{'0' * 32}", headers=bearer(keys["viewer"])).status_code == 403


def test_shutting_the_server_down_cancels_a_running_job(db_engine: Engine, tmp_path: Path, store: KnowledgeStore,
                                                        keys: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "JOB_THRESHOLD_CHUNKS", 3)
    monkeypatch.setattr(ingest, "EMBED_BATCH", 1)
    real_embed = store.embed
    held, release = threading.Event(), threading.Event()

    def slow_embed(texts: Any) -> np.ndarray:
        held.set()
        assert release.wait(30)
        return real_embed(texts)

    monkeypatch.setattr(store, "embed", slow_embed)
    app = create_app(settings_for(db_engine, tmp_path, knowledge_upload_max_chunks=20), knowledge_store=store)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = upload(c, keys["analyst"], "late.md", md("late", 5))
        assert r.status_code == 202 and held.wait(30)
        threading.Timer(0.3, release.set).start()  # the batch in flight ends while the server shuts down
    with Session(db_engine) as session:  # the job is a row in `jobs`: readable after the server is gone
        job = session.get(Job, r.json()["id"])
        assert job is not None and (job.kind, job.state) == ("knowledge_ingest", "cancelled")
    assert store.ids_for_source("late", "user") == set()
    # a restarted server still answers for it (jobs used to live in the process and were forgotten)
    with TestClient(create_app(settings_for(db_engine, tmp_path), knowledge_store=store)) as again:
        seen = again.get(r.headers["location"], headers=bearer(keys["analyst"]))
    assert seen.status_code == 200 and (seen.json()["state"], seen.json()["sources"]) == ("cancelled", ["late"])
