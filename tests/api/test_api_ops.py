"""/healthz, /readyz (each component reported; LLM check cheap and skippable), /metrics exposition
(request latency by route template, tool latency, decisions, LLM hooks) and the OpenAPI document."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from apihelp import bearer, settings_for
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api import metrics
from api.app import create_app
from core.db import make_engine


@pytest.fixture
def any_engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


class CountingStore:
    def __init__(self, count: int = 7) -> None:
        self._count = count

    def count(self) -> int:
        return self._count

    def search(self, query: str, k: int) -> list[Any]:
        return []


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/v1/models"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": [{"id": "stub-model"}]}' if ok else b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def llm_stub() -> Iterator[str]:
    """A stand-in OpenAI-compatible endpoint answering GET /v1/models."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _client(engine: Engine, tmp_path: Path, store: Any = None, **overrides: object) -> TestClient:
    app = create_app(settings_for(engine, tmp_path, **overrides), knowledge_store=store or CountingStore())
    return TestClient(app)


def test_healthz(db_engine: Engine, tmp_path: Path) -> None:
    with _client(db_engine, tmp_path) as c:
        assert c.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_component_and_llm_not_running(db_engine: Engine, tmp_path: Path) -> None:
    with _client(db_engine, tmp_path) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["ready"] is False
        assert body["components"]["database"]["status"] == "ok"
        assert "(head)" in body["components"]["database"]["detail"]
        assert body["components"]["vector_store"] == {
            "status": "ok",
            "detail": "7 chunks",
            "latency_ms": body["components"]["vector_store"]["latency_ms"],
        }
        assert body["components"]["llm"]["status"] == "down"
        assert "embedded LLM server is not running" in body["components"]["llm"]["detail"]

        skipped = c.get("/readyz", params={"skip": "llm"})
        assert skipped.status_code == 200 and skipped.json()["components"]["llm"]["status"] == "skipped"
        assert c.get("/readyz", params={"skip": "gpu"}).status_code == 422


def test_readyz_llm_reachable_and_unreachable(db_engine: Engine, tmp_path: Path, llm_stub: str) -> None:
    with _client(db_engine, tmp_path, llm_base_url=llm_stub, llm_model="stub-model") as c:
        body = c.get("/readyz").json()
        assert body["ready"] is True
        assert body["components"]["llm"]["status"] == "ok"
        assert "reachable, model stub-model" in body["components"]["llm"]["detail"]
    with _client(db_engine, tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="m") as c:
        llm = c.get("/readyz").json()["components"]["llm"]
        assert llm["status"] == "down" and "unreachable" in llm["detail"]


def test_readyz_database_not_migrated(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with _client(engine, tmp_path) as c:
            r = c.get("/readyz", params={"skip": ["llm", "vector_store"]})
            assert r.status_code == 503
            db = r.json()["components"]["database"]
            assert (
                db["status"] == "down" and "schema none" in db["detail"] and "valuechain init" in db["detail"]
            )
    finally:
        engine.dispose()


def test_vector_store_failure_is_reported(db_engine: Engine, tmp_path: Path) -> None:
    class Broken(CountingStore):
        def count(self) -> int:
            raise ConnectionError("chroma server refused the connection")

    with _client(db_engine, tmp_path, store=Broken()) as c:
        vs = c.get("/readyz", params={"skip": "llm"}).json()["components"]["vector_store"]
        assert vs["status"] == "down" and "ConnectionError: chroma server refused" in vs["detail"]


def test_metrics_exposition(db_engine: Engine, tmp_path: Path, keys: dict[str, str]) -> None:
    metrics.record_llm_call(model="test-model", seconds=0.25, prompt_tokens=120, completion_tokens=30)
    metrics.record_llm_call(model="test-model", seconds=1.5, ok=False)
    metrics.record_agent_run(status="ok", seconds=2.0, channel="web")
    with _client(db_engine, tmp_path) as c:
        c.get("/api/v1/recommendations/77", headers=bearer(keys["viewer"]))
        c.get("/no/such/route")
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in (
        "vcc_http_request_duration_seconds",
        "vcc_tool_call_duration_seconds",
        "vcc_recommendation_decisions_total",
        "vcc_llm_request_duration_seconds",
        "vcc_llm_tokens_total",
        "vcc_agent_run_duration_seconds",
    ):
        assert f"# TYPE {name} " in text, name
    assert (
        'vcc_http_request_duration_seconds_count{method="GET",route="/api/v1/recommendations/{recommendation_id}",'
        'status="404"}' in text
    )
    assert 'route="unmatched",status="404"' in text
    assert 'vcc_llm_tokens_total{kind="prompt",model="test-model"}' in text
    assert 'vcc_llm_request_duration_seconds_count{model="test-model",outcome="error"}' in text
    assert 'vcc_agent_run_duration_seconds_count{channel="web",status="ok"}' in text


def test_openapi_documents_routes_models_and_examples(db_engine: Engine, tmp_path: Path) -> None:
    with _client(db_engine, tmp_path) as c:
        spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/recommendations",
        "/api/v1/recommendations/{recommendation_id}",
        "/api/v1/recommendations/{recommendation_id}/approve",
        "/api/v1/recommendations/{recommendation_id}/reject",
        "/api/v1/conversations/{conversation_id}",
        "/api/v1/tools/activity-scores",
        "/api/v1/tools/rank/{entity}/{metric}",
        "/api/v1/tools/churn-risk/{account_id}",
        "/api/v1/tools/next-best-action/{account_id}",
        "/api/v1/tools/accounts/{account_id}/timeline",
        "/api/v1/knowledge/search",
        "/api/v1/knowledge/documents",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    approve = paths["/api/v1/recommendations/{recommendation_id}/approve"]["post"]
    assert set(approve["responses"]) >= {"200", "401", "403", "404", "409", "410", "422"}
    examples = approve["requestBody"]["content"]["application/json"]["examples"]
    assert examples["by_version"]["value"]["expected_version"] == 1
    assert approve["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DecisionResult"
    )
    schemas = spec["components"]["schemas"]
    assert "not_worth_it" in schemas["RejectRequest"]["properties"]["reason_code"]["enum"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
