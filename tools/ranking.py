"""The `rank` tool: order accounts, activities or initiatives by a metric (SPEC §5.2).

Each entity has a registry of metrics with a natural order (the end to look at first).
Account metrics are either a SQL expression (filtered, sorted and limited in the database,
so ranking 100k+ accounts loads only the rows shown) or a Python function computing values
for the filtered set. The account metric types and the account filters live in
`tools.account_metrics`, below both this module and the churn package, whose metrics
(churn_probability, arr_at_risk, health) this module imports: ranking depends on churn, never
the reverse. An extension adds its own with `register_account_metric`.

Ties break by id; missing values (null) are listed last in either order.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.orm import Session

from crm.models import Account, Initiative, Subscription, SupportTicket, ValueChainActivity
from tools.account_metrics import (
    ACCOUNT_DEFAULT_FILTERS,
    ACCOUNT_FILTERS,
    AccountMetric,
    AccountMetricContext,
    MetricSpec,
    MetricValue,
    Order,
    Scalar,
    Source,
    StoredValues,
    Unit,
    days_between,
)
from tools.activities import ActivityScore, resolve_period, score_activities
from tools.churn.rank_metrics import CHURN_METRICS
from tools.common import byte_order, data_as_of
from tools.errors import ToolInputError, unknown
from tools.filters import FilterColumn, Normalised, conditions, describe, normalise_filters
from tools.projection import pick

Entity = Literal["accounts", "activities", "initiatives"]
ENTITIES: tuple[Entity, ...] = get_args(Entity)
MAX_LIMIT = 1000
_SINGULAR = {"account": "accounts", "activity": "activities", "initiative": "initiatives"}
def _days_to_renewal(ctx: AccountMetricContext) -> Select[Any, Any]:
    """Days from as_of to the soonest renewal of the account's active subscriptions."""
    return (
        select(Subscription.account_id, ctx.days_between(func.min(Subscription.renewal_date), ctx.as_of_sql))
        .where(Subscription.status == "active")
        .group_by(Subscription.account_id)
    )


def _tenure_days(ctx: AccountMetricContext) -> ColumnElement[Any]:
    # Tenure runs to the churn date for churned accounts, else to as_of.
    end = case(
        (and_(Account.churned_at.is_not(None), Account.churned_at < ctx.as_of_sql), Account.churned_at),
        else_=ctx.as_of_sql,
    )
    return ctx.days_between(end, Account.created_at)


def _open_tickets(ctx: AccountMetricContext) -> Select[Any, Any]:
    """Tickets open on as_of (opened by then, not closed by then), per account."""
    return (
        select(SupportTicket.account_id, func.count(SupportTicket.id))
        .where(
            SupportTicket.opened_at <= ctx.as_of_sql,
            (SupportTicket.closed_at.is_(None)) | (SupportTicket.closed_at > ctx.as_of_sql),
        )
        .group_by(SupportTicket.account_id)
    )


ACCOUNT_METRICS: dict[str, AccountMetric] = {
    m.name: m
    for m in (
        AccountMetric("arr", "annual recurring revenue", "desc", "currency", sql=lambda ctx: Account.arr),
        AccountMetric(
            "days_to_renewal",
            "days from as_of to the active subscription's renewal date (negative = overdue)",
            "asc",
            "days",
            grouped=_days_to_renewal,
        ),
        AccountMetric(
            "tenure_days",
            "days as a customer (to the churn date for churned accounts)",
            "desc",
            "days",
            sql=_tenure_days,
        ),
        AccountMetric(
            "open_tickets",
            "support tickets open on as_of",
            "desc",
            "count",
            grouped=_open_tickets,
            missing_as=0,
        ),
    )
}

for _metric in CHURN_METRICS:  # churn_probability, arr_at_risk, health
    ACCOUNT_METRICS[_metric.name] = _metric


def register_account_metric(metric: AccountMetric, *, replace: bool = False) -> None:
    """Make `metric` rankable for accounts (an extension's own metric)."""
    if metric.name in ACCOUNT_METRICS and not replace and ACCOUNT_METRICS[metric.name] != metric:
        raise ValueError(f"account metric {metric.name!r} is already registered")
    ACCOUNT_METRICS[metric.name] = metric


def account_metrics() -> dict[str, AccountMetric]:
    """The account metrics, the churn ones included."""
    return dict(sorted(ACCOUNT_METRICS.items()))



# ---------------------------------------------------------------------------- activities

_ActivityGetter = Callable[[ActivityScore], MetricValue]

