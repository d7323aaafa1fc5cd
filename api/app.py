"""The HTTP service: `create_app(settings)` builds a FastAPI app; `lifespan` owns its resources.

Long-lived resources live on `app.state`, created in `lifespan` and released at shutdown:

- `engine`, `sessionmaker` — the database (`api.deps.SessionDep` hands out one session per request);
- `knowledge` — a callable returning the knowledge store, created on first use;
- `llm` — an `api.llm.LLMState` from `api.llm.start_llm(settings)` (the chat model endpoint);
- `runs` — the `api.runs.RunRegistry` of chat turns (runs left `running` by a previous process
  are marked `interrupted` first; turns still going at shutdown are marked `interrupted` too),
  with a task that refreshes this worker's heartbeat, carries out Stops asked on other workers
  and interrupts runs of workers gone quiet.

Other interfaces mount on the same app: `app.include_router(...)` for the chat routes,
`/slack/events` and the web UI (see docs/API.md, "Extending the app").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.runlog import interrupt_running
from api import access_log, problems
from api.input_guard import InputGuard
from api.llm import start_llm, stop_llm
from api.metrics import MetricsMiddleware
from api.openapi import document_errors
from api.routes import (
    analysis,
    chat,
    conversations,
    feedback,
    health,
    jobs,
    knowledge,
    outcomes,
    recommendations,
    runs,
    tool_calls,
    tools,
    ui,
)
from api.routes.slack import router as slack_router
from api.routes.slack import slack_bot
from api.runs import RunRegistry
from core.db import make_engine, make_sessionmaker
from core.settings import Settings, get_settings
from knowledge.store import KnowledgeStore
from tools.errors import DataFault, ToolInputError

if TYPE_CHECKING:
    from api.chat_jobs import ChatJobs
    from api.slack.resume import ResumeLoop

API_VERSION = "1.0.0"
INTERRUPTED_BY_RESTART = "the server restarted before the answer; ask again"
UPLOAD_FORM_OVERHEAD = 64 * 1024
"""Room for the multipart headers and boundaries around the files of an upload."""
SERVER_CHANNELS = ("web", "api", "slack")
"""Conversations whose turns this service runs (a `cli` chat runs in its own process)."""
log = logging.getLogger(__name__)

DESCRIPTION = """\
Value-chain analytics over a CRM database: deterministic tools, framework knowledge with
citations, and recommendations that wait for a human approver.

**Auth.** Every `/api/v1` route needs `Authorization: Bearer <api key>`; create keys with
`valuechain keys create --name NAME --role ROLE`. Roles: `viewer` reads; `analyst` also
calls tools, chats and ingests documents; `approver` also approves and rejects
recommendations; `admin` may do everything. `/healthz`, `/readyz` and `/metrics` are open.

**Errors.** Every error is an `application/problem+json` body `{"type", "title", "status",
"detail"}`. `detail` is a message that says what is valid; for input that does not match the
schema, the list of problems (`loc`, `msg`); for decision conflicts `{"error", "message", ...}`
naming who decided first. An internal error (a data or configuration fault, or a bug) is a 500
that adds `error_id`; the server log has the traceback under it.

**Input bounds.** Ids and versions are 1 to 2^31-1, offsets 0 to 10^9, day windows 0 to 3650, dates
1900-01-01 to 2199-12-31; text may not contain NUL characters, and JSON text no lone UTF-16
surrogates; a JSON body is at most `API_MAX_JSON_BYTES` (1 MiB) and a knowledge upload at most
`KNOWLEDGE_UPLOAD_MAX_BYTES` (10 MiB) and `KNOWLEDGE_UPLOAD_MAX_CHUNKS` (200) chunks. Anything
else is a 4xx naming the bound, never a 500.
"""

TAGS = [
    {"name": "recommendations", "description": "The review queue: list, inspect, approve, reject."},
    {"name": "tools", "description": "The deterministic tools, returning the same models the agent sees."},
    {"name": "knowledge", "description": "Framework knowledge: cited search and document ingest."},
    {"name": "chat", "description": "Ask the agent: streamed (server-sent events) or one JSON answer."},
    {"name": "conversations", "description": "Agent conversations with their runs and tool calls."},
    {"name": "analysis", "description": "The five-step value-chain analysis as JSON or a report."},
    {"name": "jobs", "description": "Batch jobs (churn scoring, retraining, large ingests) with progress."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
]


class LazyKnowledge:
    """Creates the knowledge store on first call (Chroma and the embedding model load in
    seconds, and most requests never need them); thread-safe."""

    def __init__(self, settings: Settings, store: KnowledgeStore | None = None) -> None:
        self._settings = settings
        self._store = store
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._store is not None

    def __call__(self) -> KnowledgeStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = KnowledgeStore.from_settings(self._settings)
        return self._store


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database engine and the LLM endpoint; close them at shutdown."""
    settings: Settings = app.state.settings
    engine = make_engine(settings.resolved_database_url)
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.knowledge = LazyKnowledge(settings, app.state.knowledge_override)
    try:
        interrupted = interrupt_running(app.state.sessionmaker, INTERRUPTED_BY_RESTART, channels=SERVER_CHANNELS)
    except (OperationalError, ProgrammingError) as exc:  # not initialised yet: requests will say so
        interrupted = []
        log.warning("could not check for interrupted chat runs: %s", str(exc).splitlines()[0])
    if interrupted:
        log.warning("%d chat run(s) left running by a process that ended (the previous server, a terminal chat) "
                    "marked interrupted: %s",
                    len(interrupted), ", ".join(interrupted))
    app.state.runs = RunRegistry(app.state.sessionmaker, turns_at_once=settings.chat_turns_at_once,
                                 stale_s=settings.run_stale_s)
    app.state.runs.start_keep_alive()  # heartbeat, other workers' stops and gone runs
    app.state.llm = start_llm(settings, sessions=app.state.sessionmaker, knowledge=app.state.knowledge)
    resume = _slack_resume(app, settings)
    app.state.chat_jobs = await _chat_jobs(app, settings, engine)
    try:
        yield
    finally:
        if resume is not None:
            await resume.close()
        await app.state.runs.shutdown()
        if app.state.chat_jobs is not None:
            await app.state.chat_jobs.close()
        if getattr(app.state, "jobs", None) is not None:  # stop this process's jobs: an ingest keeps nothing half-added
            await run_in_threadpool(app.state.jobs.close)
        stop_llm(app.state.llm)
        engine.dispose()


