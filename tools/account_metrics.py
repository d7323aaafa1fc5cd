"""Account metric types and account filters: what `tools.ranking` ranks accounts by, and what a
metric defined elsewhere (the churn package's) is built from. Below both, so neither imports the
other's way round: ranking imports the churn metrics, churn never imports ranking."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from sqlalchemy import ColumnElement, Date, Integer, Select, func, literal, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import QueryableAttribute, Session

from crm.models import Account
from tools.filters import FilterColumn

Order = Literal["desc", "asc"]
Unit = Literal["currency", "ratio", "days", "count", "score", "probability", "years", "points"]
Scalar = str | int | float | bool | None
MetricValue = int | float | None
SqlExpr = ColumnElement[Any] | QueryableAttribute[Any]

@dataclass(frozen=True)
class MetricSpec:
    """A rankable metric: its name, meaning, natural order and unit."""

    name: str
    description: str
    order: Order
    unit: Unit


# ---------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class AccountMetricContext:
    """What an account metric gets: the session, the as-of date and the filtered set.

    `conditions` are SQL conditions over `accounts` selecting the filtered set (already
    validated; status defaults to active). Use `ids()` when a list is easier than SQL.
    """

    session: Session
    as_of: dt.date
    conditions: tuple[ColumnElement[bool], ...]

    def ids(self) -> list[str]:
        """Ids of the filtered accounts, sorted."""
        return list(self.session.scalars(select(Account.id).where(*self.conditions).order_by(Account.id)))

    def days_between(self, later: SqlExpr, earlier: SqlExpr) -> ColumnElement[int]:
        """SQL for whole days from `earlier` to `later` (dates), on SQLite and PostgreSQL."""
        return days_between(self.session, later, earlier)

    @property
    def as_of_sql(self) -> ColumnElement[dt.date]:
        return literal(self.as_of, Date)


@dataclass(frozen=True)
class StoredValues:
    """Kept metric values of *every* filtered account: `ids` sorted in code-point order and
    `values` (no missing ones) in the same order."""

    ids: Sequence[str]
    values: np.ndarray


SqlMetric = Callable[[AccountMetricContext], SqlExpr]
ComputeMetric = Callable[[AccountMetricContext], Mapping[str, MetricValue]]
GroupedMetric = Callable[[AccountMetricContext], Select[Any, Any]]
ContextHook = Callable[[AccountMetricContext, Sequence[str]], Mapping[str, Mapping[str, Scalar]]]
StoredHook = Callable[[AccountMetricContext], StoredValues | None]
Source = Literal["sql", "computed", "snapshot"]


@dataclass(frozen=True)
class AccountMetric(MetricSpec):
    """An account metric, from exactly one of:

    - `sql`: a SQL expression over the `accounts` row (e.g. `Account.arr`);
    - `grouped`: a SELECT of (account_id, value) grouped by account over another table; it is
      outer-joined to `accounts` (fast on PostgreSQL, where correlated subqueries run once
      per row) and accounts without a row get `missing_as`;
    - `compute`: values for the filtered set computed in Python, keyed by account id (ids
      left out count as null).

    `context`, if given, adds fields to the shown items. `stored`, if given, may offer kept
    values (e.g. a churn-score snapshot) covering every filtered account; the ranking then
    sorts them (ties by id) instead of using the metric's own source. It returns None when
    it has nothing complete to offer.
    """

    sql: SqlMetric | None = None
    grouped: GroupedMetric | None = None
    compute: ComputeMetric | None = None
    context: ContextHook | None = None
    missing_as: MetricValue = None
    stored: StoredHook | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.sql, self.grouped, self.compute)) != 1:
            raise ValueError(f"account metric {self.name!r} needs exactly one of sql=, grouped= or compute=")


def days_between(session: Session, later: SqlExpr, earlier: SqlExpr) -> ColumnElement[int]:
    """SQL for whole days from `earlier` to `later`; portable over SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sql_cast(func.julianday(later) - func.julianday(earlier), Integer)
    if dialect == "postgresql":
        return cast(ColumnElement[int], later - earlier)  # date − date is an integer of days
    raise NotImplementedError(f"days_between is not implemented for {dialect!r}")


ACCOUNT_FILTERS: dict[str, FilterColumn] = {
    "segment": Account.segment,
    "region": Account.region,
    "plan": Account.plan,
    "industry": Account.industry,
    "owner": Account.owner,
    "status": Account.status,
}
ACCOUNT_DEFAULT_FILTERS = {"status": ["active"]}
