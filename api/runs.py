"""Chat runs that outlive the request: a registry of turns running in the API process.

`POST /api/v1/chat` starts a turn as a background task (`RunRegistry.start`); the task appends
every event of the turn to the run's buffer (`ActiveRun.frames`, numbered from 1) while the run
log in the database records the question, the calls and the answer as before. Any number of
readers follow a run from any point (`ActiveRun.follow(after=n)`): the first response, a
reloaded page, a second tab, `curl` with `Last-Event-ID`. A client going away never touches the
run; only `RunRegistry.stop` (the Stop button, `POST .../stop`) or the server shutting down
cancels it, and then the run log says so (`stopped` / `interrupted`, no partial answer stored).

Turns take the model `turns_at_once` at a time across the whole deployment (the embedded server
has one slot per prompt shape, so two turns at once would only evict each other's cache; a team
shares one model endpoint): every worker's turns wait in one queue in the database
(`agent.model_queue`), in order, and their streams say their place in it (`queue` events,
position 0 when the wait is over; a run that never waited sends none).

Finished runs stay replayable from memory for `KEEP_S` seconds (at most `KEEP_FINISHED` of them).

Several workers (`valuechain serve --workers N`, or several servers on one PostgreSQL database):
each event is also stored as it comes (`agent.run_events`, table `run_events`, by a writer task
per run, so the turn never waits on the database), and a reader that lands on a worker not
holding the run follows it from the table (`RunRegistry.follow_stored`, polling every
`POLL_S`) with the same ids. Each worker refreshes a heartbeat every `HEARTBEAT_S` and sweeps
for runs whose owner's heartbeat is older than `stale_s` (or whose process ended), marking them
`interrupted` (`RunRegistry.keep_alive`); a reader of such a run gets a last `stopped` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from agent import model_queue
from agent.copilot import AgentAnswer, AgentEvent
from agent.run_events import (
    TERMINAL_EVENTS,
    forget_worker,
    heartbeat,
    interrupt_stale,
    owner_gone,
    prune,
    read_events,
    run_state,
    stop_requests,
    store_events,
)
from agent.runlog import close_unfinished

log = logging.getLogger(__name__)

KEEP_S = 900.0
"""How long a finished run's events stay replayable from memory."""
KEEP_FINISHED = 100
POLL_S = 0.25
"""How often a reader following a run held by another worker looks for new events."""
ENDED_GRACE_S = 3.0
"""How long a reader waits for the last event of a run the run log says has ended before saying so itself."""
PRUNE_S = 3600.0
"""How often a worker deletes stored events older than `agent.run_events.KEEP_DAYS`."""
STOP_POLL_S = 0.5
"""How often a worker holding runs looks for Stops asked on other workers."""
HEARTBEAT_S = 5.0
"""How often a worker says it is alive and looks for runs of workers that are not (at most stale_s / 3)."""

RunState = Literal["queued", "running", "ok", "error", "stopped", "interrupted"]


@dataclass(frozen=True)
class Frame:
    """One buffered server-sent event: `seq` is its SSE `id` (None: a frame computed for this reader, not
    stored, so a reattach's `Last-Event-ID` never points at it: a queued chat job's place)."""

    seq: int | None
    event: str
    data: dict[str, Any]


@dataclass
class ActiveRun:
    """One turn held by this process: its owner, state and every event so far."""

    run_id: str
    conversation_id: str
    user_id: int | None
    question: str
    channel: str
    started: float = field(default_factory=time.monotonic)
    state: RunState = "queued"
    frames: list[Frame] = field(default_factory=list)
    answer: AgentAnswer | None = None
    finished: float | None = None
    stop_reason: tuple[RunState, str] | None = None
    queue_position: int = 0
    task: asyncio.Task[None] | None = None
    failure: BaseException | None = None
    """A bug that escaped the agent after the run started (`run_turn` turns those into answers)."""
    stored: int = 0
    """Frames written to `run_events` so far (the writer task's progress)."""
    store_failed: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def end_reason(self) -> str:
        """Why it ended without an answer (a Stop, a shutdown), as told to the user."""
        return self.stop_reason[1] if self.stop_reason else "the run ended without an answer"

    @property
    def elapsed_s(self) -> float:
        return round((self.finished or time.monotonic()) - self.started, 1)

    def append(self, event: str, data: dict[str, Any]) -> Frame:
        frame = Frame(len(self.frames) + 1, event, {"type": event, **data})
        self.frames.append(frame)
        self._wake()
        return frame

    def finish(self) -> None:
        self.finished = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, *, after: int = 0, keepalive_s: float | None = None) -> AsyncIterator[Frame | None]:
        """The frames after `after`, as they come, until the run ends; None every `keepalive_s` of silence."""
        seen = max(0, after)
        while True:
            while seen < len(self.frames):
                seen += 1
                yield self.frames[seen - 1]
            if self.done:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), timeout=keepalive_s)
            except TimeoutError:
                yield None

    async def wait(self) -> None:
        """Until the run has ended."""
        async for _ in self.follow(after=len(self.frames)):
            pass


