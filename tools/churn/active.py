"""The model that scores accounts now: loaded from the active `churn_models` row (a logistic
model, boosted trees, or the rule-based fallback), cached per version."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.models import ChurnModel
from tools.churn.boosted import BoostedModel
from tools.churn.calibration import PlattScaling
from tools.churn.design import LinearModel, sigmoid
from tools.churn.features import FeatureTable
from tools.churn.rules import RULES_VERSION
from tools.churn.schemas import ChurnModelReport, Method, Source

NO_MODEL_REASON = "no churn model has been trained yet; run `valuechain churn train`"


@dataclass(frozen=True)
class ActiveModel:
    """The model that scores accounts now (a trained one, or the rule-based fallback)."""

    version: str
    method: Method
    source: Source
    as_of: dt.date | None
    reason: str | None
    scorer: LinearModel | BoostedModel | None
    attribute_kinds: dict[str, str] = field(default_factory=dict)
    auc: float | None = None
    calibration: PlattScaling | None = None

    @property
    def uses_history(self) -> bool:
        return self.source == "history"

    @property
    def linear(self) -> LinearModel | None:
        """The logistic model, when that is what scores (None for boosted trees and rules)."""
        return self.scorer if isinstance(self.scorer, LinearModel) else None

    def probability(self, table: FeatureTable) -> np.ndarray:
        """Calibrated churn probabilities of a trained model (raw sigmoid when uncalibrated)."""
        if self.scorer is None:
            raise ValueError("the rule-based fallback has no scorer; use tools.churn.rules")
        logit = self.scorer.logit(table)
        return sigmoid(logit) if self.calibration is None else self.calibration.probability(logit)


DEFAULT_RULES = ActiveModel(
    version=RULES_VERSION,
    method="rule_based",
    source="history",
    as_of=None,
    reason=NO_MODEL_REASON,
    scorer=None,
)
_CACHE: dict[str, ActiveModel] = {}


def load_active_model(session: Session) -> ActiveModel:
    """The active model, or the rule-based default.

    Parsed models are cached by (version, created_at): versions are content hashes, so the
    pair names the same parameters in any database.
    """
    head = session.execute(
        select(ChurnModel.version, ChurnModel.created_at)
        .where(ChurnModel.active.is_(True))
        .order_by(ChurnModel.created_at.desc(), ChurnModel.version)
        .limit(1)
    ).first()
    if head is None:
        return DEFAULT_RULES
    version = head[0]
    key = f"{version}@{head[1].isoformat()}"
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    row = session.get(ChurnModel, version)
    if row is None:  # pragma: no cover - deleted between the two reads
        return DEFAULT_RULES
    params = row.params or {}
    metrics = row.metrics or {}
    scorer: LinearModel | BoostedModel | None = None
    method: Method = "rule_based"
    if row.method == "logistic_regression":
        scorer, method = LinearModel.from_params(params), "logistic_regression"
    elif row.method == "gradient_boosting":
        scorer, method = BoostedModel.from_params(params), "gradient_boosting"
    model = ActiveModel(
        version=row.version,
        method=method,
        source="attributes" if row.source == "attributes" else "history",
        as_of=row.as_of,
        reason=params.get("reason"),
        scorer=scorer,
        attribute_kinds=dict(params.get("attribute_kinds", {})),
        auc=metrics.get("auc"),
        calibration=PlattScaling.from_params(params.get("calibration")),
    )
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = model
    return model


def load_model_report(session: Session, version: str | None = None) -> ChurnModelReport | None:
    """The stored training report of the active model (or of `version`)."""
    if version is None:
        version = session.scalar(
            select(ChurnModel.version)
            .where(ChurnModel.active.is_(True))
            .order_by(ChurnModel.created_at.desc(), ChurnModel.version)
            .limit(1)
        )
    row = session.get(ChurnModel, version) if version else None
    if row is None:
        return None
    return ChurnModelReport.model_validate(row.metrics)
