"""The agent's prompts and policy, kept as files (system.md, answer.md, retry_tool_call.md)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent


@cache
def load_prompt(name: str) -> str:
    """The text of `agent/prompts/<name>` without its trailing newline."""
    return (PROMPTS_DIR / name).read_text(encoding="utf-8").rstrip("\n")
