"""PDF rendering of the report with fpdf2: A4, DejaVu Sans (shipped with matplotlib), vector charts.

A real PDF library rather than a browser: it installs from PyPI with the `report` extra and
needs no Chromium. Headings become PDF bookmarks; a section starts a new page only near a page's foot.
The creation date is the data's as-of date, so the same result gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, TableCellFillMode, XPos, YPos
from fpdf.fonts import FontFace

from tools.analysis import ValueChainAnalysis
from tools.analysis.report.charts import chart_size, render_chart
from tools.analysis.report.document import Block, Bullets, ChartBlock, Document, Paragraph, Subheading, Table

FONT = "DejaVu"
ACCENT = (21, 101, 192)
INK = (33, 33, 33)
MUTED = (97, 97, 97)
BAND = (245, 247, 250)
# fpdf2 draws SVG as vector paths but has no use for (and logs a warning about) <metadata>.
_METADATA = re.compile(rb"<metadata>.*?</metadata>", re.DOTALL)
SECTION_MIN_SPACE = 70.0  # mm: start a section on a new page when less is left


def _font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


class _Report(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.report_title = title
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=16)
        fonts = _font_dir()
        self.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.add_font(FONT, "I", str(fonts / "DejaVuSans-Oblique.ttf"))

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font(FONT, "", 7)
        self.set_text_color(*MUTED)
        self.cell(0, 5, f"{self.report_title} · page {self.page_no()}/{{nb}}", align=Align.R)


def _paragraph(pdf: _Report, text: str, *, muted: bool = False, size: float = 9.0) -> None:
    pdf.set_font(FONT, "I" if muted else "", size - (0.5 if muted else 0))
    pdf.set_text_color(*(MUTED if muted else INK))
    pdf.multi_cell(0, size * 0.5, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _heading(pdf: _Report, text: str, level: int, keep_with: float = 0.0) -> None:
    """A heading, moved to the next page with `keep_with` mm of what follows if that does not fit."""
    size = {0: 15.0, 1: 11.0}[level]
    if pdf.will_page_break(size * 1.2 + keep_with):
        pdf.add_page()
    pdf.start_section(text, level=level, strict=False)
    pdf.set_font(FONT, "B", size)
    pdf.set_text_color(*(ACCENT if level == 0 else INK))
    pdf.multi_cell(0, size * 0.55, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if level == 0:
        y = pdf.get_y() + 0.5
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.5)
        pdf.line(pdf.l_margin, y, pdf.w - pdf.r_margin, y)
        pdf.ln(3)
    else:
        pdf.ln(1)


def _table(pdf: _Report, t: Table) -> None:
    pdf.set_font(FONT, "", 7.0 if len(t.headers) < 8 else 6.6)
    pdf.set_text_color(*INK)
    pdf.set_draw_color(200, 200, 200)
    pdf.set_line_width(0.2)
    aligns = tuple("RIGHT" if a == "right" else "LEFT" for a in t.align)
    with pdf.table(
        col_widths=tuple(t.widths),
        text_align=aligns,
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        headings_style=FontFace(emphasis="BOLD", fill_color=BAND),
        line_height=3.4,
        padding=(0.9, 1.0, 0.9, 1.0),
        width=pdf.epw,
        cell_fill_mode=TableCellFillMode.NONE,
    ) as table:
        table.row(t.headers)
        last = len(t.rows) - 1
        for i, row in enumerate(t.rows):
            style = FontFace(emphasis="BOLD") if t.total_row and i == last else None
            table.row(row, style=style)
    if t.caption:
        pdf.ln(0.8)
        pdf.set_font(FONT, "I", 7)
        pdf.set_text_color(*MUTED)
        pdf.multi_cell(0, 3.2, t.caption, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)


def _chart_height(pdf: _Report, block: ChartBlock, result: ValueChainAnalysis) -> float:
    w_in, h_in = chart_size(block.key, result)
    return pdf.epw * h_in / w_in


def _keep_with(pdf: _Report, following: Block | None, result: ValueChainAnalysis) -> float:
    """Space (mm) a subheading needs below it: the chart that follows, or a few table rows."""
    if isinstance(following, ChartBlock):
        return _chart_height(pdf, following, result) + 8
    return 25.0


def _bullets(pdf: _Report, items: list[str]) -> None:
    pdf.set_font(FONT, "", 9)
    pdf.set_text_color(*INK)
    for item in items:
        pdf.cell(4, 4.5, "•")
        pdf.multi_cell(0, 4.5, item, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _chart(pdf: _Report, block: ChartBlock, result: ValueChainAnalysis) -> None:
    width = pdf.epw
    height = _chart_height(pdf, block, result)
    if pdf.will_page_break(height + 8):
        pdf.add_page()
    svg = render_chart(block.key, result, "svg", text_as_paths=True)
    pdf.image(io.BytesIO(_METADATA.sub(b"", svg, count=1)), x=pdf.l_margin, w=width, h=height)
    pdf.set_font(FONT, "I", 7)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(0, 3.2, block.caption, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)


def render_pdf(doc: Document, result: ValueChainAnalysis) -> bytes:
    pdf = _Report(doc.title)
    pdf.set_title(doc.title)
    pdf.set_author("Value Chain Copilot")
    pdf.set_creator("Value Chain Copilot (fpdf2)")
    pdf.set_creation_date(dt.datetime.combine(result.as_of, dt.time(), tzinfo=dt.UTC))
    pdf.add_page()
    pdf.set_font(FONT, "B", 20)
    pdf.set_text_color(*ACCENT)
    pdf.cell(0, 10, doc.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _paragraph(pdf, doc.subtitle, muted=True, size=9.5)
    for n, section in enumerate(doc.sections):
        if n > 0 and pdf.will_page_break(SECTION_MIN_SPACE):  # no lonely heading at a page foot
            pdf.add_page()
        elif n > 0:
            pdf.ln(4)
        _heading(pdf, section.title, 0)
        for i, b in enumerate(section.blocks):
            if isinstance(b, Paragraph):
                _paragraph(pdf, b.text, muted=b.muted)
            elif isinstance(b, Subheading):
                following = section.blocks[i + 1] if i + 1 < len(section.blocks) else None
                _heading(pdf, b.text, 1, keep_with=_keep_with(pdf, following, result))
            elif isinstance(b, Bullets):
                _bullets(pdf, b.items)
            elif isinstance(b, ChartBlock):
                _chart(pdf, b, result)
            else:
                _table(pdf, b)
    return bytes(pdf.output())
