"""Build a ready `Copilot` from settings: database, knowledge store, model endpoint (warmed).

`open_copilot(settings)` is what the CLI, the API's lifespan and the evals use; it starts the
embedded model server when no ``LLM_BASE_URL`` is set and stops it on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Agent, Copilot
from agent.exemplar_library import definition_asked, knowledge_gate, nearest_last, passage_similarity
from agent.llm.model_files import ProgressFn
from agent.llm.runtime import LLMRuntime
from agent.pipeline import PlanCopilot
from agent.plan import plan_schema
from core.runtime import get_sessionmaker
from core.settings import Settings


def build_copilot(
    settings: Settings,
    runtime: LLMRuntime,
    *,
    sessions: sessionmaker[Session] | None = None,
    knowledge: Callable[[], Any] | None = None,
) -> Agent:
    """The agent of `settings.agent_design` talking to `runtime`, over `sessions` and `knowledge`
    (default: from settings)."""

    @cache
    def default_knowledge() -> Any:
        # [knowledge] extra: chromadb (~0.2 s on top), opened only when a turn first searches
        from knowledge.store import KnowledgeStore

        return KnowledgeStore.from_settings(settings)

    if settings.agent_design == "plan":
        return PlanCopilot(
            sessions=sessions or get_sessionmaker(settings),
            knowledge=knowledge or default_knowledge,
            planner=runtime.planner(plan_schema()),
            answerer=runtime.answerer(),
            model_name=runtime.model,
            retrieve=nearest_last(settings.plan_exemplars) if settings.plan_exemplars else None,
            gate=knowledge_gate(knowledge or default_knowledge),
            ground=definition_asked(knowledge or default_knowledge),
            passages=passage_similarity(knowledge or default_knowledge),
            recommendation_ttl_days=settings.recommendation_ttl_days,
            llm_call_timeout_s=settings.llm_timeout_s,
            currency=settings.currency,
        )
    return Copilot(
        sessions=sessions or get_sessionmaker(settings),
        knowledge=knowledge or default_knowledge,
        router=runtime.router(),
        answerer=runtime.answerer(),
        model_name=runtime.model,
        recommendation_ttl_days=settings.recommendation_ttl_days,
        llm_call_timeout_s=settings.llm_timeout_s,
    )


@contextmanager
def open_copilot(
    settings: Settings, *, warm: bool = True, progress: ProgressFn | None = None
) -> Iterator[tuple[Agent, LLMRuntime]]:
    """A Copilot and its model runtime; the embedded server (if any) stops on exit."""
    runtime = LLMRuntime.open(settings, progress=progress)
    try:
        copilot = build_copilot(settings, runtime)
        if warm:
            copilot.warm(runtime)
        yield copilot, runtime
    finally:
        runtime.close()
