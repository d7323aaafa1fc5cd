"""LangChain tools over the `tools/` cores: bind the run's dependencies, serialise the result.

The model-visible schema of each tool comes from the wrapper's signature and docstring
(`StructuredTool.from_function`); `runtime` is injected by LangChain and never shown to the
model. The wrappers expose only the arguments a user question sets (no `as_of`, no paging)
and keep docstrings short: the embedded 1.5B model reads every schema on every routing
request, so ~1,300 prefix tokens instead of ~3,000 (measured in docs/AGENT.md).

What the model reads back is a compact projection of the core's pydantic result
(`agent.compact`); the full result goes to the run log (`tool_calls.result`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel

from agent import compact
from agent.deps import RunContext

Runtime = ToolRuntime[RunContext]


def _run(runtime: Runtime, name: str, fn: Callable[[Any], BaseModel], *, writes: bool = False) -> str:
    """Run a core through the run context, tagged with the model's tool-call id."""
    return runtime.context.call(name, fn, writes=writes, call_id=runtime.tool_call_id)


def score_activities(runtime: Runtime, period: str | None = None) -> str:
    """Score all of this company's value-chain activities for a year: cost vs value share, margin leak, quadrant.

    Use it for which of our activities cost the most or add the least; not for initiatives or concepts.

    Args:
        period: A year such as "2026"; empty for the latest.
    """
    from tools.activities import score_activities as core

    return _run(runtime, "score_activities", lambda s: core(session=s, period=period))


def value_chain_analysis(runtime: Runtime, period: str | None = None) -> str:
    """Run the full five-step value-chain analysis on this company's data for a year, as a report.

    Use it only when asked to run or produce an analysis; to explain the method use search_knowledge.

    Args:
        period: A year such as "2026"; empty for the latest.
    """
    from tools.analysis import value_chain_analysis as core

    return _run(runtime, "value_chain_analysis", lambda s: core(session=s, period=period))


def rank(
    runtime: Runtime,
    entity: Literal["accounts", "activities", "initiatives"],
    metric: str,
    filters: dict[str, str] | None = None,
    limit: int = 10,
) -> str:
    """Top-N lists of accounts, value-chain activities or improvement initiatives, ranked by a metric.

    Use it for "top", "most", "biggest", "least", "soonest" and "best ROI" questions.

    Metrics. accounts: churn_probability, arr_at_risk, arr, days_to_renewal, open_tickets, health.
    activities: margin_leak, value_cost_index, performance_gap, cost. initiatives: roi, net_benefit.

    Args:
        entity: What to rank.
        metric: The metric to rank by.
        filters: Optional: only a segment, region, plan or industry the user named.
        limit: How many to return.
    """
    from tools.ranking import rank as core

    return _run(runtime, "rank",
        lambda s: core(session=s, entity=entity, metric=metric, filters=dict(filters or {}), limit=limit),
    )


def churn_risk(
    runtime: Runtime,
    account_id: str | None = None,
    filters: dict[str, str] | None = None,
    limit: int = 10,
) -> str:
    """Churn probability, risk band, ARR at risk and the drivers, for one account or a filtered list.

    Args:
        account_id: One account id; empty to list the riskiest accounts.
        filters: Optional, for a list: only a segment, region, plan or industry the user named.
        limit: How many accounts to list.
    """
    from tools.churn.scoring import churn_risk as core

    return _run(runtime, "churn_risk",
        lambda s: core(
            session=s,
            account_id=account_id or None,
            filters=dict(filters) if filters and not account_id else None,
            limit=limit,
        ),
    )


def next_best_action(runtime: Runtime, account_id: str, limit: int = 3) -> str:
    """What to do next with one account to keep or grow it: playbook actions ranked by expected value.

    Use it for "what should we do", "recommend", "how do we save / grow" questions about an account.

    Args:
        account_id: The account id.
        limit: How many actions to return.
    """
    from tools.nba import next_best_action as core

    return _run(runtime, "next_best_action", lambda s: core(session=s, account_id=account_id, limit=limit)
    )


def get_account(runtime: Runtime, account_id: str) -> str:
    """Profile of one account: owner, segment, plan, ARR, renewal date, open tickets, NPS, champions, usage.

    Args:
        account_id: The account id.
    """
    from tools.accounts import get_account as core

    return _run(runtime, "get_account", lambda s: core(session=s, account_id=account_id))


def account_timeline(runtime: Runtime, account_id: str, limit: int = 10) -> str:
    """Dated event history of one account: tickets opened and closed, payments, NPS replies, contacts leaving.

    Args:
        account_id: The account id.
        limit: How many recent events.
    """
    from tools.accounts import account_timeline as core

    return _run(runtime, "account_timeline", lambda s: core(session=s, account_id=account_id, limit=limit)
    )


def search_knowledge(runtime: Runtime, query: str, k: int = 3) -> str:
    """Explain from the knowledge base: Porter's value chain (primary and support activities), value-chain
    analysis, CRM's role, churn, playbook actions, and how figures such as margin leak are computed.

    Use it for every "what is", "what are", "explain", "how is ... computed" or "how to" question.

    Args:
        query: What to look for, keeping all of the user's key terms.
        k: How many passages.
    """
    from knowledge.search import search_knowledge as core

    ctx = runtime.context
    return _run(runtime, "search_knowledge", lambda _s: core(store=ctx.knowledge(), query=query, k=k))


def propose_recommendation(
    runtime: Runtime,
    action: str,
    rationale: str,
    account_id: str | None = None,
    activity_id: str | None = None,
) -> str:
    """File an action for human approval, when the user asks to file or propose a named action.

    Use next_best_action first to choose an action.

    Args:
        action: A playbook action id from next_best_action, e.g. "champion_rebuild".
        rationale: Why, citing the figures it rests on.
        account_id: The account it is for.
        activity_id: Or the value-chain activity it is for.
    """
    from tools.recommendations import propose_recommendation as core
    from tools.review import expire_stale

    ctx = runtime.context

    def run(session: Any) -> BaseModel:
        # a pending one past its TTL can no longer be decided; expire it so it does not block a fresh one
        expire_stale(session=session, ttl_days=ctx.recommendation_ttl_days)
        evidence, expected_value = ctx.evidence_for(account_id or activity_id or "", action)
        return core(
            session=session,
            action=action,
            rationale=rationale,
            evidence=evidence,
            account_id=account_id or None,
            activity_id=activity_id or None,
            expected_value=expected_value,
            created_by=ctx.actor,
            run_id=ctx.run_id,
        )

    return _run(runtime, "propose_recommendation", run, writes=True)


# list_accounts is not offered to the model: with it the 1.5B model answered "top / biggest / most"
# questions with an unranked list (3 of 6 account-ranking dev questions); rank covers filtered lists.
TOOL_FUNCTIONS: tuple[Callable[..., str], ...] = (
    rank,
    churn_risk,
    next_best_action,
    score_activities,
    value_chain_analysis,
    get_account,
    account_timeline,
    search_knowledge,
    propose_recommendation,
)
"""Order is part of the cached prompt prefix: change it and the warm-up must change too."""


def build_tools() -> list[BaseTool]:
    """The agent's tools, in a fixed order (the schemas are part of the cached prefix)."""
    return [StructuredTool.from_function(fn, parse_docstring=True) for fn in TOOL_FUNCTIONS]


__all__ = ["TOOL_FUNCTIONS", "build_tools", "compact"]
