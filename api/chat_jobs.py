"""Chat turns as jobs (`CHAT_JOBS=true`, PostgreSQL): any API worker answers a question another received.

Without it (the default, and always on SQLite), the worker that receives `POST /api/v1/chat` runs the turn (`api.runs.RunRegistry`);
a turn still waiting for the model when that worker dies is lost (marked `interrupted`). With it:

- the receiving worker stores the turn as a `queued` run (question, conversation, owner: none;
  `RunLog.start(queued=True)`) with its first event, `run_started`, and defers the procrastinate
  task `valuechain.chat_turn` (queue `valuechain-chat`, the kept PostgreSQL queue of the batch
  jobs, `jobs.queue`); it then streams the run from the stored events, as for any run another
  worker holds (`RunRegistry.follow_stored`);
- every API worker runs a procrastinate worker on that queue in its event loop, taking at most
  `CHAT_JOBS_PER_WORKER` turns at once (0: it takes none); the worker that takes one claims the
  run (`queued` → `running`, owned by it; `RunLog.claim`) and drives it in its RunRegistry like a
  turn of its own: the deployment-wide model queue, stored events, Stop from any worker, the
  heartbeat that marks it `interrupted` should this worker die mid-turn;
- a turn no worker has taken yet stays `queued` in the database, across restarts, until a worker
  takes it; a Stop ends it at once (`stopped`; the job then finds nothing to claim).

A Slack question is a chat job too: the worker that takes it posts the answer in the thread
(`SlackBot.deliver`); the thread is kept at once (`api.slack.resume.remember`), so a turn
interrupted mid-answer is still asked again there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import AgentEvent
from agent.run_events import store_events
from agent.runlog import RunLog, close_unfinished
from api.runs import ActiveRun, RunRegistry, _data
from crm.models import AgentRun
from jobs.queue import conninfo, ensure_schema, fail_abandoned

if TYPE_CHECKING:
    from procrastinate import App

log = logging.getLogger(__name__)

CHAT_TASK = "valuechain.chat_turn"
CHAT_QUEUE = "valuechain-chat"
NOT_READY = "the model was no longer available on the API worker that took this turn"
READY_POLL_S = 0.5
CLOSE_WAIT_S = 5.0
"""At shutdown, how long procrastinate waits for the turns this worker holds (already interrupted by
`RunRegistry.shutdown`) before it aborts them."""


def prepare(sessions: sessionmaker[Session], *, question: str, conversation_id: str | None, user_id: int | None,
            channel: str, model: str) -> RunLog:
    """Store a turn for a chat job: the question, a `queued` run and its `run_started` event (number 1)."""
    run = RunLog.start(sessions, question=question, conversation_id=conversation_id, model=model, channel=channel,
                       user_id=user_id, queued=True)
    first = AgentEvent(type="run_started", run_id=run.run_id, conversation_id=run.conversation_id)
    store_events(sessions, run.run_id, [(1, first.type, {"type": first.type, **_data(first)})])
    return run


def _question(sessions: sessionmaker[Session], run_id: str) -> str | None:
    with sessions() as s:
        row = s.get(AgentRun, run_id)
        return None if row is None else row.question


class ChatJobs:
    """This API worker's side of the chat jobs: deferring turns, and (with `per_worker` > 0) taking them."""

    def __init__(self, engine: Engine, runs: RunRegistry, copilot: Callable[[], Any], *, per_worker: int,
                 stale_s: float) -> None:
        ensure_schema(engine)
        self.runs = runs
        self.sessions = runs.sessions
        self.copilot = copilot
        """The agent when the model is ready, else None (`api.routes.chat`)."""
        self.per_worker = per_worker
        self.stale_s = stale_s
        self.engine = engine
        self.app = self._app(conninfo(engine))
        self._worker: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.delivered: list[Callable[[ActiveRun], Awaitable[None]]] = []
        """Called with each turn this worker took once it has ended (the Slack bot posts its answer)."""

    def _app(self, dsn: str) -> App:
        from procrastinate import App, PsycopgConnector  # deferred: only PostgreSQL deployments use it

        app = App(connector=PsycopgConnector(conninfo=dsn))
        app.task(name=CHAT_TASK, queue=CHAT_QUEUE)(self.take)
        return app

    async def open(self) -> None:
        await self.app.open_async()
        if self.per_worker > 0:
            self._worker = asyncio.create_task(self._work())
        self._reaper = asyncio.create_task(self._reap())

    async def _work(self) -> None:
        """Take turns once this worker's model is ready (a worker whose model never starts takes none)."""
        while self.copilot() is None:
            await asyncio.sleep(READY_POLL_S)
        await self.app.run_worker_async(
            queues=[CHAT_QUEUE], concurrency=self.per_worker, wait=True, install_signal_handlers=False,
            update_heartbeat_interval=max(0.5, min(10.0, self.stale_s / 3)),
            stalled_worker_timeout=self.stale_s, delete_jobs="successful",
            shutdown_graceful_timeout=CLOSE_WAIT_S)  # by default procrastinate waits for its jobs for ever

    async def _reap(self) -> None:
        """Forever: procrastinate's record of a chat job whose worker died is finished `failed` (the run
        itself is marked `interrupted` by the run heartbeat, `RunRegistry.keep_alive`)."""
        while True:
            await asyncio.sleep(max(1.0, self.stale_s / 2))
            try:
                await run_in_threadpool(fail_abandoned, self.engine, stale_s=self.stale_s, queue=CHAT_QUEUE,
                                        task=CHAT_TASK)
            except Exception as exc:  # the database may be restarting: the next round tries again
                log.warning("chat jobs: reaping failed: %s", str(exc).splitlines()[0] if str(exc) else repr(exc))

    async def close(self) -> None:
        """Stop taking turns; the turns held are interrupted by `RunRegistry.shutdown` (called first)."""
        for task in (self._worker, self._reaper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # a timeout too
                    await asyncio.wait_for(task, timeout=2 * CLOSE_WAIT_S)  # a shutdown never hangs here
        self._worker = self._reaper = None
        await self.app.close_async()

    async def defer(self, run_id: str, *, user_id: int | None, actor: str, channel: str) -> None:
        """Queue the turn stored by `prepare`; if the queue refuses it, the run ends `error` saying so."""
        try:
            await self.app.configure_task(CHAT_TASK, queue=CHAT_QUEUE).defer_async(
                run_id=run_id, user_id=user_id, actor=actor, channel=channel)
        except Exception as exc:
            await run_in_threadpool(close_unfinished, self.sessions, run_id, status="error",
                                    reason=f"could not be queued: {type(exc).__name__}: {exc}")
            raise

    async def take(self, run_id: str, user_id: int | None, actor: str, channel: str) -> None:
        """The job: claim the run and drive it to its end in this worker's registry."""
        # deferred: api.routes.chat imports this module's users (the routes), not the other way
        from api.routes.chat import run_turn

        copilot = self.copilot()
        if copilot is None:  # the model went away after this worker began taking turns
            await run_in_threadpool(close_unfinished, self.sessions, run_id, status="error", reason=NOT_READY)
            return
        run = await run_in_threadpool(RunLog.claim, self.sessions, run_id)
        if run is None:
            log.info("chat job %s: the run is no longer queued (stopped, or taken)", run_id)
            return
        question = await run_in_threadpool(_question, self.sessions, run_id)
        assert question is not None  # claimed just now
        events = run_turn(copilot, message=question, conversation_id=run.conversation_id,
                          principal=(user_id, actor), channel=channel, run=run)  # type: ignore[arg-type]
        active = await self.runs.start(events, question=question, user_id=user_id, channel=channel, prepared=True)
        await active.wait()
        for deliver in self.delivered:
            try:
                await deliver(active)
            except Exception:  # the answer is in the run log; only its delivery failed
                log.exception("chat job %s: delivering the answer failed", run_id)
