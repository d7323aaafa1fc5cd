"""Build a ready `Copilot` from settings: database, knowledge store, model endpoint (warmed).

`open_copilot(settings)` is what the CLI, the API's lifespan and the evals use; it starts the
embedded model server when no ``LLM_BASE_URL`` is set and stops it on exit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Agent, Copilot
from agent.exemplar_library import definition_asked, knowledge_gate, nearest_last, passage_similarity
from agent.llm.model_files import ProgressFn
from agent.llm.runtime import LLMRuntime
from agent.pipeline import PlanCopilot
from agent.plan import plan_schema
from agent.runlog import close_own_runs, interrupt_orphans
from core.runtime import get_sessionmaker
from core.settings import Settings

log = logging.getLogger(__name__)


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
            tool_settings=tool_settings(settings),
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
        tool_settings=tool_settings(settings),
        llm_call_timeout_s=settings.llm_timeout_s,
    )


def tool_settings(settings: Settings) -> dict[str, Any]:
    """What the system sets for the agent's tools from the settings (the API's tool routes pass the same)."""
    return {"playbook_path": str(settings.playbook_path) if settings.playbook_path is not None else None,
            "holdout_share": settings.holdout_share}


@contextmanager
def open_copilot(
    settings: Settings, *, warm: bool = True, progress: ProgressFn | None = None
) -> Iterator[tuple[Agent, LLMRuntime]]:
    """A Copilot and its model runtime; the embedded server (if any) stops on exit.

    Runs left `running` by a process of this machine that has ended (a chat killed in its
    terminal, a crashed server) are marked `interrupted` first; a run of this process still
    going when the caller stops (Ctrl-C) ends `stopped` (or `interrupted`) on the way out."""
    sessions = get_sessionmaker(settings)
    try:
        orphans = interrupt_orphans(sessions)
    except (OperationalError, ProgrammingError) as exc:  # not initialised yet: the agent will say so
        orphans = []
        log.warning("could not check for interrupted chat runs: %s", str(exc).splitlines()[0])
    if orphans:
        log.warning("%d chat run(s) whose process ended marked interrupted: %s", len(orphans), ", ".join(orphans))
    runtime = LLMRuntime.open(settings, progress=progress)
    try:
        copilot = build_copilot(settings, runtime)
        if warm:
            copilot.warm(runtime)
        yield copilot, runtime
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            close_own_runs(sessions, status="stopped", reason="stopped in the terminal (Ctrl-C) before the answer")
        else:
            close_own_runs(sessions, status="interrupted",
                           reason=f"the process stopped before the answer ({type(exc).__name__})")
        raise
    finally:
        runtime.close()