ACTIVITY_METRICS: dict[str, tuple[MetricSpec, _ActivityGetter]] = {
    spec.name: (spec, getter)
    for spec, getter in (
        (
            MetricSpec(
                "margin_leak",
                "max(0, C − ΣC·value_share): spend above its share of value",
                "desc",
                "currency",
            ),
            lambda s: s.margin_leak,
        ),
        (
            MetricSpec(
                "value_cost_index",
                "value_share / cost_share (value per unit of cost)",
                "asc",
                "ratio",
            ),
            lambda s: s.value_cost_index,
        ),
        (
            MetricSpec(
                "performance_gap",
                "relative shortfall against target (positive = underperforming)",
                "desc",
                "ratio",
            ),
            lambda s: s.performance_gap,
        ),
        (MetricSpec("cost", "annual cost", "desc", "currency"), lambda s: s.annual_cost),
        (MetricSpec("value_score", "customer-value score 0–10", "desc", "score"), lambda s: s.value_score),
        (
            MetricSpec("non_value_added_cost", "(AQ − SQ)·SP, or AQ·SP if unnecessary", "desc", "currency"),
            lambda s: s.non_value_added_cost,
        ),
    )
}
ACTIVITY_FILTERS: dict[str, FilterColumn] = {
    "kind": ValueChainActivity.kind,
    "porter_category": ValueChainActivity.porter_category,
    "owner_team": ValueChainActivity.owner_team,
    "period": ValueChainActivity.period,
}

# ---------------------------------------------------------------------------- initiatives

_InitiativeGetter = Callable[[Initiative], MetricValue]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


INITIATIVE_METRICS: dict[str, tuple[MetricSpec, _InitiativeGetter]] = {
    spec.name: (spec, getter)
    for spec, getter in (
        (
            MetricSpec("roi", "est_annual_benefit / est_cost (null if est_cost = 0)", "desc", "ratio"),
            lambda i: _ratio(i.est_annual_benefit, i.est_cost),
        ),
        (
            MetricSpec("net_benefit", "est_annual_benefit − est_cost (first year)", "desc", "currency"),
            lambda i: i.est_annual_benefit - i.est_cost,
        ),
        (
            MetricSpec("payback_years", "est_cost / est_annual_benefit", "asc", "years"),
            lambda i: _ratio(i.est_cost, i.est_annual_benefit),
        ),
        (MetricSpec("est_cost", "estimated one-off cost", "desc", "currency"), lambda i: i.est_cost),
        (
            MetricSpec("est_annual_benefit", "estimated benefit per year", "desc", "currency"),
            lambda i: i.est_annual_benefit,
        ),
    )
}
INITIATIVE_FILTERS: dict[str, FilterColumn] = {
    "status": Initiative.status,
    "type": Initiative.type,
    "advantage": Initiative.advantage,
    "owner": Initiative.owner,
    "activity_id": Initiative.activity_id,
    "porter_category": ValueChainActivity.porter_category,
    "period": ValueChainActivity.period,
}

# ---------------------------------------------------------------------------- result


class RankItem(BaseModel):
    rank: int
    id: str
    name: str
    value: MetricValue
    context: dict[str, Scalar]


class RankInputs(BaseModel):
    entity: Entity
    metric: str
    order: Order
    filters: dict[str, list[str]]
    limit: int
    as_of: dt.date | None
    period: str | None


class RankResult(BaseModel):
    """Entities ordered by a metric; ties by id, nulls last."""

    entity: Entity
    metric: str
    metric_description: str
    unit: Unit
    order: Order
    filters: dict[str, list[str]]
    as_of: dt.date | None
    period: str | None
    items: list[RankItem]
    total_matching: int
    missing_values: int
    source: Source = Field(
        description="How the values were obtained: sql (in the database), computed (in Python over "
        "the filtered set) or snapshot (read from kept churn_scores of the active model and date)"
    )
    explanation: str
    inputs: RankInputs


RANK_CONTEXT = ("arr", "band", "top_driver", "segment", "quadrant", "owner")
"""The context fields of a ranked item the model reads."""


def project_rank(r: RankResult) -> dict[str, Any]:
    """What the model reads of `rank`: each item's id, name and value under the metric's own name."""
    return {
        "metric": r.metric,
        "as_of": r.as_of,
        "period": r.period,
        "total_matching": r.total_matching,
        "items": [
            {**pick(i, "rank", "id", "name"), r.metric: i.value, **pick(i.context, *RANK_CONTEXT)}
            for i in r.items
        ],
    }


