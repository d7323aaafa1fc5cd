"""50 concurrent approve/reject calls over real HTTP (uvicorn on loopback, one thread per client)
against one pending recommendation: exactly one decision, 49 × 409 naming the winner, one event.
Runs on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from apihelp import bearer, settings_for
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from crm.models import Recommendation, RecommendationEvent

CALLERS = 50


@pytest.fixture
def live_url(db_engine: Engine, tmp_path: Path) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a background thread."""
    app = create_app(settings_for(db_engine, tmp_path))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def test_fifty_concurrent_decisions_one_winner(
    live_url: str, keys: dict[str, str], propose: Callable[..., int], factory: sessionmaker[Session]
) -> None:
    rid = propose()
    deciders = [keys["approver"], keys["approver2"], keys["admin"]]
    barrier = threading.Barrier(CALLERS)
    results: list[tuple[int, dict[str, object]]] = [(0, {})] * CALLERS

    def call(i: int) -> None:
        verb = "approve" if i % 2 == 0 else "reject"
        body: dict[str, object] = {"expected_version": 1, "note": f"caller {i}"}
        if verb == "reject":
            body["reason_code"] = "bad_timing"
        with httpx.Client(base_url=live_url, timeout=60) as http:
            barrier.wait()
            r = http.post(f"/api/v1/recommendations/{rid}/{verb}", headers=bearer(deciders[i % 3]), json=body)
        results[i] = (r.status_code, r.json())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    codes = sorted(code for code, _ in results)
    assert codes == [200] + [409] * (CALLERS - 1), codes
    winner = next(body for code, body in results if code == 200)
    for code, body in results:
        if code == 409:
            detail = body["detail"]
            assert isinstance(detail, dict) and detail["error"] == "already_decided"
            assert detail["winner"]["decided_by"] == winner["decided_by"]
            assert detail["winner"]["status"] == winner["status"]
            assert f"already {winner['status']} by {winner['decided_by']}" in detail["message"]

    with factory() as s:
        rec = s.get(Recommendation, rid)
        assert rec is not None
        assert (rec.status, rec.decided_by) == (winner["status"], winner["decided_by"])
        decisions = s.scalars(
            select(RecommendationEvent).where(
                RecommendationEvent.recommendation_id == rid,
                RecommendationEvent.event.in_(("approved", "rejected")),
            )
        ).all()
        assert len(decisions) == 1
        assert (decisions[0].event, decisions[0].actor, decisions[0].note) == (
            winner["status"],
            winner["decided_by"],
            winner["note"],
        )

    metrics = httpx.get(f"{live_url}/metrics").text
    line = f'vcc_recommendation_decisions_total{{decision="{winner["status"]}",outcome="decided"}}'
    assert line in metrics