class RunRegistry:
    """The chat turns of this API process, running and recently finished."""

    def __init__(self, sessions: sessionmaker[Session], *, turns_at_once: int = 1, stale_s: float = 15.0) -> None:
        self.sessions = sessions
        self.turns_at_once = turns_at_once
        self.stale_s = stale_s
        self.runs: dict[str, ActiveRun] = {}
        self.load: tuple[int, int] = (0, 0)
        """(holding, waiting) turns of the deployment, as last read (`refresh_load`)."""
        self._released: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._keep_alive: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None

    # ------------------------------------------------------------------ queries
    def get(self, run_id: str) -> ActiveRun | None:
        return self.runs.get(run_id)

    def active(self) -> list[ActiveRun]:
        """Runs not yet ended, oldest first."""
        return sorted((r for r in self.runs.values() if not r.done), key=lambda r: r.started)

    # ------------------------------------------------------------------ starting
    async def start(self, events: AsyncIterator[AgentEvent], *, question: str, user_id: int | None,
                    channel: str, prepared: bool = False) -> ActiveRun:
        """Drive `events` (one turn's, from `run_turn`) in a background task; the run once it has an id.
        `prepared`: a chat job's run, whose `run_started` was stored when it was asked (`api.chat_jobs`).

        An error before the run exists (no `run_started` yet) is raised here."""
        self._prune()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[ActiveRun] = loop.create_future()
        task = asyncio.create_task(self._drive(events, ready, question=question, user_id=user_id, channel=channel,
                                               prepared=prepared))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(ready)  # a client leaving now does not cancel the run

    async def _drive(self, events: AsyncIterator[AgentEvent], ready: asyncio.Future[ActiveRun], *,
                     question: str, user_id: int | None, channel: str, prepared: bool = False) -> None:
        run: ActiveRun | None = None
        writer: asyncio.Task[None] | None = None
        holding = False
        try:
            async for event in events:
                if run is None:
                    if event.type != "run_started" or event.run_id is None or event.conversation_id is None:
                        raise RuntimeError(f"a turn must begin with run_started, got {event.type!r}")
                    run = ActiveRun(event.run_id, event.conversation_id, user_id, question, channel,
                                    task=asyncio.current_task())
                    run.append(event.type, _data(event))
                    run.stored = 1 if prepared else 0  # a prepared run's first event is stored already
                    writer = asyncio.create_task(self._store(run))
                    holding = True
                    position = await self._try_slot(run, join=True)  # a queued run says its place at once
                    self.runs[run.run_id] = run  # listed once its place is known (a chat job's readers look here)
                    ready.set_result(run)
                    if position:
                        await self._take_slot(run)
                    continue
                if event.type == "answer":
                    run.answer = event.result
                    run.state = "error" if event.result is not None and event.result.error else "ok"
                run.append(event.type, _data(event))
        except asyncio.CancelledError:
            if run is None:
                raise
            state, reason = run.stop_reason or ("interrupted", "the server stopped before the answer")
            run.state = state
            await asyncio.shield(run_in_threadpool(
                close_unfinished, self.sessions, run.run_id, status=state, reason=reason))
            run.append("stopped", {"run_id": run.run_id, "conversation_id": run.conversation_id,
                                   "status": state, "text": reason})
            log.info("run %s %s: %s", run.run_id, state, reason)
        except Exception as exc:  # before run_started: the route answers it (500); after, run_turn handled it
            if not ready.done():
                ready.set_exception(exc)
            elif run is not None:
                run.failure = exc
                log.exception("chat run %s failed outside the agent", run.run_id)
        finally:
            if run is not None:
                if holding:
                    await self._leave_queue(run)
                if run.state in ("queued", "running"):  # ended without an answer or a stop
                    run.state = "error"
                run.finish()
            if writer is not None:  # the last events reach the table before the task ends
                with contextlib.suppress(Exception):
                    await asyncio.shield(writer)
            closer = getattr(events, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(closer())

    async def _store(self, run: ActiveRun) -> None:
        """Write `run`'s frames to `run_events` as they come, in batches, until it has ended.

        A failed write is logged and ends the storing of that run (its readers on this worker
        are not affected); the turn itself never waits for the database here."""
        while True:
            changed = run._changed
            pending = run.frames[run.stored:]
            if pending:
                try:
                    await run_in_threadpool(store_events, self.sessions, run.run_id,
                                            [(f.seq, f.event, f.data) for f in pending if f.seq is not None])
                except Exception as exc:
                    run.store_failed = True
                    log.warning("run %s: events not stored for other workers (%s)", run.run_id,
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    return
                run.stored += len(pending)
                continue
            if run.done:
                return
            await changed.wait()

    async def answer(self, events: AsyncIterator[AgentEvent], *, question: str, user_id: int | None,
                     channel: str, started: Callable[[ActiveRun], Awaitable[None]] | None = None,
                     ) -> tuple[ActiveRun, AgentAnswer | None]:
        """Run a turn like `start` (queued with the others, stoppable, replayable) and wait for it to end;
        `started(run)` is awaited once the run has its id.

        The answer is None when the run was stopped or interrupted; a bug that escaped the agent is raised."""
        run = await self.start(events, question=question, user_id=user_id, channel=channel)
        if started is not None:
            await started(run)
        await run.wait()
        if run.failure is not None:
            raise run.failure
        return run, run.answer

    async def _take_slot(self, run: ActiveRun) -> None:
        """Wait for the model in the deployment's queue (`agent.model_queue`): at once when fewer than
        `turns_at_once` turns of any worker hold it and none waits ahead, else in ticket order,
        re-checked when a turn of this worker ends and every `POLL_S` (a turn of another worker). A
        place a gone worker held is swept by the heartbeat (`keep_alive`), not by each waiting turn."""
        while True:
            released = self._released_event()
            if await self._try_slot(run) == 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), timeout=POLL_S)

    async def _try_slot(self, run: ActiveRun, *, join: bool = False) -> int:
        """One attempt at the model (after taking a place, with `join`): 0 when `run` holds it (its
        state `running`), else its place, announced when it changed."""
        if join:
            await run_in_threadpool(model_queue.join, self.sessions, run.run_id)
        try:
            position = await run_in_threadpool(model_queue.try_start, self.sessions, run.run_id,
                                               limit=self.turns_at_once)
        except KeyError:  # another worker judged this one gone and swept its place: take one again
            log.warning("run %s lost its place for the model; queued again", run.run_id)
            await run_in_threadpool(model_queue.join, self.sessions, run.run_id)
            return max(run.queue_position, 1)
        if position == 0:
            run.state = "running"
            if run.queue_position:  # it waited: its stream hears the wait is over
                run.queue_position = 0
                run.append("queue", queue_data(run.run_id, 0))
            return 0
        self._announce(run, position)
        return position

    async def _leave_queue(self, run: ActiveRun) -> None:
        """`run` ended: its place for the model is freed and this worker's waiting turns look again."""
        try:
            await asyncio.shield(run_in_threadpool(model_queue.leave, self.sessions, run.run_id))
        except Exception as exc:  # the database is away: the place is swept once the run is no longer running
            log.warning("run %s: place for the model not freed (%s)", run.run_id, type(exc).__name__)
        released, self._released = self._released, None
        if released is not None:
            released.set()

    def _released_event(self) -> asyncio.Event:
        if self._released is None:
            self._released = asyncio.Event()
        return self._released

    @staticmethod
    def _announce(run: ActiveRun, position: int) -> None:
        if run.queue_position != position:
            run.queue_position = position
            run.append("queue", queue_data(run.run_id, position))

    async def refresh_load(self) -> tuple[int, int]:
        """(turns holding the model, turns waiting), over every worker of the deployment."""
        self.load = await run_in_threadpool(model_queue.load, self.sessions)
        return self.load

    # ------------------------------------------------------------------ stopping
    def stop(self, run: ActiveRun, *, state: RunState, reason: str) -> bool:
        """Cancel a run that has not ended; False if it already had."""
        if run.done:
            return False
        run.stop_reason = (state, reason)
        if run.task is None:
            return False
        run.task.cancel()
        return True

    async def shutdown(self, reason: str = "the server shut down before the answer") -> None:
        """Cancel every run still going (marked `interrupted`) and wait for them to record it."""
        for run in self.active():
            run.stop_reason = ("interrupted", reason)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._keep_alive is not None and self._closing is not None:
            self._closing.set()  # not cancelled: a query in flight finishes before the engine closes
            await asyncio.gather(self._keep_alive, return_exceptions=True)
            self._keep_alive = None

    def start_keep_alive(self, *, interval_s: float | None = None) -> None:
        """Run `keep_alive` in the background until `shutdown`."""
        self._closing = asyncio.Event()
        self._keep_alive = asyncio.create_task(self.keep_alive(interval_s=interval_s, until=self._closing))

    # ------------------------------------------------------------------ other workers' runs
    async def follow_stored(self, run_id: str, *, after: int = 0, keepalive_s: float | None = None,
                            poll_s: float = POLL_S) -> AsyncIterator[Frame | None]:
        """Like `ActiveRun.follow`, for a run another process holds: its stored events after `after`,
        polled until its last event (`answer`/`stopped`); None every `keepalive_s` of silence. A chat
        job (`api.chat_jobs`) this worker takes meanwhile is followed from memory from then on; while
        no worker has taken it, its place is sent (unnumbered) whenever it changes.

        A run the run log says has ended without a stored last event gets a `stopped` event saying
        why, numbered next: at once when its process is gone (killed, no heartbeat), else after
        `ENDED_GRACE_S` (a live owner is still storing its last events)."""
        seen = max(0, after)
        quiet = 0.0
        checked = 0.0  # the run row after a second of silence (a chat job is taken in less: no place sent)
        ended_at: float | None = None
        place = 0  # a chat job not yet taken: its place, sent when it changes
        while True:
            local = self.runs.get(run_id)
            if local is not None:  # a chat job this worker took: its frames from memory, as they come
                if place and not local.queue_position:
                    yield _place(run_id, 0)
                async for frame in local.follow(after=seen, keepalive_s=keepalive_s):
                    yield frame
                return
            rows = await run_in_threadpool(read_events, self.sessions, run_id, after=seen)
            for seq, event, data in rows:
                seen = seq
                yield Frame(seq, event, data)
                if event in TERMINAL_EVENTS:
                    return
            if rows:
                quiet = 0.0
                place = place if seen <= 1 else 0  # taken: the stored events say where it stands
                continue
            checked += poll_s
            if checked >= 1.0:  # the run row, and its owner's liveness, once a second
                checked = 0.0
                marked = await run_in_threadpool(interrupt_stale, self.sessions, stale_s=self.stale_s, run_id=run_id)
                state = await run_in_threadpool(run_state, self.sessions, run_id)
                if state is not None and state[0] in ("running", "queued"):  # queued: a chat job not yet taken
                    ended_at = None
                    now = (await run_in_threadpool(model_queue.places, self.sessions, [run_id])).get(run_id, 0) \
                        if state[0] == "queued" else 0
                    if now != place:  # a new place; or 0: taken, and no stored event has said so yet
                        place = now
                        yield _place(run_id, place)
                else:
                    ended_at = ended_at or time.monotonic()  # a live owner may still be storing its last events
                    gone = bool(marked) or await run_in_threadpool(owner_gone, self.sessions, run_id,
                                                                   stale_s=self.stale_s)
                    late = await run_in_threadpool(read_events, self.sessions, run_id, after=seen)
                    if not late and (gone or time.monotonic() - ended_at >= ENDED_GRACE_S):
                        status, error, conversation_id = state or ("error", None, "")
                        yield Frame(seen + 1, "stopped", {"type": "stopped", "run_id": run_id,
                                                          "conversation_id": conversation_id, "status": status,
                                                          "text": error or f"the run ended ({status})"})
                        return
                    if late:  # stored after all: served on the next turn of the loop
                        continue
            await asyncio.sleep(poll_s)
            quiet += poll_s
            if keepalive_s is not None and quiet >= keepalive_s:
                quiet = 0.0
                yield None

    async def keep_alive(self, *, interval_s: float | None = None, until: asyncio.Event | None = None) -> None:
        """Forever: this worker's heartbeat, then mark runs of gone workers `interrupted`; every
        `STOP_POLL_S`, carry out the Stops asked on other workers for runs held here; until `until`
        is set (or cancelled). The heartbeat row is then removed: a clean shutdown ends its own runs."""
        interval = interval_s if interval_s is not None else min(HEARTBEAT_S, self.stale_s / 3)
        pruned, next_beat = 0.0, 0.0
        until = until or asyncio.Event()
        try:
            while not until.is_set():
                try:
                    if time.monotonic() >= next_beat:
                        next_beat = time.monotonic() + interval
                        prune_now = time.monotonic() - pruned >= PRUNE_S
                        pruned = time.monotonic() if prune_now else pruned
                        await self._beat(prune_now=prune_now)
                    await self._carry_out_stops()
                except Exception as exc:  # a database not initialised yet, or briefly away: try again
                    log.warning("run heartbeat failed: %s", str(exc).splitlines()[0] if str(exc) else repr(exc))
                    next_beat = time.monotonic() + interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(until.wait(), timeout=min(STOP_POLL_S, interval))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(run_in_threadpool(forget_worker, self.sessions))

    async def _beat(self, *, prune_now: bool) -> None:
        await run_in_threadpool(heartbeat, self.sessions)
        if prune_now:
            await run_in_threadpool(prune, self.sessions)
        gone = await run_in_threadpool(interrupt_stale, self.sessions, stale_s=self.stale_s)
        await run_in_threadpool(model_queue.sweep, self.sessions, stale_s=self.stale_s)
        if gone:
            log.warning("%d chat run(s) of a worker that stopped answering marked interrupted: %s",
                        len(gone), ", ".join(gone))

    async def _carry_out_stops(self) -> None:
        active = [r.run_id for r in self.active() if r.stop_reason is None]
        if not active:
            return
        for run_id, reason in (await run_in_threadpool(stop_requests, self.sessions, active)).items():
            run = self.runs.get(run_id)
            if run is not None and run.stop_reason is None and self.stop(run, state="stopped", reason=reason):
                log.info("run %s stopped as asked on another worker", run_id)

    def _prune(self) -> None:
        now = time.monotonic()
        finished = sorted((r for r in self.runs.values() if r.finished is not None), key=lambda r: r.finished or 0)
        excess = len(finished) - KEEP_FINISHED
        for i, run in enumerate(finished):
            if i < excess or now - (run.finished or now) > KEEP_S:
                del self.runs[run.run_id]


def _data(event: AgentEvent) -> dict[str, Any]:
    data: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    data.pop("type", None)
    return data


def queue_data(run_id: str, position: int) -> dict[str, Any]:
    """A `queue` event's data: `position` turns ahead of the run (0: its wait is over)."""
    if position == 0:
        return {"run_id": run_id, "position": 0, "text": "The model is working on your question"}
    ahead = "1 turn" if position == 1 else f"{position} turns"
    return {"run_id": run_id, "position": position, "text": f"Waiting for the model: {ahead} ahead of yours"}


def _place(run_id: str, position: int) -> Frame:
    """A queued chat job's place, as its reader computed it: unnumbered (`Frame.seq` None), not stored."""
    return Frame(None, "queue", {"type": "queue", **queue_data(run_id, position)})


def sse_frame(frame: Frame | None, dumps: Callable[[Any], str]) -> str:
    """One server-sent event with its `id:` if stored (None: a keep-alive comment)."""
    if frame is None:
        return ": keep-alive\n\n"
    head = "" if frame.seq is None else f"id: {frame.seq}\n"
    return f"{head}event: {frame.event}\ndata: {dumps(frame.data)}\n\n"
