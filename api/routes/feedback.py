"""The run log with the verdicts users gave the answers: what analysts read to see how the agent does.

One row per agent run (every channel: web, CLI, Slack, API), newest first: who asked what, how
the run ended, how long it took, which tools it called and which recommendations it filed, and
every thumbs up or down with its note (`PUT /api/v1/chat/runs/{id}/feedback` writes them).
Analysts, approvers and admins read it (the same rule as reading every conversation); the
whole history of a run stays in `GET /api/v1/conversations/{conversation_id}`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import exists, func, select

from api.deps import AUTH_RESPONSES, AnalystDep, SessionDep
from api.routes.conversations import FeedbackEntry
from core.contract import Offset, UtcDateTime
from crm.models import AgentRun, Conversation, Recommendation, RunFeedback, ToolCall, User

router = APIRouter(prefix="/api/v1/feedback", tags=["conversations"])


class RunLogEntry(BaseModel):
    """One agent run as the run log shows it, with the verdicts on its answer."""

    run_id: str
    conversation_id: str
    conversation_title: str | None
    channel: str = Field(description="cli, web, slack or api")
    user: str | None = Field(description="Who asked")
    started_at: UtcDateTime
    status: str = Field(description="running, ok, error, stopped or interrupted")
    model: str | None
    question: str
    answer: str | None
    error: str | None
    latency_ms: float | None
    tools: list[str] = Field(description="The tools it called, in order")
    recommendation_ids: list[int] = Field(description="Recommendations this run filed")
    feedback: list[FeedbackEntry] = Field(description="Thumbs up/down users gave the answer, oldest first")


class RunLog(BaseModel):
    items: list[RunLogEntry]
    total: int
    limit: int
    offset: int
    ratings: dict[str, int] = Field(description="Verdicts over the whole log: up and down")


@router.get(
    "",
    response_model=RunLog,
    summary="The run log, newest first, with the thumbs up/down and notes users gave each answer",
    responses=AUTH_RESPONSES,
)
def run_log_route(
    session: SessionDep,
    _analyst: AnalystDep,
    rated: Annotated[
        Literal["any", "rated", "up", "down"],
        Query(description="every run (`any`), runs with a verdict (`rated`), or with a thumbs `up` / `down`"),
    ] = "any",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> RunLog:
    conditions = []
    if rated != "any":
        verdict = select(RunFeedback.id).where(RunFeedback.run_id == AgentRun.id)
        if rated in ("up", "down"):
            verdict = verdict.where(RunFeedback.rating == rated)
        conditions.append(exists(verdict))
    total = session.scalar(select(func.count()).select_from(AgentRun).where(*conditions)) or 0
    rows = session.execute(
        select(AgentRun, Conversation)
        .join(Conversation, Conversation.id == AgentRun.conversation_id)
        .where(*conditions)
        .order_by(AgentRun.started_at.desc(), AgentRun.id)
        .limit(limit)
        .offset(offset)
    ).all()
    run_ids = [run.id for run, _ in rows]
    tools: dict[str, list[str]] = defaultdict(list)
    recs: dict[str, list[int]] = defaultdict(list)
    verdicts: dict[str, list[RunFeedback]] = defaultdict(list)
    if run_ids:
        for run_id, name in session.execute(
            select(ToolCall.run_id, ToolCall.name).where(ToolCall.run_id.in_(run_ids)).order_by(ToolCall.seq)
        ):
            tools[run_id].append(name)
        for rec_id, filed_by in session.execute(
            select(Recommendation.id, Recommendation.run_id).where(Recommendation.run_id.in_(run_ids))
            .order_by(Recommendation.id)
        ):
            if filed_by is not None:
                recs[filed_by].append(rec_id)
        for fb in session.scalars(
            select(RunFeedback).where(RunFeedback.run_id.in_(run_ids)).order_by(RunFeedback.updated_at)
        ):
            verdicts[fb.run_id].append(fb)
    user_ids = {c.user_id for _, c in rows if c.user_id is not None}
    user_ids |= {fb.user_id for fbs in verdicts.values() for fb in fbs if fb.user_id is not None}
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_(user_ids))).all()) if user_ids else {}
    ratings = dict(session.execute(select(RunFeedback.rating, func.count()).group_by(RunFeedback.rating)).all())
    return RunLog(
        items=[
            RunLogEntry(
                run_id=run.id,
                conversation_id=conv.id,
                conversation_title=conv.title,
                channel=conv.channel,
                user=names.get(conv.user_id) if conv.user_id is not None else None,
                started_at=run.started_at,
                status=run.status,
                model=run.model,
                question=run.question,
                answer=run.answer,
                error=run.error,
                latency_ms=run.latency_ms,
                tools=tools[run.id],
                recommendation_ids=recs[run.id],
                feedback=[
                    FeedbackEntry(user=names.get(fb.user_id) if fb.user_id is not None else None, rating=fb.rating, note=fb.note, updated_at=fb.updated_at)
                    for fb in verdicts[run.id]
                ],
            )
            for run, conv in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
        ratings={"up": int(ratings.get("up", 0)), "down": int(ratings.get("down", 0))},
    )
