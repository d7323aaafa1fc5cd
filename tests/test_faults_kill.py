"""Issue #18 fault: the service is killed with SIGKILL while approvals are in flight.

A real `valuechain serve` process on a free loopback port decides recommendations for several
approvers at once; it is killed mid-stream, restarted on the same database, and the database is
checked: SQLite's `PRAGMA integrity_check` is `ok`, every decided recommendation has exactly one
decision event that matches it (and no event without its decision), every decision a client was
told about (200) is there, and the restarted service decides the rest. Runs on SQLite (WAL) and,
when configured, PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import factories as f
import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.auth import create_key
from core.db import make_sessionmaker
from crm.models import Recommendation, RecommendationEvent
from tools.recommendations import propose_recommendation

ACCOUNTS = ("ACME-0001", "ACME-0002", "ACME-0003", "ACME-0004", "ACME-0005")
PENDING = 36
CLIENTS = 6
KILL_AFTER = 10  # decisions acknowledged before the kill; the others are in flight or not sent yet
VALUECHAIN = Path(sys.executable).with_name("valuechain")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """`valuechain serve` as a child process, with the settings given in its environment."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DATA_DIR": str(data_dir),
            "CHROMA_PATH": str(data_dir / "chroma"),
            "LLM_AUTOSTART": "false",
            "RECOMMENDATION_TTL_DAYS": "30",
        }
        for name in ("LLM_BASE_URL", "CHROMA_HOST", "PLAYBOOK_PATH", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
            self.env.pop(name, None)
        self.log = data_dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(VALUECHAIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not answer /healthz in 60 s: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def service(any_engine: Engine, tmp_path: Path) -> Iterator[Service]:
    svc = Service(any_engine.url.render_as_string(hide_password=False), tmp_path / "data")
    (tmp_path / "data").mkdir()
    yield svc
    svc.stop()


def _seed(engine: Engine) -> tuple[list[str], list[int]]:
    """The golden accounts, three deciders' keys and PENDING pending recommendations filed by `agent`."""
    created = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    with make_sessionmaker(engine)() as s:
        f.golden_accounts(s)
        f.golden_activities(s)
        keys = [create_key(session=s, name=name, role=role).key
                for name, role in (("approver1", "approver"), ("approver2", "approver"), ("admin1", "admin"))]
        ids = [
            propose_recommendation(
                session=s, account_id=ACCOUNTS[i % len(ACCOUNTS)], action=f"fault_action_{i}",
                rationale=f"Recommendation {i}: two urgent tickets and a renewal in 30 days.",
                evidence={"open_tickets": 2, "n": i}, expected_value=1000.0 + i, now=created,
                holdout_share=0.0,  # no control group: every one is filed
            ).id
            for i in range(PENDING)
        ]
        s.commit()
    return keys, ids


def _decide(url: str, key: str, rid: int, i: int) -> httpx.Response:
    verb = "approve" if i % 2 == 0 else "reject"
    body: dict[str, object] = {"expected_version": 1, "note": f"decision {i}"}
    if verb == "reject":
        body["reason_code"] = "bad_timing"
    return httpx.post(f"{url}/api/v1/recommendations/{rid}/{verb}", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _check_consistent(s: Session) -> dict[str, int]:
    """Every recommendation and its audit trail agree; returns the count per status."""
    counts: dict[str, int] = {}
    for rec in s.scalars(select(Recommendation)).all():
        counts[rec.status] = counts.get(rec.status, 0) + 1
        events = s.scalars(select(RecommendationEvent).where(RecommendationEvent.recommendation_id == rec.id)
                           .order_by(RecommendationEvent.id)).all()
        assert [e.event for e in events][:1] == ["proposed"], (rec.id, [e.event for e in events])
        decisions = [e for e in events if e.event in ("approved", "rejected")]
        if rec.status == "pending":
            assert decisions == [] and rec.decided_by is None and rec.decided_at is None, rec.id
        else:
            assert rec.status in ("approved", "rejected"), (rec.id, rec.status)
            assert len(decisions) == 1, (rec.id, [e.event for e in events])
            assert (decisions[0].event, decisions[0].actor) == (rec.status, rec.decided_by), rec.id
            assert rec.decided_at is not None and rec.version == 1, rec.id
    return counts


def test_kill_9_during_approvals_loses_no_decision_and_leaves_no_half_row(
        any_engine: Engine, service: Service) -> None:
    keys, ids = _seed(any_engine)
    url = service.start()
    acknowledged: dict[int, str] = {}  # recommendation id -> the status the client was told
    in_flight: set[int] = set()
    lock = threading.Lock()
    enough = threading.Event()
    broken: list[str] = []

    def client(n: int) -> None:
        for i in range(n, PENDING, CLIENTS):
            with lock:
                in_flight.add(ids[i])
            try:
                resp = _decide(url, keys[n % len(keys)], ids[i], i)
            except httpx.TransportError as exc:  # the server died under this request
                broken.append(type(exc).__name__)
                return
            assert resp.status_code == 200, resp.text
            with lock:
                in_flight.discard(ids[i])
                acknowledged[ids[i]] = resp.json()["status"]
                if len(acknowledged) >= KILL_AFTER:
                    enough.set()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=60), "the service decided too little before the kill"
    with lock:
        cut = set(in_flight)  # sent (or being sent) and not answered when the kill lands
    service.kill9()
    for t in threads:
        t.join(timeout=60)
    assert cut, "no decision was in flight when the service was killed"
    assert broken, "no client saw the kill"
    assert len(acknowledged) < PENDING

    if any_engine.dialect.name == "sqlite":
        path = any_engine.url.database
        assert path is not None
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    with make_sessionmaker(any_engine)() as s:
        before = _check_consistent(s)
        for rid, status in acknowledged.items():  # a 200 means committed
            rec = s.get(Recommendation, rid)
            assert rec is not None and rec.status == status, (rid, status)
    assert before.get("pending", 0) > 0

    url = service.start()  # the same database, after the crash
    with make_sessionmaker(any_engine)() as s:
        pending = s.scalars(select(Recommendation.id).where(Recommendation.status == "pending")).all()
    for i, rid in enumerate(pending):
        resp = _decide(url, keys[i % len(keys)], rid, i)
        assert resp.status_code == 200, resp.text
    service.stop()

    if any_engine.dialect.name == "sqlite":
        with sqlite3.connect(any_engine.url.database or "") as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with make_sessionmaker(any_engine)() as s:
        after = _check_consistent(s)
    assert after.get("pending", 0) == 0
    assert after.get("approved", 0) + after.get("rejected", 0) == PENDING
