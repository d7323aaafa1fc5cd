"""The `pipeline_health` tool: open pipeline, weighted pipeline, coverage, stale and slipped deals.

Definitions (docs/PIPELINE.md works an example by hand):

* **open deal**: stage other than closed_won / closed_lost, created on or before `as_of`.
* **amount** of an open deal: as stated; when blank, the median amount of won deals of the same
  product (else of all products), marked `amount_estimated`; with no won deals at all it stays
  blank and the deal counts in `deals_without_amount` only.
* **probability**: from a `ProbabilitySource`: the active deal model when one is trained
  (`valuechain deals train`), else the stage table (`stage_probabilities.yaml`).
  **weighted** = probability × amount.
* **quarter** (default: the quarter of the day after `as_of`, the first not yet in the data):
  a deal is *due* in it when its expected close date falls in it; when the quarter is the
  current one, slipped deals (expected close before that day) are due in it too.
* **won_in_quarter**: amount of deals won in the quarter up to `as_of`.
  **expected_won_amount** = won_in_quarter + weighted amount of the deals due in the quarter.
* **coverage** = amount due in the quarter ÷ (target − won_in_quarter): how many times the
  pipeline covers what is left to win. Targets: a group of one owner has its quarterly quota, a
  team the sum of its agents' quotas (sales_agents); the total has the `target` argument, else
  the quotas of the agents in the selection. No target (or none left to win): no coverage.
* **stale**: no dated activity (the deal's last activity date, a stage change, its creation, an
  interaction with its account) in more than `stale_days` days. **slipped**: expected close
  before `as_of`. **long in stage**: more than twice the median days won deals spent in that
  stage (stage history, at least 5 deals). **no close date**: no expected close date.
* **deals at risk**: open deals with any of those signs, ranked by weighted amount (what the
  forecast counts on from a doubtful deal), then by how many signs, then by id.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from crm.models import SalesAgent
from tools.deals.model import active_deal_model
from tools.deals.score import DealModelProbabilities
from tools.errors import ToolInputError
from tools.filters import conditions, describe, normalise_filters
from tools.pipeline.deals import (
    FILTER_COLUMNS,
    OpenDeal,
    WonDeal,
    load_open_deals,
    load_won_deals,
    pipeline_as_of,
    typical_days_in_stage,
    typical_won_amounts,
)
from tools.pipeline.probability import ProbabilitySource, StageTable, default_stage_table

GroupBy = Literal["owner", "team", "product", "quarter"]
GROUP_BYS: tuple[GroupBy, ...] = get_args(GroupBy)
RiskSign = Literal["stale", "slipped", "long_in_stage", "no_close_date"]
DEFAULT_STALE_DAYS = 30
DEFAULT_COVERAGE_GOAL = 3.0
LONG_IN_STAGE_FACTOR = 2.0
MAX_LIMIT = 200
NONE_KEYS: dict[GroupBy, str] = {
    "owner": "(no owner)",
    "team": "(no team)",
    "product": "(no product)",
    "quarter": "(no expected close)",
}
_QUARTER = re.compile(r"^(\d{4})[-\s]?Q([1-4])$", re.IGNORECASE)


class PipelineGroup(BaseModel):
    """The pipeline figures of one owner, team, product or quarter (or of the whole selection)."""

    key: str
    open_deals: int
    open_pipeline: float = Field(description="Σ amount of the open deals (stated or estimated)")
    weighted_pipeline: float = Field(description="Σ probability × amount of the open deals")
    deals_without_amount: int = Field(description="open deals with no amount, stated or estimated")
    due_deals: int = Field(description="open deals due in the quarter (slipped ones included when current)")
    due_pipeline: float
    due_weighted: float
    won_in_quarter: float
    expected_won_amount: float = Field(description="won_in_quarter + due_weighted")
    target: float | None
    coverage: float | None = Field(description="due_pipeline ÷ (target − won_in_quarter)")
    below_coverage_goal: bool | None
    gap_to_target: float | None = Field(description="target − expected_won_amount")
    stale_deals: int
    stale_amount: float
    slipped_deals: int
    slipped_amount: float


class DealAtRisk(BaseModel):
    """An open deal showing at least one sign of trouble, with its figures and the signs."""

    opportunity_id: str
    account_id: str | None
    owner: str | None
    team: str | None
    product: str | None
    stage: str
    amount: float | None
    amount_estimated: bool
    probability: float
    weighted_amount: float
    expected_close_date: dt.date | None
    days_past_expected_close: int | None
    days_since_activity: int | None
    days_in_stage: int | None
    signs: list[RiskSign]
    why: str


class PipelineInputs(BaseModel):
    as_of: dt.date
    quarter: str
    quarter_start: dt.date
    quarter_end: dt.date
    quarter_is_current: bool
    group_by: GroupBy
    filters: dict[str, list[str]]
    stale_days: int
    coverage_goal: float
    target: float | None
    target_source: Literal["argument", "quotas", "none"]
    probability_source: str
    stage_probabilities: dict[str, float] = Field(description="probability per stage met (stage table)")
    unlisted_stages: list[str] = Field(description="open stages the stage table lacks (given its default)")
    typical_days_in_stage: dict[str, float]
    limit: int


class PipelineHealth(BaseModel):
    """Pipeline health per group, the whole selection's totals and the deals most at risk."""

    groups: list[PipelineGroup]
    total: PipelineGroup
    deals_at_risk: list[DealAtRisk]
    at_risk_count: int
    explanation: str
    inputs: PipelineInputs


