"""Is every figure in an answer in a tool result? Number extraction and rounding-aware matching.

Used at run time (the agent asks once for a rewrite when an answer states a figure no tool
returned, then flags what is left) and by the faithfulness eval. A figure in the answer is
traceable when some number in the sources equals it up to the precision it is written with:
"57%" matches 0.5687, "631.5k" matches 631,512, "$78,005" matches 78005.118. Integers 0–10
are ignored (list markers, "top 5", "3 actions" echo the question more often than a tool), and
so are digits inside ids and dates ("ACME-0042", "2026-09-30" counts as 2026).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

_NUMBER = re.compile(
    r"(?<![\w.\-−/])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?(?:%|percent\b|[kKmM]\b|bn\b|million\b|thousand\b))?"
)
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "bn": 1e9}
SMALL_INTEGERS = 10


def parse_figure(token: str) -> tuple[float, float, str]:
    """(value, half the last written digit's place, suffix) of one written number."""
    text = token.replace("−", "-").replace(",", "").strip()
    match = re.match(r"(-?\d+(?:\.\d+)?)\s?(.*)$", text)
    if match is None:
        raise ValueError(token)
    digits, suffix = match.group(1), match.group(2).lower()
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return float(digits), 0.5 * 10 ** (-decimals), suffix


def numbers_in(text: str) -> list[str]:
    """The figures written in `text`, as written (with their unit suffix)."""
    return [m.group(0).strip() for m in _NUMBER.finditer(text)]


def source_values(texts: Iterable[str]) -> list[float]:
    """Every number in the sources (tool results, the user's words), as plain values."""
    values: list[float] = []
    for text in texts:
        for token in numbers_in(text):
            value, _, suffix = parse_figure(token)
            values.append(value)
            if suffix in ("%", "percent"):
                values.append(value / 100)
    return values


def traceable(token: str, sources: list[float]) -> bool:
    """True when the written figure `token` is one of `sources` up to its written precision."""
    value, half_step, suffix = parse_figure(token)
    if suffix == "" and value.is_integer() and abs(value) <= SMALL_INTEGERS:
        return True
    candidates: list[tuple[float, float]] = [(value, half_step)]
    if suffix in ("%", "percent"):
        candidates.append((value / 100, half_step / 100))
    elif suffix in _SCALE:
        candidates = [(value * _SCALE[suffix], half_step * _SCALE[suffix])]
    for target, tol in candidates:
        for s in sources:
            if abs(s - target) <= tol + 1e-9 * max(1.0, abs(s)):
                return True
            if abs(abs(s) - abs(target)) <= tol + 1e-9 * max(1.0, abs(s)):  # "down 44%" vs -0.443
                return True
    return False


def untraceable(answer: str, sources: Iterable[str]) -> list[str]:
    """Figures in `answer` that no source number explains, in order, without repeats."""
    values = source_values(sources)
    seen: list[str] = []
    for token in numbers_in(answer):
        if token not in seen and not traceable(token, values):
            seen.append(token)
    return seen


def unverified_note(figures: list[str]) -> str:
    """The line appended to an answer whose `figures` no tool result supports."""
    return f"\n\n(Unverified: {', '.join(figures)} {'does' if len(figures) == 1 else 'do'} not come from a tool result.)"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"“*])")


def without_sentences(text: str, drop: Callable[[str], bool]) -> tuple[str, int]:
    """`text` without the sentences `drop` says go, and how many went.

    Line by line (a list item is a sentence of its own); a sentence is cut at ". " before a capital."""
    kept_lines, left_out = [], 0
    for line in text.split("\n"):
        sentences = _SENTENCE_END.split(line)
        kept = [t for t in sentences if not drop(t)]
        left_out += len(sentences) - len(kept)
        if kept or not line.strip():
            kept_lines.append(" ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip(), left_out


def without_figures(text: str, figures: list[str]) -> tuple[str, int]:
    """`text` without the sentences that state any of `figures`, and how many were left out."""
    drop = set(numbers_in(" ".join(figures)))  # as numbers_in writes them ("$100,000" → "100,000")
    return without_sentences(text, lambda sentence: bool(drop & set(numbers_in(sentence))))


def left_out_note(n: int) -> str:
    """The line that says sentences were left out (without repeating their figures)."""
    return (f"\n\n(Left out: {'a sentence' if n == 1 else f'{n} sentences'} stating figures no tool returned; "
            "the results below are what the tools computed.)")
