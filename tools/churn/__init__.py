"""Churn risk (SPEC §5.3): point-in-time features, a versioned logistic model or the
rule-based fallback, and the `churn_risk` tool (`tools.churn.scoring.churn_risk`).

`tools.churn.rank_metrics` registers churn_probability, arr_at_risk and health with `rank`.
See docs/CHURN.md.
"""
