"""Result models of `value_chain_analysis`: one section per step, plus the CRM view.

Every figure that score_activities or rank also computes is copied from their results, never
recomputed; the figures introduced here (shares of the total leak, advantage totals, account
metrics of the CRM view) are documented on their fields and in docs/ANALYSIS.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.activities import Quadrant
from tools.projection import pick

InitiativeType = Literal["automate", "streamline", "renegotiate", "invest", "eliminate"]
Advantage = Literal["cost", "differentiation"]
PerformanceStatus = Literal["below_target", "on_or_above_target", "no_data"]
CrmArea = Literal["marketing", "sales", "service_support", "it_is"]
MetricUnit = Literal["count", "currency", "ratio", "days", "score", "points"]

PRIMARY_CATEGORIES: tuple[str, ...] = (
    "inbound_logistics",
    "operations",
    "outbound_logistics",
    "marketing_sales",
    "service",
)
SUPPORT_CATEGORIES: tuple[str, ...] = (
    "firm_infrastructure",
    "human_resources",
    "technology_development",
    "procurement",
)


class ActivityRef(BaseModel):
    """An activity named by id, with its name (for links between sections)."""

    id: str
    name: str


# ------------------------------------------------------------------ step 1


class PrimaryActivity(BaseModel):
    """A primary activity with its owner, systems, cost, value and performance against target."""

    id: str
    name: str
    porter_category: str
    owner_team: str | None
    systems: list[str]
    annual_cost: float
    value_score: float
    cost_share: float
    value_share: float
    value_cost_index: float | None
    margin_leak: float
    quadrant: Quadrant
    performance_metric: str | None
    performance_actual: float | None
    performance_target: float | None
    performance_direction: str | None
    performance_gap: float | None
    performance_status: PerformanceStatus
    enabled_by: list[ActivityRef] = Field(description="support activities whose `enables` names this one")


class PrimaryCategory(BaseModel):
    """Porter's primary category and the activities recorded in it (empty = not inventoried)."""

    porter_category: str
    activity_ids: list[str]
    annual_cost: float


class Step1PrimaryActivities(BaseModel):
    """Step 1: identify the primary activities."""

    activities: list[PrimaryActivity] = Field(description="by Porter category order, then id")
    categories: list[PrimaryCategory]
    missing_categories: list[str]
    total_cost: float
    cost_share_of_chain: float
    below_target: int
    summary: str


# ------------------------------------------------------------------ step 2


class SupportActivity(BaseModel):
    """A support activity and the primary activities it enables."""

    id: str
    name: str
    porter_category: str
    owner_team: str | None
    systems: list[str]
    annual_cost: float
    value_score: float
    cost_share: float
    value_share: float
    margin_leak: float
    quadrant: Quadrant
    performance_metric: str | None
    performance_gap: float | None
    enables: list[ActivityRef] = Field(description="primary activities of the same period it enables")
    unresolved_enables: list[str] = Field(
        description="ids in `enables` that are not primary activities of this period"
    )


class Step2SupportActivities(BaseModel):
    """Step 2: identify the support activities and the primary activities each enables."""

    activities: list[SupportActivity] = Field(description="by Porter category order, then id")
    enablement: dict[str, list[str]] = Field(description="primary activity id → enabling support ids")
    unlinked_support: list[str] = Field(description="support activities that enable nothing recorded")
    unsupported_primary: list[str] = Field(description="primary activities no support activity enables")
    missing_categories: list[str]
    total_cost: float
    cost_share_of_chain: float
    summary: str


# ------------------------------------------------------------------ step 3


class MarginLeakItem(BaseModel):
    """One activity in the margin-leak ranking (rank activities margin_leak)."""

    rank: int
    id: str
    name: str
    kind: str
    margin_leak: float
    share_of_total_leak: float = Field(description="margin_leak / total margin leak of the period")
    annual_cost: float
    cost_share: float
    value_share: float
    quadrant: Quadrant


class Bottleneck(BaseModel):
    """An activity behind its performance target (rank activities performance_gap, gap > 0)."""

    rank: int
    id: str
    name: str
    performance_metric: str | None
    performance_actual: float | None
    performance_target: float | None
    performance_direction: str | None
    performance_gap: float


class ActivityBasedSplit(BaseModel):
    """The activity-based cost split of one activity with cost-driver data."""

    id: str
    name: str
    cost_driver: str | None
    annual_cost: float
    value_added_cost: float
    non_value_added_cost: float
    unused_capacity_cost: float


class Step3CostsAndPerformance(BaseModel):
    """Step 3: evaluate costs and performance — margin leak, bottlenecks, value-added split."""

    total_cost: float
    total_margin_leak: float
    margin_leak_share_of_cost: float
    quadrant_counts: dict[Quadrant, int]
    margin_leak: list[MarginLeakItem] = Field(description="activities with a leak, largest first")
    bottlenecks: list[Bottleneck] = Field(description="activities below target, largest gap first")
    activities_without_performance_data: list[str]
    activity_based: list[ActivityBasedSplit] = Field(description="activities with driver data, by id")
    driver_cost_coverage: float = Field(description="share of total cost carried by activities with a split")
    total_value_added_cost: float
    total_non_value_added_cost: float
    total_unused_capacity_cost: float
    summary: str