def quarter_bounds(label: str) -> tuple[str, dt.date, dt.date]:
    """("2026-Q4", first day, last day) for "2026-Q4", "2026q4" or "2026 Q4"."""
    m = _QUARTER.match(label.strip())
    if m is None:
        raise ToolInputError(f'quarter must look like "2026-Q4"; got "{label}"')
    year, q = int(m.group(1)), int(m.group(2))
    start = dt.date(year, 3 * q - 2, 1)
    end = (dt.date(year + 1, 1, 1) if q == 4 else dt.date(year, 3 * q + 1, 1)) - dt.timedelta(days=1)
    return f"{year}-Q{q}", start, end


def quarter_of(day: dt.date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


class _Sums:
    """Running figures of one group."""

    def __init__(self) -> None:
        self.open = 0
        self.amounts: list[float] = []
        self.weighted: list[float] = []
        self.no_amount = 0
        self.due = 0
        self.due_amounts: list[float] = []
        self.due_weighted: list[float] = []
        self.won: list[float] = []
        self.stale = 0
        self.stale_amounts: list[float] = []
        self.slipped = 0
        self.slipped_amounts: list[float] = []

    def figures(self, key: str, target: float | None, goal: float) -> PipelineGroup:
        due = math.fsum(self.due_amounts)
        won = math.fsum(self.won)
        expected = won + math.fsum(self.due_weighted)
        left = None if target is None else target - won
        coverage = due / left if left is not None and left > 0 else None
        return PipelineGroup(
            key=key,
            open_deals=self.open,
            open_pipeline=math.fsum(self.amounts),
            weighted_pipeline=math.fsum(self.weighted),
            deals_without_amount=self.no_amount,
            due_deals=self.due,
            due_pipeline=due,
            due_weighted=math.fsum(self.due_weighted),
            won_in_quarter=won,
            expected_won_amount=expected,
            target=target,
            coverage=coverage,
            below_coverage_goal=None if coverage is None else coverage < goal,
            gap_to_target=None if target is None else target - expected,
            stale_deals=self.stale,
            stale_amount=math.fsum(self.stale_amounts),
            slipped_deals=self.slipped,
            slipped_amount=math.fsum(self.slipped_amounts),
        )


def _key_function(group_by: GroupBy) -> Callable[[OpenDeal | WonDeal, dt.date | None], str]:
    none = NONE_KEYS[group_by]

    def key(deal: OpenDeal | WonDeal, day: dt.date | None) -> str:
        if group_by == "quarter":
            return quarter_of(day) if day is not None else none
        value = getattr(deal, group_by)
        return value if value else none

    return key


def _quotas(session: Session) -> tuple[dict[str, float], dict[str, float]]:
    """Quarterly quota per agent, and per team (the sum of its agents')."""
    by_agent: dict[str, float] = {}
    by_team: dict[str, list[float]] = defaultdict(list)
    for agent in session.query(SalesAgent).order_by(SalesAgent.name):
        if agent.quarterly_quota is None:
            continue
        by_agent[agent.name] = agent.quarterly_quota
        if agent.team:
            by_team[agent.team].append(agent.quarterly_quota)
    return by_agent, {t: math.fsum(v) for t, v in by_team.items()}


def _days(n: int | None) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _why(signs: list[RiskSign], deal: OpenDeal, figures: dict[str, int | None], stale_days: int) -> str:
    words = []
    for sign in signs:
        if sign == "stale":
            words.append(f"no activity for {_days(figures['since'])} (over {stale_days})")
        elif sign == "slipped":
            words.append(f"{_days(figures['past'])} past its expected close {deal.expected_close_date}")
        elif sign == "long_in_stage":
            words.append(
                f"{_days(figures['in_stage'])} in {deal.stage}, over twice the usual {figures['usual']}"
            )
        else:
            words.append("no expected close date")
    return "; ".join(words)


def pipeline_health(
    *,
    session: Session,
    group_by: GroupBy = "owner",
    filters: dict[str, Any] | None = None,
    quarter: str | None = None,
    target: float | None = None,
    stale_days: int = DEFAULT_STALE_DAYS,
    coverage_goal: float = DEFAULT_COVERAGE_GOAL,
    limit: int = 10,
    probabilities: ProbabilitySource | None = None,
) -> PipelineHealth:
    """Pipeline health per owner, team, product or quarter, with coverage and the deals at risk.

    Args:
        group_by: owner, team, product or quarter (of the expected close).
        filters: Optional {key: value or [values]} over owner, team, manager, product, type,
            stage, segment, region.
        quarter: The quarter coverage and expected won amount are for, e.g. "2026-Q4"; default
            the quarter of the day after the data's as-of date.
        target: The quarter's target for the whole selection; default the sum of the quarterly
            quotas of the sales agents in it (groups of owners and teams always use quotas).
        stale_days: An open deal with no activity for more days than this is stale.
        coverage_goal: Coverage below this many times the remaining target is flagged.
        limit: How many deals at risk to list (0 to 200).
        probabilities: Where win probabilities come from; default the active deal model, else the
            stage table.
    """
    if group_by not in GROUP_BYS:
        raise ToolInputError(f'unknown group_by "{group_by}"; valid: {", ".join(GROUP_BYS)}')
    if stale_days < 1:
        raise ToolInputError(f"stale_days must be at least 1; got {stale_days}")
    if not 0 <= limit <= MAX_LIMIT:
        raise ToolInputError(f"limit must be between 0 and {MAX_LIMIT}; got {limit}")
    if target is not None and not (math.isfinite(target) and target > 0):
        raise ToolInputError(f"target must be a positive amount; got {target}")
    if not (math.isfinite(coverage_goal) and coverage_goal > 0):
        raise ToolInputError(f"coverage_goal must be a positive number; got {coverage_goal}")
    as_of = pipeline_as_of(session)
    current_label = quarter_of(as_of + dt.timedelta(days=1))
    label, q_start, q_end = quarter_bounds(quarter or current_label)
    is_current = label == current_label
    normalised = normalise_filters(session, filters, FILTER_COLUMNS, entity="opportunities")
    where = conditions(normalised, FILTER_COLUMNS)
    source = probabilities if probabilities is not None else _default_source(session)

    deals = load_open_deals(session, where, as_of)
    probs = source.probabilities(deals)
    typical_amount, overall_amount = typical_won_amounts(session, as_of)
    usual_days = typical_days_in_stage(session, as_of)
    won = load_won_deals(session, where, q_start, min(q_end, as_of)) if q_start <= as_of else []

    key_of = _key_function(group_by)
    sums: dict[str, _Sums] = defaultdict(_Sums)
    total = _Sums()
    risky: list[tuple[float, int, int, DealAtRisk]] = []
    for deal, p in zip(deals, probs, strict=True):
        amount, estimated = deal.amount, False
        if amount is None:
            guess = typical_amount.get(deal.product, overall_amount)
            amount, estimated = guess, guess is not None
        key = key_of(deal, deal.expected_close_date)
        since = (as_of - deal.last_touch).days if deal.last_touch is not None else None
        past = (as_of - deal.expected_close_date).days if deal.expected_close_date is not None else None
        in_stage = (as_of - deal.stage_entered).days if deal.stage_entered is not None else None
        usual = usual_days.get(deal.stage)
        signs: list[RiskSign] = []
        if since is not None and since > stale_days:
            signs.append("stale")
        if past is not None and past > 0:
            signs.append("slipped")
        if in_stage is not None and usual is not None and in_stage > LONG_IN_STAGE_FACTOR * usual:
            signs.append("long_in_stage")
        if deal.expected_close_date is None:
            signs.append("no_close_date")
        due = deal.expected_close_date is not None and (
            q_start <= deal.expected_close_date <= q_end
            or (is_current and deal.expected_close_date < q_start)
        )
        weighted = p * amount if amount is not None else 0.0
        for s in (sums[key], total):
            s.open += 1
            if amount is None:
                s.no_amount += 1
            else:
                s.amounts.append(amount)
                s.weighted.append(weighted)
            if due:
                s.due += 1
                if amount is not None:
                    s.due_amounts.append(amount)
                    s.due_weighted.append(weighted)
            if "stale" in signs:
                s.stale += 1
                s.stale_amounts.append(amount or 0.0)
            if "slipped" in signs:
                s.slipped += 1
                s.slipped_amounts.append(amount or 0.0)
        if signs:
            risk = DealAtRisk(
                opportunity_id=deal.ref,
                account_id=deal.account_id,
                owner=deal.owner,
                team=deal.team,
                product=deal.product,
                stage=deal.stage,
                amount=amount,
                amount_estimated=estimated,
                probability=p,
                weighted_amount=weighted,
                expected_close_date=deal.expected_close_date,
                days_past_expected_close=past if past is not None and past > 0 else None,
                days_since_activity=since,
                days_in_stage=in_stage,
                signs=signs,
                why=_why(
                    signs,
                    deal,
                    {
                        "since": since,
                        "past": past,
                        "in_stage": in_stage,
                        "usual": None if usual is None else round(usual),
                    },
                    stale_days,
                ),
            )
            risky.append((-weighted, -len(signs), deal.id, risk))
    for w in won:
        for s in (sums[key_of(w, w.close_date)], total):
            s.won.append(w.amount)

    by_agent, by_team = _quotas(session)

    def group_target(key: str) -> float | None:
        if group_by == "owner":
            return by_agent.get(key)
        if group_by == "team":
            return by_team.get(key)
        return None

    groups = [s.figures(k, group_target(k), coverage_goal) for k, s in sums.items()]
    if group_by == "quarter":
        groups.sort(key=lambda g: (g.key.startswith("("), g.key))
    else:
        groups.sort(key=lambda g: (-g.open_pipeline, g.key))
    total_target: float | None = target
    target_source: Literal["argument", "quotas", "none"] = "argument"
    if target is None:
        total_target, target_source = _selection_quota(session, normalised, by_agent)
    totals = total.figures("all", total_target, coverage_goal)
    risky.sort(key=lambda r: r[:3])
    at_risk = [r[3] for r in risky[:limit]]
    table = source if isinstance(source, StageTable) else None
    met = sorted({d.stage for d in deals})
    inputs = PipelineInputs(
        as_of=as_of,
        quarter=label,
        quarter_start=q_start,
        quarter_end=q_end,
        quarter_is_current=is_current,
        group_by=group_by,
        filters=normalised,
        stale_days=stale_days,
        coverage_goal=coverage_goal,
        target=total_target,
        target_source=target_source,
        probability_source=source.name,
        stage_probabilities={s: table.stages.get(s, table.unlisted) for s in met} if table else {},
        unlisted_stages=sorted(table.unlisted_seen) if table else [],
        typical_days_in_stage=dict(sorted(usual_days.items())),
        limit=limit,
    )
    return PipelineHealth(
        groups=groups,
        total=totals,
        deals_at_risk=at_risk,
        at_risk_count=len(risky),
        explanation=_explain(totals, inputs, at_risk, normalised),
        inputs=inputs,
    )


def _default_source(session: Session) -> ProbabilitySource:
    """The active deal model when one is trained (valuechain deals train), else the stage table."""
    model = active_deal_model(session)
    return default_stage_table() if model is None else DealModelProbabilities(session, model)


def _selection_quota(
    session: Session, normalised: dict[str, list[str]], by_agent: dict[str, float]
) -> tuple[float | None, Literal["quotas", "none"]]:
    """Σ quotas of the agents the selection covers (all agents unless owner/team/manager filter)."""
    if not by_agent:
        return None, "none"
    agents = {a.name: a for a in session.query(SalesAgent)}
    chosen = [
        name
        for name in by_agent
        if ("owner" not in normalised or name in normalised["owner"])
        and ("team" not in normalised or agents[name].team in normalised["team"])
        and ("manager" not in normalised or agents[name].manager in normalised["manager"])
    ]
    if not chosen:
        return None, "none"
    return math.fsum(by_agent[n] for n in sorted(chosen)), "quotas"


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _explain(
    t: PipelineGroup, i: PipelineInputs, risky: list[DealAtRisk], filters: dict[str, list[str]]
) -> str:
    if t.open_deals == 0:
        return f"No open deals on {i.as_of} ({describe(filters)})."
    parts = [
        f"{t.open_deals} open deals worth {_money(t.open_pipeline)} ({_money(t.weighted_pipeline)} weighted by "
        f"{i.probability_source.replace('_', ' ')} probability) on {i.as_of} ({describe(filters)})."
    ]
    due = f"{i.quarter}: {t.due_deals} deals worth {_money(t.due_pipeline)} due"
    due += f", {_money(t.won_in_quarter)} won so far, {_money(t.expected_won_amount)} expected won"
    if t.target is not None:
        due += f" against a target of {_money(t.target)}"
        if t.coverage is not None:
            due += f"; coverage {t.coverage:.2f}× of what is left (goal {i.coverage_goal:g}×)"
        else:
            due += "; target already met"
    parts.append(due + ".")
    parts.append(
        f"{t.stale_deals} stale (no activity in {i.stale_days} days, {_money(t.stale_amount)}), "
        f"{t.slipped_deals} slipped past their expected close ({_money(t.slipped_amount)})."
    )
    if risky:
        top = risky[0]
        parts.append(f"Most at risk: {top.opportunity_id} ({top.owner or 'no owner'}): {top.why}.")
    return " ".join(parts)


def project_pipeline(r: PipelineHealth) -> dict[str, Any]:
    """What the model reads of `pipeline_health`: totals, each group's key figures, the top deals at risk."""
    keep = (
        "key",
        "open_deals",
        "open_pipeline",
        "weighted_pipeline",
        "due_pipeline",
        "won_in_quarter",
        "expected_won_amount",
        "target",
        "coverage",
        "stale_deals",
        "slipped_deals",
    )
    return {
        "as_of": r.inputs.as_of,
        "quarter": r.inputs.quarter,
        "total": {k: getattr(r.total, k) for k in keep},
        "groups": [{k: getattr(g, k) for k in keep} for g in r.groups[:20]],
        "deals_at_risk": [
            {
                "opportunity_id": d.opportunity_id,
                "owner": d.owner,
                "stage": d.stage,
                "amount": d.amount,
                "probability": d.probability,
                "why": d.why,
            }
            for d in r.deals_at_risk
        ],
    }
