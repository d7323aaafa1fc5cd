"""Bounded input types and the timestamp format shared by every interface (issue #18).

One place says how large a number or how far a date may be, so the API's query, path and body
parameters, the tool-call bodies and the CLI refuse the same out-of-range input with a clear
message instead of failing deep inside SQL or date arithmetic: an id beyond 64 bits overflows
SQLite (beyond 32 bits, PostgreSQL's `integer`), `as_of=0001-01-01` minus a look-back window overflows `datetime.date`,
`cooldown_days=1000000000` overflows a `timedelta`.

    limit: Annotated[int, Query(ge=1, le=500)] = 50     # a page size is chosen per route
    offset: Annotated[Offset, Query()] = 0
    as_of: Annotated[Day | None, Query(description=...)] = None
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, WithJsonSchema

INT64_MAX = 2**63 - 1
"""The largest integer SQLite (INTEGER) or PostgreSQL (bigint) can compare a column with."""
INT32_MAX = 2**31 - 1
"""The largest value of an `Integer` column on PostgreSQL (ids and versions are such columns)."""
MAX_OFFSET = 1_000_000_000
"""No list is paged past a billion rows."""
MAX_DAYS = 3650
"""Look-back and cool-down windows are at most ten years."""
MIN_DAY = dt.date(1900, 1, 1)
MAX_DAY = dt.date(2199, 12, 31)
"""Dates a caller may give: wide enough for any CRM history, far enough from `date.min` and
`date.max` that windows of `MAX_DAYS` around them stay valid dates."""
DAY_RANGE = f"{MIN_DAY.isoformat()} to {MAX_DAY.isoformat()}"

RowId = Annotated[int, Field(ge=1, le=INT32_MAX)]
"""A database row id or version number: 1 to 2**31 - 1 (PostgreSQL refuses to compare an
`integer` column with anything larger)."""
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]
"""How many rows to skip: 0 to a billion."""
Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]
"""A window in days: 0 to ten years."""
Day = Annotated[
    dt.date,
    Field(ge=MIN_DAY, le=MAX_DAY,
          json_schema_extra={"formatMinimum": MIN_DAY.isoformat(), "formatMaximum": MAX_DAY.isoformat()}),
]
"""A calendar day from 1900-01-01 to 2199-12-31."""

INT_FIELD_BOUNDS: dict[str, tuple[int, int]] = {
    "limit": (1, 1000),
    "offset": (0, MAX_OFFSET),
    "top_drivers": (0, 20),
    "stale_days": (0, MAX_DAYS),
    "cooldown_days": (0, MAX_DAYS),
    "rejection_days": (0, MAX_DAYS),
}
"""Bounds for integer arguments by name, for argument models shared with the model (whose
schemas must not change): callers that can be told (API, CLI) get these on top. Any other
integer argument is bounded to 64 bits."""


def int_bounds(name: str) -> tuple[int, int]:
    """The (min, max) an integer argument called `name` may take."""
    return INT_FIELD_BOUNDS.get(name, (-INT64_MAX, INT64_MAX))


def has_bad_text(value: Any) -> str | None:
    """Why a JSON value's text cannot be stored, or None: a NUL character (PostgreSQL refuses it,
    SQLite's LIKE stops at it) or a lone UTF-16 surrogate (not encodable as UTF-8). Keys and
    nested values are searched too."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "text contains a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text contains a lone UTF-16 surrogate (e.g. \\ud800 without its pair), which is not valid Unicode"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def utc_iso(value: dt.datetime) -> str:
    """A timestamp as ISO 8601 with its UTC offset; naive values are UTC (the database's convention)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


UtcDateTime = Annotated[
    dt.datetime,
    PlainSerializer(utc_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
"""A timestamp that is written in JSON with its UTC offset (`2026-09-30T12:00:00Z`), as RFC 3339
and the OpenAPI `date-time` format require; in Python it stays the naive UTC value the database
holds, so comparisons elsewhere are unchanged."""

NAIVE_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"

CrmDateTime = Annotated[
    dt.datetime,
    WithJsonSchema(
        {"type": "string", "pattern": NAIVE_DATE_TIME,
         "description": "A date-time as the CRM records it, without a UTC offset (ISO 8601 local time)"},
        mode="serialization",
    ),
]
"""A time of day from the CRM's own data (a ticket opened at 09:30), which has no time zone: written
without an offset and documented so, rather than claiming the RFC 3339 `date-time` format."""
