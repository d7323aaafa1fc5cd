"""Liveness (`/healthz`), readiness (`/readyz`) and Prometheus metrics (`/metrics`). No auth."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Annotated, Literal

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine, text

from api.llm import LLMState, check_llm
from api.metrics import render
from crm.migrate import alembic_config, current_revision

router = APIRouter(tags=["operations"])

Component = Literal["database", "vector_store", "llm"]
COMPONENTS: tuple[Component, ...] = ("database", "vector_store", "llm")
# A probe every few seconds must not hammer the model server: reuse an LLM check this long.
LLM_CHECK_CACHE_S = 10.0


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ComponentCheck(BaseModel):
    """One dependency's state. `status` "skipped" does not count against readiness."""

    status: Literal["ok", "down", "skipped"]
    detail: str
    latency_ms: float | None = None


class Readiness(BaseModel):
    """Ready when every checked component is ok (HTTP 200), else HTTP 503 with the same body."""

    ready: bool
    components: dict[str, ComponentCheck]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "ready": True,
                    "components": {
                        "database": {
                            "status": "ok",
                            "detail": "sqlite, schema 0001 (head)",
                            "latency_ms": 1.2,
                        },
                        "vector_store": {"status": "ok", "detail": "412 chunks", "latency_ms": 8.0},
                        "llm": {"status": "skipped", "detail": "skipped by ?skip=llm", "latency_ms": None},
                    },
                }
            ]
        }
    }


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health()


def _timed(check: Callable[[], tuple[bool, str]]) -> ComponentCheck:
    begin = time.perf_counter()
    try:
        ok, detail = check()
    except Exception as exc:  # a readiness probe reports any failure instead of raising it
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return ComponentCheck(
        status="ok" if ok else "down",
        detail=detail,
        latency_ms=round((time.perf_counter() - begin) * 1000, 1),
    )


@lru_cache(maxsize=1)
def _schema_head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _check_database(engine: Engine) -> tuple[bool, str]:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    revision = current_revision(engine)
    head = _schema_head()
    if revision != head:
        return (
            False,
            f"{engine.dialect.name}: schema {revision or 'none'}, expected {head}; run `valuechain init`",
        )
    return True, f"{engine.dialect.name}, schema {revision} (head)"


def _check_vector_store(request: Request) -> tuple[bool, str]:
    count = request.app.state.knowledge().count()
    return True, f"{count} chunks" + ("" if count else " (empty: run `valuechain knowledge build`)")


def _check_llm_cached(request: Request) -> ComponentCheck:
    cached: tuple[float, ComponentCheck] | None = getattr(request.app.state, "llm_ready_cache", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < LLM_CHECK_CACHE_S:
        return cached[1]
    state: LLMState = request.app.state.llm
    result = _timed(lambda: check_llm(state))
    request.app.state.llm_ready_cache = (now, result)
    return result


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: database, vector store and LLM endpoint, each reported",
    responses={503: {"model": Readiness, "description": "A checked component is down"}},
)
def readyz(
    request: Request,
    skip: Annotated[
        list[Component],
        Query(
            description="Components not to check, e.g. `?skip=llm` for a probe that must not depend on the model"
        ),
    ] = [],  # noqa: B006 - FastAPI copies defaults per request
) -> JSONResponse:
    components: dict[str, ComponentCheck] = {}
    for name in COMPONENTS:
        if name in skip:
            components[name] = ComponentCheck(status="skipped", detail=f"skipped by ?skip={name}")
        elif name == "database":
            components[name] = _timed(partial(_check_database, request.app.state.engine))
        elif name == "vector_store":
            components[name] = _timed(partial(_check_vector_store, request))
        else:
            components[name] = _check_llm_cached(request)
    ready = all(c.status != "down" for c in components.values())
    body = Readiness(ready=ready, components=components)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump(mode="json"))


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics() -> Response:
    payload, content_type = render()
    return Response(content=payload, media_type=content_type)
