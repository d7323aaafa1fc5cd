"""The tool registry: every tool declared once, and every layer derives from it.

One frozen `ToolSpec` per tool holds its name (the core's own), the core function and its
result model, what the core needs injected (a database session, the knowledge store, the
provenance of an agent run), the parameters the model may set (a pydantic model whose field
descriptions are the argument descriptions), the description the model reads, the projection
of the result the model reads back, and whether it writes. `ALL_TOOLS` is ordered.

Derived from it: the agent's LangChain tools (`agent.tools`), the evals' `call_core` and
tool names, the typed tool-call routes of the API and `valuechain tools call`, the routing
probe of `valuechain llm status --routing`, and the tests that keep them covered.

The order of `MODEL_TOOLS` and the descriptions are part of the embedded model's cached
prompt prefix and of every recorded cassette: change them and both must be redone.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.contract import int_bounds
from knowledge.search import KnowledgeResults, project_knowledge, search_knowledge
from tools.accounts import (
    AccountList,
    AccountProfile,
    AccountTimeline,
    account_timeline,
    get_account,
    list_accounts,
    project_account,
    project_timeline,
)
from tools.activities import ActivityScores, project_scores, score_activities
from tools.analysis.core import value_chain_analysis
from tools.analysis.models import ValueChainAnalysis, project_analysis
from tools.churn.schemas import ChurnRiskResult, project_churn_risk
from tools.churn.scoring import churn_risk
from tools.deals.score import DealScore, deal_score, project_deal_score
from tools.errors import ToolInputError, unknown
from tools.nba import NextBestActionResult, next_best_action, project_nba
from tools.pipeline.health import GroupBy, PipelineHealth, pipeline_health, project_pipeline
from tools.projection import view, view_json
from tools.ranking import RankResult, project_rank, rank
from tools.recommendations import ProposedRecommendation, project_proposed, propose_recommendation
from tools.service_queue.queue import ServiceQueue, project_service_queue, service_queue

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

R = TypeVar("R", bound=BaseModel)
P = TypeVar("P", bound="Params")

Need = Literal["session", "store", "provenance"]
"""What a core gets from its caller rather than from the model: `session` a database session,
`store` the knowledge store, `provenance` who files it and the run's evidence (evidence,
expected_value, created_by, run_id; the agent supplies them, never the model)."""

Surface = Literal["api", "cli", "eval"]


class Params(BaseModel):
    """Base of the parameters a model (or an API/CLI caller) may set.

    Unknown arguments are ignored, as they always were for the model (forbidding them would
    also add `additionalProperties: false` to the schemas the model reads); the API and the
    CLI refuse them (`strict_params`)."""


def strict_params(params: type[Params]) -> type[Params]:
    """`params` refusing unknown arguments and out-of-range integers (`core.contract.int_bounds`),
    for callers that can be told (API body, CLI); the model's schema stays as recorded."""
    namespace: dict[str, Any] = {"model_config": ConfigDict(extra="forbid"), "__module__": params.__module__,
                                 "__doc__": params.__doc__, "__annotations__": {}}
    for name, info in params.model_fields.items():
        if info.annotation in (int, int | None):
            lo, hi = int_bounds(name)
            bounded: Any = Annotated[int, Field(ge=lo, le=hi)]
            namespace["__annotations__"][name] = bounded if info.annotation is int else bounded | None
            namespace[name] = copy.copy(info)
    return type(params.__name__, (params,), namespace)


