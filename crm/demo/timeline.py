"""The calendar the generator works on: day ordinals, a weekly grid, a date lookup table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

HISTORY_DAYS = 3 * 365  # about three years of history before as_of
FUTURE_WEEKS = 20  # simulated beyond as_of (never written) so at-risk accounts show it
_EPOCH = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class Timeline:
    """Days are `date.toordinal()` integers; weeks start on Mondays."""

    as_of: int
    start: int  # first day of history
    monday0: int  # week 0 starts here
    weeks_hist: int  # complete weeks ending on or before as_of
    weeks: int  # weeks_hist + FUTURE_WEEKS
    week_start: NDArray[np.int64]  # (weeks,) ordinals
    season: NDArray[np.float64]  # (weeks,) usage multiplier (year-end holiday dip)
    date_lo: int
    dates: NDArray[np.object_]  # date objects for date_lo .. date_lo + len - 1

    @classmethod
    def build(cls, as_of: dt.date) -> Timeline:
        a = as_of.toordinal()
        start = a - HISTORY_DAYS
        monday0 = start - dt.date.fromordinal(start).weekday()
        weeks_hist = (a - 6 - monday0) // 7 + 1
        weeks = weeks_hist + FUTURE_WEEKS
        week_start = monday0 + 7 * np.arange(weeks, dtype=np.int64)
        season = np.ones(weeks)
        for w, o in enumerate(week_start.tolist()):
            d = dt.date.fromordinal(int(o))
            # Weeks overlapping 22 Dec .. 1 Jan: the holiday dip every B2B product sees.
            if (d.month == 12 and d.day >= 19) or (d.month == 1 and d.day <= 1):
                season[w] = 0.72
        date_lo = start - 400
        span = (a + 900) - date_lo
        dates = np.empty(span, dtype=object)
        dates[:] = [dt.date.fromordinal(date_lo + i) for i in range(span)]
        return cls(a, start, monday0, weeks_hist, weeks, week_start, season, date_lo, dates)

    def to_dates(self, ordinals: NDArray[np.int64], missing: NDArray[np.bool_] | None = None) -> list[object]:
        """Date objects for ordinals; None where `missing` is set."""
        idx = np.asarray(ordinals, dtype=np.int64) - self.date_lo
        if missing is not None:
            idx = np.where(missing, 0, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.dates)):
            raise ValueError("date outside the generator's calendar")
        out = self.dates[idx]
        if missing is not None and missing.any():
            out = out.copy()
            out[missing] = None
        return out.tolist()

    def week_of(self, ordinals: NDArray[np.int64]) -> NDArray[np.int64]:
        """Week index containing each day, clipped to the grid."""
        return np.clip((np.asarray(ordinals) - self.monday0) // 7, 0, self.weeks - 1)

    @staticmethod
    def add_months(ordinals: NDArray[np.int64], months: NDArray[np.int64]) -> NDArray[np.int64]:
        """Same day of month (capped at the 28th) `months` later; broadcasts."""
        days = (np.asarray(ordinals) - _EPOCH).astype("datetime64[D]")
        month0 = days.astype("datetime64[M]")
        dom = np.minimum((days - month0.astype("datetime64[D]")).astype(np.int64), 27)
        shifted = (month0[..., None] + months).astype("datetime64[D]").astype(np.int64)
        return shifted + dom[..., None] + _EPOCH
