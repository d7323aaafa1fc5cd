"""Markdown rendering of the report (GitHub-flavoured tables; charts listed as their figures)."""

from __future__ import annotations

import re

from tools.analysis.report.charts import CHARTS
from tools.analysis.report.document import Block, Bullets, ChartBlock, Document, Paragraph, Subheading, Table


def _text(text: str) -> str:
    """Text as Markdown shows it literally: raw HTML from names in the data (`<script>`, `<img onerror=…>`)
    is escaped, never passed through to a renderer that would run it, and so are Markdown links and
    images (`[label](url)`, `![](url)`: a link the report did not write, an image that loads on view)."""
    text = re.sub(r"&(?=#?[A-Za-z0-9]+;)", "&amp;", text)  # an entity stays text; a plain "&" is fine
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("[", "\\[").replace("]", "\\]")  # the document's text never holds Markdown


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in t.headers) + " |"]
    out.append("|" + "|".join("---:" if a == "right" else "---" for a in t.align) + "|")
    last = len(t.rows) - 1
    for i, row in enumerate(t.rows):
        cells = [_cell(c) for c in row]
        if t.total_row and i == last:
            cells = [f"**{c}**" if c else c for c in cells]
        out.append("| " + " | ".join(cells) + " |")
    if t.caption:
        out += ["", f"*{_text(t.caption)}*"]
    return out


def _block(b: Block) -> list[str]:
    if isinstance(b, Paragraph):
        return [f"*{_text(b.text)}*" if b.muted else _text(b.text)]
    if isinstance(b, Subheading):
        return [f"### {_text(b.text)}"]
    if isinstance(b, Bullets):
        return [f"- {_text(item)}" for item in b.items]
    if isinstance(b, ChartBlock):
        return [f"> Chart: {CHARTS[b.key].title} (in the HTML and PDF formats). {_text(b.caption)}"]
    return _table(b)


def render_markdown(doc: Document) -> bytes:
    lines = [f"# {_text(doc.title)}", "", f"*{_text(doc.subtitle)}*", ""]
    for section in doc.sections:
        lines += [f"## {_text(section.title)}", ""]
        for block in section.blocks:
            lines += [*_block(block), ""]
    return ("\n".join(lines).rstrip() + "\n").encode("utf-8")
