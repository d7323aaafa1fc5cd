"""Chat with the agent: `POST /api/v1/chat` (analyst role and up), streamed or not.

A turn runs in the server, independent of the connection that asked (`api.runs.RunRegistry`):
closing the page or losing the network does not stop it; the Stop button
(`POST /api/v1/chat/runs/{run_id}/stop`, `api.routes.runs`) does.

With `Accept: text/event-stream` the answer streams as server-sent events, one per
`agent.copilot.AgentEvent` (`id:` its number in the run, `event:` its type, `data:` the event as
JSON): `run_started`, `queue` (its place while other turns hold the model; 0 once it runs), then
`plan`, `token`, `tool_start` and `tool_end` as they happen, possibly `error`, and a last
`answer` carrying the `AgentAnswer` (or `stopped` when the run was stopped or interrupted).
`GET /api/v1/chat/runs/{run_id}/events` replays the same stream from the start or after
`Last-Event-ID`. Otherwise the route waits and returns the `AgentAnswer`.

The agent is `app.state.llm.copilot`; until the model is ready the route answers 503 with the
reason (starting, warming up, failed, disabled). A new conversation belongs to the caller
(`conversations.user_id`), with channel `web` when the UI sends `X-Client: web`, else `api`;
a `conversation_id` can only continue the caller's own conversation.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import AgentAnswer, AgentEvent
from agent.middleware import internal_error_answer, internal_error_record
from agent.run_events import TERMINAL_EVENTS, running_runs
from agent.runlog import RunLog, utcnow
from api.auth import Principal
from api.chat_jobs import ChatJobs, prepare
from api.deps import AUTH_RESPONSES, AnalystDep, ReaderDep
from api.llm import LLMState
from api.metrics import record_agent_run, record_llm_call
from api.runs import ActiveRun, RunRegistry, sse_frame
from crm.models import AgentRun, Conversation, LlmCall
from tools.errors import new_error_id

router = APIRouter(prefix="/api/v1/chat", tags=["chat"])
log = logging.getLogger(__name__)

MESSAGE_MAX = 4000
KEEPALIVE_S = 15.0
"""An SSE comment line this often while the agent is busy, so proxies keep the stream open."""
CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

Channel = Literal["web", "api"]


class ChatRequest(BaseModel):
    """One question; leave `conversation_id` out to start a new conversation."""

    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MESSAGE_MAX)] = (
        Field(description="The question", examples=["Which activities leak the most margin?"])
    )
    conversation_id: str | None = Field(
        default=None,
        pattern=CONVERSATION_ID.pattern,
        description="Continue this conversation of yours (from a previous answer)",
        examples=[None],
    )


class ChatStatus(BaseModel):
    """Whether chat answers now, and if not why (the model may still be loading); how busy it is."""

    available: bool
    status: str = Field(description="ready, busy, starting, warming, failed, disabled (...), not started")
    detail: str
    model: str | None
    running: int = Field(default=0, description="Turns holding the model now, on every worker")
    queued: int = Field(default=0, description="Turns waiting for the model, on every worker")
    turns_at_once: int = Field(default=1, description="Turns the deployment runs at once (CHAT_TURNS_AT_ONCE)")
    your_runs: list[str] = Field(default_factory=list, description="Your runs not yet ended (reattach to them)")


def chat_status(state: LLMState | None, runs: RunRegistry | None = None, user_id: int | None = None) -> ChatStatus:
    """What `POST /api/v1/chat` would say about the model right now, and its queue."""
    if state is None:
        return ChatStatus(available=False, status="not started", detail="the app has not started", model=None)
    if state.copilot is not None:
        running, queued = runs.load if runs is not None else (0, 0)  # every worker's (refresh_load)
        at_once = runs.turns_at_once if runs is not None else 1
        mine = [r.run_id for r in runs.active() if r.user_id == user_id] if runs is not None else []
        if running >= at_once or queued:  # queued with the model free: chat jobs no worker has taken yet
            wait = f"; {queued} more waiting" if queued else ""
            answering = (f"model {state.model} is answering {running} turn{'s' if running != 1 else ''}{wait}"
                         if running else f"{queued} turn{'s' if queued != 1 else ''} wait for an API worker to take "
                         "them")
            detail = f"{answering}: a new question waits its turn"
            return ChatStatus(available=True, status="busy", detail=detail, model=state.model, running=running,
                              queued=queued, turns_at_once=at_once, your_runs=mine)
        return ChatStatus(available=True, status="ready", detail=f"model {state.model} is ready", model=state.model,
                          running=running, queued=queued, turns_at_once=at_once, your_runs=mine)
    status = state.status
    if status == "starting":
        detail = "the model is starting (the embedded LLM server loads in about a minute); try again shortly"
    elif status == "warming":
        detail = "the model is warming up (filling its prompt cache); try again in a few seconds"
    elif status == "failed":
        detail = f"the model failed to start: {state.error}; see /readyz and `valuechain llm status`"
    elif status.startswith("disabled"):
        detail = (
            "chat is off: LLM_AUTOSTART=false and no LLM_BASE_URL; set one of them and restart the service"
        )
    else:
        detail = f"the model is not available ({status})"
    return ChatStatus(available=False, status=status, detail=detail, model=state.model)


def _state(request: Request) -> LLMState | None:
    state: LLMState | None = getattr(request.app.state, "llm", None)
    return state


def _copilot_or_503(request: Request) -> Any:
    state = _state(request)
    copilot = state.copilot if state is not None else None
    if copilot is None:
        info = chat_status(state)
        retry = {"Retry-After": "10"} if info.status in ("starting", "warming") else None
        raise HTTPException(status_code=503, detail=info.detail, headers=retry)
    return copilot


def _check_conversation(sessions: sessionmaker[Session], conversation_id: str, principal: Principal) -> None:
    with sessions() as s:
        owner = s.execute(select(Conversation.user_id).where(Conversation.id == conversation_id)).first()
    if owner is None or owner.user_id != principal.user_id:
        # The same answer for "absent" and "not yours", so ids cannot be probed.
        raise HTTPException(
            status_code=404,
            detail=f"no conversation {conversation_id!r} of yours; leave conversation_id out to start one",
        )


def _finish_abandoned(sessions: sessionmaker[Session], run_id: str, conversation_id: str, error: str) -> None:
    """Mark a run the agent left `running` (a bug raised, or the client went away) as failed."""
    with sessions() as s:
        run = s.get(AgentRun, run_id)
        if run is None or run.status != "running":
            return
        started = run.started_at
    latency_ms = max(0.0, (utcnow() - started).total_seconds() * 1000)
    RunLog(sessions, run_id, conversation_id).finish(answer=None, error=error, latency_ms=latency_ms)
    log.warning("run %s marked failed: %s", run_id, error)


def _record_llm_calls(sessions: sessionmaker[Session], run_id: str) -> None:
    with sessions() as s:
        calls = s.scalars(select(LlmCall).where(LlmCall.run_id == run_id)).all()
    for c in calls:
        record_llm_call(
            model=c.model or "unknown",
            seconds=c.latency_ms / 1000,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            ok=c.error is None,
        )


async def run_turn(
    copilot: Any,
    *,
    message: str,
    conversation_id: str | None,
    principal: Principal | tuple[int | None, str],
    channel: Channel,
    run: RunLog | None = None,
) -> AsyncIterator[AgentEvent]:
    """The agent's events for one turn, always ending with an `answer` event; `principal` may be
    (user id, name) for a turn a chat job runs (`run`: its run, already claimed).

    A bug that escapes the agent becomes an `error` event and a failed answer naming an error id
    (the run is marked failed in the run log, the traceback logged under the id); metrics are
    recorded once the turn ends.
    """
    sessions: sessionmaker[Session] = copilot.sessions
    begin = time.perf_counter()
    run_id: str | None = None
    conv_id: str | None = conversation_id
    answered: AgentAnswer | None = None
    user_id, actor = principal if isinstance(principal, tuple) else (principal.user_id, principal.name)
    prepared = {"run": run} if run is not None else {}
    try:
        async for event in copilot.astream(
            message, conversation_id=conversation_id, channel=channel, user_id=user_id,
            actor=actor,  # a proposal is filed as asked by this user, who may then not decide it
            **prepared,
        ):
            if event.type == "run_started":
                run_id, conv_id = event.run_id, event.conversation_id
            elif event.type == "answer":
                answered = event.result
            yield event
    except Exception as exc:  # the stream must end with an answer; the traceback goes to the log
        if run_id is None or conv_id is None:
            raise  # no run yet: the app's internal-error handler logs and answers it
        error_id = new_error_id()
        log.error("internal error %s in chat run %s", error_id, run_id, exc_info=exc)
        error = internal_error_answer(error_id, exc, conversation_id=conv_id, run_id=run_id)
        await run_in_threadpool(_finish_abandoned, sessions, run_id, conv_id, internal_error_record(error_id, exc))
        answered = AgentAnswer(
            answer=error, conversation_id=conv_id, run_id=run_id, model=str(copilot.model_name),
            tool_calls=[], llm_calls=0, prompt_tokens=0, completion_tokens=0,
            latency_s=round(time.perf_counter() - begin, 3), llm_s=0.0, tool_s=0.0, error=error,
        )
        yield AgentEvent(type="error", text=error, run_id=run_id, conversation_id=conv_id)
        yield AgentEvent(type="answer", text=error, result=answered, run_id=run_id, conversation_id=conv_id)
    finally:
        # No answer: the run was stopped or the server is shutting down; api.runs records which.
        record_agent_run(
            status="ok" if answered is not None and answered.error is None else "error",
            seconds=time.perf_counter() - begin,
            channel=channel,
        )
        if run_id is not None:
            try:
                _record_llm_calls(sessions, run_id)
            except Exception:  # metrics must never break an answer
                log.exception("could not record LLM call metrics for run %s", run_id)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


async def stream_run(run: ActiveRun, *, after: int = 0) -> AsyncIterator[str]:
    """SSE frames of `run` after event number `after`, live until it ends, with keep-alive comments."""
    async for frame in run.follow(after=after, keepalive_s=KEEPALIVE_S):
        yield sse_frame(frame, _dumps)


async def stream_stored(runs: RunRegistry, run_id: str, *, after: int = 0) -> AsyncIterator[str]:
    """The same frames for a run another worker holds, from the stored events (`RunRegistry.follow_stored`)."""
    async for frame in runs.follow_stored(run_id, after=after, keepalive_s=KEEPALIVE_S):
        yield sse_frame(frame, _dumps)


def sse_response(run: ActiveRun | str, *, after: int = 0, runs: RunRegistry | None = None) -> StreamingResponse:
    """`run`'s events from memory, or (a run id and the registry) from the stored events."""
    if isinstance(run, ActiveRun):
        body, run_id = stream_run(run, after=after), run.run_id
    else:
        assert runs is not None
        body, run_id = stream_stored(runs, run, after=after), run
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Run-Id": run_id},
    )


