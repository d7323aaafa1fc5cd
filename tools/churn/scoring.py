"""The `churn_risk` tool: probability, band, ARR at risk and drivers per account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from crm.models import Account, ChurnScore
from tools.churn.features import AccountScope, FeatureTable, active_on, compute_features
from tools.churn.model import ActiveModel, load_active_model
from tools.churn.phrases import driver_phrase, driver_value
from tools.churn.rules import RULES, health_score, rule_points
from tools.churn.schemas import (
    AccountChurnRisk,
    Band,
    ChurnRiskInputs,
    ChurnRiskResult,
    Driver,
    ModelInfo,
    ScoreSnapshotResult,
)
from tools.common import data_as_of, require_account
from tools.errors import ToolInputError
from tools.filters import conditions, describe, normalise_filters
from tools.ranking import ACCOUNT_DEFAULT_FILTERS, ACCOUNT_FILTERS

DEFAULT_BANDS = (0.2, 0.5)
MAX_LIMIT = 1000
PROTECTIVE_SHOWN = 2


@dataclass(frozen=True)
class Assessment:
    """Scores of the accounts in a scope, with the features they came from."""

    model: ActiveModel
    as_of: dt.date | None
    table: FeatureTable
    probability: np.ndarray
    health: np.ndarray


def resolve_as_of(session: Session, as_of: dt.date | None, model: ActiveModel) -> dt.date | None:
    """The explicit date, else the data's as-of date; None only for an attribute-only model on undated data."""
    if as_of is not None:
        return as_of
    try:
        return data_as_of(session)
    except ToolInputError:
        if model.source == "attributes":
            return model.as_of
        raise


def assess(
    session: Session,
    *,
    as_of: dt.date | None,
    scope: AccountScope,
    model: ActiveModel | None = None,
    with_history: bool = False,
) -> Assessment:
    """Compute features and churn probabilities for every account in `scope` (bulk, vectorised).

    `with_history` computes the event-history features even when the model does not use them
    (next-best-action conditions need them).
    """
    model = model or load_active_model(session)
    table = compute_features(
        session,
        as_of,
        scope,
        history=model.uses_history or (with_history and as_of is not None),
        attribute_kinds=model.attribute_kinds or None,
    )
    if model.linear is not None:
        prob = model.linear.probability(table)
        health = 100.0 * (1.0 - prob)
    else:
        health = health_score(table)
        prob = (100.0 - health) / 100.0
    return Assessment(model=model, as_of=as_of, table=table, probability=prob, health=health)


def band_of(probability: float, thresholds: tuple[float, float] = DEFAULT_BANDS) -> Band:
    """low < thresholds[0] ≤ medium < thresholds[1] ≤ high."""
    low, high = thresholds
    if probability < low:
        return "low"
    if probability < high:
        return "medium"
    return "high"


def check_bands(band_thresholds: Sequence[float]) -> tuple[float, float]:
    values = tuple(float(v) for v in band_thresholds)
    if len(values) != 2 or not 0.0 < values[0] < values[1] < 1.0:
        raise ToolInputError(
            f"band_thresholds must be two increasing probabilities strictly between 0 and 1 "
            f"(e.g. [0.2, 0.5]); got {list(band_thresholds)!r}"
        )
    return values[0], values[1]


def group_contributions(model: ActiveModel, table: FeatureTable) -> tuple[list[str], np.ndarray]:
    """Driver groups and their contributions per row (log-odds, or health points for rules)."""
    if model.linear is None:
        return [rule.group for rule in RULES], rule_points(table)
    contrib = model.linear.contributions(table)
    groups: list[str] = []
    position: dict[str, int] = {}
    for col in model.linear.columns:
        if col.group not in position:
            position[col.group] = len(groups)
            groups.append(col.group)
    out = np.zeros((len(table), len(groups)))
    for j, col in enumerate(model.linear.columns):  # sequential: same sums alone or in a batch
        out[:, position[col.group]] += contrib[:, j]
    return groups, out


def explain_rows(
    model: ActiveModel, table: FeatureTable, top_drivers: int
) -> list[tuple[list[Driver], list[Driver]]]:
    """Top risk-raising drivers and strongest protective factors of every row of `table`."""
    groups, contrib = group_contributions(model, table)
    unit = "log_odds" if model.linear is not None else "health_points"
    out: list[tuple[list[Driver], list[Driver]]] = []
    for i in range(len(table)):
        row = table.row(i)
        values = contrib[i]
        raising = sorted(
            (k for k in range(len(groups)) if values[k] > 0), key=lambda k: (-values[k], groups[k])
        )
        lowering = sorted(
            (k for k in range(len(groups)) if values[k] < 0), key=lambda k: (values[k], groups[k])
        )

        def make(k: int, row: Mapping[str, Any] = row, values: np.ndarray = values) -> Driver:
            return Driver(
                feature=groups[k],
                value=driver_value(groups[k], row),
                contribution=float(values[k]),
                unit=unit,
                phrase=driver_phrase(groups[k], row),
            )

        protective = [make(k) for k in lowering[:PROTECTIVE_SHOWN]] if model.linear is not None else []
        out.append(([make(k) for k in raising[:top_drivers]], protective))
    return out


