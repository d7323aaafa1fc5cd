"""Every registered tool is documented where it is declared.

The core's docstring is its description for people and for the API (a one-line summary, every
argument in `Args:`); the registry's description and parameter descriptions are what the model reads.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from tools.registry import ALL_TOOLS, ToolSpec

INJECTED = {"session", "store"}


@pytest.mark.parametrize("spec", ALL_TOOLS, ids=lambda s: s.name)
def test_core_docstring_describes_every_argument(spec: ToolSpec[Any, Any]) -> None:
    doc = inspect.getdoc(spec.core) or ""
    summary, _, rest = doc.partition("\n")
    assert summary.endswith(".") and len(summary) <= 100, summary
    args_block = re.split(r"\n\n\w+:\n", rest.split("Args:\n", 1)[1])[0]  # up to Raises:/Returns:
    described = re.findall(r"^    (\w+):", args_block, flags=re.MULTILINE)
    params = inspect.signature(spec.core).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert [name for name in params if name in INJECTED] == sorted(spec.needs & INJECTED)
    assert described == [name for name in params if name not in INJECTED]
    assert spec.name == spec.core.__name__


@pytest.mark.parametrize("spec", ALL_TOOLS, ids=lambda s: s.name)
def test_model_parameters_are_core_arguments_and_described(spec: ToolSpec[Any, Any]) -> None:
    core_args = set(inspect.signature(spec.core).parameters)
    for name, field in spec.params.model_fields.items():
        assert name in core_args, f"{spec.name}.{name} is not an argument of the core"
        assert field.description and field.description.endswith("."), f"{spec.name}.{name}"
    assert spec.description.strip() and spec.description.rstrip().endswith(".")
