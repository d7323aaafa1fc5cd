"""Citations in an agent answer: `[source § section]`, in the model's text or the sources line."""

from __future__ import annotations

import re

CITATION = re.compile(r"\[([a-z0-9][a-z0-9-]*)\s*§\s*[^\]]+\]")
"""`[source § section]` as the agent cites a passage (agent/prompts/answer_knowledge.md, agent/render.py)."""


def cited_sources(answer: str) -> list[str]:
    """The document ids an answer cites, in order, once each."""
    return list(dict.fromkeys(m.group(1) for m in CITATION.finditer(answer)))


def narrative(answer: str) -> str:
    """The model's own text: the answer without the "Sources: ..." line code appends (agent/render.py)."""
    return re.split(r"(?m)^Sources: ", answer, maxsplit=1)[0]
