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


def score_activities(runtime: Runtime, period: str | None = None) -> str:
    """Score the company's value-chain activities: cost share vs value share, margin leak and quadrant.

    Use it for questions about which activities cost the most, add the least or leak margin.

    Args:
        period: A year such as "2026"; empty for the latest.
    """
    from tools.activities import score_activities as core

    return runtime.context.call("score_activities", lambda s: core(session=s, period=period))


def rank(
    runtime: Runtime,
    entity: Literal["accounts", "activities", "initiatives"],
    metric: str,
    filters: dict[str, str] | None = None,
    limit: int = 10,
) -> str:
    """Rank accounts, value-chain activities or initiatives by a metric, top first.

    Metrics. accounts: churn_probability, arr_at_risk, arr, days_to_renewal, open_tickets, health.
    activities: margin_leak, value_cost_index, performance_gap, cost. initiatives: roi, net_benefit.

    Args:
        entity: What to rank.
        metric: The metric to rank by.
        filters: e.g. {"segment": "Enterprise", "region": "EMEA"}.
        limit: How many to return.
    """
    from tools.ranking import rank as core

    return runtime.context.call(
        "rank",
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
        account_id: One account id, e.g. "ACME-0042"; empty to list the riskiest accounts.
        filters: For a list, e.g. {"segment": "Enterprise"}.
        limit: How many accounts to list.
    """
    from tools.churn.scoring import churn_risk as core

    return runtime.context.call(
        "churn_risk",
        lambda s: core(
            session=s,
            account_id=account_id or None,
            filters=dict(filters) if filters and not account_id else None,
            limit=limit,
        ),
    )


def next_best_action(runtime: Runtime, account_id: str, limit: int = 3) -> str:
    """What to do next with one account: playbook actions ranked by expected value.

    Args:
        account_id: The account id, e.g. "ACME-0042".
        limit: How many actions to return.
    """
    from tools.nba import next_best_action as core

    return runtime.context.call(
        "next_best_action", lambda s: core(session=s, account_id=account_id, limit=limit)
    )


def get_account(runtime: Runtime, account_id: str) -> str:
    """Profile of one account: segment, plan, ARR, renewal, open tickets, NPS, champions, usage.

    Args:
        account_id: The account id, e.g. "ACME-0042".
    """
    from tools.accounts import get_account as core

    return runtime.context.call("get_account", lambda s: core(session=s, account_id=account_id))


def list_accounts(
    runtime: Runtime, filters: dict[str, str] | None = None, search: str | None = None, limit: int = 10
) -> str:
    """List or find accounts by filters or by name.

    Args:
        filters: e.g. {"segment": "SMB", "region": "APAC"}.
        search: Text in the account name or id, e.g. "acme".
        limit: How many to return.
    """
    from tools.accounts import list_accounts as core

    return runtime.context.call(
        "list_accounts",
        lambda s: core(session=s, filters=dict(filters or {}) or None, search=search or None, limit=limit),
    )


def account_timeline(runtime: Runtime, account_id: str, limit: int = 10) -> str:
    """Recent history of one account: tickets, payments, NPS, contacts leaving, renewals.

    Args:
        account_id: The account id, e.g. "ACME-0042".
        limit: How many recent events.
    """
    from tools.accounts import account_timeline as core

    return runtime.context.call(
        "account_timeline", lambda s: core(session=s, account_id=account_id, limit=limit)
    )


def search_knowledge(runtime: Runtime, query: str, k: int = 3) -> str:
    """Explain a framework, concept, method, playbook action or how a figure is computed, from the knowledge base.

    Use it for every "what is", "what does ... say", "explain" or "how to" question.

    Args:
        query: What to look for, keeping all of the user's key terms.
        k: How many passages.
    """
    from knowledge.search import search_knowledge as core

    ctx = runtime.context
    return ctx.call("search_knowledge", lambda _s: core(store=ctx.knowledge(), query=query, k=k))


def propose_recommendation(
    runtime: Runtime,
    action: str,
    rationale: str,
    account_id: str | None = None,
    activity_id: str | None = None,
) -> str:
    """File a recommended action for one account or activity; it waits for a human to approve it.

    Args:
        action: A playbook action id from next_best_action, e.g. "champion_rebuild".
        rationale: Why, citing the figures it rests on.
        account_id: The account it is for, e.g. "ACME-0042".
        activity_id: Or the value-chain activity it is for.
    """
    from tools.recommendations import propose_recommendation as core

    ctx = runtime.context

    def run(session: Any) -> BaseModel:
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

    return ctx.call("propose_recommendation", run, writes=True)


TOOL_FUNCTIONS: tuple[Callable[..., str], ...] = (
    rank,
    churn_risk,
    next_best_action,
    score_activities,
    get_account,
    list_accounts,
    account_timeline,
    search_knowledge,
    propose_recommendation,
)
"""Order is part of the cached prompt prefix: change it and the warm-up must change too."""


def build_tools() -> list[BaseTool]:
    """The agent's tools, in a fixed order (the schemas are part of the cached prefix)."""
    return [StructuredTool.from_function(fn, parse_docstring=True) for fn in TOOL_FUNCTIONS]


__all__ = ["TOOL_FUNCTIONS", "build_tools", "compact"]