async def _chat_jobs(app: FastAPI, settings: Settings, engine: Engine) -> ChatJobs | None:
    """On PostgreSQL, unless CHAT_JOBS=false: chat turns as jobs any worker takes (`api.chat_jobs`)."""
    if settings.chat_jobs is False:
        return None
    if engine.dialect.name != "postgresql":
        if settings.chat_jobs:
            log.warning("CHAT_JOBS needs PostgreSQL; on %s the worker that receives a chat turn runs it",
                        engine.dialect.name)
        return None
    from api.chat_jobs import ChatJobs  # procrastinate loads only where chat jobs are on

    def copilot() -> Any:
        state = getattr(app.state, "llm", None)
        return state.copilot if state is not None else None

    jobs = ChatJobs(engine, app.state.runs, copilot, per_worker=settings.chat_jobs_per_worker,
                    stale_s=settings.run_stale_s)
    if settings.slack_bot_token and settings.slack_signing_secret:  # this worker posts the Slack answers it takes
        jobs.delivered.append(slack_bot(app).deliver)
    await jobs.open()
    return jobs


def _slack_resume(app: FastAPI, settings: Settings) -> ResumeLoop | None:
    """With Slack configured: answer again the Slack questions whose worker died (`api.slack.resume`)."""
    if not settings.slack_bot_token or not settings.slack_signing_secret:
        return None
    from api.slack.resume import ResumeLoop  # slack-bolt loads only where Slack is used

    loop = ResumeLoop(app.state.sessionmaker, slack_bot(app).resume)
    loop.start()
    return loop


def create_app(
    settings: Settings | None = None,
    *,
    knowledge_store: KnowledgeStore | None = None,
    configure: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    """Build the API app for `settings` (default: from the environment).

    `knowledge_store` replaces the one made from settings (tests); `configure(app)` runs
    last, to mount more routers (chat, Slack, UI) before the app serves.
    """
    settings = settings or get_settings()
    access_log.install()  # credentials in query strings never reach the access log
    app = FastAPI(
        title="Value Chain Copilot API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.knowledge_override = knowledge_store
    # input no route can store (NUL, lone surrogates, oversized bodies) is refused before routing
    app.add_middleware(InputGuard, max_json_bytes=settings.api_max_json_bytes,
                       max_upload_bytes=settings.knowledge_upload_max_bytes + UPLOAD_FORM_OVERHEAD)
    app.add_middleware(MetricsMiddleware)
    # every error is application/problem+json (api/problems.py) and documented so (api/openapi.py)
    app.add_exception_handler(StarletteHTTPException, problems.http_error)
    app.add_exception_handler(RequestValidationError, problems.validation_error)
    app.add_exception_handler(ToolInputError, problems.tool_input_error)
    app.add_exception_handler(OperationalError, problems.database_error)
    app.add_exception_handler(ProgrammingError, problems.database_error)
    app.add_exception_handler(DataFault, problems.internal_error)
    app.add_exception_handler(Exception, problems.internal_error)  # after this 500 Starlette re-raises to the server
    document_errors(app)
    app.include_router(health.router)
    app.include_router(recommendations.router)
    app.include_router(tools.router)
    app.include_router(tool_calls.router)
    app.include_router(knowledge.router)
    app.include_router(conversations.router)
    app.include_router(chat.router)
    app.include_router(runs.router)
    app.include_router(feedback.router)  # GET /api/v1/feedback: the run log with users' verdicts
    app.include_router(analysis.router)
    app.include_router(outcomes.router)  # GET /api/v1/outcomes: the attribution report (#21)
    app.include_router(jobs.router)  # batch jobs: churn scoring and retraining (#22)
    ui.mount(app)  # the web UI at / (api/static/)
    app.include_router(slack_router)  # POST /slack/events (503 until Slack is configured)
    if configure is not None:
        configure(app)
    return app
