"""Every `valuechain` command answers --help; init is idempotent."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from valuechain.cli.main import app

runner = CliRunner()


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(cmd: Any, prefix: list[str]) -> None:
        # typer ships its own click; a group is anything with sub-commands.
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "valuechain")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_core_commands_are_registered() -> None:
    names = {" ".join(p) for p in _command_paths()}
    assert {"init", "status", "demo", "import", "db", "db hash", "db upgrade"} <= names
