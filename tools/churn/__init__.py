"""Churn risk (SPEC §5.3): point-in-time features, a versioned model (logistic regression or
LightGBM boosted trees, chosen by cross-validation or a time holdout, Platt-calibrated) or the
rule-based fallback, and the `churn_risk` tool (`tools.churn.scoring.churn_risk`).

`tools.churn.rank_metrics` registers churn_probability, arr_at_risk and health with `rank`.
See docs/CHURN.md.
"""
