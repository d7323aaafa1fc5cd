"""The run log: conversations, runs, messages, LLM calls and tool calls, written as they happen.

Every write commits at once, so a run that dies half-way (endpoint down, timeout, a bug in a
tool) still leaves the question, each call made so far and the error in the database: one
queryable trace from question → LLM calls → tool calls → recommendation (`run_id`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import uuid
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from crm.models import AgentRun, Conversation, LlmCall, Message, ToolCall

HISTORY_TURNS = 4
"""Earlier turns sent back to the model: their questions and answers only (no tool traffic)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class RunLog:
    """Writes one run's trace; each method commits its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session], run_id: str, conversation_id: str) -> None:
        self.sessions = sessions
        self.run_id = run_id
        self.conversation_id = conversation_id
        self.llm_seq = 0
        self.tool_seq = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @classmethod
    def start(
        cls,
        sessions: sessionmaker[Session],
        *,
        question: str,
        conversation_id: str | None,
        model: str,
        channel: str = "cli",
        user_id: int | None = None,
        queued: bool = False,
    ) -> RunLog:
        """Open (or continue) the conversation, store the question and a `running` run owned by
        this process (`process_owner()`); `queued`: a run no process owns yet, for the worker that
        takes its chat job to `claim`.

        `user_id` owns a new conversation (an existing one keeps its owner)."""
        now = utcnow()
        run_id = new_id("run")
        with session_scope(sessions) as s:
            if conversation_id is None or s.get(Conversation, conversation_id) is None:
                conversation_id = conversation_id or new_id("conv")
                s.add(Conversation(id=conversation_id, created_at=now, channel=channel, title=question[:200],
                                   user_id=user_id))
                s.flush()
            s.add(
                AgentRun(
                    id=run_id, conversation_id=conversation_id, started_at=now, model=model,
                    status="queued" if queued else "running", question=question,
                    owner=None if queued else process_owner(),
                )
            )
            s.flush()
            s.add(Message(
                conversation_id=conversation_id, run_id=run_id, seq=_next_seq(s, conversation_id),
                role="user", content=question, created_at=now,
            ))
        return cls(sessions, run_id, conversation_id)

    @classmethod
    def claim(cls, sessions: sessionmaker[Session], run_id: str) -> RunLog | None:
        """Take a `queued` run (`start(queued=True)`): `running`, owned by this process, its clock
        started now. None when it is no longer queued (stopped while it waited, or taken)."""
        with session_scope(sessions) as s:
            taken = s.execute(update(AgentRun).where(AgentRun.id == run_id, AgentRun.status == "queued")
                              .values(status="running", owner=process_owner(), started_at=utcnow()))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            conversation_id = s.scalar(select(AgentRun.conversation_id).where(AgentRun.id == run_id))
        assert conversation_id is not None
        return cls(sessions, run_id, conversation_id)

    def llm_call(
        self, *, model: str, prompt_tokens: int | None, completion_tokens: int | None,
        latency_ms: float, error: str | None = None,
    ) -> None:
        self.llm_seq += 1
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0
        with session_scope(self.sessions) as s:
            s.add(LlmCall(
                run_id=self.run_id, seq=self.llm_seq, model=model, prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens, latency_ms=latency_ms, error=error,
            ))
            run = s.get(AgentRun, self.run_id)
            if run is not None:
                run.llm_calls += 1
                run.prompt_tokens += prompt_tokens or 0
                run.completion_tokens += completion_tokens or 0

    def tool_call(
        self, *, name: str, args: dict[str, Any], result: Any, error: str | None, latency_ms: float,
        seq: int | None = None,
    ) -> None:
        """Log one tool call; `seq` is its place in the turn when calls finish out of order (parallel steps)."""
        self.tool_seq += 1
        with session_scope(self.sessions) as s:
            s.add(ToolCall(
                run_id=self.run_id, seq=self.tool_seq if seq is None else seq, name=name, args=args, result=result,
                error=error, ok=error is None, latency_ms=latency_ms,
            ))

    def message(self, role: str, content: str, tool_calls: list[dict[str, Any]] | None = None) -> None:
        with session_scope(self.sessions) as s:
            s.add(Message(
                conversation_id=self.conversation_id, run_id=self.run_id,
                seq=_next_seq(s, self.conversation_id), role=role, content=content,
                tool_calls=tool_calls, created_at=utcnow(),
            ))

    def finish(self, *, answer: str | None, error: str | None, latency_ms: float) -> None:
        with session_scope(self.sessions) as s:
            run = s.get(AgentRun, self.run_id)
            if run is None:
                return
            run.finished_at = utcnow()
            run.status = "error" if error else "ok"
            run.error = error
            run.answer = answer
            run.latency_ms = latency_ms


def _next_seq(s: Session, conversation_id: str) -> int:
    last = s.scalar(select(func.max(Message.seq)).where(Message.conversation_id == conversation_id))
    return (last or 0) + 1


def history(sessions: sessionmaker[Session], conversation_id: str | None) -> list[tuple[str, str]]:
    """(role, content) of the last `HISTORY_TURNS` completed turns: user questions and final answers."""
    if conversation_id is None:
        return []
    with sessions() as s:
        rows = s.execute(
            select(AgentRun.question, AgentRun.answer)
            .where(AgentRun.conversation_id == conversation_id, AgentRun.status == "ok")
            .order_by(AgentRun.started_at.desc(), AgentRun.id.desc())
            .limit(HISTORY_TURNS)
        ).all()
    turns: list[tuple[str, str]] = []
    for question, answer in reversed(rows):
        turns += [("user", question), ("assistant", answer or "")]
    return turns


def conversation_calls(sessions: sessionmaker[Session], conversation_id: str | None) -> list[tuple[str, Any]]:
    """(tool, result JSON) of the successful tool calls of the last `HISTORY_TURNS` completed turns:
    where ids in a follow-up may come from (`agent.provenance`)."""
    if conversation_id is None:
        return []
    with sessions() as s:
        runs = (select(AgentRun.id)
                .where(AgentRun.conversation_id == conversation_id, AgentRun.status == "ok")
                .order_by(AgentRun.started_at.desc(), AgentRun.id.desc())
                .limit(HISTORY_TURNS)
                .scalar_subquery())
        rows = s.execute(select(ToolCall.name, ToolCall.result)
                         .where(ToolCall.run_id.in_(runs), ToolCall.ok.is_(True))).all()
    return [(name, result) for name, result in rows]


def last_steps(sessions: sessionmaker[Session], conversation_id: str | None
               ) -> list[tuple[str, dict[str, Any], Any]]:
    """(tool, args, result JSON) of the successful tool calls of the conversation's last completed turn, in order:
    what a follow-up ("file it", "the riskier of the two") refers to, with the ids resolved."""
    if conversation_id is None:
        return []
    with sessions() as s:
        run_id = s.scalar(
            select(AgentRun.id)
            .where(AgentRun.conversation_id == conversation_id, AgentRun.status == "ok")
            .order_by(AgentRun.started_at.desc(), AgentRun.id.desc())
            .limit(1)
        )
        if run_id is None:
            return []
        rows = s.execute(
            select(ToolCall.name, ToolCall.args, ToolCall.result).where(ToolCall.run_id == run_id, ToolCall.ok.is_(True))
            .order_by(ToolCall.seq)
        ).all()
    return [(name, dict(args or {}), result) for name, args, result in rows]


def close_unfinished(sessions: sessionmaker[Session], run_id: str, *, status: str, reason: str) -> bool:
    """End a run still marked `running` (or `queued` for a worker) with `status` (`stopped`, `interrupted`, `error`) and `reason`.

    Nothing else is written: the question and the calls made so far stay, no partial answer is
    stored. False when the run is unknown or already finished."""
    with session_scope(sessions) as s:
        run = s.get(AgentRun, run_id)
        if run is None or run.status not in ("running", "queued"):
            return False
        now = utcnow()
        run.status, run.error, run.finished_at = status, reason, now
        run.latency_ms = max(0.0, (now - run.started_at).total_seconds() * 1000)
    return True


def stop_queued(sessions: sessionmaker[Session], run_id: str, reason: str) -> bool:
    """End a run still `queued` for a worker (a chat job not yet taken) as `stopped`; False when a
    worker has taken it meanwhile (or it has ended)."""
    now = utcnow()
    with session_scope(sessions) as s:
        done = s.execute(update(AgentRun).where(AgentRun.id == run_id, AgentRun.status == "queued")
                         .values(status="stopped", error=reason, finished_at=now, latency_ms=0.0))
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def interrupt_running(sessions: sessionmaker[Session], reason: str, *, channels: tuple[str, ...]) -> list[str]:
    """At a server's start: mark the runs left `running` `interrupted`; their ids.

    A run in a conversation of `channels` (those the server answers) is marked with `reason`
    unless another process of this machine still answers it (a second worker, a terminal chat
    continuing a web conversation). A run of another channel (a `valuechain chat` beside the
    server) is marked only when the process answering it has ended (`interrupt_orphans`)."""
    me = process_owner()
    ids: list[str] = []
    for run_id, channel, owner in _running(sessions):
        state = owner_state(owner)
        if channel in channels and (state != "alive" or owner == me):
            note = reason
        elif state == "dead":
            note = ended(owner)
        else:
            continue
        if close_unfinished(sessions, run_id, status="interrupted", reason=note):
            ids.append(run_id)
    return ids


def interrupt_orphans(sessions: sessionmaker[Session]) -> list[str]:
    """Mark `interrupted` the runs left `running` by a process of this machine that has ended (a
    `valuechain chat` killed, a crashed server); their ids. Runs of live processes, of other
    machines and without an owner are left alone."""
    return [run_id for run_id, _channel, owner in _running(sessions)
            if owner_state(owner) == "dead"
            and close_unfinished(sessions, run_id, status="interrupted", reason=ended(owner))]


def close_own_runs(sessions: sessionmaker[Session], *, status: str, reason: str) -> list[str]:
    """End the runs this process still has `running` (a terminal chat stopped with Ctrl-C); their ids."""
    me = process_owner()
    return [run_id for run_id, _channel, owner in _running(sessions)
            if owner == me and close_unfinished(sessions, run_id, status=status, reason=reason)]


def _running(sessions: sessionmaker[Session]) -> list[tuple[str, str, str | None]]:
    """(run id, conversation channel, owner) of every run marked `running`."""
    with sessions() as s:
        rows = s.execute(
            select(AgentRun.id, Conversation.channel, AgentRun.owner)
            .join(Conversation, Conversation.id == AgentRun.conversation_id)
            .where(AgentRun.status == "running")
        ).all()
    return [(run_id, channel, owner) for run_id, channel, owner in rows]


# ---------------------------------------------------------------------------- which process answers a run

_OWNER = re.compile(r"^(?P<machine>\S+) pid (?P<pid>\d+) start (?P<start>\S+)$")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


@cache
def _machine() -> str:
    """This host, and its pid namespace where /proc shows it (containers sharing a host name and a
    database must not judge each other's pids)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    inode = re.sub(r"\D", "", namespace)
    return socket.gethostname()[:120] + (f"/{inode}" if inode else "")


def _stat(pid: int) -> tuple[str, str] | None:
    """Process `pid`'s state letter and when it started (boot id and start time in clock ticks),
    from /proc; None where /proc does not show it."""
    stat, boot = _read(f"/proc/{pid}/stat"), _read("/proc/sys/kernel/random/boot_id")
    if stat is None or boot is None or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": field 3 (state) onwards
    if len(fields) < 20:
        return None
    return fields[0], f"{boot.strip()[:8]}-{fields[19]}"  # field 22: starttime


@cache
def _owner(pid: int) -> str:
    stat = _stat(pid)
    return f"{_machine()} pid {pid} start {stat[1] if stat else '?'}"


def process_owner() -> str:
    """This process, as the run log records who answers a run: "<host> pid <pid> start <token>"."""
    return _owner(os.getpid())


def owner_state(owner: str | None) -> Literal["alive", "dead", "unknown"]:
    """Whether the process `owner` names is still running: `unknown` for another machine, a run
    logged before owners were recorded, or a system where pids cannot be checked (not POSIX)."""
    match = _OWNER.match(owner or "")
    if match is None or os.name != "posix" or match["machine"] != _machine():
        return "unknown"
    pid = int(match["pid"])
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass  # it exists, as another user's process
    stat = _stat(pid)
    if stat is None:  # no /proc, or one that hides other users' processes: the pid exists
        return "alive"
    state, started = stat
    if state in ("Z", "X") or match["start"] not in ("?", started):
        return "dead"  # a zombie (ended, not yet reaped), or the pid now names a later process
    return "alive"


def ended(owner: str | None) -> str:
    """The run log's note for a run whose process ended before the answer."""
    match = _OWNER.match(owner or "")
    who = f" (pid {match['pid']} on {match['machine'].split('/')[0]})" if match else ""
    return f"the process answering it{who} ended before the answer; ask again"
