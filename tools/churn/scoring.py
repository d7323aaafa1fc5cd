"""The `churn_risk` tool: probability, band, ARR at risk and drivers per account."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from crm.models import Account, ChurnScore
from tools.account_metrics import ACCOUNT_DEFAULT_FILTERS, ACCOUNT_FILTERS
from tools.churn.active import ActiveModel, load_active_model
from tools.churn.features import AccountScope, ComponentSource, FeatureTable, active_on, compute_features
from tools.churn.phrases import driver_phrase, driver_value, phrase_inputs
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
from tools.churn.snapshots import stored_scores
from tools.churn.state import KeptSource
from tools.common import data_as_of, require_account
from tools.errors import ToolInputError
from tools.filters import conditions, describe, normalise_filters

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
    source: ComponentSource | None = None,
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
        source=source,
    )
    if model.scorer is not None:
        prob = model.probability(table)
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
    """Driver groups and their contributions per row: raw (pre-calibration) log-odds of the trained
    model, or health points for rules."""
    if model.scorer is None:
        return [rule.group for rule in RULES], rule_points(table)
    return model.scorer.group_contributions(table)


def _top_groups(
    values: np.ndarray, names: Sequence[str], k: int, *, raising: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column indexes of the `k` largest positive (raising) or most negative values,
    strongest first, ties by name; and a mask of which of those k exist."""
    m = values.shape[0]
    if k <= 0 or not names:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0), dtype=bool)
    by_name = np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)
    ordered = values[:, by_name]
    wanted = ordered > 0 if raising else ordered < 0
    key = np.where(wanted, -ordered if raising else ordered, np.inf)
    top = np.argsort(key, axis=1, kind="stable")[:, :k]  # stable: equal values stay in name order
    return by_name[top], np.take_along_axis(wanted, top, axis=1)


def explain_rows(
    model: ActiveModel, table: FeatureTable, top_drivers: int
) -> list[tuple[list[Driver], list[Driver]]]:
    """Top risk-raising drivers and strongest protective factors of every row of `table`."""
    groups, contrib = group_contributions(model, table)
    unit = "log_odds" if model.scorer is not None else "health_points"
    raise_idx, raise_ok = _top_groups(contrib, groups, top_drivers, raising=True)
    shown = PROTECTIVE_SHOWN if model.scorer is not None else 0
    lower_idx, lower_ok = _top_groups(contrib, groups, shown, raising=False)
    out: list[tuple[list[Driver], list[Driver]]] = []
    for i, row in enumerate(table.views()):

        def make(k: int, row: Mapping[str, Any] = row, values: np.ndarray = contrib[i]) -> Driver:
            return Driver(
                feature=groups[k],
                value=driver_value(groups[k], row),
                contribution=float(values[k]),
                unit=unit,
                phrase=driver_phrase(groups[k], row),
            )

        raising = [make(int(k)) for k, ok in zip(raise_idx[i], raise_ok[i], strict=True) if ok]
        protective = [make(int(k)) for k, ok in zip(lower_idx[i], lower_ok[i], strict=True) if ok]
        out.append((raising, protective))
    return out


