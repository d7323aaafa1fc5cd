"""Chat runs by id: reattach to one (replay its events), stop it, rate its answer.

A run is read by its owner and by anyone who may see every conversation (analysts, approvers,
admins: the same rule as `GET /api/v1/conversations/{id}`); it is stopped only by its owner or
an admin; an answer is rated by anyone who may read it (one verdict per user, replaced by the
next). Unknown and invisible runs get the same 404, so ids cannot be probed.

Several API workers: a run held by another worker is read from the database (`agent.run_events`):
its stored events replay and follow the same way (same ids), and a run whose worker stopped
answering is marked `interrupted` when asked about. Stopping a run held by another worker stores
the request (`run_stops`); the worker holding it stops it within a second, and the route waits
for that (up to `STOP_WAIT_S`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent import model_queue
from agent.run_events import count_events, interrupt_stale, request_stop, run_state, running_runs, worker_seen
from agent.runlog import stop_queued, utcnow
from api.auth import Principal
from api.deps import AUTH_RESPONSES, ReaderDep, SessionDep
from api.routes.chat import registry, sse_response
from api.runs import ActiveRun
from core.contract import Offset, UtcDateTime
from crm.models import AgentRun, Conversation, RunFeedback

router = APIRouter(prefix="/api/v1/chat/runs", tags=["chat"])

RunId = Annotated[str, Path(description="Run id (`run_started` event, `X-Run-Id` header)",
                            examples=["run-1a2b3c4d5e6f7a8b"], pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such run (or not yours to see)"}}
STOP_WAIT_S = 10.0
"""How long a Stop of a run held by another worker waits for that worker to carry it out."""


class RunInfo(BaseModel):
    """Where a run is: its state, how long it has taken, and how many events it has sent."""

    run_id: str
    conversation_id: str
    question: str
    status: str = Field(description="queued, running, ok, error, stopped, interrupted")
    live: bool = Field(description="Held by this server process (else by another worker, or ended)")
    elapsed_s: float | None
    events: int = Field(description="Events so far (the last `id:`), stored ones when not live")
    queue_position: int = Field(description="Turns ahead of it while queued, else 0")


class Feedback(BaseModel):
    """Thumbs up or down on an answer, with an optional note for the analysts."""

    rating: Literal["up", "down"]
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class FeedbackView(Feedback):
    run_id: str
    user: str
    updated_at: UtcDateTime


def _visible(principal: Principal, owner: int | None) -> bool:
    return owner == principal.user_id or principal.can("analyze")


def _info(run: ActiveRun) -> RunInfo:
    return RunInfo(run_id=run.run_id, conversation_id=run.conversation_id, question=run.question, status=run.state,
                   live=True, elapsed_s=run.elapsed_s, events=len(run.frames), queue_position=run.queue_position)


def _stored(session: Session, run_id: str, principal: Principal) -> tuple[AgentRun, int | None]:
    row = session.execute(
        select(AgentRun, Conversation.user_id).join(Conversation, Conversation.id == AgentRun.conversation_id)
        .where(AgentRun.id == run_id)
    ).first()
    if row is None or not _visible(principal, row[1]):
        raise HTTPException(status_code=404, detail=f"no run {run_id!r}")
    return row[0], row[1]


def _lookup(request: Request, run_id: str, principal: Principal) -> AgentRun:
    """The run log's row for a run the caller may see (404 otherwise); a run left `running` by a
    worker that stopped answering is first marked `interrupted`."""
    runs = registry(request)
    interrupt_stale(runs.sessions, stale_s=runs.stale_s, run_id=run_id)
    with request.app.state.sessionmaker() as s:
        row: AgentRun = _stored(s, run_id, principal)[0]
        s.expunge(row)
        return row


def _lookup_owned(request: Request, run_id: str, principal: Principal) -> tuple[AgentRun, int | None]:
    """`_lookup` with the id of the user whose conversation it is."""
    row = _lookup(request, run_id, principal)
    with request.app.state.sessionmaker() as s:
        return row, s.scalar(select(Conversation.user_id).where(Conversation.id == row.conversation_id))


def _live(request: Request, run_id: str, principal: Principal) -> ActiveRun | None:
    run = registry(request).get(run_id)
    if run is not None and not _visible(principal, run.user_id):
        raise HTTPException(status_code=404, detail=f"no run {run_id!r}")
    return run


def _placed_status(stored: str, place: int) -> str:
    """`queued` while a run has a place; a run the log said `queued` and that has none was taken by a
    worker between the two reads (it is joining the model's queue): `running`, not `queued` at place 0."""
    if place:
        return "queued"
    return "running" if stored == "queued" else stored


def _elsewhere(sessions: sessionmaker[Session], held: set[str], user_id: int | None) -> list[RunInfo]:
    """The web and API runs still running on other workers (`user_id`'s only, unless None)."""
    rows = [r for r in running_runs(sessions, user_id=user_id) if r[0] not in held]
    places = model_queue.places(sessions, [r[0] for r in rows])
    now = utcnow()
    return [RunInfo(run_id=run_id, conversation_id=conv, question=question,
                    status=_placed_status(state, places.get(run_id, 0)), live=False,
                    elapsed_s=round((now - started).total_seconds(), 1), events=count_events(sessions, run_id),
                    queue_position=places.get(run_id, 0))
            for run_id, conv, question, started, state in rows]


@router.get("", response_model=list[RunInfo],
            summary="Runs of every worker not yet ended (or, with active=false, this worker's recent ones): "
            "your own (analysts: everyone's)",
            responses=AUTH_RESPONSES)
async def list_route(  # async: the registry is read on the event loop that changes it
    request: Request,
    principal: ReaderDep,
    active: Annotated[bool, Query(description="Only runs not yet ended, on every worker")] = True,
) -> list[RunInfo]:
    runs = registry(request).active() if active else sorted(registry(request).runs.values(), key=lambda r: r.started)
    mine = [_info(r) for r in runs if r.user_id == principal.user_id or principal.can("analyze")]
    if not active:
        return mine
    held = {r.run_id for r in registry(request).runs.values()}
    others = await run_in_threadpool(_elsewhere, registry(request).sessions, held,
                                     None if principal.can("analyze") else principal.user_id)
    return mine + others


@router.get("/{run_id}", response_model=RunInfo, summary="A run's state (live, or from the run log)",
            responses={**AUTH_RESPONSES, **NOT_FOUND})
async def info_route(run_id: RunId, request: Request, principal: ReaderDep) -> RunInfo:
    run = _live(request, run_id, principal)
    if run is not None:
        return _info(run)
    stored = await run_in_threadpool(_lookup, request, run_id, principal)
    events = await run_in_threadpool(count_events, registry(request).sessions, run_id)
    places = await run_in_threadpool(model_queue.places, registry(request).sessions, [run_id]) \
        if stored.status in ("running", "queued") else {}  # held by another worker, or a job not yet taken
    return RunInfo(run_id=stored.id, conversation_id=stored.conversation_id, question=stored.question,
                   status=_placed_status(stored.status, places.get(run_id, 0)), live=False,
                   elapsed_s=round(stored.latency_ms / 1000, 1) if stored.latency_ms is not None else None,
                   events=events, queue_position=places.get(run_id, 0))


@router.get(
    "/{run_id}/events",
    summary="Reattach to a run: its server-sent events from the start, or after `Last-Event-ID`",
    responses={
        **AUTH_RESPONSES, **NOT_FOUND,
        200: {"description": "The run's events (`id:` numbered from 1), live until its last `answer` or `stopped`",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        409: {"description": "The run log says `running` but no API worker streams it (a terminal chat)"},
        410: {"description": "The run ended and its events were not kept: read it in its conversation"},
    },
)
async def events_route(
    run_id: RunId,
    request: Request,
    principal: ReaderDep,
    last_event_id: Annotated[str | None, Header(description="Replay only the events after this id")] = None,
    after: Annotated[Offset | None, Query(description="Same as Last-Event-ID, for clients that cannot set it")] = None,
) -> object:
    run = _live(request, run_id, principal)
    stored: AgentRun | None = None
    if run is None:
        stored = await run_in_threadpool(_lookup, request, run_id, principal)
        if not await run_in_threadpool(_followable, request, stored):
            if stored.status == "running":
                raise HTTPException(status_code=409, detail=f"run {run_id!r} is running in another server process")
            raise HTTPException(
                status_code=410,
                detail=f"run {run_id!r} ended ({stored.status}) and its events are no longer kept; its question "
                f"and answer are in GET /api/v1/conversations/{stored.conversation_id}",
            )
    start = after if after is not None else 0
    if last_event_id is not None:
        try:
            start = max(start, int(last_event_id.strip()))
        except ValueError:
            raise HTTPException(status_code=422, detail=f"Last-Event-ID must be an event number, got {last_event_id!r}") from None
    if run is None:
        return sse_response(run_id, after=start, runs=registry(request))
    return sse_response(run, after=start)


def _followable(request: Request, stored: AgentRun) -> bool:
    """Whether another worker's run can be streamed from the table: it has stored events, or it is
    running in an API worker that is alive (its first events are on their way)."""
    runs = registry(request)
    if count_events(runs.sessions, stored.id) > 0:
        return True
    return stored.status == "running" and worker_seen(runs.sessions, stored.owner, stale_s=runs.stale_s)


@router.post(
    "/{run_id}/stop",
    response_model=RunInfo,
    summary="Stop a run (its owner or an admin): it ends `stopped`, no partial answer is stored",
    responses={**AUTH_RESPONSES, **NOT_FOUND, 403: {"description": "Not your run (admins may stop any)"},
               409: {"description": "The run has already ended"},
               200: {"description": "The run's state once stopped; held by another worker: `running` if that "
                     "worker has not stopped it within 10 s (it will when it picks the request up)"}},
)
async def stop_route(run_id: RunId, request: Request, principal: ReaderDep) -> RunInfo:
    run = _live(request, run_id, principal)
    if run is None:
        return await _stop_elsewhere(request, run_id, principal)
    if run.user_id != principal.user_id and not principal.can("admin"):
        raise HTTPException(status_code=403, detail=f"run {run_id!r} is not yours; only its owner or an admin may stop it")
    reason = f"stopped by {principal.name} after {run.elapsed_s:.0f} s"
    if not registry(request).stop(run, state="stopped", reason=reason):
        raise HTTPException(status_code=409, detail=f"run {run_id!r} has already ended ({run.state})")
    await run.wait()
    return _info(run)


async def _stop_elsewhere(request: Request, run_id: str, principal: Principal) -> RunInfo:
    """Stop a run another worker holds: store the request, wait for that worker to end the run."""
    stored, user_id = await run_in_threadpool(_lookup_owned, request, run_id, principal)
    if stored.status not in ("running", "queued"):
        raise HTTPException(status_code=409, detail=f"run {run_id!r} has already ended ({stored.status})")
    if user_id != principal.user_id and not principal.can("admin"):
        raise HTTPException(status_code=403, detail=f"run {run_id!r} is not yours; only its owner or an admin may stop it")
    elapsed = (utcnow() - stored.started_at).total_seconds()
    sessions = registry(request).sessions
    reason = f"stopped by {principal.name} after {elapsed:.0f} s"
    # a chat job no worker has taken yet ends here (`api.chat_jobs`); one taken meanwhile is asked to stop
    if stored.status != "queued" or not await run_in_threadpool(
            stop_queued, sessions, run_id, reason):
        await run_in_threadpool(request_stop, sessions, run_id, reason)
    deadline = time.monotonic() + STOP_WAIT_S
    status = "running"
    while time.monotonic() < deadline:
        state = await run_in_threadpool(run_state, sessions, run_id)
        status = state[0] if state else "error"
        if status != "running":
            break
        await asyncio.sleep(0.2)
    stored = await run_in_threadpool(_lookup, request, run_id, principal)  # also: owner gone meanwhile
    events = await run_in_threadpool(count_events, sessions, run_id)
    return RunInfo(run_id=run_id, conversation_id=stored.conversation_id, question=stored.question,
                   status=stored.status, live=False,
                   elapsed_s=round(stored.latency_ms / 1000, 1) if stored.latency_ms is not None else None,
                   events=events, queue_position=0)


@router.put(
    "/{run_id}/feedback",
    response_model=FeedbackView,
    summary="Rate an answer thumbs up or down, with an optional note (replaces your earlier verdict)",
    responses={**AUTH_RESPONSES, **NOT_FOUND, 409: {"description": "The run is still running"}},
)
def feedback_route(run_id: RunId, body: Annotated[Feedback, Body()], session: SessionDep,
                   principal: ReaderDep) -> FeedbackView:
    stored, _ = _stored(session, run_id, principal)
    if stored.status in ("running", "queued"):
        raise HTTPException(status_code=409, detail=f"run {run_id!r} is still running; rate it once it has answered")
    now = utcnow()
    row = session.scalars(
        select(RunFeedback).where(RunFeedback.run_id == run_id, RunFeedback.user_id == principal.user_id)
    ).first()
    if row is None:
        row = RunFeedback(run_id=run_id, user_id=principal.user_id, created_at=now, rating=body.rating)
        session.add(row)
    row.rating, row.note, row.updated_at = body.rating, body.note or None, now
    session.commit()
    return FeedbackView(run_id=run_id, user=principal.name, rating=row.rating, note=row.note, updated_at=now)
