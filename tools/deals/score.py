"""The `deal_score` tool: an open deal's win probability, with the reasons in plain words.

With a trained deal model (`valuechain deals train`) the probability is the model's calibrated
score of the deal's features as of the data's date, and the drivers are each feature group's
contribution to the raw log-odds (logistic: coefficient × standardised value; boosted trees:
TreeSHAP values), largest first, each with a phrase. Without one, the stage table's probability
(`tools/pipeline/stage_probabilities.yaml`) is returned, and the explanation says so.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.models import CLOSED_STAGES, Opportunity
from tools.deals.features import (
    Deal,
    DealData,
    feature_table,
    in_population,
    load_deal_context,
    load_deal_data,
)
from tools.deals.model import LoadedDealModel, active_deal_model
from tools.errors import ToolInputError, did_you_mean
from tools.pipeline.deals import OpenDeal, pipeline_as_of
from tools.pipeline.probability import default_stage_table

TOP_DRIVERS = 5
Direction = Literal["raises", "lowers"]


class DealDriver(BaseModel):
    """One reason the deal scores the way it does."""

    feature: str = Field(description="Feature group, e.g. owner_win_rate, stage, amount_vs_typical")
    value: float | str | None = Field(
        description="The deal's value of the feature as of the date (amount in money, amount_vs_typical as a ratio)"
    )
    contribution: float = Field(description="Its share of the model's raw log-odds")
    direction: Direction
    phrase: str


class DealScore(BaseModel):
    """Win probability of one open deal as of a date, and why."""

    opportunity_id: str
    account_id: str | None
    owner: str | None
    product: str | None
    stage: str
    amount: float | None
    probability: float
    source: Literal["deal_model", "stage_table"]
    model_version: str | None
    model_auc: float | None = Field(description="The model's time-based holdout AUC")
    drivers: list[DealDriver]
    explanation: str
    as_of: dt.date


_LABELS = {
    "age_days": "deal age",
    "days_in_stage": "days in the current stage",
    "stage_changes": "stage changes",
    "amount_vs_typical": "amount against the typical won deal",
    "amount": "amount",
    "days_to_expected_close": "expected close date",
    "owner_win_rate": "owner's win rate",
    "owner_closed_deals": "owner's closed deals",
    "account_tenure_days": "account tenure",
    "interactions_90d": "interactions with the account",
    "days_since_interaction": "last interaction",
    "tickets_90d": "support tickets",
    "stage": "stage",
    "type": "deal type",
    "product": "product",
}


def _phrase(group: str, value: Any) -> str:
    """The evidence of a driver in plain words."""
    if value is None:
        return f"no {_LABELS.get(group, group)} recorded"
    if group == "age_days":
        return f"open for {value:.0f} days"
    if group == "days_in_stage":
        return f"{value:.0f} days in its current stage"
    if group == "stage_changes":
        return f"{value:.0f} stage changes so far"
    if group == "amount_vs_typical":
        return f"amount {value:.1f}× the product's typical won deal"
    if group == "amount":
        return f"amount {value:,.0f}"
    if group == "days_to_expected_close":
        return (
            f"{value:.0f} days to the expected close"
            if value >= 0
            else f"{-value:.0f} days past the expected close"
        )
    if group == "owner_win_rate":
        return f"owner won {value:.0%} of their closed deals"
    if group == "owner_closed_deals":
        return f"owner has closed {value:.0f} deals"
    if group == "account_tenure_days":
        return f"customer for {value:.0f} days"
    if group == "interactions_90d":
        return f"{value:.0f} interactions with the account in 90 days"
    if group == "days_since_interaction":
        return f"last interaction with the account {value:.0f} days ago"
    if group == "tickets_90d":
        return f"{value:.0f} support tickets from the account in 90 days"
    if group == "stage":
        return f"in {value}"
    if group == "type":
        return f"a {value} deal"
    if group == "product":
        return f"product {value}"
    return f"{group} {value}"


def _group_value(row: dict[str, Any], group: str) -> Any:
    """The deal's value of a driver group as a person reads it (amounts back from their logs)."""
    if group == "amount":
        v = row.get("amount_log")
        return None if v is None else round(math.expm1(v), 2)
    if group == "amount_vs_typical":
        v = row.get(group)
        return None if v is None else math.exp(v)
    return row.get(group)


def _require(session: Session, opportunity_id: str) -> Opportunity:
    wanted = opportunity_id.strip()
    found = session.scalars(select(Opportunity).where(Opportunity.external_id == wanted)).first()
    if found is None and wanted.isdigit():
        found = session.scalars(
            select(Opportunity).where(Opportunity.id == int(wanted), Opportunity.external_id.is_(None))
        ).first()
    if found is None:
        refs = session.scalars(
            select(Opportunity.external_id).where(Opportunity.external_id.is_not(None)).limit(20000)
        )
        raise ToolInputError(
            f'no opportunity "{opportunity_id}"{did_you_mean(wanted, [r for r in refs if r])}'
        )
    if found.stage in CLOSED_STAGES:
        raise ToolInputError(
            f'opportunity "{opportunity_id}" is already {found.stage} (closed {found.close_date}); '
            "deal_score is for open deals"
        )
    return found


