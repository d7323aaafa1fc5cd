"""Rendered reports (interfaces layer): the value-chain analysis as Markdown, HTML or PDF.

`render_report(result, fmt)` is the one entry point; the CLI and, later, the HTTP API call it.
"""

from __future__ import annotations

from typing import Literal, get_args

from tools.analysis import ValueChainAnalysis

ReportFormat = Literal["md", "html", "pdf"]
FORMATS: tuple[ReportFormat, ...] = get_args(ReportFormat)
MEDIA_TYPES: dict[ReportFormat, str] = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}


def render_report(result: ValueChainAnalysis, fmt: ReportFormat, *, currency: str = "USD") -> bytes:
    """The analysis as a Markdown, HTML or PDF document (bytes; text formats are UTF-8), amounts in
    `currency` (an ISO 4217 code: settings.currency)."""
    # deferred: the [report] extra (matplotlib, jinja2, fpdf2) loads only for the format asked
    from tools.analysis.report.document import build_document

    doc = build_document(result, currency=currency)
    if fmt == "md":
        # [report] extra: markdown.py imports charts.py (matplotlib, ~0.24 s)
        from tools.analysis.report.markdown import render_markdown

        return render_markdown(doc)
    if fmt == "html":
        # [report] extra: jinja2, and charts.py's matplotlib (~0.24 s)
        from tools.analysis.report.html import render_html

        return render_html(doc, result)
    if fmt == "pdf":
        # [report] extra: fpdf2 (~0.12 s on top of charts.py's matplotlib)
        from tools.analysis.report.pdf import render_pdf

        return render_pdf(doc, result)
    raise ValueError(f"unknown report format {fmt!r}; valid: {', '.join(FORMATS)}")


__all__ = ["FORMATS", "MEDIA_TYPES", "ReportFormat", "render_report"]
