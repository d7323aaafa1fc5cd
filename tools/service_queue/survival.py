"""Kaplan–Meier survival of ticket resolution times, and the chance an open ticket breaches its SLA.

A ticket's resolution time T is the hours from opening to closing. Tickets still open on the
queue's clock are *right-censored* at their age: they are known to take at least that long.
Leaving them out (using closed tickets only) would understate long resolutions, since the
slowest tickets are exactly the ones still open. The Kaplan–Meier estimate of P(T > t) is

    S(t) = Π over resolution times t_j ≤ t of (1 − d_j / n_j)

with d_j tickets resolved at t_j and n_j tickets whose time (resolved or open so far) is at
least t_j. An open ticket of age a with SLA s > a breaches with probability

    P(T > s | T > a) = S(s) / S(a) = Π over t_j in (a, s] of (1 − d_j / n_j)

(the ticket itself, censored at a, is in none of those n_j).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Survival:
    """Kaplan–Meier estimate from one group of tickets (a priority and category, a priority, all)."""

    times: NDArray[np.float64]  # every observation, sorted (resolved and censored)
    event_times: NDArray[np.float64]  # distinct resolution times, ascending
    cum_log: NDArray[np.float64]  # [0, log S(t_1), log S(t_2), ...]: running Σ log(1 − d_j / n_j)
    resolved: int

    @classmethod
    def fit(cls, hours: NDArray[np.float64], resolved: NDArray[np.bool_]) -> Survival:
        """From each ticket's hours (to resolution, or open so far) and whether it was resolved."""
        hours = np.asarray(hours, dtype=np.float64)
        times = np.sort(hours)
        event_times, d = np.unique(hours[np.asarray(resolved, dtype=bool)], return_counts=True)
        n = len(times) - np.searchsorted(times, event_times, side="left")  # time ≥ t_j
        with np.errstate(divide="ignore"):
            log_factor = np.log1p(-d / n)  # −inf where every ticket left was resolved at t_j
        cum_log = np.concatenate([[0.0], np.cumsum(log_factor)])
        return cls(times=times, event_times=event_times, cum_log=cum_log, resolved=int(d.sum()))

    def at_risk(self, age: float) -> int:
        """Tickets of the group whose time exceeds `age` (still unresolved at that age)."""
        return int(len(self.times) - np.searchsorted(self.times, age, side="right"))

    def survival(self, t: float) -> float:
        """S(t) = P(T > t)."""
        return float(np.exp(self.cum_log[np.searchsorted(self.event_times, t, side="right")]))

    def breach_probability(self, age: float, sla: float) -> float | None:
        """P(T > sla | T > age) = S(sla) / S(age) for age < sla; None when no ticket of the group
        outlasted `age` (S(age) = 0: undefined)."""
        lo = self.cum_log[np.searchsorted(self.event_times, age, side="right")]
        if np.isneginf(lo):
            return None
        hi = self.cum_log[np.searchsorted(self.event_times, sla, side="right")]
        return float(np.exp(hi - lo))
