"""Internal errors over HTTP (api/app.py): a data fault or a bug is a 500 `application/problem+json`
naming an error id, never a traceback; the server log has the traceback under that id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from core.settings import Settings
from crm.models import AppMeta

PROBLEM_KEYS = {"type", "title", "status", "detail", "error_id"}


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    """SQLite only: the handlers do not depend on the engine."""
    return sqlite_engine


@pytest.fixture
def server(settings: Settings) -> Iterator[TestClient]:
    """A client that gets the 500 the server sends (Starlette re-raises a bug to the server after it)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _problem(response: Any, caplog: pytest.LogCaptureFixture) -> tuple[dict[str, Any], logging.LogRecord]:
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == PROBLEM_KEYS and body["status"] == 500
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert f"(id {body['error_id']})" in body["detail"]
    [record] = [r for r in caplog.records if body["error_id"] in r.getMessage()]
    assert record.exc_info is not None  # the traceback is in the log, under the id
    return body, record


def test_a_data_fault_is_a_500_problem_with_an_error_id_in_the_log(
    server: TestClient, keys: dict[str, str], factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    with factory() as s:
        s.execute(update(AppMeta).where(AppMeta.key == "as_of").values(value="yesterday"))
        s.commit()
    r = server.get("/api/v1/tools/accounts/ACME-0001", headers=bearer(keys["analyst"]))
    body, record = _problem(r, caplog)
    assert body["type"] == "urn:valuechain:problem:data-fault"
    assert "app_meta 'as_of' is not an ISO date: 'yesterday'; set it to a date" in body["detail"]
    assert "GET /api/v1/tools/accounts/ACME-0001" in record.getMessage()


def test_a_bug_is_a_500_problem_without_its_internals(
    server: TestClient,
    keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import api.routes.tools

    def broken(**_: Any) -> None:
        raise RuntimeError("secret connection string in a bug")

    monkeypatch.setattr(api.routes.tools, "score_activities", broken)
    r = server.get("/api/v1/tools/activity-scores", headers=bearer(keys["analyst"]))
    body, record = _problem(r, caplog)
    assert body["type"] == "urn:valuechain:problem:internal-error"
    assert body["detail"] == f"internal error (id {body['error_id']}): unexpected RuntimeError"
    assert "secret" not in r.text
    assert str(record.exc_info[1]) == "secret connection string in a bug"  # type: ignore[index]


def test_fixable_mistakes_stay_422(client: TestClient, keys: dict[str, str]) -> None:
    r = client.get(
        "/api/v1/tools/rank/accounts/arr", params={"filter": "segment"}, headers=bearer(keys["analyst"])
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "urn:valuechain:problem:invalid-input",
        "title": "Invalid Input",
        "status": 422,
        "detail": "filter takes key=value (e.g. segment=Enterprise); got 'segment'",
    }
