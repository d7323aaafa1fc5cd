"""What one agent run hands its tools: database sessions, the knowledge store, who is asking.

A `RunContext` is passed as LangChain's runtime context (`agent.invoke(..., context=ctx)`),
so it never appears in a tool schema. It also keeps the full result of every tool call of
the run: the middleware logs them and `propose_recommendation` attaches them as evidence.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from tools.errors import ToolInputError
from tools.recommendations import HeldOut
from tools.registry import ToolSpec, tool_named
from tools.review import expire_stale


class ToolFixableError(Exception):
    """A tool call the model can correct (unknown id, metric, period...); goes back as a tool message."""


def system_kwargs(core: Callable[..., Any], system: Mapping[str, Any]) -> dict[str, Any]:
    """The system-set arguments `core` takes (its signature names them)."""
    taken = _parameters(core)
    return {k: v for k, v in system.items() if k in taken and v is not None}


@cache
def _parameters(core: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(core).parameters)


@dataclass
class ToolOutcome:
    """The full result of one tool call (for the run log and for evidence)."""

    name: str
    result: BaseModel | None = None
    error: str | None = None
    call_id: str | None = None


@dataclass
class RunContext:
    """Dependencies and per-run state of one agent turn."""

    sessions: sessionmaker[Session]
    knowledge: Callable[[], Any]
    """Returns the `knowledge.store.KnowledgeStore` (opened on first use)."""
    run_id: str
    conversation_id: str
    actor: str = "agent"
    recommendation_ttl_days: int | None = 30
    """Pending recommendations older than this are expired before a new one is filed (None/0: never)."""
    system: Mapping[str, Any] = field(default_factory=dict)
    """Tool arguments the system sets, never the model (`playbook_path`, `holdout_share` from the
    settings): given to each tool whose core takes them."""
    outcomes: list[ToolOutcome] = field(default_factory=list)
    turn: Any = None
    """The middleware's per-turn counters (`agent.middleware.TurnState`)."""

    def call(self, spec: ToolSpec[Any, Any], args: Mapping[str, Any], *, call_id: str | None = None) -> str:
        """Run the tool `spec` with the model's `args` in its own session; return the JSON the model reads.

        A `ToolInputError` (from the arguments or the core) is the model's to fix: it becomes a
        `ToolFixableError` carrying the message. Anything else is a fault and raises. A tool
        that does not write has its session rolled back.
        """
        try:
            kwargs = spec.core_kwargs(args) | system_kwargs(spec.core, self.system)
            with session_scope(self.sessions) as session:
                if "provenance" in spec.needs:
                    kwargs |= self._provenance(session, kwargs)
                try:
                    result = spec.call(kwargs, session=session, store=self.knowledge)
                except HeldOut:
                    session.commit()  # the control-group row is kept; nothing was filed
                    raise
                if not spec.writes:
                    session.rollback()
        except ToolInputError as exc:
            self.outcomes.append(ToolOutcome(spec.name, error=str(exc), call_id=call_id))
            raise ToolFixableError(str(exc)) from exc
        self.outcomes.append(ToolOutcome(spec.name, result=result, call_id=call_id))
        return spec.view_json(result)

    def _provenance(self, session: Session, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Who files a recommendation, from which run, on what evidence (never from the model)."""
        # a pending one past its TTL can no longer be decided; expire it so it does not block a fresh one
        expire_stale(session=session, ttl_days=self.recommendation_ttl_days)
        target = kwargs.get("account_id") or kwargs.get("activity_id") or ""
        evidence, expected_value = self.evidence_for(target, kwargs["action"])
        return {"evidence": evidence, "expected_value": expected_value, "created_by": self.actor,
                "run_id": self.run_id}

    def outcome_of(self, call_id: str | None) -> ToolOutcome | None:
        """The outcome of the tool call with this id (parallel calls finish in any order)."""
        return next((o for o in reversed(self.outcomes) if o.call_id == call_id), None)

    def evidence_for(self, target: str, action: str) -> tuple[dict[str, Any], float | None]:
        """The tool results of this run that concern `target`, and the EV of `action` if one was computed.

        Evidence is what the recommendation rests on, taken from the tools' own outputs (never
        from the model's text): each successful call's compact projection, keyed by tool name.
        """
        evidence: dict[str, Any] = {}
        expected_value: float | None = None
        for outcome in self.outcomes:
            if outcome.result is None:
                continue
            dumped = outcome.result.model_dump(mode="json")
            if target and target not in str(dumped):
                continue
            evidence[outcome.name] = tool_named(outcome.name).view(outcome.result)
            if outcome.name == "next_best_action":
                for option in dumped.get("actions", []):
                    if option.get("action") == action:
                        expected_value = option.get("expected_value")
        return evidence, expected_value