def metric_specs(entity: str) -> dict[str, MetricSpec]:
    """The metrics rankable for `entity`, by name."""
    entity = _entity(entity)
    if entity == "accounts":
        return dict(account_metrics())
    if entity == "activities":
        return {k: v[0] for k, v in sorted(ACTIVITY_METRICS.items())}
    return {k: v[0] for k, v in sorted(INITIATIVE_METRICS.items())}


def filter_keys(entity: str) -> list[str]:
    """The filter keys accepted for `entity`."""
    table = {"accounts": ACCOUNT_FILTERS, "activities": ACTIVITY_FILTERS, "initiatives": INITIATIVE_FILTERS}
    return sorted(table[_entity(entity)])


def _entity(entity: str) -> Entity:
    key = entity.strip().lower()
    key = _SINGULAR.get(key, key)
    if key not in ENTITIES:
        raise unknown("entity", entity, ENTITIES)
    return cast(Entity, key)


def _sort_key(value: MetricValue, item_id: str, order: Order) -> tuple[bool, float, str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (True, 0.0, item_id)
    return (False, -value if order == "desc" else value, item_id)


def _fmt(value: MetricValue, unit: Unit) -> str:
    if value is None:
        return "n/a"
    if unit == "currency":
        return f"{value:,.0f}"
    if unit in ("days", "count"):
        return f"{value:,.0f}"
    if unit == "probability":
        return f"{value:.1%}"
    return f"{value:,.3g}"


@dataclass
class _Ranked:
    items: list[RankItem]
    total: int
    missing: int
    source: Source
    as_of: dt.date | None = None
    period: str | None = None


def _values_statement(spec: AccountMetric, ctx: AccountMetricContext) -> Select[Any, Any] | None:
    """SELECT (id, value) over the filtered accounts for a SQL metric; None for a Python one."""
    if spec.sql is not None:
        return select(Account.id.label("id"), spec.sql(ctx).label("value")).where(*ctx.conditions)
    if spec.grouped is not None:
        per_account = spec.grouped(ctx).subquery()
        key_col, raw = list(per_account.c)[:2]
        value = raw if spec.missing_as is None else func.coalesce(raw, spec.missing_as)
        return (
            select(Account.id.label("id"), value.label("value"))
            .select_from(Account)
            .outerjoin(per_account, key_col == Account.id)
            .where(*ctx.conditions)
        )
    return None


def _rank_in_sql(
    session: Session, values_stmt: Select[Any, Any], order: Order, limit: int
) -> tuple[list[tuple[str, MetricValue]], int, int]:
    """The top `limit` (id, value) rows of a SELECT (id, value), with the total and missing counts."""
    inner = values_stmt.subquery()
    value_col = inner.c.value
    # One pass: the window counts see every filtered row before LIMIT applies.
    stmt = (
        select(
            inner.c.id,
            value_col,
            func.count().over().label("total"),
            func.count(value_col).over().label("valued"),
        )
        .order_by(
            value_col.is_(None),
            value_col.desc() if order == "desc" else value_col.asc(),
            byte_order(session, inner.c.id),
        )
        .limit(limit)
    )
    result_rows = session.execute(stmt).all()
    shown = [(row[0], row[1]) for row in result_rows]
    if not result_rows:
        return shown, 0, 0
    return shown, result_rows[0][2], result_rows[0][2] - result_rows[0][3]


def _rank_accounts(
    session: Session, spec: AccountMetric, filters: Normalised, order: Order, limit: int, as_of: dt.date
) -> _Ranked:
    conds = tuple(conditions(filters, ACCOUNT_FILTERS))
    ctx = AccountMetricContext(session=session, as_of=as_of, conditions=conds)
    ranked: tuple[list[tuple[str, MetricValue]], int, int] | None = None  # (shown, total, missing)
    source: Source = "sql"
    stored = spec.stored(ctx) if spec.stored is not None else None
    if stored is not None:
        key = -stored.values if order == "desc" else stored.values
        top = np.argsort(key, kind="stable")[:limit]  # rows sorted by id: ties by id
        ranked = ([(stored.ids[i], float(stored.values[i])) for i in top], len(stored.ids), 0)
        source = "snapshot"
    elif (values_stmt := _values_statement(spec, ctx)) is not None:
        ranked = _rank_in_sql(session, values_stmt, order, limit)
    shown: list[tuple[str, MetricValue]]
    if ranked is not None:  # from kept values, or in SQL
        shown, total, missing = ranked
    elif spec.compute is not None:
        values = spec.compute(ctx)
        ids = ctx.ids()
        total = len(ids)
        ordered = sorted(((i, values.get(i)) for i in ids), key=lambda p: _sort_key(p[1], p[0], order))
        shown = ordered[:limit]
        missing = sum(1 for _, v in ordered if _sort_key(v, "", order)[0])
        source = "computed"
    else:  # pragma: no cover - AccountMetric.__post_init__ requires one of them
        raise ValueError(f"account metric {spec.name!r} has neither sql nor compute")
    ids_shown = [i for i, _ in shown]
    rows = {
        a.id: a
        for a in session.execute(
            select(
                Account.id,
                Account.name,
                Account.segment,
                Account.region,
                Account.plan,
                Account.industry,
                Account.owner,
                Account.status,
                Account.arr,
            ).where(Account.id.in_(ids_shown))
        )
    }
    extra = spec.context(ctx, ids_shown) if spec.context is not None and ids_shown else {}
    items = []
    for n, (account_id, value) in enumerate(shown, start=1):
        a = rows[account_id]
        context: dict[str, Scalar] = {
            "segment": a.segment,
            "region": a.region,
            "plan": a.plan,
            "industry": a.industry,
            "owner": a.owner,
            "status": a.status,
            "arr": a.arr,
        }
        context.update(extra.get(account_id, {}))
        items.append(RankItem(rank=n, id=account_id, name=a.name, value=value, context=context))
    return _Ranked(items=items, total=total, missing=missing, source=source, as_of=as_of)


def _rank_activities(
    session: Session, metric: str, filters: Normalised, order: Order, limit: int
) -> tuple[_Ranked, Normalised]:
    periods = filters.get("period")
    if periods is not None and len(periods) > 1:
        raise ToolInputError(f"rank activities within one period; got periods {', '.join(periods)}")
    period, _ = resolve_period(session, periods[0] if periods else None)
    filters = {**filters, "period": [period]}
    scored = score_activities(session=session, period=period).activities
    keep = [
        s
        for s in scored
        if ("kind" not in filters or s.kind in filters["kind"])
        and ("porter_category" not in filters or s.porter_category in filters["porter_category"])
        and ("owner_team" not in filters or s.owner_team in filters["owner_team"])
    ]
    getter = ACTIVITY_METRICS[metric][1]
    ordered = sorted(keep, key=lambda s: _sort_key(getter(s), s.id, order))
    items = [
        RankItem(
            rank=n,
            id=s.id,
            name=s.name,
            value=getter(s),
            context={
                "kind": s.kind,
                "porter_category": s.porter_category,
                "owner_team": s.owner_team,
                "period": period,
                "annual_cost": s.annual_cost,
                "value_score": s.value_score,
                "cost_share": s.cost_share,
                "value_share": s.value_share,
                "margin_leak": s.margin_leak,
                "quadrant": s.quadrant,
            },
        )
        for n, s in enumerate(ordered[:limit], start=1)
    ]
    missing = sum(1 for s in keep if getter(s) is None)
    return _Ranked(items=items, total=len(keep), missing=missing, source="computed", period=period), dict(
        sorted(filters.items())
    )


def _rank_initiatives(
    session: Session, metric: str, filters: Normalised, order: Order, limit: int
) -> _Ranked:
    stmt = (
        select(
            Initiative, ValueChainActivity.name, ValueChainActivity.porter_category, ValueChainActivity.period
        )
        .join(ValueChainActivity, ValueChainActivity.id == Initiative.activity_id)
        .where(*conditions(filters, INITIATIVE_FILTERS))
        .order_by(Initiative.id)
    )
    rows = [(r[0], r[1], r[2], r[3]) for r in session.execute(stmt)]
    getter = INITIATIVE_METRICS[metric][1]
    ordered = sorted(rows, key=lambda r: _sort_key(getter(r[0]), r[0].id, order))
    items = [
        RankItem(
            rank=n,
            id=ini.id,
            name=ini.description,
            value=getter(ini),
            context={
                "activity_id": ini.activity_id,
                "activity": activity_name,
                "porter_category": category,
                "period": period,
                "type": ini.type,
                "advantage": ini.advantage,
                "status": ini.status,
                "est_cost": ini.est_cost,
                "est_annual_benefit": ini.est_annual_benefit,
                "owner": ini.owner,
                "due": ini.due.isoformat() if ini.due else None,
            },
        )
        for n, (ini, activity_name, category, period) in enumerate(ordered[:limit], start=1)
    ]
    missing = sum(1 for r in rows if getter(r[0]) is None)
    return _Ranked(items=items, total=len(rows), missing=missing, source="computed")


def rank(
    *,
    session: Session,
    entity: Entity,
    metric: str,
    filters: dict[str, str | list[str]] | None = None,
    limit: int = 10,
    order: Order | None = None,
    as_of: dt.date | None = None,
) -> RankResult:
    """Rank accounts, value-chain activities or initiatives by a metric: a filtered top N.

    Metrics — accounts: arr, days_to_renewal (soonest first), tenure_days, open_tickets,
    churn_probability, arr_at_risk = arr × churn_probability, health (lowest first); activities:
    margin_leak, value_cost_index (lowest first), performance_gap, cost, value_score,
    non_value_added_cost; initiatives: roi = est_annual_benefit/est_cost, net_benefit =
    est_annual_benefit − est_cost, payback_years, est_cost, est_annual_benefit. Each metric has
    a natural order; ties break by id and missing values come last.

    Args:
        entity: "accounts", "activities" or "initiatives".
        metric: the metric to rank by (see above).
        filters: e.g. {"segment": "Enterprise", "region": ["EMEA", "NA"]}. Accounts: segment,
            region, plan, industry, owner, status (default "active"); activities: kind,
            porter_category, owner_team, period (default latest); initiatives: status, type,
            advantage, owner, activity_id, porter_category, period.
        limit: how many items to return (1–1000); total_matching counts them all.
        order: "desc" or "asc" to override the metric's natural order.
        as_of: date for day-based account metrics (YYYY-MM-DD); defaults to the data's date.
    """
    ent = _entity(entity)
    specs = metric_specs(ent)
    key = metric.strip().lower()
    if key not in specs:
        raise unknown("metric", metric, list(specs), ent)
    spec = specs[key]
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ToolInputError(f"limit must be between 1 and {MAX_LIMIT}; got {limit!r}")
    if order is not None and order not in ("desc", "asc"):
        raise unknown("order", order, ["desc", "asc"])
    resolved_order: Order = order or spec.order
    if ent == "accounts":
        norm = normalise_filters(
            session, filters, ACCOUNT_FILTERS, entity="accounts", defaults=ACCOUNT_DEFAULT_FILTERS
        )
        day = as_of or data_as_of(session)
        ranked = _rank_accounts(session, cast(AccountMetric, spec), norm, resolved_order, limit, day)
    elif ent == "activities":
        norm = normalise_filters(session, filters, ACTIVITY_FILTERS, entity="activities")
        ranked, norm = _rank_activities(session, key, norm, resolved_order, limit)
    else:
        norm = normalise_filters(session, filters, INITIATIVE_FILTERS, entity="initiatives")
        ranked = _rank_initiatives(session, key, norm, resolved_order, limit)

    direction = "highest first" if resolved_order == "desc" else "lowest first"
    when = f" as of {ranked.as_of}" if ranked.as_of else ""
    text = (
        f"{len(ranked.items)} of {ranked.total:,} {ent} ({describe(norm)}){when} ranked by {key} "
        f"({spec.description}), {direction}; ties by id."
    )
    if ranked.items:
        top = ranked.items[0]
        text += f" #1 {top.id} {top.name}: {_fmt(top.value, spec.unit)}."
    if ranked.missing:
        verb = "has" if ranked.missing == 1 else "have"
        text += f" {ranked.missing:,} {verb} no {key} value (listed last)."
    if ranked.source == "snapshot":
        text += " Values read from the scores kept for this date and the active model."
    return RankResult(
        entity=ent,
        metric=key,
        metric_description=spec.description,
        unit=spec.unit,
        order=resolved_order,
        filters=norm,
        as_of=ranked.as_of,
        period=ranked.period,
        items=ranked.items,
        total_matching=ranked.total,
        missing_values=ranked.missing,
        source=ranked.source,
        explanation=text,
        inputs=RankInputs(
            entity=ent,
            metric=key,
            order=resolved_order,
            filters=norm,
            limit=limit,
            as_of=ranked.as_of,
            period=ranked.period,
        ),
    )


__all__ = ["ACCOUNT_DEFAULT_FILTERS", "ACCOUNT_FILTERS", "AccountMetric", "AccountMetricContext", "StoredValues",
           "days_between", "rank", "register_account_metric"]
