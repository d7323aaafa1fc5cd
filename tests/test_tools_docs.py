"""Tool docstrings are the LLM tool descriptions: a one-line summary and every argument described."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from tools.accounts import account_timeline, get_account, list_accounts
from tools.activities import score_activities
from tools.ranking import rank
from tools.recommendations import propose_recommendation

TOOLS: list[Callable[..., Any]] = [
    score_activities,
    rank,
    get_account,
    list_accounts,
    account_timeline,
    propose_recommendation,
]


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.__name__)
def test_docstring_describes_every_argument(tool: Callable[..., Any]) -> None:
    doc = inspect.getdoc(tool) or ""
    summary, _, rest = doc.partition("\n")
    assert summary.endswith(".") and len(summary) <= 100, summary
    args_block = rest.split("Args:\n", 1)[1]
    described = re.findall(r"^    (\w+):", args_block, flags=re.MULTILINE)
    params = inspect.signature(tool).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert next(iter(params)) == "session"
    assert described == [name for name in params if name != "session"]
