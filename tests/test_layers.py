"""The flow is one-way (STYLE.md): api and the CLI call agent, agent calls tools, tools call crm,
and everything may use core/ (settings, engine, runtime), which imports nothing of the product.

Every import in the product's packages, at module level, inside functions and under
TYPE_CHECKING alike, is checked against what its folder may import. A violation fails with
file:line. Both checkers are first run on planted violations, so the tests cannot pass by
finding nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# folder → modules (and everything under them) its files must never import
RULES: dict[str, frozenset[str]] = {
    "core": frozenset({"crm", "tools", "knowledge", "agent", "api", "evals", "valuechain", "bench", "jobs"}),
    "crm": frozenset({"tools", "knowledge", "agent", "api", "evals", "valuechain", "bench", "jobs"}),
    "knowledge": frozenset({"agent", "api", "evals", "valuechain", "bench", "jobs"}),
    "tools": frozenset({"agent", "api", "evals", "valuechain", "bench", "jobs"}),
    "tools/churn": frozenset({"tools.ranking"}),  # ranking imports the churn metrics, never the other way
    "agent": frozenset({"api", "evals", "valuechain", "bench"}),
    "evals": frozenset({"api", "valuechain", "bench"}),  # evals call the agent's entry point, like users
    "api": frozenset({"valuechain", "evals", "bench"}),
    # batch jobs run tools/ and knowledge/ work; api/ and the CLI submit them (issue #22)
    "jobs": frozenset({"agent", "api", "evals", "valuechain", "bench"}),
}
BELOW_THE_CLI = ("core", "crm", "knowledge", "tools", "agent", "evals", "api", "jobs")


def imported_modules(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) for every absolute import in `path`, wherever it sits: module level,
    inside functions, under `if TYPE_CHECKING:`. `import a.b` gives ("a.b", ())."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def _reaches(module: str, names: tuple[str, ...], banned: frozenset[str]) -> bool:
    """`from tools import ranking` reaches `tools.ranking` as much as `import tools.ranking` does."""
    candidates = [module, *(f"{module}.{name}" for name in names)]
    return any(c == b or c.startswith(b + ".") for c in candidates for b in banned)


def forbidden_imports(root: Path, rules: dict[str, frozenset[str]]) -> list[str]:
    """`file:line imports X` for every import a folder may not make."""
    found = []
    for folder, banned in rules.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, module, names in imported_modules(path):
                if _reaches(module, names, banned):
                    found.append(f"{rel}:{line} imports {module}" + (f" ({', '.join(names)})" if names else ""))
    return found


def test_the_checker_reports_planted_violations(tmp_path: Path) -> None:
    (tmp_path / "tools" / "churn").mkdir(parents=True)
    (tmp_path / "tools" / "ok.py").write_text(
        "from crm.models import Account\nfrom tools.churn import scoring\n", encoding="utf-8")
    (tmp_path / "tools" / "bad.py").write_text(
        "import json\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import api.app\n\n"
        "def f():\n    import agent.copilot\n    return agent.copilot\n", encoding="utf-8")
    (tmp_path / "tools" / "churn" / "cycle.py").write_text("from tools import ranking\n", encoding="utf-8")
    rules = {"tools": RULES["tools"], "tools/churn": RULES["tools/churn"]}
    assert forbidden_imports(tmp_path, rules) == [
        "tools/bad.py:5 imports api.app",
        "tools/bad.py:8 imports agent.copilot",
        "tools/churn/cycle.py:1 imports tools (ranking)",
    ]


@pytest.mark.parametrize("folder", sorted(RULES))
def test_no_layer_imports_upwards(folder: str) -> None:
    assert (ROOT / folder).is_dir(), f"{folder}/ is gone: update RULES"
    assert forbidden_imports(ROOT, {folder: RULES[folder]}) == []


def test_nothing_below_the_cli_imports_the_cli_package() -> None:
    assert forbidden_imports(ROOT, dict.fromkeys(BELOW_THE_CLI, frozenset({"valuechain"}))) == []


# House rule: an import inside a function says why it is not at the top (heavy, an optional
# extra, platform-only, an import-order constraint), in a comment on its line or on the line
# directly above its group of consecutive import lines.
SWEPT_PACKAGES = ("core", "crm", "tools", "knowledge", "agent", "api", "evals", "valuechain", "jobs")


NOT_A_REASON = re.compile(r"\b(cycle|cyclic|circular)\b", re.IGNORECASE)
"""An import cycle is fixed by moving code down a layer, not explained."""
TOOL_COMMENT = re.compile(r"#\s*(noqa|type:\s*ignore|pragma)\b.*$")


def _reason(src: list[str], i: int) -> str:
    """The comment on import line `i`, else the comment line directly above its group of imports."""
    own = TOOL_COMMENT.sub("", src[i])
    if "#" in own:
        return own.split("#", 1)[1].strip()
    first = i
    while first > 0 and src[first - 1].strip().startswith(("from ", "import ")):
        first -= 1
    above = src[first - 1].strip() if first > 0 else ""
    return above.lstrip("#").strip() if above.startswith("#") else ""


def unexplained_imports(root: Path, packages: tuple[str, ...]) -> list[str]:
    """`file:line: import` for every import inside a function whose reason comment is missing or
    is an import cycle."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if "migrations/versions" in rel:
                continue
            src = path.read_text(encoding="utf-8").splitlines()
            lines = set()
            for fn in ast.walk(ast.parse("\n".join(src), filename=str(path))):
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines |= {n.lineno for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)}
            for line in sorted(lines):
                reason = _reason(src, line - 1)
                if not reason or NOT_A_REASON.search(reason):
                    found.append(f"{rel}:{line}: {src[line - 1].strip()}")
    return found


def test_the_import_checker_reports_an_unexplained_import(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "m.py").write_text(
        "def ok():\n    # deferred: heavy\n    import json\n    import csv\n    return json, csv\n\n"
        "def bad():\n    import json\n    return json\n\n"
        "def cycle():\n    # cycle: tools.a imports this module\n    import tools.a\n    return tools.a\n\n"
        "def lint_only():\n    import os  # noqa: F401\n", encoding="utf-8")
    assert unexplained_imports(tmp_path, ("tools",)) == [
        "tools/m.py:8: import json", "tools/m.py:13: import tools.a", "tools/m.py:17: import os  # noqa: F401"]


def test_function_level_imports_say_why() -> None:
    assert unexplained_imports(ROOT, SWEPT_PACKAGES) == [], (
        "say why in a comment above the import (heavy, optional extra, ...), or hoist it; an import cycle "
        "is not a reason: move the shared code down a layer")