@dataclass(frozen=True)
class ToolSpec(Generic[P, R]):
    """One tool, declared once."""

    name: str
    core: Callable[..., R]
    result: type[R]
    params: type[P]
    description: str
    project: Callable[[R], Any]
    needs: frozenset[Need] = frozenset({"session"})
    writes: bool = False
    offered: bool = True
    """Offered to the model; a tool that is not is still served by the API, the CLI and the evals."""
    bind: Callable[[P], dict[str, Any]] | None = None
    """Model parameters → core keyword arguments; default: the parameters as they are."""
    exempt: Mapping[Surface, str] = field(default_factory=dict)
    """Surfaces this tool is deliberately not on, each with the reason."""
    filter_keys: tuple[str, ...] = ("segment", "region", "plan", "industry")
    """The keys its `filters` take in a plan (a scope the user names); the account scope by default."""
    asked_by: re.Pattern[str] | None = None
    """Words of a question asking for facts only this tool's result holds ("open tickets", "renewal" for
    `get_account`): a plan that reads the account without it gets its step (`agent.coverage`)."""

    def core_kwargs(self, args: Mapping[str, Any], *, strict: bool = False) -> dict[str, Any]:
        """Validate the model's (or a caller's) arguments and map them to the core's keywords.

        A wrong argument is a `ToolInputError` naming what is valid, as from the core itself;
        `strict` also refuses unknown arguments (the model's are ignored, as always).
        """
        try:
            model = strict_params(self.params) if strict else self.params
            params = cast(P, model.model_validate(dict(args)))  # strict_params subclasses P
        except ValidationError as exc:
            raise ToolInputError(f"{self.name}: {_problems(exc)}") from None
        return self.bind(params) if self.bind else params.model_dump()

    def call(self, kwargs: Mapping[str, Any], *, session: Session | None = None,
             store: Callable[[], Any] | None = None) -> R:
        """Call the core with `kwargs` (core keywords) and what it needs injected."""
        injected: dict[str, Any] = {}
        if "session" in self.needs:
            if session is None:
                raise RuntimeError(f"tool {self.name!r} needs a database session")
            injected["session"] = session
        if "store" in self.needs:
            if store is None:
                raise RuntimeError(f"tool {self.name!r} needs the knowledge store")
            injected["store"] = store()
        return self.core(**injected, **kwargs)

    def view(self, result: R) -> Any:
        """The projection of `result` the model reads, as plain JSON data."""
        return view(self.project(result))

    def view_json(self, result: R) -> str:
        """`view` as the compact JSON text the model reads."""
        return view_json(self.project(result))


def _problems(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())) or "arguments"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- parameters
# What the model may set. The field descriptions and the tool descriptions below are the
# ones the model has read since the agent's first recording, word for word (stray line breaks
# included: they are part of the recorded requests).

PERIOD = 'A year such as "2026"; empty for the latest.'
FILTER_KEYS = ("segment", "region", "plan", "industry")
"""The account fields a user scopes a question by (the model's filters)."""
SCOPE = "only a segment, region, plan or industry the user named."


class ScoreActivitiesParams(Params):
    period: str | None = Field(default=None, description=PERIOD)


class AnalysisParams(Params):
    period: str | None = Field(default=None, description=PERIOD)


class RankParams(Params):
    entity: Literal["accounts", "activities", "initiatives"] = Field(description="What to rank.")
    metric: str = Field(description="The metric to rank by.")
    filters: dict[str, str] | None = Field(default=None, description=f"Optional: {SCOPE}")
    limit: int = Field(default=10, description="How many to return.")


class ChurnRiskParams(Params):
    account_id: str | None = Field(default=None, description="One account id; empty to list the riskiest accounts.")
    filters: dict[str, str] | None = Field(default=None, description=f"Optional, for a list: {SCOPE}")
    limit: int = Field(default=10, description="How many accounts to list.")


class NextBestActionParams(Params):
    account_id: str = Field(description="The account id.")
    limit: int = Field(default=3, description="How many actions to return.")


class AccountParams(Params):
    account_id: str = Field(description="The account id.")


class TimelineParams(Params):
    account_id: str = Field(description="The account id.")
    limit: int = Field(default=10, description="How many recent events.")


class SearchParams(Params):
    query: str = Field(description="What to look for, keeping all of the user's key terms.")
    k: int = Field(default=3, description="How many passages.")


class ProposeParams(Params):
    action: str = Field(description='A playbook action id from next_best_action, e.g. "champion_rebuild".')
    rationale: str = Field(description="Why, citing the figures it rests on.")
    account_id: str | None = Field(default=None, description="The account it is for.")
    activity_id: str | None = Field(default=None, description="Or the value-chain activity it is for.")


class ListAccountsParams(Params):
    filters: dict[str, str] | None = Field(default=None, description=f"Optional: {SCOPE}")
    search: str | None = Field(default=None, description="Part of an account's id or name.")
    limit: int = Field(default=50, description="How many to return.")
    offset: int = Field(default=0, description="How many to skip.")


def _rank_kwargs(p: RankParams) -> dict[str, Any]:
    return {"entity": p.entity, "metric": p.metric, "filters": dict(p.filters or {}), "limit": p.limit}


def _churn_kwargs(p: ChurnRiskParams) -> dict[str, Any]:
    return {
        "account_id": p.account_id or None,
        # a filter only narrows a list: with an account id it is dropped, not an error
        "filters": dict(p.filters) if p.filters and not p.account_id else None,
        "limit": p.limit,
    }


