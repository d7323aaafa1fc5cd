"""`valuechain ask` (one question) and `valuechain chat` (interactive, streamed)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from agent.llm.model_files import ModelFilesError
from core.settings import get_settings
from valuechain.cli.common import JsonOption, console, err_console, fail, print_json

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from agent.copilot import Agent, AgentAnswer
    from agent.llm.runtime import LLMRuntime

ConversationOption = typer.Option(None, "--conversation", "-c", help="Continue this conversation id")
NoWarmOption = typer.Option(False, "--no-warm", help="Skip warming the embedded model's prompt cache")


def _open(warm: bool) -> AbstractContextManager[tuple[Agent, LLMRuntime]]:
    # [llm] extra: client and server import httpx (not in the base install); agent.service loads langchain (~0.5 s)
    from agent.llm.client import LLMConfigError
    from agent.llm.server import LLMServerError
    from agent.service import open_copilot

    try:
        return open_copilot(get_settings(), warm=warm)
    except (LLMConfigError, ModelFilesError, LLMServerError) as exc:
        raise fail(str(exc)) from exc


def _print_answer(result: AgentAnswer) -> None:
    console.print(result.answer, markup=False, highlight=False)
    if result.tool_calls:
        table = Table("tool", "arguments", "ok", title="tool calls", title_justify="left")
        for c in result.tool_calls:
            table.add_row(c.name, ", ".join(f"{k}={v!r}" for k, v in c.args.items()), "yes" if c.ok else "no")
        console.print(table)
    console.print(
        f"[dim]conversation {result.conversation_id} · run {result.run_id} · {result.llm_calls} LLM calls · "
        f"{result.prompt_tokens}+{result.completion_tokens} tokens · {result.latency_s:.1f} s "
        f"({result.llm_s:.1f} s in the model) · {result.model}[/]"
    )


def ask(
    question: str = typer.Argument(..., help="The question, in quotes"),
    conversation: str | None = ConversationOption,
    as_json: bool = JsonOption,
    no_warm: bool = NoWarmOption,
) -> None:
    """Ask one question; print the answer and the tool calls behind it."""
    # [llm] extra: agent.llm.server imports httpx, which the base install lacks
    from agent.llm.server import LLMServerError

    if not question.strip():
        raise fail("the question is empty")
    try:
        with _open(not no_warm) as (copilot, _runtime):
            result = copilot.ask(question, conversation_id=conversation)
    except LLMServerError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print_json(result)
    else:
        _print_answer(result)
    if result.error:
        raise typer.Exit(3)


async def _chat_turn(copilot: Agent, question: str, conversation: str | None) -> AgentAnswer | None:
    final = None
    streamed = False
    async for event in copilot.astream(question, conversation_id=conversation):
        if event.type == "token" and event.text:
            streamed = True
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif event.type == "tool_start":
            err_console.print(f"[cyan]→ {event.name}[/]({', '.join(f'{k}={v!r}' for k, v in (event.args or {}).items())})")
        elif event.type == "tool_end":
            err_console.print(f"[cyan]← {event.name}[/] {'ok' if event.ok else '[red]error[/]: ' + escape(event.text or '')}")
        elif event.type == "error":
            err_console.print(f"[bold red]{escape(event.text or '')}[/]")
        elif event.type == "answer":
            final = event.result
            if not streamed and final is not None and not final.error:
                sys.stdout.write(final.answer)
    return final


def chat(conversation: str | None = ConversationOption, no_warm: bool = NoWarmOption) -> None:
    """Talk to the agent; answers stream as they are written. Empty line or Ctrl-D ends."""
    # [llm] extra: agent.copilot loads langchain (~0.5 s)
    from core.loop import run_sync

    with _open(not no_warm) as (copilot, runtime):
        err_console.print(f"[dim]model {runtime.model} at {runtime.base_url}; empty line to quit[/]")
        while True:
            try:
                question = input("\nyou> ").strip()
            except (EOFError, KeyboardInterrupt):
                break
            if not question:
                break
            result = run_sync(_chat_turn(copilot, question, conversation))
            if result is None:
                continue
            sys.stdout.write("\n")
            conversation = result.conversation_id
            err_console.print(
                f"[dim]{result.llm_calls} LLM calls · {result.latency_s:.1f} s · conversation {conversation}[/]"
            )
