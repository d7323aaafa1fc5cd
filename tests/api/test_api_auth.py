"""Auth and roles through the public routes: 401 without a valid key, 403 for a role without the
permission, through to the route (any other status) otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apihelp import ROLES, bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.auth import PERMISSIONS, revoke_key


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


class EmptyStore:
    """Stands in for the knowledge store: no Chroma, no embedding model."""

    def search(self, query: str, k: int) -> list[Any]:
        return []

    def vector_search(self, query: str, k: int) -> list[Any]:
        return []

    def count(self) -> int:
        return 0


@pytest.fixture
def client(db_engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(settings_for(db_engine, tmp_path), knowledge_store=EmptyStore())  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


# (method, path, json body, permission needed)
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/v1/recommendations", None, "read"),
    ("GET", "/api/v1/recommendations/9999", None, "read"),
    ("GET", "/api/v1/conversations", None, "read"),
    ("GET", "/api/v1/conversations/conv-x", None, "read"),
    ("GET", "/api/v1/knowledge/search?q=value+chain", None, "read"),
    ("POST", "/api/v1/knowledge/documents", None, "analyze"),
    ("GET", "/api/v1/tools/activity-scores", None, "analyze"),
    ("GET", "/api/v1/tools/rank/accounts/arr", None, "analyze"),
    ("GET", "/api/v1/tools/churn-risk", None, "analyze"),
    ("GET", "/api/v1/tools/churn-risk/ACME-0001", None, "analyze"),
    ("GET", "/api/v1/tools/next-best-action/ACME-0001", None, "analyze"),
    ("GET", "/api/v1/tools/accounts", None, "analyze"),
    ("GET", "/api/v1/tools/accounts/ACME-0001", None, "analyze"),
    ("GET", "/api/v1/tools/accounts/ACME-0001/timeline", None, "analyze"),
    ("POST", "/api/v1/recommendations/9999/approve", {"expected_version": 1}, "decide"),
    (
        "POST",
        "/api/v1/recommendations/9999/reject",
        {"expected_version": 1, "reason_code": "other"},
        "decide",
    ),
]


def _call(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> int:
    return client.request(method, path, json=body, headers=headers).status_code


@pytest.mark.parametrize(
    ("method", "path", "body", "permission"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
def test_role_matrix(
    client: TestClient,
    keys: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    permission: str,
) -> None:
    assert _call(client, method, path, body, {}) == 401
    assert _call(client, method, path, body, {"Authorization": "Bearer vck_nope"}) == 401
    for role in ROLES:
        code = _call(client, method, path, body, bearer(keys[role]))
        if permission in PERMISSIONS[role]:  # type: ignore[index]
            assert code not in (401, 403), (role, code)
        else:
            assert code == 403, (role, code)


def test_401_says_how_to_authenticate(client: TestClient) -> None:
    r = client.get("/api/v1/recommendations")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer <api key>" in r.json()["detail"]
    basic = client.get("/api/v1/recommendations", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401


def test_403_names_the_allowed_roles(client: TestClient, keys: dict[str, str]) -> None:
    r = client.get("/api/v1/tools/activity-scores", headers=bearer(keys["viewer"]))
    assert r.status_code == 403
    assert r.json()["detail"] == "role 'viewer' may not analyze; allowed roles: admin, analyst, approver"


def test_revoked_key_is_refused(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    h = bearer(keys["viewer"])
    assert client.get("/api/v1/recommendations", headers=h).status_code == 200
    with factory() as s:
        revoke_key(session=s, prefix=keys["viewer"][:12])
        s.commit()
    r = client.get("/api/v1/recommendations", headers=h)
    assert (r.status_code, r.json()["detail"]) == (401, "invalid or revoked API key")


def test_a_tampered_secret_with_a_real_prefix_is_refused(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["admin"]
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert client.get("/api/v1/recommendations", headers=bearer(forged)).status_code == 401


def test_open_routes_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/readyz", params={"skip": "llm"}).status_code == 200
    assert client.get("/openapi.json").status_code == 200
