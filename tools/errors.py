"""The errors of the tools, by who can fix them.

Two channels: a `ToolInputError` goes back to the model (or the API/CLI caller) as a message
that lists what is valid (unknown account id, unknown metric or filter, unknown period).
Anything else is an internal error: a `DataFault` (the data or configuration is wrong, and
its message says what to do) or a bug. Every interface shows an internal error alike: one
line with an id from `new_error_id`, the traceback only in the log under that id.
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Iterable


class ToolInputError(Exception):
    """A mistake in a tool call that the caller can fix; the message says what is valid."""


class DataFault(Exception):
    """The data or configuration is wrong in a way no rephrasing of the call fixes (a corrupt
    `app_meta` row, a knowledge index built with another embedding model, an unknown stored
    status); the message names what is wrong and what to do about it."""


def new_error_id() -> str:
    """A short random id for one internal error, shown to the user and logged with the traceback."""
    return secrets.token_hex(4)


def internal_summary(exc: BaseException) -> str:
    """One line about an internal error for whoever is shown it: a `DataFault`'s own message
    (it says what to do), else only the exception's type (a bug's message may hold internals)."""
    if isinstance(exc, DataFault):
        return " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected {type(exc).__name__}"


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