def registry(request: Request) -> RunRegistry:
    runs: RunRegistry = request.app.state.runs
    return runs


CHAT_EXAMPLES = {
    "new": Example(summary="Start a conversation", value={"message": "Which activities leak the most margin?"}),
    "continue": Example(
        summary="Continue one of yours",
        value={"message": "And what should we do about the first?", "conversation_id": "conv-1a2b3c4d5e6f7a8b"},
    ),
}


@router.post(
    "",
    response_model=AgentAnswer,
    summary="Ask the agent; server-sent events with `Accept: text/event-stream`, else the answer as JSON",
    responses={
        **AUTH_RESPONSES,
        200: {
            "description": "The `AgentAnswer` (JSON), or with `Accept: text/event-stream` a stream of "
            "`run_started`, `queue`, `plan`, `token`, `tool_start`, `tool_end`, `error` and a last `answer` "
            "(or `stopped`) event, each with an `id:`; the run goes on if the client disconnects",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"description": "conversation_id is not one of your conversations"},
        409: {"description": "JSON only: the run was stopped (or the server shut down) before the answer"},
        422: {"description": "Empty or too long message, malformed conversation id"},
        503: {"description": "The model is not ready (starting, warming up, failed or disabled)"},
    },
)
async def chat_route(
    request: Request,
    principal: AnalystDep,
    body: Annotated[ChatRequest, Body(openapi_examples=CHAT_EXAMPLES)],
    accept: Annotated[str | None, Header()] = None,
    x_client: Annotated[str | None, Header(description="`web` from the web UI")] = None,
) -> Any:
    copilot = _copilot_or_503(request)
    if body.conversation_id is not None:
        await run_in_threadpool(_check_conversation, copilot.sessions, body.conversation_id, principal)
    channel: Channel = "web" if (x_client or "").strip().lower() == "web" else "api"
    jobs: ChatJobs | None = getattr(request.app.state, "chat_jobs", None)
    if jobs is not None:  # a job any worker takes; this one streams it from the stored events
        return await _as_job(request, jobs, copilot, body, principal, channel, accept)
    events = run_turn(
        copilot, message=body.message, conversation_id=body.conversation_id, principal=principal, channel=channel
    )
    run = await registry(request).start(events, question=body.message, user_id=principal.user_id, channel=channel)
    if "text/event-stream" in (accept or ""):
        return sse_response(run)
    await run.wait()
    if run.answer is None:  # stopped (POST .../stop) or interrupted by a shutdown
        raise HTTPException(status_code=409, detail=f"run {run.run_id!r} {run.state}: {run.end_reason}")
    return JSONResponse(content=run.answer.model_dump(mode="json"), headers={"X-Run-Id": run.run_id})


