"""Chat with the agent: `POST /api/v1/chat` (analyst role and up), streamed or not.

With `Accept: text/event-stream` the answer streams as server-sent events, one per
`agent.copilot.AgentEvent` (`event:` its type, `data:` the event as JSON): `run_started`, then
`token`, `tool_start` and `tool_end` as they happen, possibly `error`, and always a last
`answer` carrying the `AgentAnswer`. Otherwise the route waits and returns the `AgentAnswer`.

The agent is `app.state.llm.copilot`; until the model is ready the route answers 503 with the
reason (starting, warming up, failed, disabled). A new conversation belongs to the caller
(`conversations.user_id`), with channel `web` when the UI sends `X-Client: web`, else `api`;
a `conversation_id` can only continue the caller's own conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import AgentAnswer, AgentEvent
from agent.middleware import internal_error_answer, internal_error_record
from agent.runlog import RunLog, utcnow
from api.auth import Principal
from api.deps import AUTH_RESPONSES, AnalystDep, ReaderDep
from api.llm import LLMState
from api.metrics import record_agent_run, record_llm_call
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
    """Whether chat answers now, and if not why (the model may still be loading)."""

    available: bool
    status: str = Field(description="ready, starting, warming, failed, disabled (...), not started")
    detail: str
    model: str | None


def chat_status(state: LLMState | None) -> ChatStatus:
    """What `POST /api/v1/chat` would say about the model right now."""
    if state is None:
        return ChatStatus(available=False, status="not started", detail="the app has not started", model=None)
    if state.copilot is not None:
        return ChatStatus(available=True, status="ready", detail=f"model {state.model} is ready", model=state.model)
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
    principal: Principal,
    channel: Channel,
) -> AsyncIterator[AgentEvent]:
    """The agent's events for one turn, always ending with an `answer` event.

    A bug that escapes the agent becomes an `error` event and a failed answer naming an error id
    (the run is marked failed in the run log, the traceback logged under the id); metrics are
    recorded once the turn ends.
    """
    sessions: sessionmaker[Session] = copilot.sessions
    begin = time.perf_counter()
    run_id: str | None = None
    conv_id: str | None = conversation_id
    answered: AgentAnswer | None = None
    try:
        async for event in copilot.astream(
            message, conversation_id=conversation_id, channel=channel, user_id=principal.user_id
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
        if answered is None and run_id is not None and conv_id is not None:
            # The client went away before the answer: the generator is being closed.
            _finish_abandoned(sessions, run_id, conv_id, "the client disconnected before the answer")
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


def sse(event: AgentEvent) -> str:
    """One server-sent event: the event type as its name, the event as one line of JSON."""
    data = event.model_dump(mode="json", exclude_none=True)
    return f"event: {event.type}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(events: AsyncIterator[AgentEvent]) -> AsyncIterator[str]:
    """SSE frames for `events`, with a keep-alive comment while the agent is quiet."""
    iterator = aiter(events)
    pending: asyncio.Task[AgentEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                yield ": keep-alive\n\n"
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield sse(event)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with anyio.CancelScope(shield=True):  # runs even when the client went away
                await closer()


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
            "`run_started`, `token`, `tool_start`, `tool_end`, `error` and a last `answer` event",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"description": "conversation_id is not one of your conversations"},
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
    events = run_turn(
        copilot, message=body.message, conversation_id=body.conversation_id, principal=principal, channel=channel
    )
    if "text/event-stream" in (accept or ""):
        return StreamingResponse(
            _stream(events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result: AgentAnswer | None = None
    async for event in events:
        if event.type == "answer":
            result = event.result
    if result is None:  # run_turn always ends with an answer
        raise HTTPException(status_code=500, detail="the agent run ended without an answer")
    return JSONResponse(content=result.model_dump(mode="json"))


@router.get(
    "/status",
    response_model=ChatStatus,
    summary="Whether chat answers now (the model may still be starting or warming up)",
    responses=AUTH_RESPONSES,
)
def status_route(request: Request, _user: ReaderDep) -> ChatStatus:
    return chat_status(_state(request))
