"""Result models of the churn tools, shared by the CLI, the API, the agent and the evals."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.projection import pick

Band = Literal["low", "medium", "high"]
Method = Literal["logistic_regression", "gradient_boosting", "rule_based"]
Candidate = Literal["logistic_regression", "gradient_boosting"]
AttributeKind = Literal["numeric", "categorical", "code", "excluded"]
Source = Literal["history", "attributes"]
Population = Literal["demo", "imported"]
DriverUnit = Literal["log_odds", "health_points"]
ScoreSource = Literal["computed", "snapshot"]


class Driver(BaseModel):
    """One reason an account scores the way it does."""

    feature: str = Field(description="Driver group: a feature, or a category such as plan or attr:Contract")
    value: float | str | None = Field(description="The account's raw value of the feature as of the date")
    contribution: float = Field(
        description="log_odds: the group's share of the model's raw (pre-calibration) log-odds — "
        "Σ coef_j·(x_j − mean_j)/scale_j over its columns (logistic) or Σ TreeSHAP values of its "
        "columns (boosted trees); health_points: points the rule subtracted from health"
    )
    unit: DriverUnit
    phrase: str = Field(description="Plain-language statement of the evidence")


class AccountChurnRisk(BaseModel):
    """Churn risk of one account as of a date."""

    account_id: str
    name: str
    segment: str | None
    plan: str | None
    status: str
    arr: float
    probability: float = Field(description="Probability of churning within 90 days")
    band: Band
    arr_at_risk: float = Field(description="arr × probability")
    health: float = Field(description="0–100; 100 × (1 − probability)")
    drivers: list[Driver] = Field(description="Top risk-raising drivers, largest contribution first")
    protective: list[Driver] = Field(description="Strongest risk-lowering factors (model method only)")


class ModelInfo(BaseModel):
    """Which model produced the scores, and why."""

    method: Method
    source: Source
    version: str
    trained_as_of: dt.date | None = None
    reason: str | None = Field(default=None, description="Why the rule-based fallback is in use, if it is")
    auc: float | None = Field(
        default=None, description="Holdout (history) or cross-validated (attributes) AUC"
    )


class ChurnRiskInputs(BaseModel):
    account_id: str | None
    filters: dict[str, list[str]] | None
    as_of: dt.date | None
    limit: int
    band_thresholds: tuple[float, float]
    top_drivers: int


class ChurnRiskResult(BaseModel):
    """Per-account churn probability, band, ARR at risk and drivers."""

    as_of: dt.date | None = Field(description="None only for an attribute-only model on undated data")
    model: ModelInfo
    accounts: list[AccountChurnRisk]
    matched: int = Field(description="Accounts that matched and were scored (before the limit)")
    band_counts: dict[str, int] = Field(description="Matched accounts per band")
    total_arr: float = Field(description="Σ arr over matched accounts")
    total_arr_at_risk: float = Field(description="Σ arr × probability over matched accounts")
    source: ScoreSource = Field(
        description="computed: features and scores computed now; snapshot: list-mode probabilities "
        "read from the churn_scores snapshot kept for this date and model (drivers still computed)"
    )
    explanation: str
    inputs: ChurnRiskInputs


def _risk_row(a: AccountChurnRisk) -> dict[str, Any]:
    return {
        **pick(a, "account_id", "name", "segment", "arr", "probability", "band", "arr_at_risk"),
        "drivers": [x.phrase for x in a.drivers],
    }


def project_churn_risk(r: ChurnRiskResult) -> dict[str, Any]:
    """What the model reads of `churn_risk`: one account flat, or the list with its total at risk."""
    rows = [_risk_row(a) for a in r.accounts]
    if len(rows) == 1 and r.matched == 1:
        return {"as_of": r.as_of, "method": r.model.method, **rows[0]}
    return {
        "as_of": r.as_of,
        "method": r.model.method,
        "matched": r.matched,
        "total_arr_at_risk": r.total_arr_at_risk,
        "accounts": rows,
    }


class CalibrationBin(BaseModel):
    decile: int = Field(description="1 = lowest predicted probabilities, 10 = highest")
    n: int
    mean_predicted: float
    observed_rate: float


class EvaluationMetrics(BaseModel):
    """How well a set of predictions matched outcomes."""

    n: int
    positives: int
    base_rate: float
    auc: float | None
    brier: float
    top_decile_lift: float | None = Field(description="Churn rate in the top 10 % by probability / base rate")
    calibration: list[CalibrationBin]


class CandidateResult(BaseModel):
    """One candidate model family, evaluated the same way as every other candidate."""

    method: Candidate
    chosen: bool
    auc: float | None = Field(description="Mean of the fold AUCs, or the holdout AUC (raw scores)")
    auc_std: float | None = Field(default=None, description="Population std of the fold AUCs")
    fold_aucs: list[float] = Field(default_factory=list)
    brier: float | None = Field(
        default=None, description="Brier score of the calibrated out-of-fold / holdout probabilities"
    )
    brier_uncalibrated: float | None = None
    top_decile_lift: float | None = None
    features: int = Field(description="Columns of the model refit on all rows (or the last fit)")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Fixed settings, and for boosted trees the setting and tree count each fold's inner "
        "tuning picked",
    )
    seconds: float = Field(description="Wall time of this candidate's evaluation fits")


class AttributeUse(BaseModel):
    """What training made of one custom field, and why."""

    name: str
    kind: AttributeKind
    reason: str
    present: int = Field(description="Rows with a non-blank value")
    distinct: int


class ChurnModelReport(BaseModel):
    """What `churn train` produced and `churn report` shows."""

    model_version: str
    method: Method
    source: Source
    as_of: dt.date | None
    reason: str | None = None
    auc: float | None = None
    auc_std: float | None = None
    brier: float | None = None
    top_decile_lift: float | None = None
    folds: int | None = None
    n_train: int
    n_test: int | None = None
    positives: int
    c: float | None = Field(default=None, description="Inverse L2 strength of the logistic regression")
    evaluation: str = Field(description="How the metrics were obtained")
    features: int
    snapshots: list[dt.date] = Field(default_factory=list)
    train_snapshots: list[dt.date] = Field(default_factory=list)
    test_snapshots: list[dt.date] = Field(default_factory=list)
    fold_aucs: list[float] = Field(default_factory=list)
    rule_based_auc: float | None = Field(
        default=None, description="The rule-based score on the same evaluation rows"
    )
    calibration: list[CalibrationBin] = Field(
        default_factory=list,
        description="Reliability per decile of the (calibrated) evaluation probabilities",
    )
    calibration_method: Literal["platt", "none"] | None = Field(
        default=None, description="How raw log-odds become the stored probabilities"
    )
    calibration_fit: dict[str, float] | None = Field(
        default=None, description="Deployed Platt scaling: p = sigmoid(slope · raw + intercept)"
    )
    brier_uncalibrated: float | None = None
    candidates: list[CandidateResult] = Field(default_factory=list)
    choice: str | None = Field(default=None, description="Which candidate was chosen and why")
    top_coefficients: list[tuple[str, float]] = Field(default_factory=list)
    feature_importance: list[tuple[str, float]] = Field(
        default_factory=list, description="Boosted trees: share of total split gain per driver group"
    )
    skipped_attributes: list[str] = Field(default_factory=list)
    attributes: list[AttributeUse] = Field(
        default_factory=list, description="Every custom field: used as what, or excluded, and why"
    )
    population: Population | None = Field(
        default=None,
        description="Accounts the model learned from: the demo company or imported accounts, never "
        "both (tools/churn/population.py); null for models trained before this was recorded",
    )
    population_note: str | None = Field(
        default=None, description="Set when demo accounts in the same database were left out"
    )


class ScoreSnapshotResult(BaseModel):
    """A churn_scores snapshot written for all active accounts as of a date."""

    as_of: dt.date
    model_version: str
    method: Method
    accounts: int
    replaced: int = Field(description="Rows of an earlier run for the same date and model that were replaced")
    band_counts: dict[str, int]
    features: str = Field(
        default="read",
        description="How the history features were obtained: 'built' (read from the event tables and "
        "kept), 'advanced' (the kept feature state moved on with the rows dated after it), 'current' "
        "(the kept state was already at this date) or 'read' (no state used)",
    )
    features_note: str = Field(
        default="", description="Why the kept feature state was not used, if it was not"
    )
