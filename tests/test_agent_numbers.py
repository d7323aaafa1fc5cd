"""Figures in answers vs numbers in tool results (agent/numbers.py)."""

from __future__ import annotations

from agent.numbers import numbers_in, traceable, untraceable

TOOL = '{"account_id":"ACME-0042","arr":631512,"probability":0.569,"arr_at_risk":359114,' \
       '"expected_value":78005.118,"usage_trend":-0.4432,"as_of":"2026-09-30"}'


def test_numbers_are_found_with_their_units() -> None:
    assert numbers_in("ARR $631,512, risk 57% and 1.2M at stake; 3.5k seats; -4.2 points") == [
        "631,512", "57%", "1.2M", "3.5k", "-4.2"]


def test_roundings_of_tool_figures_are_traceable() -> None:
    assert untraceable(
        "ACME-0042 has ARR 631,512 ($631.5k, about 0.63M), a 57% (0.569) churn probability, "
        "359,114 at risk and an expected value of 78,005; usage is down 44% as of 2026-09-30.",
        [TOOL],
    ) == []


def test_invented_figures_are_reported_once_each() -> None:
    assert untraceable("Account 12345 churns at 20%, account 67890 at 20%.", [TOOL]) == ["12345", "20%", "67890"]


def test_small_integers_and_the_users_numbers_are_allowed() -> None:
    assert untraceable("Here are the top 5 accounts; 3 of them renew soon.", [TOOL]) == []
    assert untraceable("You asked about 2025 and 12 accounts.", [TOOL, "Show 12 accounts for 2025"]) == []


def test_precision_matters() -> None:
    assert traceable("0.57", [0.569]) and not traceable("0.58", [0.569])
    assert traceable("632k", [631512.0]) and not traceable("640k", [631512.0])


def test_digits_inside_ids_and_dates_are_not_figures() -> None:
    assert numbers_in("ACME-0042 renews on 2026-09-30 (ORIE-0001)") == ["2026"]


def test_without_figures_drops_only_the_sentences_that_state_them() -> None:
    from agent.numbers import without_figures

    text = "JAVE-0114 renews in 14 days, and its ARR is $100,000. Its churn risk is 12.5%.\n- ARR $100,000\n- ok"
    kept, n = without_figures(text, ["14", "$100,000"])
    assert kept == "Its churn risk is 12.5%.\n- ok" and n == 2
    assert without_figures("Nothing to drop: 66.6% here.", ["14"]) == ("Nothing to drop: 66.6% here.", 0)
