"""tools/errors.py: the channel the caller can fix (`ToolInputError`) apart from internal errors
(`DataFault`, bugs), and the one line every interface shows for an internal error."""

from __future__ import annotations

import pytest

from tools.common import parse_date
from tools.errors import DataFault, ToolInputError, internal_summary, new_error_id
from tools.filters import parse_filter_items


def test_only_tool_input_error_is_the_fixable_channel() -> None:
    assert not issubclass(ToolInputError, ValueError)  # a stray ValueError is not the model's to fix
    assert not issubclass(DataFault, ToolInputError | ValueError)


def test_internal_summary_shows_a_data_fault_but_not_a_bugs_message() -> None:
    assert (
        internal_summary(DataFault("the index is stale;\n  rebuild it")) == "the index is stale; rebuild it"
    )
    assert internal_summary(KeyError("password=hunter2")) == "unexpected KeyError"


def test_error_ids_are_short_and_fresh() -> None:
    ids = {new_error_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 8 and int(i, 16) >= 0 for i in ids)


def test_filter_items_merge_repeated_keys() -> None:
    assert parse_filter_items([]) is None
    assert parse_filter_items(["segment=SMB", "region = EMEA, NA", "segment=Enterprise"]) == {
        "segment": ["SMB", "Enterprise"],
        "region": ["EMEA", "NA"],
    }


@pytest.mark.parametrize("item", ["segment", "=SMB", "segment=", "segment= , "])
def test_a_malformed_filter_item_names_the_option(item: str) -> None:
    with pytest.raises(
        ToolInputError, match=rf"^--filter takes key=value \(e.g. segment=Enterprise\); got '{item}'$"
    ):
        parse_filter_items([item], option="--filter")


def test_dates() -> None:
    assert parse_date(None, name="--as-of") is None
    assert str(parse_date("2026-03-31", name="--as-of")) == "2026-03-31"
    with pytest.raises(ToolInputError, match=r"^--since must be a date like 2026-09-30; got '31/03/2026'$"):
        parse_date("31/03/2026", name="--since")
