"""The deal model (issue #20): win probability of an open deal from closed won/lost history.

`features` computes point-in-time deal features, `model` trains and stores the model (the churn
model's candidates and calibration, a time-based holdout), `score` is the `deal_score` tool and
the probability source `pipeline_health` can use instead of the stage table.
"""
