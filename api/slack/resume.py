"""A Slack question whose worker died mid-answer is answered again by another worker, once.

A web user sees an interrupted run and can ask again; a Slack thread would hear nothing. So each
Slack run's thread is kept (`remember`, table `slack_questions`); every worker with Slack
configured looks every few seconds (`ResumeLoop`) for a Slack run the run log marks
`interrupted` (its worker killed, silent past RUN_STALE_S, or shut down) in the last
`RESUME_WITHIN_S`, claims it (`claim`: one conditional UPDATE, so one worker wins) and asks the
same question again in the same thread, saying why. A run that is itself a second answer is
never answered a third time: a question that kills its worker each time stops there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from agent.runlog import utcnow
from core.db import session_scope
from crm.models import AgentRun, SlackQuestion

log = logging.getLogger(__name__)

RESUME_WITHIN_S = 900.0
"""A Slack run interrupted longer ago than this is left alone (its thread has moved on)."""
LOOK_S = 2.0
"""How often a worker looks for interrupted Slack runs."""


@dataclass(frozen=True)
class Asked:
    """A Slack question to answer again: where, who asked, what, and the run that did not answer."""

    run_id: str
    team: str
    channel: str
    thread_ts: str
    user: str
    question: str


def remember(sessions: sessionmaker[Session], run_id: str, *, team: str, channel: str, thread_ts: str, user: str,
             resumed_from: str | None = None) -> None:
    """Keep the thread of Slack run `run_id` (the run must be in the run log)."""
    with session_scope(sessions) as s:
        s.add(SlackQuestion(run_id=run_id, team=team, channel=channel, thread_ts=thread_ts, user=user,
                            asked_at=utcnow(), resumed_from=resumed_from))


def thread_of(sessions: sessionmaker[Session], run_id: str) -> SlackQuestion | None:
    """Where Slack run `run_id` answers, if it is a Slack run."""
    with sessions() as s:
        row = s.get(SlackQuestion, run_id)
        if row is not None:
            s.expunge(row)
        return row


def claim(sessions: sessionmaker[Session], *, within_s: float = RESUME_WITHIN_S) -> list[Asked]:
    """The interrupted Slack runs this worker now answers again (claimed: no other worker gets them)."""
    since = utcnow() - dt.timedelta(seconds=within_s)
    with sessions() as s:
        rows = s.execute(
            select(SlackQuestion, AgentRun.question)
            .join(AgentRun, AgentRun.id == SlackQuestion.run_id)
            .where(AgentRun.status == "interrupted", AgentRun.finished_at >= since,
                   SlackQuestion.resumed_at.is_(None), SlackQuestion.resumed_from.is_(None))
            .order_by(SlackQuestion.asked_at)
        ).all()
    mine: list[Asked] = []
    for q, question in rows:
        with session_scope(sessions) as s:
            won = s.execute(update(SlackQuestion).where(SlackQuestion.run_id == q.run_id,
                                                        SlackQuestion.resumed_at.is_(None))
                            .values(resumed_at=utcnow()))
        if getattr(won, "rowcount", 0):
            mine.append(Asked(q.run_id, q.team, q.channel, q.thread_ts, q.user, question))
    return mine


class ResumeLoop:
    """Every `LOOK_S`, answer again the interrupted Slack runs this worker claims, with `answer`."""

    def __init__(self, sessions: sessionmaker[Session], answer: Callable[[Asked], Awaitable[None]]) -> None:
        self.sessions = sessions
        self.answer = answer
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="slack-resume")

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._closing.is_set():
            try:
                for asked in await run_in_threadpool(claim, self.sessions):
                    log.warning("slack run %s was interrupted; answering %r again in its thread",
                                asked.run_id, asked.question)
                    await self.answer(asked)
            except Exception as exc:  # the database briefly away, or Slack down: the next look tries again
                log.warning("slack resume: %s", str(exc).splitlines()[0] if str(exc) else repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=LOOK_S)
