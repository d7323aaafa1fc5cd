"""Conversations with the agent: messages, runs, LLM calls, tool calls and feedback on answers.

The agent writes these tables (agent/runlog.py); this router reads them, searches them, and
lets a conversation's owner rename or delete it. A viewer sees only their own conversations;
analysts, approvers and admins see every one (SPEC §1: analysts review the log of runs), with
the thumbs up/down users gave each answer. Renaming and deleting are for the owner only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from api.auth import Principal
from api.deps import AUTH_RESPONSES, ReaderDep, SessionDep
from core.contract import Offset, UtcDateTime
from crm.models import AgentRun, Conversation, LlmCall, Message, Recommendation, RunFeedback, ToolCall, User

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


class ToolCallView(BaseModel):
    seq: int
    name: str
    args: dict[str, Any]
    result: Any | None
    error: str | None
    ok: bool
    latency_ms: float


class LlmCallView(BaseModel):
    seq: int
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float
    error: str | None


class FeedbackEntry(BaseModel):
    user: str | None
    rating: str = Field(description="up or down")
    note: str | None
    updated_at: UtcDateTime


class RunView(BaseModel):
    """One question answered by the agent, with every call it made."""

    id: str
    started_at: UtcDateTime
    finished_at: UtcDateTime | None
    status: str = Field(description="running, ok, error, stopped (by a user) or interrupted (the server stopped)")
    model: str | None
    question: str
    answer: str | None
    error: str | None
    latency_ms: float | None
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    tool_calls: list[ToolCallView]
    llm_call_log: list[LlmCallView]
    recommendation_ids: list[int] = Field(description="Recommendations this run filed")
    feedback: list[FeedbackEntry] = Field(default_factory=list, description="Thumbs up/down users gave the answer")


class MessageView(BaseModel):
    seq: int
    role: str = Field(description="user, assistant, tool or system")
    content: str
    tool_calls: list[Any] | None
    run_id: str | None
    created_at: UtcDateTime


class ConversationHistory(BaseModel):
    """A conversation's whole history, oldest first."""

    id: str
    title: str | None
    channel: str
    created_at: UtcDateTime
    user: str | None
    messages: list[MessageView]
    runs: list[RunView]


class ConversationSummary(BaseModel):
    id: str
    title: str | None
    channel: str
    created_at: UtcDateTime
    user: str | None
    runs: int
    last_run_at: UtcDateTime | None


class ConversationList(BaseModel):
    items: list[ConversationSummary]
    total: int
    limit: int
    offset: int


def _sees_all(principal: Principal) -> bool:
    return principal.can("analyze")


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _user_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).all())


