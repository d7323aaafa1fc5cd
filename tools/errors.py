"""Errors a tool raises when the model (or user) can fix the call.

Two channels: a `ToolInputError` goes back to the model as a tool message that lists
what is valid (unknown account id, unknown metric or filter, unknown period); anything
else is a bug and raises normally.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ToolInputError(ValueError):
    """A mistake in a tool call that the caller can fix; the message says what is valid."""


def close_matches(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Up to `n` candidates that look like `word` (case-insensitive), closest first."""
    by_key: dict[str, str] = {}
    for c in candidates:
        by_key.setdefault(c.casefold(), c)
    return [by_key[m] for m in difflib.get_close_matches(word.casefold(), list(by_key), n=n, cutoff=cutoff)]


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """'; did you mean "A", "B"?' for close candidates, or an empty string."""
    matches = close_matches(word, candidates, n=n)
    if not matches:
        return ""
    return "; did you mean " + ", ".join(f'"{m}"' for m in matches) + "?"


def unknown(what: str, value: object, valid: Iterable[str], context: str = "") -> ToolInputError:
    """'unknown metric "foo" for activities; valid: a, b, c' (with close matches when any)."""
    valid_list = list(valid)
    where = f" for {context}" if context else ""
    hint = did_you_mean(value, valid_list) if isinstance(value, str) else ""
    shown = ", ".join(valid_list) if valid_list else "(none)"
    return ToolInputError(f'unknown {what} "{value}"{where}; valid: {shown}{hint}')
