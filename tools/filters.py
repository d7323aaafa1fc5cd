"""Filter validation shared by the tools: known keys, values checked against the data.

A filter is `{key: value}` or `{key: [values]}` (any of the values matches). A value that
does not occur in the data is a `ToolInputError` listing the values that do; a value that
differs only in case is mapped to the stored spelling ("enterprise" → "Enterprise").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import QueryableAttribute, Session

from tools.errors import ToolInputError, did_you_mean, unknown

FilterInput = Mapping[str, Any] | None
Normalised = dict[str, list[str]]
FilterColumn = QueryableAttribute[Any]

SHOWN_VALUES = 25


def parse_filter_items(items: Iterable[str], *, option: str = "filter") -> dict[str, str | list[str]] | None:
    """`key=value[,value]` items (a query string's or a command line's) as filters; repeated keys
    merge, None when there are none. A malformed item is a `ToolInputError` naming `option`."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise ToolInputError(f"{option} takes key=value (e.g. segment=Enterprise); got {item!r}")
        out.setdefault(key.strip(), []).extend(values)
    if not out:
        return None
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _values_of(key: str, raw: Any) -> list[str]:
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        values = [str(raw)]
    elif isinstance(raw, list | tuple | set | frozenset):
        values = [str(v) for v in raw if v is not None]
    else:
        raise ToolInputError(f'filter "{key}" needs a string or a list of strings; got {raw!r}')
    values = [v.strip() for v in values if v.strip()]
    if not values:
        raise ToolInputError(f'filter "{key}" needs at least one value')
    return values


def _canonical(session: Session, key: str, column: FilterColumn, value: str, entity: str) -> str:
    """The stored spelling of `value` in `column`, or a ToolInputError listing stored values."""
    if session.execute(select(column).where(column == value).limit(1)).first() is not None:
        return value
    found = [str(v) for v in session.scalars(select(column).where(column.is_not(None)).distinct()) if v != ""]
    found.sort()
    same = [v for v in found if v.casefold() == value.casefold()]
    if len(same) == 1:
        return same[0]
    shown = ", ".join(f'"{v}"' for v in found[:SHOWN_VALUES]) or "(none in the data)"
    more = f" and {len(found) - SHOWN_VALUES} more" if len(found) > SHOWN_VALUES else ""
    return_hint = did_you_mean(value, found)
    raise ToolInputError(f'no {entity} with {key} "{value}"; valid {key} values: {shown}{more}{return_hint}')


def normalise_filters(
    session: Session,
    filters: FilterInput,
    columns: Mapping[str, FilterColumn],
    *,
    entity: str,
    defaults: Mapping[str, list[str]] | None = None,
) -> Normalised:
    """Validated filters as {key: sorted distinct stored values}, keys sorted, defaults added.

    Args:
        filters: the caller's filters.
        columns: filter key → the column it tests.
        entity: the entity name for messages ("accounts").
        defaults: filters applied when the caller does not give that key (not validated).
    """
    out: Normalised = {}
    for raw_key, raw in (filters or {}).items():
        key = str(raw_key).strip().lower()
        if key not in columns:
            raise unknown("filter", raw_key, sorted(columns), entity)
        values = [_canonical(session, key, columns[key], v, entity) for v in _values_of(key, raw)]
        out[key] = sorted({*out.get(key, []), *values})
    for key, values in (defaults or {}).items():
        out.setdefault(key, sorted(values))
    return dict(sorted(out.items()))


def conditions(filters: Normalised, columns: Mapping[str, FilterColumn]) -> list[ColumnElement[bool]]:
    """SQL conditions for normalised filters (IN over the allowed values)."""
    return [columns[key].in_(values) for key, values in filters.items()]


def describe(filters: Normalised) -> str:
    """'segment = Enterprise, region in [EMEA, NA]' for explanations; 'no filters' if empty."""
    if not filters:
        return "no filters"
    parts = []
    for key, values in filters.items():
        parts.append(f"{key} = {values[0]}" if len(values) == 1 else f"{key} in [{', '.join(values)}]")
    return ", ".join(parts)


def column_values(session: Session, columns: Mapping[str, FilterColumn], keys: Iterable[str], *,
                  limit: int = 10_000) -> dict[str, list[str]]:
    """The values each filter key in `keys` holds in the data (at most `limit` per key, sorted):
    which field a named scope belongs to ("APAC" is a team and a region)."""
    out: dict[str, list[str]] = {}
    for key in keys:
        column = columns[key]
        values = session.scalars(select(column).where(column.is_not(None), column != "").distinct().limit(limit))
        out[key] = sorted(str(v) for v in values)
    return out