# ------------------------------------------------------------------ step 4


class InitiativeItem(BaseModel):
    """An initiative of the period with its ROI and net benefit from rank initiatives."""

    id: str
    description: str
    activity_id: str
    activity_name: str
    activity_quadrant: Quadrant | None
    type: str
    advantage: str | None
    owner: str | None
    due: dt.date | None
    status: str
    open: bool = Field(description="status is not done, cancelled or rejected")
    est_cost: float
    est_annual_benefit: float
    roi: float | None
    net_benefit: float
    roi_rank: int
    net_benefit_rank: int


class SuggestedInitiative(BaseModel):
    """A suggested initiative for an optimize / eliminate_or_restructure activity that has none."""

    activity_id: str
    activity_name: str
    quadrant: Quadrant
    type: InitiativeType
    advantage: Advantage
    owner: str | None = Field(description="the activity's owner team")
    due: dt.date | None = Field(description="end of the next period of the same length; null if unknown")
    addressable_cost: float = Field(
        description="margin_leak, or the non-value-added cost if larger: an upper bound, not an estimate"
    )
    rule: str = Field(description="which rule chose the type")
    description: str


class Step4Opportunities(BaseModel):
    """Step 4: identify opportunities — initiatives by ROI, and suggestions where there are none."""

    initiatives: list[InitiativeItem] = Field(description="by ROI rank (nulls last, ties by id)")
    open_initiatives: int
    open_est_cost: float = Field(description="est_cost summed over open initiatives")
    open_est_annual_benefit: float = Field(description="est_annual_benefit summed over open initiatives")
    truncated: bool = Field(description="more initiatives than rank returns at most (1000)")
    suggestions: list[SuggestedInitiative]
    summary: str


# ------------------------------------------------------------------ step 5


class AdvantageLink(BaseModel):
    """An initiative tied to a competitive advantage, or flagged as likely decorative."""

    initiative_id: str
    description: str
    activity_id: str
    activity_name: str
    advantage: str | None
    decorative: bool
    est_annual_benefit: float
    net_benefit: float


class AdvantageTotal(BaseModel):
    """Initiatives and benefit behind one advantage (or none)."""

    advantage: Literal["cost", "differentiation", "none"]
    initiatives: int
    est_cost: float
    est_annual_benefit: float
    share_of_benefit: float


class Step5CompetitiveAdvantage(BaseModel):
    """Step 5: tie each initiative to cost or differentiation advantage."""

    links: list[AdvantageLink] = Field(description="in the order of step 4")
    totals: list[AdvantageTotal]
    decorative: list[str]
    narrative: str = Field(description="deterministic text assembled from the figures of all steps")


# ------------------------------------------------------------------ CRM view


class AreaMetric(BaseModel):
    """An account metric of a CRM functional area over the analysis window."""

    name: str
    label: str
    value: int | float | None
    unit: MetricUnit
    description: str


class AreaActivity(BaseModel):
    id: str
    name: str
    porter_category: str
    annual_cost: float
    margin_leak: float
    quadrant: Quadrant
    performance_gap: float | None


class CrmAreaView(BaseModel):
    """What one CRM functional area contributes, to which activities, and its account metrics."""

    area: CrmArea
    label: str
    contribution: str
    porter_categories: list[str]
    activities: list[AreaActivity]
    annual_cost: float
    margin_leak: float
    metrics: list[AreaMetric]


class CrmView(BaseModel):
    """CRM functional areas (marketing, sales, service & support, IT/IS) mapped onto the chain."""

    window_start: dt.date
    window_end: dt.date
    areas: list[CrmAreaView]
    unmapped_activities: list[str] = Field(description="activities in no CRM area (by Porter category)")
    convention: str


# ------------------------------------------------------------------ result


class AnalysisInputs(BaseModel):
    period: str
    period_defaulted: bool
    as_of: dt.date


class ValueChainAnalysis(BaseModel):
    """The five steps of value-chain analysis for one period, with the CRM view."""

    period: str
    as_of: dt.date
    n_activities: int
    total_cost: float
    step1_primary: Step1PrimaryActivities
    step2_support: Step2SupportActivities
    step3_costs: Step3CostsAndPerformance
    step4_opportunities: Step4Opportunities
    step5_advantage: Step5CompetitiveAdvantage
    crm_view: CrmView
    explanation: str
    inputs: AnalysisInputs


def project_analysis(r: ValueChainAnalysis) -> dict[str, Any]:
    """What the model reads of `value_chain_analysis`: each step's summary and its top three items."""
    s3, s4, s5 = r.step3_costs, r.step4_opportunities, r.step5_advantage
    return {
        "period": r.period,
        "total_cost": r.total_cost,
        "1_primary": r.step1_primary.summary,
        "2_support": r.step2_support.summary,
        "top_margin_leak": [pick(i, "id", "name", "margin_leak", "quadrant") for i in s3.margin_leak[:3]],
        "bottlenecks": [pick(b, "id", "name", "performance_gap") for b in s3.bottlenecks[:3]],
        "4_opportunities": s4.summary,
        "top_initiatives": [pick(i, "id", "description", "type", "roi", "net_benefit") for i in s4.initiatives[:3]],
        "5_advantage": s5.narrative,
        "decorative_initiatives": s5.decorative,
    }
