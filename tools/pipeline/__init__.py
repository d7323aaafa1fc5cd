"""Deals and the sales pipeline (issue #20): `pipeline_health` and what it reads.

`health` holds the tool, `deals` the reading of open and won deals as of a date, `probability`
the pluggable source of win probabilities (the documented stage table by default).
"""
