"""The narrative's length budget: the stream stops at the first sentence end past the limit."""

from __future__ import annotations

import pytest

from agent.narrative import Budget


def feed(budget: Budget, pieces: list[str]) -> str:
    return "".join(budget.take(p) for p in pieces)


def test_text_under_the_limit_passes_whole() -> None:
    b = Budget(limit=100)
    assert feed(b, ["Two short", " sentences.", " Here."]) == "Two short sentences. Here."
    assert not b.full


@pytest.mark.parametrize("pieces", [
    ["First sentence here. ", "Second one runs past", " the limit. Third", " is never sent."],
    ["First sentence here.", " Second one runs past the limit.", " Third is never sent."],
    ["First sentence here. Second one runs past the limit. Third is never sent."],
])
def test_the_cut_is_the_first_sentence_end_past_the_limit_wherever_pieces_split(pieces: list[str]) -> None:
    b = Budget(limit=30)
    kept = feed(b, pieces)
    assert kept == "First sentence here. Second one runs past the limit."
    assert b.full and b.text == kept
    assert b.take(" more") == ""


def test_a_list_is_cut_at_the_end_of_a_line() -> None:
    b = Budget(limit=22)
    kept = feed(b, ["- inbound logistics\n- oper", "ations and more\n- outbound\n"])
    assert kept == "- inbound logistics\n- operations and more\n"


def test_a_decimal_point_is_not_a_sentence_end() -> None:
    b = Budget(limit=10)
    kept = feed(b, ["Margin leak is 1.5 points", " of revenue. Then more."])
    assert kept == "Margin leak is 1.5 points of revenue."