async def _as_job(request: Request, jobs: ChatJobs, copilot: Any, body: ChatRequest, principal: Principal,
                  channel: Channel, accept: str | None) -> Any:
    run = await run_in_threadpool(prepare, copilot.sessions, question=body.message.strip(),
                                  conversation_id=body.conversation_id, user_id=principal.user_id, channel=channel,
                                  model=str(copilot.model_name))
    await jobs.defer(run.run_id, user_id=principal.user_id, actor=principal.name, channel=channel)
    if "text/event-stream" in (accept or ""):
        return sse_response(run.run_id, runs=registry(request))
    async for frame in registry(request).follow_stored(run.run_id):
        if frame is None or frame.event not in TERMINAL_EVENTS:
            continue
        if frame.event == "answer":
            answer = AgentAnswer.model_validate(frame.data["result"])  # stored without its empty fields
            return JSONResponse(content=answer.model_dump(mode="json"), headers={"X-Run-Id": run.run_id})
        raise HTTPException(status_code=409, detail=f"run {run.run_id!r} {frame.data.get('status')}: "
                            f"{frame.data.get('text')}")
    raise HTTPException(status_code=409, detail=f"run {run.run_id!r} ended without an answer")


@router.get(
    "/status",
    response_model=ChatStatus,
    summary="Whether chat answers now (the model may still be starting or warming up)",
    responses=AUTH_RESPONSES,
)
async def status_route(request: Request, user: ReaderDep) -> ChatStatus:
    # async: read the run registry on the event loop that changes it
    runs: RunRegistry | None = getattr(request.app.state, "runs", None)
    if runs is not None:  # the queue over every worker
        await runs.refresh_load()
    status = chat_status(_state(request), runs, user.user_id)
    if runs is not None and status.available:  # and your runs on every worker
        held = set(status.your_runs)
        rows = await run_in_threadpool(running_runs, runs.sessions, user_id=user.user_id)
        status.your_runs += [row[0] for row in rows if row[0] not in held]
    return status
