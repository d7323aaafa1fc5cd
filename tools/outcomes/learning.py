"""Each action's effect learned from its outcomes: a Beta prior from the playbook, updated by the
treated-vs-holdout counts at 90 days. Deterministic given the data.

Retention (`uplift` = the share of would-be churners an action saves): with n_t treated units
of which c_t churned, and a holdout churn rate p_c = c_c / n_c, the treated would have had
m = n_t·p_c churners without the action, and s = clip(m − c_t, 0, m) of them were saved. With
the prior Beta(α₀, β₀), α₀ = u₀·k, β₀ = (1 − u₀)·k (u₀ the playbook's uplift, k the playbook's
`prior_strength`, pseudo-observations), the posterior is Beta(α₀ + s, β₀ + m − s).

Growth (`p_success` = the chance the offer wins business that would not have come anyway):
with w_t treated wins of n_t and the holdout win rate r_c = w_c / n_c, the incremental wins are
i = clip(w_t − n_t·r_c, 0, n_t) and the posterior is Beta(α₀ + i, β₀ + n_t − i).

Without both a treated and a holdout unit whose 90 days have ended there is no comparison: the
estimate stays the prior. The learned value is the posterior mean; `sd` its standard deviation.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from tools.outcomes.measure import Arm, ArmCounts

DEFAULT_PRIOR_STRENGTH = 20.0


class LearnedEffect(BaseModel):
    """An action's effect: the playbook prior, the estimate learned from outcomes, and the evidence."""

    action: str
    parameter: Literal["uplift", "p_success"]
    prior: float
    prior_strength: float = Field(description="Pseudo-observations the prior counts for")
    learned: float = Field(description="Posterior mean (equals the prior without data)")
    sd: float = Field(description="Posterior standard deviation")
    n_treated: int = Field(description="Executed units whose 90 days have ended")
    n_holdout: int = Field(description="Held-out units whose 90 days have ended")
    treated_rate: float | None = Field(description="Retention: 90-day churn; growth: 90-day win rate")
    holdout_rate: float | None


def learn(
    *,
    action: str,
    kind: Literal["retention", "growth"],
    prior: float,
    treated: ArmCounts | None,
    holdout: ArmCounts | None,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> LearnedEffect:
    """The posterior of one action's effect from its treated and holdout counts (see the module)."""
    k = prior_strength
    a, b = prior * k, (1 - prior) * k
    t = treated or ArmCounts()
    c = holdout or ArmCounts()
    t_rate = c_rate = None
    if kind == "retention":
        t_rate = t.churned / t.n if t.n else None
        c_rate = c.churned / c.n if c.n else None
        if t.n and c.n and c_rate is not None:
            m = t.n * c_rate
            saved = min(max(m - t.churned, 0.0), m)
            a, b = a + saved, b + m - saved
    else:
        t_rate = t.successes / t.n if t.n else None
        c_rate = c.successes / c.n if c.n else None
        if t.n and c.n and c_rate is not None:
            extra = min(max(t.successes - t.n * c_rate, 0.0), float(t.n))
            a, b = a + extra, b + t.n - extra
    updated = bool(t.n and c.n)
    mean = a / (a + b) if updated else prior  # no data: exactly the prior, not a rounding of it
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))) if a + b > 0 else 0.0
    return LearnedEffect(
        action=action,
        parameter="uplift" if kind == "retention" else "p_success",
        prior=prior,
        prior_strength=k,
        learned=mean,
        sd=sd,
        n_treated=t.n,
        n_holdout=c.n,
        treated_rate=t_rate,
        holdout_rate=c_rate,
    )


def arm(counts: dict[tuple[str, Arm], ArmCounts], action: str, which: Arm) -> ArmCounts | None:
    return counts.get((action, which))
