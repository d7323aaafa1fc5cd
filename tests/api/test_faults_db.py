"""Issue #18 fault: PostgreSQL drops the service's connections (`pg_terminate_backend`, as a
restart or a failover does).

Killed in the middle of a request (after the API key was checked, as the route's own query is
sent), the request is a 503 problem naming the database, not a 500 or a traceback; the next
request is answered from a fresh connection. Killed between requests, nobody notices (the pool
tests a connection before handing it out).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text

from api.app import create_app
from core.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
def any_engine(pg_engine: Engine) -> Engine:
    """PostgreSQL only: SQLite has no server to lose."""
    return pg_engine


@pytest.fixture
def server(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def terminate_backends(engine: Engine) -> int:
    """Terminate every server process of `engine`'s database (not this one); how many were ended."""
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT", poolclass=None)
    try:
        with admin.connect() as conn:
            ended = conn.execute(text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalar_one()
    finally:
        admin.dispose()
    return int(ended)


LIST = "/api/v1/recommendations"


def test_connections_lost_mid_request_give_a_503_then_the_next_request_recovers(
        server: TestClient, keys: dict[str, str], propose: Any, caplog: pytest.LogCaptureFixture) -> None:
    rid = propose()
    h = bearer(keys["viewer"])
    assert server.get(LIST, headers=h).status_code == 200
    app_engine: Engine = server.app.state.engine  # type: ignore[attr-defined]
    ended: list[int] = []

    def kill_on_the_route_query(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not ended and "FROM recommendations" in statement:
            ended.append(terminate_backends(app_engine))

    event.listen(app_engine, "before_cursor_execute", kill_on_the_route_query)
    caplog.set_level(logging.INFO)
    try:
        lost = server.get(LIST, headers=h)
    finally:
        event.remove(app_engine, "before_cursor_execute", kill_on_the_route_query)
    assert ended and ended[0] >= 1  # the request's own connection among them
    assert lost.status_code == 503, lost.text
    assert lost.headers["content-type"] == "application/problem+json"
    assert lost.json()["detail"].startswith("database error (")
    assert "is the database reachable" in lost.json()["detail"]
    assert "Traceback" not in lost.text
    assert not [r for r in caplog.records if r.exc_info]

    again = server.get(LIST, headers=h)
    assert again.status_code == 200, again.text
    assert [r["id"] for r in again.json()["items"]] == [rid]
    decided = server.post(f"{LIST}/{rid}/approve", headers=bearer(keys["approver"]), json={"expected_version": 1})
    assert decided.status_code == 200, decided.text


def test_connections_lost_between_requests_go_unnoticed(
        server: TestClient, keys: dict[str, str], propose: Any) -> None:
    rid = propose()
    h = bearer(keys["viewer"])
    for _ in range(3):
        assert server.get(LIST, headers=h).status_code == 200
        assert terminate_backends(server.app.state.engine) >= 1  # type: ignore[attr-defined]
    assert server.get(f"{LIST}/{rid}", headers=h).status_code == 200