def model_info(model: ActiveModel) -> ModelInfo:
    return ModelInfo(
        method=model.method,
        source=model.source,
        version=model.version,
        trained_as_of=model.as_of,
        reason=model.reason,
        auc=model.auc,
    )


def _fmt_money(value: float) -> str:
    return f"{value:,.0f}"


def _account_results(
    session: Session, result: Assessment, rows: Sequence[int], bands: tuple[float, float], top_drivers: int
) -> list[AccountChurnRisk]:
    if not rows:
        return []
    subset = result.table.take(np.asarray(rows, dtype=np.int64))
    explained = explain_rows(result.model, subset, top_drivers)
    ids = [str(a) for a in subset.ids]
    meta = {
        r[0]: r
        for r in session.execute(
            select(Account.id, Account.name, Account.plan, Account.status).where(Account.id.in_(ids))
        )
    }
    out: list[AccountChurnRisk] = []
    for k, i in enumerate(rows):
        account_id = ids[k]
        prob = float(result.probability[i])
        arr = float(result.table.numeric["arr"][i])
        drivers, protective = explained[k]
        out.append(
            AccountChurnRisk(
                account_id=account_id,
                name=meta[account_id][1],
                segment=subset.categorical["segment"][k],
                plan=subset.categorical["plan"][k] if "plan" in subset.categorical else meta[account_id][2],
                status=meta[account_id][3],
                arr=arr,
                probability=prob,
                band=band_of(prob, bands),
                arr_at_risk=arr * prob,
                health=float(result.health[i]),
                drivers=drivers,
                protective=protective,
            )
        )
    return out


def _as_of_text(day: dt.date | None) -> str:
    return f"as of {day}" if day else "from static attributes (no dated history)"


def _model_sentence(model: ActiveModel) -> str:
    if model.method == "rule_based":
        return f"Rule-based health score (fallback, not a trained model): {model.reason}."
    auc = f", AUC {model.auc:.3f}" if model.auc is not None else ""
    when = f" as of {model.as_of}" if model.as_of else ""
    return f"Logistic regression {model.version} trained on {model.source}{when}{auc}."


