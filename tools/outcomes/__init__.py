"""Outcomes of executed recommendations, holdouts, attribution and learned effects (issue #21).

- `holdout`: which accounts are held out of an action (deterministic hash), and the control
  group rows recorded for them;
- `measure`: what happened to each treated and held-out account 30 and 90 days later, as of
  the data's date (point in time: a window that has not ended yet is "pending");
- `stats`: Wilson intervals, Newcombe's difference of proportions, Katz's risk ratio;
- `learning`: each action's uplift / success probability, a Beta prior from the playbook updated
  by the treated-vs-holdout counts;
- `report`: the attribution report per action.
"""
