"""The flow is one-way (STYLE.md): api and the CLI call agent, agent calls tools, tools call crm.

Every import in the product's packages, at module level, inside functions and under
TYPE_CHECKING alike, is checked against what its layer may import. A violation fails with
file:line. `forbidden_imports` is checked on a planted violation first, so the test cannot pass
by finding nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package → top-level packages it must never import
RULES: dict[str, frozenset[str]] = {
    "core": frozenset({"tools", "knowledge", "agent", "api", "evals", "valuechain", "bench"}),
    "crm": frozenset({"tools", "knowledge", "agent", "api", "evals", "valuechain", "bench"}),
    "knowledge": frozenset({"agent", "api", "evals", "valuechain", "bench"}),
    "tools": frozenset({"agent", "api", "evals", "valuechain", "bench"}),
    "agent": frozenset({"api", "evals", "valuechain", "bench"}),
    "evals": frozenset({"api", "valuechain", "bench"}),
    "api": frozenset({"valuechain", "evals", "bench"}),
}
SETTINGS_ONLY = {"core/settings.py": frozenset({"crm", "tools", "knowledge", "agent", "api", "evals", "valuechain"})}
"""The settings module imports nothing of the product at all."""


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in `path`, wherever it sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def forbidden_imports(root: Path, rules: dict[str, frozenset[str]]) -> list[str]:
    """`file:line imports X` for every import a layer may not make."""
    found = []
    for package, banned in rules.items():
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            extra = SETTINGS_ONLY.get(rel, frozenset())
            for line, module in imported_modules(path):
                top = module.split(".")[0]
                if top in banned or top in extra:
                    found.append(f"{rel}:{line} imports {module}")
    return found


def test_the_checker_reports_a_planted_violation(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "ok.py").write_text("from crm.models import Account\n", encoding="utf-8")
    (tmp_path / "tools" / "bad.py").write_text(
        "import json\n\ndef f():\n    from agent.copilot import Copilot\n    return Copilot\n", encoding="utf-8")
    assert forbidden_imports(tmp_path, {"tools": RULES["tools"]}) == ["tools/bad.py:4 imports agent.copilot"]


@pytest.mark.parametrize("package", sorted(RULES))
def test_no_layer_imports_upwards(package: str) -> None:
    assert forbidden_imports(ROOT, {package: RULES[package]}) == []


def test_nothing_below_the_cli_imports_the_cli_package() -> None:
    for package in RULES:
        assert not [v for v in forbidden_imports(ROOT, {package: frozenset({"valuechain"})})], package
