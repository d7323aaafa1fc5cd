"""What the model reads back from a tool: helpers for the short projections of tool results.

The embedded model evaluates ~50–70 prompt tokens/s on this machine, so every tool result
it reads costs seconds. Each tool's projection (beside its result model, named in the tool
registry) keeps the identifiers and the figures an answer quotes and drops the rest (inputs
echo, per-row metadata); `view` then rounds numbers for reading (money to whole units,
ratios to 3 decimals) and drops empty values. The full result is logged unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic_core import to_jsonable_python

MAX_ROWS = 10
"""Rows of a long list the model reads; the rest are counted."""


def num(x: Any) -> Any:
    """Round a float for reading: |x| ≥ 100 → integer, ≥ 1 → 2 decimals, else 3 decimals."""
    if isinstance(x, bool) or not isinstance(x, float):
        return x
    if abs(x) >= 100:
        return round(x)
    return round(x, 2) if abs(x) >= 1 else round(x, 3)


def pick(obj: Any, *keys: str) -> dict[str, Any]:
    """`keys` of a model (attributes) or a mapping, in that order; missing ones are None."""
    if isinstance(obj, Mapping):
        return {k: obj.get(k) for k in keys}
    return {k: getattr(obj, k, None) for k in keys}


def _clean(obj: Any) -> Any:
    """Drop nulls and empty containers, round floats, recursively."""
    if isinstance(obj, dict):
        out = {k: _clean(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not None and v != [] and v != {}}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return num(obj)


def view(projected: Any) -> Any:
    """A projection as plain JSON data for the model: dates as ISO text, floats rounded, empties dropped."""
    return _clean(to_jsonable_python(projected))


def view_json(projected: Any) -> str:
    """`view` as the compact JSON the model reads."""
    return json.dumps(view(projected), ensure_ascii=False, separators=(",", ":"))
