"""Confidence intervals for proportions: Wilson score, Newcombe's hybrid score interval for a
difference of two proportions (Newcombe 1998, method 10), and Katz's log interval for a ratio."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (0, 1 when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(
    x1: float, n1: float, x2: float, n2: float, z: float = Z95
) -> tuple[float, float, float] | None:
    """p1 − p2 with Newcombe's hybrid score interval; None when either group is empty."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


def risk_ratio(x1: float, n1: float, x2: float, n2: float, z: float = Z95) -> tuple[float, float, float] | None:
    """(x1/n1) / (x2/n2) with Katz's log interval, 0.5 added to every cell when a count is zero;
    None when either group is empty or the control has no events and no correction helps."""
    if n1 <= 0 or n2 <= 0:
        return None
    a, b, c, d = x1, n1 - x1, x2, n2 - x2
    if min(a, c) == 0 or min(b, d) == 0:
        a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    r1, r2 = a / (a + b), c / (c + d)
    rr = r1 / r2
    se = math.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d))
    return rr, rr * math.exp(-z * se), rr * math.exp(z * se)
