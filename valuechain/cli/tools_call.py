"""`valuechain tools call NAME --arg key=value`: any registered tool, called as the agent calls it.

Derived from the tool registry: the arguments are the tool's model-facing parameters
(validated; unknown ones refused), the output is the core's full result as one JSON document.
A mistake the caller can fix exits 2 with the tool's message.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from core.runtime import get_sessionmaker
from core.settings import Settings
from tools.errors import ToolInputError
from tools.registry import ALL_TOOLS, ToolSpec, tool_named
from valuechain.cli.common import DatabaseUrlOption, print_json, settings_for, tool_errors

CLI_TOOLS: tuple[str, ...] = tuple(t.name for t in ALL_TOOLS if "cli" not in t.exempt and not t.writes)
"""Tools served here; a writing tool needs its own command that says who files it and commits."""


def parse_args(items: list[str], as_json: str | None) -> dict[str, Any]:
    """`--arg key=value` items (a value that parses as JSON is taken as JSON: 5, {"segment": "SMB"})
    merged over `--args '{...}'`."""
    out: dict[str, Any] = {}
    if as_json:
        try:
            loaded = json.loads(as_json)
        except json.JSONDecodeError as exc:
            raise ToolInputError(f"--args is not JSON: {exc.msg} at character {exc.pos}") from None
        if not isinstance(loaded, dict):
            raise ToolInputError("--args must be a JSON object, e.g. '{\"limit\": 5}'")
        out.update(loaded)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ToolInputError(f"--arg takes key=value (e.g. limit=5); got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _served(name: str) -> ToolSpec[Any, Any]:
    spec = tool_named(name)
    if name not in CLI_TOOLS:
        why = spec.exempt.get("cli", "it writes, and has no command of its own yet")
        raise ToolInputError(f"{name} is not called from the command line: {why}")
    return spec


def _store(settings: Settings) -> Any:
    # deferred: the store loads chromadb and the embedding model (~1-2 s); only search_knowledge needs it
    from knowledge.store import KnowledgeStore

    return KnowledgeStore.from_settings(settings)


def register(app: typer.Typer) -> None:
    @app.command(
        "call",
        help="Call any tool with the arguments the agent would set; prints the full result as JSON. "
        "Tools: " + ", ".join(CLI_TOOLS) + ".",
    )
    def call_cmd(
        name: str = typer.Argument(..., help="The tool: " + ", ".join(CLI_TOOLS)),
        arg: list[str] = typer.Option([], "--arg", "-a", help="key=value (repeatable); JSON values allowed"),
        args_json: str | None = typer.Option(None, "--args", help="All arguments as one JSON object"),
        database_url: str | None = DatabaseUrlOption,
        as_json: bool = typer.Option(True, "--json", help="Accepted for symmetry: the output is always JSON"),
    ) -> None:
        settings = settings_for(database_url)
        with tool_errors():
            spec = _served(name)
            kwargs = spec.core_kwargs(parse_args(arg, args_json), strict=True)
            with get_sessionmaker(settings)() as session:
                result = spec.call(kwargs, session=session, store=lambda: _store(settings))
                session.rollback()  # only reading tools are served here (CLI_TOOLS)
        print_json(result)

    @app.command("schemas", help="Print the tool schemas the model is offered (OpenAI JSON, in order).")
    def schemas_cmd() -> None:
        # deferred: langchain loads in ~1 s and no other `tools` command needs it
        from agent.llm.probe import tool_schemas

        sys.stdout.write(json.dumps(tool_schemas(), indent=2, ensure_ascii=False) + "\n")