def churn_risk(
    *,
    session: Session,
    account_id: str | None = None,
    filters: dict[str, str | list[str]] | None = None,
    as_of: dt.date | None = None,
    limit: int = 20,
    band_thresholds: tuple[float, float] = DEFAULT_BANDS,
    top_drivers: int = 3,
) -> ChurnRiskResult:
    """Estimate the probability that accounts churn within 90 days, with the drivers behind it.

    Give `account_id` for one account, or `filters` for a ranked list (highest probability
    first, ties by account id). Each account gets a probability, a band (low < 0.2 ≤ medium
    < 0.5 ≤ high by default), arr_at_risk = arr × probability, health = 100 × (1 − probability)
    and its top drivers with plain-language evidence ("usage down 41% over the last 4 weeks").
    Drivers are log-odds contributions coef × (x − mean) / scale of the trained logistic model;
    when the rule-based fallback is active the output says so and drivers are health points.

    Args:
        account_id: one account id, e.g. "ACME-0042". Leave empty to rank many accounts.
        filters: account filters for the ranked list, e.g. {"segment": "Enterprise"}; keys:
            segment, region, plan, industry, owner, status. Status defaults to "active".
        as_of: score as of this date (YYYY-MM-DD); defaults to the data's as-of date.
        limit: how many accounts to list (1–1000); totals cover all matching accounts.
        band_thresholds: [medium_from, high_from] probability thresholds.
        top_drivers: how many risk-raising drivers to show per account (0–10).
    """
    if account_id is not None and filters:
        raise ToolInputError("give either account_id or filters, not both")
    if not 1 <= limit <= MAX_LIMIT:
        raise ToolInputError(f"limit must be between 1 and {MAX_LIMIT}; got {limit!r}")
    if not 0 <= top_drivers <= 10:
        raise ToolInputError(f"top_drivers must be between 0 and 10; got {top_drivers!r}")
    bands = check_bands(band_thresholds)
    model = load_active_model(session)
    day = resolve_as_of(session, as_of, model)
    norm_filters: dict[str, list[str]] | None = None
    if account_id is not None:
        account = require_account(session, account_id)
        account_id = account.id
        scope = AccountScope(ids=(account.id,))
    else:
        norm_filters = normalise_filters(
            session, filters, ACCOUNT_FILTERS, entity="accounts", defaults=ACCOUNT_DEFAULT_FILTERS
        )
        scope = AccountScope(where=tuple(conditions(norm_filters, ACCOUNT_FILTERS)))
    result = assess(session, as_of=day, scope=scope, model=model)
    n = len(result.table)
    order = np.argsort(-result.probability, kind="stable")  # rows are sorted by id: ties by id
    shown = [int(i) for i in order[:limit]]
    accounts = _account_results(session, result, shown, bands, top_drivers)
    band_counts = {"high": 0, "medium": 0, "low": 0}
    for p in result.probability:
        band_counts[band_of(float(p), bands)] += 1
    arr = result.table.numeric["arr"]
    total_arr = float(arr.sum()) if n else 0.0
    total_at_risk = float((arr * result.probability).sum()) if n else 0.0
    if account_id is not None:
        a = accounts[0]
        phrases = "; ".join(d.phrase for d in a.drivers) or "no risk-raising drivers"
        explanation = (
            f"{a.account_id} ({a.name}): {a.probability:.0%} probability of churning within 90 days "
            f"{_as_of_text(day)} ({a.band} band); ARR at risk {_fmt_money(a.arr_at_risk)} of {_fmt_money(a.arr)}. "
            f"Top drivers: {phrases}. {_model_sentence(model)}"
        )
    else:
        where = describe(norm_filters or {})
        explanation = (
            f"Scored {n:,} accounts ({where}) {_as_of_text(day)}: {band_counts['high']:,} high, "
            f"{band_counts['medium']:,} medium, {band_counts['low']:,} low risk; ARR at risk "
            f"{_fmt_money(total_at_risk)} of {_fmt_money(total_arr)}. Showing the top {len(accounts)} "
            f"by probability. {_model_sentence(model)}"
        )
    return ChurnRiskResult(
        as_of=day,
        model=model_info(model),
        accounts=accounts,
        matched=n,
        band_counts=band_counts,
        total_arr=total_arr,
        total_arr_at_risk=total_at_risk,
        explanation=explanation,
        inputs=ChurnRiskInputs(
            account_id=account_id,
            filters=norm_filters,
            as_of=day,
            limit=limit,
            band_thresholds=bands,
            top_drivers=top_drivers,
        ),
    )


def write_score_snapshot(
    session: Session,
    *,
    as_of: dt.date | None = None,
    band_thresholds: tuple[float, float] = DEFAULT_BANDS,
    top_drivers: int = 3,
    chunk: int = 20_000,
) -> ScoreSnapshotResult:
    """Keep the scores of every account active on `as_of` in `churn_scores`.

    Rows of an earlier run for the same date and model version are replaced; rows of other
    dates are never touched, so an account that churns later keeps the score it had.
    """
    bands = check_bands(band_thresholds)
    model = load_active_model(session)
    day = resolve_as_of(session, as_of, model)
    if day is None:
        raise ToolInputError("the database holds no dated data; pass an explicit as_of date (YYYY-MM-DD)")
    result = assess(session, as_of=day, scope=AccountScope(where=active_on(day)), model=model)
    stale = (ChurnScore.as_of == day, ChurnScore.model_version == model.version)
    replaced = session.scalar(select(func.count()).select_from(ChurnScore).where(*stale)) or 0
    session.execute(delete(ChurnScore).where(*stale))
    band_counts = {"high": 0, "medium": 0, "low": 0}
    n = len(result.table)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        subset = result.table.take(np.arange(start, stop))
        explained = explain_rows(model, subset, top_drivers)
        rows = []
        for k in range(stop - start):
            prob = float(result.probability[start + k])
            band = band_of(prob, bands)
            band_counts[band] += 1
            rows.append(
                {
                    "account_id": str(subset.ids[k]),
                    "as_of": day,
                    "model_version": model.version,
                    "probability": prob,
                    "band": band,
                    "drivers": [d.model_dump(mode="json") for d in explained[k][0]],
                }
            )
        if rows:
            session.execute(insert(ChurnScore), rows)
    session.flush()
    return ScoreSnapshotResult(
        as_of=day,
        model_version=model.version,
        method=model.method,
        accounts=n,
        replaced=int(replaced or 0),
        band_counts=band_counts,
    )
