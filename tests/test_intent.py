"""`agent.intent.filing_request`: explicit requests to file, explicit refusals, and neither."""

from __future__ import annotations

import pytest

from agent.intent import filing_request, unsupported_action


@pytest.mark.parametrize("text", [
    "File the best action for approval and tell me its expected value.",
    "What's the best move for that account? File it and give me the expected value.",
    "find the one most likely to churn and propose the best action to keep it",
    "Propose the top next-best action for NOVI-0063 and tell me what it is worth.",
    "Submit a billing_resolution recommendation for MERA-0034.",
    "queue a seat_expansion_offer for TEMP-0031",
    "log a billing_resolution for BOLT-0150 - two card payments bounced",
    "send its best action for approval",
    "put forward a restructure recommendation for the recruiting activity",
    "File the top one for approval.",
])
def test_explicit_requests_to_file(text: str) -> None:
    assert filing_request(text) is True


@pytest.mark.parametrize("text", [
    "What would you recommend for DYNI-0020? Just tell me, do not file anything.",
    "Which 5 accounts are most likely to churn? Don't file anything yet.",
    "just tell me the best action for JUNO-0054, no need to submit anything",
    "recommend something for LYRA-0122 but do NOT create a recommendation",
    "advice only: how do we rescue MOSA-0033? no filing",
    "give me two plays for PULS-0099 - I'll decide myself, so don't propose them",
])
def test_explicit_refusals(text: str) -> None:
    assert filing_request(text) is False


@pytest.mark.parametrize("text", [
    "What would you propose for ACME-0042?",
    "What should we do about ZELO-0096?",
    "Send me the list of accounts renewing this month.",
    "Raise the churn risk threshold? What does high risk mean?",
    "Which log events matter most for churn?",
    "Which accounts are most likely to churn?",
])
def test_questions_that_say_neither(text: str) -> None:
    assert filing_request(text) is None


@pytest.mark.parametrize("text", [
    "Delete account ACME-0042 from the CRM.",
    "Could you email the renewal list to the whole sales team?",
    "Please book a call with the QUAR-0017 champion next week.",
    "Approve the pending champion_rebuild recommendation for IONA-0069.",
    "Thanks. Now update the owner of TIDE-0044 to Sam.",
])
def test_actions_the_tools_cannot_take(text: str) -> None:
    assert unsupported_action(text)


@pytest.mark.parametrize("text", [
    "File a champion_rebuild recommendation for IONA-0069.",
    "Send its best action for approval.",
    "Update me on ACME-0042's churn risk.",
    "Which accounts should we email about renewals?",
    "What changed in DYNE-0036's usage recently?",
    "How do we cancel-proof our Enterprise renewals?",
])
def test_questions_and_filings_are_not_unsupported_actions(text: str) -> None:
    assert not unsupported_action(text)
