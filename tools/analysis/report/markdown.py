"""Markdown rendering of the report (GitHub-flavoured tables; charts listed as their figures)."""

from __future__ import annotations

from tools.analysis.report.charts import CHARTS
from tools.analysis.report.document import Block, Bullets, ChartBlock, Document, Paragraph, Subheading, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


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
        out += ["", f"*{t.caption}*"]
    return out


def _block(b: Block) -> list[str]:
    if isinstance(b, Paragraph):
        return [f"*{b.text}*" if b.muted else b.text]
    if isinstance(b, Subheading):
        return [f"### {b.text}"]
    if isinstance(b, Bullets):
        return [f"- {item}" for item in b.items]
    if isinstance(b, ChartBlock):
        return [f"> Chart: {CHARTS[b.key].title} (in the HTML and PDF formats). {b.caption}"]
    return _table(b)


def render_markdown(doc: Document) -> bytes:
    lines = [f"# {doc.title}", "", f"*{doc.subtitle}*", ""]
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += [*_block(block), ""]
    return ("\n".join(lines).rstrip() + "\n").encode("utf-8")
