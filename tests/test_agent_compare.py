"""Comparisons written by code (`agent.compare`): direction, gap and when there is nothing to compare."""

from __future__ import annotations

from agent.compare import comparison, comparisons
from tools.activities import ActivityScores
from tools.churn.schemas import AccountChurnRisk, ChurnRiskResult


def churn(account_id: str, p: float, at_risk: float) -> ChurnRiskResult:
    a = AccountChurnRisk.model_construct(account_id=account_id, name=f"Co {account_id}", probability=p,
                                         arr_at_risk=at_risk, arr=at_risk / max(p, 1e-9), band="high", drivers=[])
    return ChurnRiskResult.model_construct(accounts=[a], matched=1, total_arr_at_risk=at_risk)


def test_two_accounts_the_higher_is_named_first_with_the_gap_in_points_and_money() -> None:
    text = comparison([churn("B-1", 0.4, 20_000), churn("A-1", 0.666, 15_000)])
    assert "Churn probability: Co A-1 (A-1) 66.6% is higher than Co B-1 (B-1) 40.0%, by 26.6 percentage points." in text
    assert "ARR at risk: Co B-1 (B-1) $20,000 is higher than Co A-1 (A-1) $15,000, by $5,000." in text
    assert text.startswith("**Side by side**") and "| Co A-1 (A-1) | 66.6% | $15,000 |" in text


def test_three_accounts_name_the_highest_and_lowest_and_equal_values_say_so() -> None:
    text = comparison([churn("A", 0.2, 1000), churn("B", 0.9, 1000), churn("C", 0.5, 1000)])
    assert "highest Co B (B) 90.0%, lowest Co A (A) 20.0%" in text
    assert "ARR at risk: the same for all ($1,000)." in text


def test_nothing_to_compare_gives_nothing() -> None:
    assert comparison([churn("A", 0.2, 1)]) == ""  # one subject
    assert comparison([churn("A", 0.2, 1), churn("A", 0.2, 1)]) == ""  # the same subject twice
    many = ChurnRiskResult.model_construct(accounts=[], matched=7, total_arr_at_risk=0.0)
    assert comparison([many, churn("A", 0.2, 1)]) == ""  # a list is not one subject
    scores = ActivityScores.model_construct(period="2026", total_cost=10.0, total_margin_leak=1.0, activities=[])
    assert comparisons([churn("A", 0.2, 1), scores]) == []  # one of each kind


def test_periods_compare_their_totals() -> None:
    old = ActivityScores.model_construct(period="2025", total_cost=900_000.0, total_margin_leak=50_000.0, activities=[])
    new = ActivityScores.model_construct(period="2026", total_cost=1_000_000.0, total_margin_leak=40_000.0,
                                         activities=[])
    text = comparison([old, new])
    assert "Total cost: 2026 $1,000,000 is higher than 2025 $900,000, by $100,000." in text
    assert "Margin leak: 2025 $50,000 is higher than 2026 $40,000, by $10,000." in text


def test_amounts_are_in_the_crms_currency_and_counts_are_plain() -> None:
    from agent.render import CURRENCY
    from tools.accounts import AccountProfile

    def profile(i: str, arr: float, tickets: int) -> AccountProfile:
        return AccountProfile.model_construct(id=i, name=f"Co {i}", arr=arr, open_tickets=tickets, days_to_renewal=None)

    token = CURRENCY.set("EUR")
    try:
        text = comparison([profile("A", 120_000, 2), profile("B", 80_000, 5)])
    finally:
        CURRENCY.reset(token)
    assert "ARR: Co A (A) €120,000 is higher than Co B (B) €80,000, by €40,000." in text
    assert "Open tickets: Co B (B) 5 is higher than Co A (A) 2, by 3." in text
