"""Comparisons the model states the wrong way round are found; right or unclear ones are kept."""

from __future__ import annotations

import pytest

from agent.claims import inverted, without_inverted


@pytest.mark.parametrize("sentence", [
    "The churn risk of ACME-0042 is 66.6%, which is higher than DYNE-0036's 90.0%.",
    "Acme's ARR at risk of $4,050 is greater than Dynent's $420,549.",
    "Margin leak in Q2 (-0.18) is lower than in Q3 (-0.25).",
    "Service has 30 open deals, fewer than Sales with 12.",
])
def test_an_inverted_comparison_is_found(sentence: str) -> None:
    assert inverted(sentence)


@pytest.mark.parametrize("sentence", [
    "Churn probability: DYNE-0036 90.0% is higher than ACME-0042 66.6%, by 23.4 percentage points.",
    "ACME-0042 has a lower churn probability than DYNE-0036.",  # no figures: not judged
    "ACME-0042 is at 66.6%, more than the $4,050 at risk for DYNE-0036.",  # a percentage against an amount
    "Usage fell more than expected; 44% lower than 71% would be better, and higher than 10% too.",  # two comparisons
    "Both are at 50.0%, no higher than 50.0%.",
    "Service has 12 open deals, fewer than Sales with 30.",
])
def test_a_right_or_unclear_comparison_is_kept(sentence: str) -> None:
    assert not inverted(sentence)


def test_only_the_inverted_sentence_leaves_the_narrative() -> None:
    text = ("ACME-0042 is at 66.6%, which is higher than DYNE-0036's 90.0%. Both are high risk.\n"
            "- DYNE-0036 has $4,050 at risk, less than ACME-0042's $420,549.")
    kept, n = without_inverted(text)
    assert n == 1
    assert kept == "Both are high risk.\n- DYNE-0036 has $4,050 at risk, less than ACME-0042's $420,549."