def _model_scores(
    model: LoadedDealModel, data: DealData, rows: Sequence[tuple[Deal, dt.date]], *, drivers: bool = True
) -> tuple[np.ndarray, list[str], np.ndarray, Any]:
    """Calibrated probabilities, and with `drivers` each feature group's contribution (TreeSHAP
    for boosted trees costs as much again as the scores: skipped when only the probability is
    wanted, as for the whole pipeline)."""
    data.use_amount, data.use_stage = model.use_amount, model.use_stage  # the switches it learned with
    table = feature_table(data, rows)
    raw = model.scorer.logit(table)
    groups, contributions = (
        model.scorer.group_contributions(table) if drivers else ([], np.empty((len(rows), 0)))
    )
    return model.calibration.probability(raw), groups, contributions, table


def deal_score(*, session: Session, opportunity_id: str) -> DealScore:
    """Win probability of one open deal, with the drivers behind it in plain words.

    Args:
        opportunity_id: The deal's id as the CRM gives it (e.g. "9ME3374G").
    """
    opp = _require(session, opportunity_id)
    as_of = pipeline_as_of(session)
    ref = opp.external_id or str(opp.id)
    base = {
        "opportunity_id": ref,
        "account_id": opp.account_id,
        "owner": opp.owner,
        "product": opp.product,
        "stage": opp.stage,
        "amount": opp.amount,
        "as_of": as_of,
    }
    model = active_deal_model(session)
    if model is None:
        table = default_stage_table()
        p = table.probabilities([_open_deal(opp)])[0]
        return DealScore(
            **base,
            probability=p,
            source="stage_table",
            model_version=None,
            model_auc=None,
            drivers=[],
            explanation="No deal model is trained (valuechain deals train): the stage table gives "
            f"{opp.stage} deals a win chance of {p:.0%}.",
        )
    population = "demo" if model.population == "demo" else "import"
    if not in_population(opp, population):
        raise ToolInputError(
            f'opportunity "{ref}" is not in the population the deal model learned from ({model.population})'
        )
    # only this deal's owner, product, stage history and account are read, not every deal
    data = load_deal_context(session, opp, as_of, population=population)
    deal = next(d for d in data.deals if d.id == opp.id)
    probs, groups, contributions, table = _model_scores(model, data, [(deal, as_of)])
    row = table.row(0)
    order = sorted(range(len(groups)), key=lambda j: (-abs(contributions[0, j]), groups[j]))
    drivers = []
    for j in order[:TOP_DRIVERS]:
        c = float(contributions[0, j])
        if c == 0.0:
            continue
        value = _group_value(row, groups[j])
        drivers.append(
            DealDriver(
                feature=groups[j],
                value=value,
                contribution=c,
                direction="raises" if c > 0 else "lowers",
                phrase=_phrase(groups[j], value),
            )
        )
    p = float(probs[0])
    auc = model.metrics.get("auc")
    reasons = "; ".join(f"{d.phrase} ({d.direction} it)" for d in drivers[:3])
    return DealScore(
        **base,
        probability=p,
        source="deal_model",
        model_version=model.version,
        model_auc=auc,
        drivers=drivers,
        explanation=f"{ref}: win chance {p:.0%} (deal model {model.version}"
        + ("" if auc is None else f", holdout AUC {auc:.2f}")
        + f"). Main reasons: {reasons}.",
    )


def _open_deal(o: Opportunity) -> OpenDeal:
    return OpenDeal(
        id=o.id,
        ref=o.external_id or str(o.id),
        account_id=o.account_id,
        type=o.type,
        stage=o.stage,
        owner=o.owner,
        team=None,
        manager=None,
        product=o.product,
        amount=o.amount,
        created_at=o.created_at,
        expected_close_date=o.expected_close_date,
        stage_entered=None,
        last_touch=None,
    )


class DealModelProbabilities:
    """`pipeline_health`'s probability source from the active deal model (stage table for deals
    outside the population it learned from)."""

    name = "deal_model"

    def __init__(self, session: Session, model: LoadedDealModel) -> None:
        self.session = session
        self.model = model

    def probabilities(self, deals: Sequence[OpenDeal]) -> list[float]:
        if not deals:
            return []
        as_of = pipeline_as_of(self.session)
        data = load_deal_data(
            self.session,
            population="demo" if self.model.population == "demo" else "import",
            history_of="open",
        )
        by_id = {d.id: d for d in data.deals}
        known = [(by_id[d.id], as_of) for d in deals if d.id in by_id]
        probs = iter(_model_scores(self.model, data, known, drivers=False)[0].tolist()) if known else iter(())
        fallback = default_stage_table()
        return [next(probs) if d.id in by_id else fallback.probabilities([d])[0] for d in deals]


def project_deal_score(r: DealScore) -> dict[str, Any]:
    """What the model reads of `deal_score`: the probability, its source and the drivers' phrases."""
    return {
        "opportunity_id": r.opportunity_id,
        "stage": r.stage,
        "probability": r.probability,
        "source": r.source,
        "drivers": [f"{d.phrase} ({d.direction} it)" for d in r.drivers],
    }