def _propose_kwargs(p: ProposeParams) -> dict[str, Any]:
    return {
        "action": p.action,
        "rationale": p.rationale,
        "account_id": p.account_id or None,
        "activity_id": p.activity_id or None,
    }


# --------------------------------------------------------------------------- the tools

RANK = ToolSpec(
    name="rank",
    core=rank,
    result=RankResult,
    params=RankParams,
    description='Top-N lists of accounts, value-chain activities or improvement initiatives, ranked by a '
    'metric. Use it for "top", "most", "biggest", "least", "soonest" and "best ROI" questions. '
    "Metrics. accounts: churn_probability, arr_at_risk, arr, days_to_renewal, open_tickets, health.\n"
    "activities: margin_leak, value_cost_index, performance_gap, cost. initiatives: roi, net_benefit.",
    project=project_rank,
    bind=_rank_kwargs,
)
CHURN_RISK = ToolSpec(
    name="churn_risk",
    core=churn_risk,
    result=ChurnRiskResult,
    params=ChurnRiskParams,
    description="Churn probability, risk band, ARR at risk and the drivers, for one account or a filtered list.",
    project=project_churn_risk,
    bind=_churn_kwargs,
)
NEXT_BEST_ACTION = ToolSpec(
    name="next_best_action",
    core=next_best_action,
    result=NextBestActionResult,
    params=NextBestActionParams,
    description="What to do next with one account to keep or grow it: playbook actions ranked by expected "
    'value. Use it for "what should we do", "recommend", "how do we save / grow" questions about an account.',
    project=project_nba,
)
SCORE_ACTIVITIES = ToolSpec(
    name="score_activities",
    core=score_activities,
    result=ActivityScores,
    params=ScoreActivitiesParams,
    description="Score all of this company's value-chain activities for a year: cost vs value share, margin "
    "leak, quadrant. Use it for which of our activities cost the most or add the least; not for "
    "initiatives or concepts.",
    project=project_scores,
)
VALUE_CHAIN_ANALYSIS = ToolSpec(
    name="value_chain_analysis",
    core=value_chain_analysis,
    result=ValueChainAnalysis,
    params=AnalysisParams,
    description="Run the full five-step value-chain analysis on this company's data for a year, as a report. "
    "Use it only when asked to run or produce an analysis; to explain the method use search_knowledge.",
    project=project_analysis,
)
GET_ACCOUNT = ToolSpec(
    name="get_account",
    core=get_account,
    result=AccountProfile,
    params=AccountParams,
    description="Profile of one account: owner, segment, plan, ARR, renewal date, open tickets, NPS, "
    "champions, usage.",
    project=project_account,
    asked_by=re.compile(
        r"\brenew(?:al|als|s|ing|ed)?\b|\bopen\s+(?:support\s+)?tickets?\b|\btickets?\s+(?:are\s+|still\s+)?open\b"
        r"|\bnps\b|\bnet\s+promoter\b|\bwho\s+owns\b|\bowner\b|\btenure\b|\bcustomer\s+since\b"
        r"|\binvoices?\b|\bsubscription\b|\blast\s+(?:contact|interaction|touch(?:point)?|call|meeting)\b"
        r"|\bseats?\b|\bmrr\b|\bdiscount\b|\bcontract\s+(?:end\w*|up|expir\w*|date|runs?\s+out)\b",
        re.IGNORECASE),
)
ACCOUNT_TIMELINE = ToolSpec(
    name="account_timeline",
    core=account_timeline,
    result=AccountTimeline,
    params=TimelineParams,
    description="Dated event history of one account: tickets opened and closed, payments, NPS replies, "
    "contacts leaving.",
    project=project_timeline,
)
SEARCH_KNOWLEDGE = ToolSpec(
    name="search_knowledge",
    core=search_knowledge,
    result=KnowledgeResults,
    params=SearchParams,
    description="Explain from the knowledge base: Porter's value chain (primary and support activities), "
    "value-chain\nanalysis, CRM's role, churn, playbook actions, and how figures such as margin leak are "
    'computed. Use it for every "what is", "what are", "explain", "how is ... computed" or "how to" question.',
    project=project_knowledge,
    needs=frozenset({"store"}),
)
PROPOSE_RECOMMENDATION = ToolSpec(
    name="propose_recommendation",
    core=propose_recommendation,
    result=ProposedRecommendation,
    params=ProposeParams,
    description="File an action for human approval, when the user asks to file or propose a named action. "
    "Use next_best_action first to choose an action.",
    project=project_proposed,
    needs=frozenset({"session", "provenance"}),
    writes=True,
    bind=_propose_kwargs,
    exempt={
        "api": "filed only from an agent run, which attaches that run's tool results as evidence; people "
        "decide filed recommendations through /api/v1/recommendations",
        "cli": "filed only from an agent run (valuechain ask / chat), for the same reason; people decide "
        "with valuechain review",
    },
)
LIST_ACCOUNTS = ToolSpec(
    name="list_accounts",
    core=list_accounts,
    result=AccountList,
    params=ListAccountsParams,
    description="List accounts matching filters or a name search, sorted by id.",
    project=lambda r: r,
    # with it the 1.5B model answered "top / biggest / most" questions with an unranked list
    # (3 of 6 account-ranking dev questions); rank covers filtered lists
    offered=False,
)


