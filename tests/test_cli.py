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


def test_ask_prints_citations_and_brackets_in_the_answer_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """Rich markup must not eat `[source § section]` citations (the Sources line printed empty)."""
    from agent.copilot import AgentAnswer
    from valuechain.cli.ask import _print_answer

    answer = "Five steps [value-chain-analysis-steps § Step 1].\n\nSources: [porter-value-chain § Primary activities], [bold]x[/]"
    _print_answer(AgentAnswer(answer=answer, conversation_id="c", run_id="r", model="m", tool_calls=[], llm_calls=2,
                              prompt_tokens=1, completion_tokens=1, latency_s=1.0, llm_s=1.0, tool_s=0.0))
    out = " ".join(capsys.readouterr().out.split())
    assert "[value-chain-analysis-steps § Step 1]" in out
    assert "Sources: [porter-value-chain § Primary activities], [bold]x[/]" in out
