"""evals.citations (used by bench/framework_citations.py), on answers as the agent writes them."""

from __future__ import annotations

from evals.citations import cited_sources, narrative

ANSWER = (
    "The support activities are procurement, technology development, HR management and firm "
    "infrastructure [porter-value-chain § Support activities]. They enable the primary ones "
    "[porter-value-chain § Support activities] [value-chain-analysis-steps § Step 1].\n\n"
    "Sources: [porter-value-chain § Support activities], [crm-functions § Marketing automation]"
)


def test_cited_sources_in_order_once_each() -> None:
    assert cited_sources(ANSWER) == ["porter-value-chain", "value-chain-analysis-steps", "crm-functions"]


def test_the_model_text_excludes_the_sources_line_code_appends() -> None:
    assert cited_sources(narrative(ANSWER)) == ["porter-value-chain", "value-chain-analysis-steps"]
    assert cited_sources("No passage says so.") == []