@router.get(
    "",
    response_model=ConversationList,
    summary="Conversations, most recent first (viewers see only their own)",
    responses=AUTH_RESPONSES,
)
def list_route(
    session: SessionDep,
    principal: ReaderDep,
    channel: Annotated[str | None, Query(max_length=16, description="cli, web, slack or api")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Words in the title, a question or an answer")] = None,
    mine: Annotated[bool, Query(description="Only your own conversations")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[Offset, Query()] = 0,
) -> ConversationList:
    conditions = []
    if not _sees_all(principal):
        conditions.append(Conversation.user_id == principal.user_id)
    if mine:
        conditions.append(Conversation.user_id == principal.user_id)
    if channel is not None:
        conditions.append(Conversation.channel == channel)
    for word in (q or "").split()[:8]:
        pattern = f"%{_escape_like(word)}%"
        in_messages = select(Message.conversation_id).where(
            Message.role.in_(("user", "assistant")), Message.content.ilike(pattern, escape="\\"))
        conditions.append(or_(Conversation.title.ilike(pattern, escape="\\"), Conversation.id.in_(in_messages)))
    total = session.scalar(select(func.count()).select_from(Conversation).where(*conditions)) or 0
    last_run = (
        select(
            AgentRun.conversation_id.label("cid"),
            func.count().label("runs"),
            func.max(AgentRun.started_at).label("last"),
        )
        .group_by(AgentRun.conversation_id)
        .subquery()
    )
    rows = session.execute(
        select(Conversation, last_run.c.runs, last_run.c.last)
        .outerjoin(last_run, last_run.c.cid == Conversation.id)
        .where(*conditions)
        .order_by(func.coalesce(last_run.c.last, Conversation.created_at).desc(), Conversation.id)
        .limit(limit)
        .offset(offset)
    ).all()
    names = _user_names(session, {c.user_id for c, _, _ in rows if c.user_id is not None})
    return ConversationList(
        items=[
            ConversationSummary(
                id=c.id,
                title=c.title,
                channel=c.channel,
                created_at=c.created_at,
                user=names.get(c.user_id) if c.user_id is not None else None,
                runs=runs or 0,
                last_run_at=last,
            )
            for c, runs, last in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


def load_conversation(session: Session, conversation_id: str) -> ConversationHistory | None:
    """A conversation's messages and runs (with their LLM and tool calls), or None."""
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return None
    runs = session.scalars(
        select(AgentRun)
        .where(AgentRun.conversation_id == conversation_id)
        .order_by(AgentRun.started_at, AgentRun.id)
    ).all()
    run_ids = [r.id for r in runs]
    tools_by_run: dict[str, list[ToolCallView]] = defaultdict(list)
    llm_by_run: dict[str, list[LlmCallView]] = defaultdict(list)
    recs_by_run: dict[str, list[int]] = defaultdict(list)
    feedback_by_run: dict[str, list[tuple[RunFeedback, int | None]]] = defaultdict(list)
    if run_ids:
        for fb in session.scalars(
            select(RunFeedback).where(RunFeedback.run_id.in_(run_ids)).order_by(RunFeedback.updated_at)
        ):
            feedback_by_run[fb.run_id].append((fb, fb.user_id))
        for t in session.scalars(
            select(ToolCall).where(ToolCall.run_id.in_(run_ids)).order_by(ToolCall.run_id, ToolCall.seq)
        ):
            tools_by_run[t.run_id].append(
                ToolCallView(
                    seq=t.seq,
                    name=t.name,
                    args=t.args or {},
                    result=t.result,
                    error=t.error,
                    ok=t.ok,
                    latency_ms=t.latency_ms,
                )
            )
        for c in session.scalars(
            select(LlmCall).where(LlmCall.run_id.in_(run_ids)).order_by(LlmCall.run_id, LlmCall.seq)
        ):
            llm_by_run[c.run_id].append(
                LlmCallView(
                    seq=c.seq,
                    model=c.model,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                    latency_ms=c.latency_ms,
                    error=c.error,
                )
            )
        for rid, run_id in session.execute(
            select(Recommendation.id, Recommendation.run_id)
            .where(Recommendation.run_id.in_(run_ids))
            .order_by(Recommendation.id)
        ):
            if run_id is not None:
                recs_by_run[run_id].append(rid)
    messages = session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq, Message.id)
    ).all()
    user = _user_names(session, {conv.user_id}).get(conv.user_id) if conv.user_id is not None else None
    raters = _user_names(session, {u for rows in feedback_by_run.values() for _, u in rows if u is not None})
    return ConversationHistory(
        id=conv.id,
        title=conv.title,
        channel=conv.channel,
        created_at=conv.created_at,
        user=user,
        messages=[
            MessageView(
                seq=m.seq,
                role=m.role,
                content=m.content,
                tool_calls=m.tool_calls,
                run_id=m.run_id,
                created_at=m.created_at,
            )
            for m in messages
        ],
        runs=[
            RunView(
                id=r.id,
                started_at=r.started_at,
                finished_at=r.finished_at,
                status=r.status,
                model=r.model,
                question=r.question,
                answer=r.answer,
                error=r.error,
                latency_ms=r.latency_ms,
                llm_calls=r.llm_calls,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                tool_calls=tools_by_run[r.id],
                llm_call_log=llm_by_run[r.id],
                recommendation_ids=recs_by_run[r.id],
                feedback=[
                    FeedbackEntry(user=raters.get(u) if u is not None else None, rating=fb.rating, note=fb.note,
                                  updated_at=fb.updated_at)
                    for fb, u in feedback_by_run[r.id]
                ],
            )
            for r in runs
        ],
    )


@router.get(
    "/{conversation_id}",
    response_model=ConversationHistory,
    summary="A conversation's history: messages, runs, LLM calls and tool calls with arguments and results",
    responses={**AUTH_RESPONSES, 404: {"description": "No such conversation (or not yours, for a viewer)"}},
)
def detail_route(
    conversation_id: Annotated[str, Path(max_length=200, description="Conversation id", examples=["conv-1a2b3c4d5e6f7a8b"])],
    session: SessionDep,
    principal: ReaderDep,
) -> ConversationHistory:
    owner = session.execute(select(Conversation.user_id).where(Conversation.id == conversation_id)).first()
    visible = owner is not None and (_sees_all(principal) or owner.user_id == principal.user_id)
    history = load_conversation(session, conversation_id) if visible else None
    if history is None:
        # The same answer for "absent" and "not yours", so ids cannot be probed.
        raise HTTPException(status_code=404, detail=f"no conversation {conversation_id!r}")
    return history


class Rename(BaseModel):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _own(session: Session, conversation_id: str, principal: Principal) -> Conversation:
    conv = session.get(Conversation, conversation_id)
    if conv is None or not (_sees_all(principal) or conv.user_id == principal.user_id):
        raise HTTPException(status_code=404, detail=f"no conversation {conversation_id!r}")
    if conv.user_id != principal.user_id:
        raise HTTPException(status_code=403, detail=f"conversation {conversation_id!r} is not yours; only its owner may change it")
    return conv


@router.patch(
    "/{conversation_id}",
    response_model=ConversationSummary,
    summary="Rename one of your conversations",
    responses={**AUTH_RESPONSES, 404: {"description": "No such conversation"}, 403: {"description": "Not yours"}},
)
def rename_route(
    conversation_id: Annotated[str, Path(max_length=200, description="Conversation id")],
    body: Annotated[Rename, Body()],
    session: SessionDep,
    principal: ReaderDep,
) -> ConversationSummary:
    conv = _own(session, conversation_id, principal)
    conv.title = body.title
    session.commit()
    runs, last = session.execute(
        select(func.count(AgentRun.id), func.max(AgentRun.started_at)).where(AgentRun.conversation_id == conv.id)
    ).one()
    return ConversationSummary(id=conv.id, title=conv.title, channel=conv.channel, created_at=conv.created_at,
                               user=principal.name, runs=runs or 0, last_run_at=last)


@router.delete(
    "/{conversation_id}",
    status_code=204,
    summary="Delete one of your conversations with its runs, calls and feedback",
    responses={
        **AUTH_RESPONSES,
        404: {"description": "No such conversation"},
        403: {"description": "Not yours"},
        409: {"description": "A run of it is still going: stop it first"},
    },
)
def delete_route(
    conversation_id: Annotated[str, Path(max_length=200, description="Conversation id")],
    session: SessionDep,
    principal: ReaderDep,
) -> Response:
    """Recommendations it filed stay in the review queue with their evidence and audit trail; they
    lose only the link to the run."""
    conv = _own(session, conversation_id, principal)
    run_ids = list(session.scalars(select(AgentRun.id).where(AgentRun.conversation_id == conv.id)))
    running = session.scalar(select(func.count()).where(AgentRun.conversation_id == conv.id, AgentRun.status == "running"))
    if running:
        raise HTTPException(status_code=409, detail=f"conversation {conversation_id!r} has a run still going; stop it first")
    if run_ids:
        session.execute(update(Recommendation).where(Recommendation.run_id.in_(run_ids)).values(run_id=None))
        for table in (RunFeedback, ToolCall, LlmCall):
            session.execute(delete(table).where(table.run_id.in_(run_ids)))
    session.execute(delete(Message).where(Message.conversation_id == conv.id))
    session.execute(delete(AgentRun).where(AgentRun.conversation_id == conv.id))
    session.delete(conv)
    session.commit()
    return Response(status_code=204)
