"""Date bounds of a period label ("2026", "FY2026", "2026-H2", "2026-Q1", "2026-03").

`tools.common.period_end` gives the last day; the analysis also needs the first day (for the
CRM view's account-metric window) and the end of the following period (the due date of a
suggested initiative). Fiscal years are taken as calendar years, as `period_end` does.
"""

from __future__ import annotations

import datetime as dt
import re

from tools.common import period_end

_YEAR = re.compile(r"^(?:FY)?\d{4}$", re.IGNORECASE)
_HALF = re.compile(r"^\d{4}[-\s]?H[12]$", re.IGNORECASE)
_QUARTER = re.compile(r"^\d{4}[-\s]?Q[1-4]$", re.IGNORECASE)
_MONTH = re.compile(r"^\d{4}-\d{1,2}$")


def _months(period: str) -> int | None:
    p = period.strip()
    for pattern, months in ((_YEAR, 12), (_HALF, 6), (_QUARTER, 3), (_MONTH, 1)):
        if pattern.match(p):
            return months
    return None


def _month_end(year: int, month: int) -> dt.date:
    """Last day of `month` of `year`; months past 12 roll into the next years."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    first_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


def period_bounds(period: str) -> tuple[dt.date, dt.date] | None:
    """(first day, last day) of a period label; None for a label `period_end` cannot read."""
    end = period_end(period)
    months = _months(period)
    if end is None or months is None:
        return None
    # Every readable label is aligned to its length (a quarter ends in month 3, 6, 9 or 12).
    return dt.date(end.year, end.month - months + 1, 1), end


def next_period_end(period: str) -> dt.date | None:
    """Last day of the period that follows `period` (same length); None if unreadable."""
    end = period_end(period)
    months = _months(period)
    if end is None or months is None:
        return None
    return _month_end(end.year, end.month + months)
