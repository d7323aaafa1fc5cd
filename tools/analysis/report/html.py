"""HTML rendering of the report: one self-contained page, charts as inline SVG, print CSS."""

from __future__ import annotations

import re
from dataclasses import asdict
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, StrictUndefined, select_autoescape
from markupsafe import Markup

from tools.analysis import ValueChainAnalysis
from tools.analysis.report.charts import render_chart
from tools.analysis.report.document import Block, Bullets, ChartBlock, Document, Paragraph, Subheading

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


@cache
def _environment() -> Environment:
    return Environment(
        autoescape=select_autoescape(default=True), undefined=StrictUndefined, keep_trailing_newline=True
    )


def _text(name: str) -> str:
    return resources.files("tools.analysis.report").joinpath(name).read_text(encoding="utf-8")


def inline_svg(svg: bytes) -> Markup:
    """matplotlib's SVG without the XML prologue and doctype, ready to inline."""
    return Markup(_PROLOGUE.sub("", svg.decode("utf-8"), count=1))


def _block(b: Block, result: ValueChainAnalysis) -> dict[str, Any]:
    if isinstance(b, Paragraph):
        return {"kind": "paragraph", **asdict(b)}
    if isinstance(b, Subheading):
        return {"kind": "subheading", **asdict(b)}
    if isinstance(b, Bullets):
        return {"kind": "bullets", **asdict(b)}
    if isinstance(b, ChartBlock):
        return {"kind": "chart", "caption": b.caption, "svg": inline_svg(render_chart(b.key, result, "svg"))}
    return {"kind": "table", **asdict(b)}


def render_html(doc: Document, result: ValueChainAnalysis) -> bytes:
    template = _environment().from_string(_text("report.html.jinja"))
    sections = [{"title": s.title, "blocks": [_block(b, result) for b in s.blocks]} for s in doc.sections]
    html = template.render(
        doc={"title": doc.title, "subtitle": doc.subtitle, "sections": sections},
        css=Markup(_text("report.css")),
    )
    return html.encode("utf-8")
