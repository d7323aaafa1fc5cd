"""Side-by-side comparisons written by code: when a plan ran the same tool for two or more accounts
(or periods), the answer leads with a table of their key figures and one sentence per figure
saying which is higher and by how much.

The 1.5B model inverted comparisons in trials ("66.6% is higher than 90.0%"); code does not. The
model's narrative is given these sentences to copy rather than to work out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agent.render import money, pct, table
from tools.accounts import AccountProfile
from tools.activities import ActivityScores
from tools.analysis.models import ValueChainAnalysis
from tools.churn.schemas import ChurnRiskResult
from tools.nba import NextBestActionResult


@dataclass(frozen=True)
class Figure:
    label: str
    value: float | None
    kind: str  # "share" (a probability, compared in points), "money" or "count"


@dataclass(frozen=True)
class Subject:
    name: str
    figures: tuple[Figure, ...]


def _churn(r: ChurnRiskResult) -> Subject | None:
    if len(r.accounts) != 1 or r.matched != 1:
        return None
    a = r.accounts[0]
    return Subject(f"{a.name} ({a.account_id})", (Figure("churn probability", a.probability, "share"),
                                                  Figure("ARR at risk", a.arr_at_risk, "money")))


def _account(r: AccountProfile) -> Subject:
    figures = [Figure("ARR", r.arr, "money"), Figure("open tickets", r.open_tickets, "count")]
    if r.days_to_renewal is not None:
        figures.append(Figure("days to renewal", r.days_to_renewal, "count"))
    return Subject(f"{r.name} ({r.id})", tuple(figures))


def _nba(r: NextBestActionResult) -> Subject:
    best = max((a.expected_value for a in r.actions if a.expected_value is not None), default=None)
    return Subject(f"{r.name} ({r.account_id})", (Figure("churn probability", r.p_churn, "share"),
                                                  Figure("best expected value", best, "money")))


def _scores(r: ActivityScores) -> Subject:
    return Subject(str(r.period), (Figure("total cost", r.total_cost, "money"),
                                   Figure("margin leak", r.total_margin_leak, "money")))


def _analysis(r: ValueChainAnalysis) -> Subject:
    return Subject(str(r.period), (Figure("total cost", r.total_cost, "money"),))


SUBJECTS: dict[type[BaseModel], Callable[[Any], Subject | None]] = {
    ChurnRiskResult: _churn,
    AccountProfile: _account,
    NextBestActionResult: _nba,
    ActivityScores: _scores,
    ValueChainAnalysis: _analysis,
}


def _shown(f: Figure, value: float) -> str:
    return pct(value) if f.kind == "share" else money(value) if f.kind == "money" else f"{value:,.0f}"


def _gap(f: Figure, hi: float, lo: float) -> str:
    """The difference of the figures as shown (so that it adds up on the page)."""
    if f.kind == "share":
        return f"{round(hi * 100, 1) - round(lo * 100, 1):.1f} percentage points"
    gap = round(hi) - round(lo)
    return money(gap) if f.kind == "money" else f"{gap:,.0f}"


def _title(label: str) -> str:
    return label[:1].upper() + label[1:]


def _sentence(subjects: Sequence[Subject], i: int) -> str | None:
    values = [(s.name, s.figures[i].value) for s in subjects if s.figures[i].value is not None]
    if len(values) < 2:
        return None
    f = subjects[0].figures[i]
    ordered = sorted(values, key=lambda v: -float(v[1]))  # type: ignore[arg-type]
    (top, hi), (low, lo) = ordered[0], ordered[-1]
    assert hi is not None and lo is not None  # filtered above
    if hi == lo:
        return f"{_title(f.label)}: the same for all ({_shown(f, hi)})."
    if len(values) == 2:
        return (f"{_title(f.label)}: {top} {_shown(f, hi)} is higher than {low} {_shown(f, lo)}, "
                f"by {_gap(f, hi, lo)}.")
    return f"{_title(f.label)}: highest {top} {_shown(f, hi)}, lowest {low} {_shown(f, lo)}."


def comparison(results: Sequence[BaseModel]) -> str:
    """A table and sentences comparing results of one kind about different subjects ('' unless there
    are two or more such results, all of one type, each about one subject)."""
    kinds = {type(r) for r in results}
    if len(results) < 2 or len(kinds) != 1 or (make := SUBJECTS.get(kinds.pop())) is None:
        return ""
    subjects = [make(r) for r in results]
    if any(s is None for s in subjects):
        return ""
    named = list({s.name: s for s in subjects if s is not None}.values())
    if len(named) < 2:
        return ""
    labels = [f.label for f in named[0].figures]
    rows = [[s.name, *("–" if f.value is None else _shown(f, f.value) for f in s.figures)] for s in named]
    sentences = [t for i in range(len(labels)) if (t := _sentence(named, i))]
    return f"**Side by side**\n\n{table(['', *labels], rows)}\n\n" + " ".join(sentences)


def comparisons(results: Sequence[BaseModel]) -> list[str]:
    """One comparison block per kind of result that was run for two or more subjects."""
    by_kind: dict[type[BaseModel], list[BaseModel]] = {}
    for r in results:
        by_kind.setdefault(type(r), []).append(r)
    return [c for group in by_kind.values() if (c := comparison(group))]


__all__ = ["comparison", "comparisons"]