def _json_value(value: float | str | None) -> str:
    """`json.dumps(value)` for a driver value, without its per-call overhead."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    return repr(float(value)) if math.isfinite(value) else json.dumps(value)


def driver_json(model: ActiveModel, table: FeatureTable, top_drivers: int) -> list[str]:
    """The top risk-raising drivers of every row as JSON text (the `churn_scores.drivers` value).

    The same text as `json.dumps` of `Driver.model_dump(mode="json")` from `explain_rows`, built
    without pydantic objects: writing a million rows is dominated by this step. A driver's
    text is its fixed part (feature, value, unit, phrase) around its contribution; the fixed
    part is built once per distinct input values of the group, which repeat a lot.
    """
    groups, contrib = group_contributions(model, table)
    n = len(table)
    unit = json.dumps("log_odds" if model.scorer is not None else "health_points")
    idx, ok = _top_groups(contrib, groups, top_drivers, raising=True)
    if idx.shape[1] == 0:
        return ["[]"] * n
    columns = table.column_lists()
    ranks: list[tuple[list[str], list[float], list[str]]] = []
    for r in range(idx.shape[1]):
        picked, present = idx[:, r], ok[:, r]
        heads = np.full(n, "", dtype=object)
        tails = np.full(n, "", dtype=object)
        for k in np.unique(picked[present]).tolist():
            rows = np.flatnonzero(present & (picked == k))
            heads[rows], tails[rows] = _group_parts(table, columns, groups[k], rows, unit)
        values = np.take_along_axis(contrib, idx[:, r : r + 1], axis=1)[:, 0].tolist()
        ranks.append((heads.tolist(), values, tails.tolist()))
    count = ok.sum(axis=1)  # drivers present are the first `count` ranks of a row
    out = [""] * n
    for m in range(idx.shape[1] + 1):
        where = np.flatnonzero(count == m).tolist()
        if not where:
            continue
        if m == 0:
            texts = ["[]"] * len(where)
        else:
            per_rank = [[f"{h[i]}{c[i]!r}{t[i]}" for i in where] for h, c, t in ranks[:m]]
            texts = ["[" + ", ".join(parts) + "]" for parts in zip(*per_rank, strict=True)]
        for i, text in zip(where, texts, strict=True):
            out[i] = text
    return out


def _fixed_parts(g: str, names: tuple[str, ...], key: tuple[Any, ...], unit: str) -> tuple[str, str]:
    """A driver's JSON text before and after its contribution, for these phrase inputs."""
    row = dict(zip(names, key, strict=True))
    return (
        f'{{"feature": {json.dumps(g)}, "value": {_json_value(driver_value(g, row))}, "contribution": ',
        f', "unit": {unit}, "phrase": {encode_basestring_ascii(driver_phrase(g, row))}}}',
    )


def _group_parts(
    table: FeatureTable, columns: Mapping[str, list[Any] | None], g: str, rows: np.ndarray, unit: str
) -> tuple[np.ndarray, np.ndarray]:
    """The fixed JSON parts of group `g`'s driver for each of `rows`, built once per distinct
    input: found with numpy for a group phrased from its own number, with a dict otherwise."""
    names = phrase_inputs(g)
    if names == (g,) and g in table.numeric:
        # distinct by bit pattern, so -0.0 and 0.0 keep their own text as they would one by one
        bits, inverse = np.unique(table.numeric[g][rows].view(np.int64), return_inverse=True)
        uniq = bits.view(np.float64)
        built = [_fixed_parts(g, names, (None if v != v else v,), unit) for v in uniq.tolist()]  # v != v: NaN
        heads = np.array([h for h, _ in built], dtype=object)
        tails = np.array([t for _, t in built], dtype=object)
        return heads[inverse], tails[inverse]
    picked = rows.tolist()
    keys = list(
        zip(
            *[
                [None] * len(picked) if c is None else [c[i] for i in picked]
                for c in [columns[f] for f in names]
            ],
            strict=True,
        )
    )
    fixed = {key: _fixed_parts(g, names, key, unit) for key in set(keys)}
    pairs = [fixed[key] for key in keys]
    return np.array([h for h, _ in pairs], dtype=object), np.array([t for _, t in pairs], dtype=object)


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
    kind = "Boosted trees" if model.method == "gradient_boosting" else "Logistic regression"
    return f"{kind} {model.version} trained on {model.source}{when}{auc}."


def count_bands(probability: np.ndarray, bands: tuple[float, float]) -> dict[str, int]:
    """Accounts per band (the same thresholds as `band_of`)."""
    low, high = bands
    n_high = int(np.count_nonzero(probability >= high))
    n_low = int(np.count_nonzero(probability < low))
    return {"high": n_high, "medium": len(probability) - n_high - n_low, "low": n_low}


