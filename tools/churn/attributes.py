"""Which custom fields (`accounts.attributes`) a churn model may use, as what, and why.

Every field gets one decision with a reason the training report shows:

- **excluded**: empty, constant, identifier-like unique integers (a customer number, a row
  number: ≥ 95 % distinct integers), or high-cardinality text whose 20 most frequent values
  cover under half of the rows (surnames, ids, free text) — a model would memorise them;
- **numeric**: numbers (numeric strings too); a two-valued field (a 0/1 flag) is a number,
  which for both model families is the same as one category against the other;
- **code**: 3–10 distinct integers (e.g. a number of products 1–4): used as a number *and*
  one indicator per value, so the linear model can give "3 products" its own weight when the
  effect is not a straight line (the boosted trees read the number alone);
- **categorical**: text with 2+ values: the 20 most frequent as categories, the rest as
  ``__other__``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from tools.churn.features import is_number_like, parse_category, parse_number
from tools.churn.schemas import AttributeUse

MAX_CATEGORIES = 20
CODE_MAX_VALUES = 10
ID_DISTINCT_SHARE = 0.95
ID_MIN_ROWS = 50
TEXT_MIN_COVERAGE = 0.5


def _numeric_use(key: str, values: Sequence[Any]) -> AttributeUse:
    numbers = [parse_number(v) for v in values]
    numbers = [x for x in numbers if x == x]  # x == x: not NaN
    distinct = len(set(numbers))
    integers = all(float(x).is_integer() for x in numbers)
    base = {"name": key, "present": len(values), "distinct": distinct}
    if distinct < 2:
        return AttributeUse(**base, kind="excluded", reason="constant: one value")
    if integers and len(numbers) >= ID_MIN_ROWS and distinct >= ID_DISTINCT_SHARE * len(numbers):
        return AttributeUse(
            **base,
            kind="excluded",
            reason=f"identifier-like: {distinct:,} distinct integers in {len(numbers):,} rows",
        )
    if distinct == 2:
        low, high = sorted(set(numbers))
        return AttributeUse(
            **base, kind="numeric", reason=f"two-valued flag ({low:g}/{high:g}): used as a number"
        )
    if integers and distinct <= CODE_MAX_VALUES:
        return AttributeUse(
            **base,
            kind="code",
            reason=f"small integer code ({distinct} values): a number and one indicator per value",
        )
    return AttributeUse(**base, kind="numeric", reason="number")


def _text_use(key: str, labels: Sequence[str]) -> AttributeUse:
    counts = Counter(labels)
    base = {"name": key, "present": len(labels), "distinct": len(counts)}
    if len(counts) < 2:
        return AttributeUse(**base, kind="excluded", reason="constant: one value")
    if len(counts) <= MAX_CATEGORIES:
        return AttributeUse(**base, kind="categorical", reason=f"text with {len(counts)} categories")
    covered = sum(n for _, n in counts.most_common(MAX_CATEGORIES)) / len(labels)
    if covered < TEXT_MIN_COVERAGE:
        return AttributeUse(
            **base,
            kind="excluded",
            reason=f"high-cardinality text: {len(counts):,} distinct values, the {MAX_CATEGORIES} most "
            f"frequent cover {covered:.0%} of rows (names, ids or free text)",
        )
    return AttributeUse(
        **base,
        kind="categorical",
        reason=f"text with {len(counts):,} values: the {MAX_CATEGORIES} most frequent "
        f"({covered:.0%} of rows) as categories, the rest as __other__",
    )


def classify_attributes(
    attrs: Sequence[Mapping[str, Any]], *, exclude: Sequence[str] = ()
) -> list[AttributeUse]:
    """One decision per custom field seen in `attrs`, sorted by name."""
    out: list[AttributeUse] = []
    excluded = set(exclude)
    for key in sorted({k for a in attrs for k in a}):
        if key in excluded:
            out.append(
                AttributeUse(
                    name=key, kind="excluded", reason="excluded by the caller", present=0, distinct=0
                )
            )
            continue
        present = [a[key] for a in attrs if key in a and parse_category(a[key]) is not None]
        if not present:
            out.append(AttributeUse(name=key, kind="excluded", reason="empty", present=0, distinct=0))
        elif all(is_number_like(v) for v in present):
            out.append(_numeric_use(key, present))
        else:
            out.append(_text_use(key, [str(parse_category(v)) for v in present]))
    return out


def attribute_kinds(uses: Sequence[AttributeUse]) -> tuple[dict[str, str], list[str]]:
    """`{field: numeric | categorical | code}` of the used fields, and the excluded fields' names."""
    kinds: dict[str, str] = {u.name: u.kind for u in uses if u.kind != "excluded"}
    return kinds, [u.name for u in uses if u.kind == "excluded"]