class PipelineHealthParams(Params):
    group_by: GroupBy = Field(default="owner", description="owner, team, product or quarter.")
    filters: dict[str, str] | None = Field(
        default=None, description="Optional: only an owner, team, manager, product, type, stage, segment or region."
    )
    quarter: str | None = Field(default=None, description='A quarter such as "2026-Q4"; empty for the current one.')
    target: float | None = Field(
        default=None, description="The quarter's target for the selection; empty for the sales quotas."
    )
    stale_days: int = Field(default=30, description="Days without activity after which a deal is stale.")
    limit: int = Field(default=10, description="How many deals at risk to list.")


PIPELINE_HEALTH = ToolSpec(
    name="pipeline_health",
    core=pipeline_health,
    result=PipelineHealth,
    params=PipelineHealthParams,
    description="Sales pipeline health per owner, team, product or quarter: open and probability-weighted "
    "pipeline, coverage of the target, expected won amount, stale and slipped deals, deals at risk.",
    project=project_pipeline,
    filter_keys=("owner", "team", "product", "stage", "segment", "region"),
)


class DealScoreParams(Params):
    opportunity_id: str = Field(description='The deal id as the CRM gives it, e.g. "9ME3374G".')


DEAL_SCORE = ToolSpec(
    name="deal_score",
    core=deal_score,
    result=DealScore,
    params=DealScoreParams,
    description="Win probability of one open deal from the deal model, with its drivers in plain words.",
    project=project_deal_score,
)


class ServiceQueueParams(Params):
    filters: dict[str, str] | None = Field(
        default=None, description="Optional: only a priority, category, segment, region, plan, industry or owner."
    )
    limit: int = Field(default=10, description="How many tickets to list.")
    sla_hours: dict[str, float] | None = Field(
        default=None, description='Optional SLA hours per priority replacing the standard ones, e.g. {"urgent": 24}.'
    )


SERVICE_QUEUE = ToolSpec(
    name="service_queue",
    core=service_queue,
    result=ServiceQueue,
    params=ServiceQueueParams,
    description="Open support tickets ranked by the chance of missing their SLA times the customer's lifetime "
    "value, each with its deadline, time left and why.",
    project=project_service_queue,
    filter_keys=("priority", "category", "segment", "region", "plan", "industry"),
)

ALL_TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    RANK,
    CHURN_RISK,
    NEXT_BEST_ACTION,
    SCORE_ACTIVITIES,
    VALUE_CHAIN_ANALYSIS,
    GET_ACCOUNT,
    ACCOUNT_TIMELINE,
    SEARCH_KNOWLEDGE,
    PROPOSE_RECOMMENDATION,
    LIST_ACCOUNTS,
    PIPELINE_HEALTH,
    DEAL_SCORE,
    SERVICE_QUEUE,
)
"""Every tool, in the order the model is offered them."""

MODEL_TOOLS: tuple[ToolSpec[Any, Any], ...] = tuple(t for t in ALL_TOOLS if t.offered)
"""The tools the model is offered; their order is part of the cached prompt prefix."""

TOOLS_BY_NAME: dict[str, ToolSpec[Any, Any]] = {t.name: t for t in ALL_TOOLS}
TOOL_NAMES: tuple[str, ...] = tuple(TOOLS_BY_NAME)


def tool_named(name: str) -> ToolSpec[Any, Any]:
    """The tool called `name`; an unknown name is a `ToolInputError` listing the valid ones."""
    spec = TOOLS_BY_NAME.get(name)
    if spec is None:
        raise unknown("tool", name, TOOL_NAMES)
    return spec