def _shown_from_snapshot(
    session: Session, model: ActiveModel, day: dt.date | None, shown: Sequence[str], probability: np.ndarray
) -> Assessment:
    """Features of the shown accounts (in the order given) with their kept probabilities."""
    if not shown:
        empty = FeatureTable.concat([])
        return Assessment(model=model, as_of=day, table=empty, probability=np.array([]), health=np.array([]))
    part = assess(session, as_of=day, scope=AccountScope(ids=tuple(shown)), model=model)
    position = {str(a): i for i, a in enumerate(part.table.ids)}
    table = part.table.take([position[a] for a in shown])
    prob = np.asarray(probability, dtype=np.float64)
    return Assessment(model=model, as_of=day, table=table, probability=prob, health=100.0 * (1.0 - prob))


def churn_risk(
    *,
    session: Session,
    account_id: str | None = None,
    filters: dict[str, str | list[str]] | None = None,
    as_of: dt.date | None = None,
    limit: int = 20,
    band_thresholds: tuple[float, float] = DEFAULT_BANDS,
    top_drivers: int = 3,
    order_by: Literal["probability", "arr_at_risk"] = "probability",
) -> ChurnRiskResult:
    """Estimate the probability that accounts churn within 90 days, with the drivers behind it.

    Give `account_id` for one account, or `filters` for a ranked list (highest probability
    first, ties by account id). Each account gets a probability, a band (low < 0.2 ≤ medium
    < 0.5 ≤ high by default), arr_at_risk = arr × probability, health = 100 × (1 − probability)
    and its top drivers with plain-language evidence ("usage down 41% over the last 4 weeks").
    Drivers are contributions to the trained model's raw log-odds (coef × (x − mean) / scale for
    logistic regression, TreeSHAP values for boosted trees); when the rule-based fallback is
    active the output says so and drivers are health points.

    Args:
        account_id: one account id, e.g. "ACME-0042". Leave empty to rank many accounts.
        filters: account filters for the ranked list, e.g. {"segment": "Enterprise"}; keys:
            segment, region, plan, industry, owner, status. Status defaults to "active".
        as_of: score as of this date (YYYY-MM-DD); defaults to the data's as-of date.
        limit: how many accounts to list (1–1000); totals cover all matching accounts.
        band_thresholds: [medium_from, high_from] probability thresholds.
        top_drivers: how many risk-raising drivers to show per account (0–10).
        order_by: rank the list by "probability" (default) or by "arr_at_risk" (arr × probability).
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
    stored = (
        None if account_id is not None else stored_scores(session, day=day, model=model, where=scope.where)
    )
    if stored is None:
        result = assess(session, as_of=day, scope=scope, model=model)
        ids, arr, prob = result.table.ids, result.table.numeric["arr"], result.probability
    else:
        ids, arr, prob = stored.ids, stored.arr, stored.probability
    n = len(ids)
    key = -(arr * prob) if order_by == "arr_at_risk" else -prob
    order = np.argsort(key, kind="stable")  # rows are sorted by id: ties by id
    shown = [int(i) for i in order[:limit]]
    if stored is not None:  # features and drivers only for the accounts shown
        result = _shown_from_snapshot(session, model, day, [str(ids[i]) for i in shown], prob[shown])
        shown = list(range(len(shown)))
    accounts = _account_results(session, result, shown, bands, top_drivers)
    band_counts = count_bands(prob, bands)
    total_arr = float(arr.sum()) if n else 0.0
    total_at_risk = float((arr * prob).sum()) if n else 0.0
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
        if stored is not None:
            explanation += (
                f" Scores read from the snapshot kept for {day} (`valuechain churn score`); "
                "drivers computed for the accounts shown."
            )
    return ChurnRiskResult(
        as_of=day,
        model=model_info(model),
        accounts=accounts,
        matched=n,
        band_counts=band_counts,
        total_arr=total_arr,
        total_arr_at_risk=total_at_risk,
        source="computed" if stored is None else "snapshot",
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
    chunk: int = 50_000,
    keep_state: bool = True,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreSnapshotResult:
    """Score every account active on `as_of` in one batch and keep the scores in `churn_scores`.

    Features come from the bulk queries, probabilities from the vectorised model, drivers are
    chosen with numpy per chunk, and rows are bulk-inserted. Rows of an earlier run for the
    same date and model version are replaced; rows of other dates are never touched, so an
    account that churns later keeps the score it had. `rank` and list-mode `churn_risk` read
    this snapshot instead of recomputing every account (tools/churn/snapshots.py).

    With `keep_state` (default) the history features come from the kept feature state
    (tools/churn/state.py), advanced with the rows dated since it, or rebuilt when it cannot
    be used (`rebuild` forces that); the state is then kept at this date for the next run.
    `progress(done, total)` is called after each chunk of rows is written (a batch job shows it).
    """
    bands = check_bands(band_thresholds)
    model = load_active_model(session)
    day = resolve_as_of(session, as_of, model)
    if day is None:
        raise ToolInputError("the database holds no dated data; pass an explicit as_of date (YYYY-MM-DD)")
    source = KeptSource(rebuild=rebuild) if keep_state and model.uses_history else None
    result = assess(session, as_of=day, scope=AccountScope(where=active_on(day)), model=model, source=source)
    stale = (ChurnScore.as_of == day, ChurnScore.model_version == model.version)
    replaced = session.scalar(select(func.count()).select_from(ChurnScore).where(*stale)) or 0
    session.execute(delete(ChurnScore).where(*stale))
    n = len(result.table)
    low, high = bands
    labels = np.where(result.probability < low, "low", np.where(result.probability < high, "medium", "high"))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        drivers = driver_json(model, result.table.take(np.arange(start, stop)), top_drivers)
        _insert_scores(
            session,
            day,
            model.version,
            result.table.ids[start:stop],
            result.probability[start:stop],
            labels[start:stop],
            drivers,
        )
        if progress is not None:
            progress(stop, n)
    session.flush()
    return ScoreSnapshotResult(
        as_of=day,
        model_version=model.version,
        method=model.method,
        accounts=n,
        replaced=int(replaced or 0),
        band_counts=count_bands(result.probability, bands),
        features=source.use.how if source is not None and source.use is not None else "read",
        features_note=source.use.reason if source is not None and source.use is not None else "",
    )


def _insert_scores(
    session: Session,
    day: dt.date,
    version: str,
    ids: np.ndarray,
    probability: np.ndarray,
    bands: np.ndarray,
    drivers: Sequence[str],
) -> None:
    """Bulk insert of churn_scores rows with the drivers already as JSON text."""
    conn = session.connection()
    columns = ("account_id", "as_of", "model_version", "probability", "band", "drivers")
    style = conn.dialect.paramstyle
    if style not in ("qmark", "format", "pyformat"):  # pragma: no cover - SQLite and psycopg use these
        session.execute(
            insert(ChurnScore),
            [
                dict(zip(columns, (str(a), day, version, float(p), str(b), json.loads(d)), strict=True))
                for a, p, b, d in zip(ids, probability, bands, drivers, strict=True)
            ],
        )
        return
    to_db = ChurnScore.__table__.c.as_of.type.bind_processor(conn.dialect)
    stored_day = to_db(day) if to_db is not None else day
    mark = "?" if style == "qmark" else "%s"
    sql = f"INSERT INTO churn_scores ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    rows = [
        (a, stored_day, version, p, b, d)
        for a, p, b, d in zip(ids.tolist(), probability.tolist(), bands.tolist(), drivers, strict=True)
    ]
    if rows:
        conn.exec_driver_sql(sql, rows)
