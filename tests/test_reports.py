"""tools/analysis/report and `valuechain analysis report`: md, html and pdf carry every step."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import factories as f
import pytest
from pypdf import PdfReader
from sqlalchemy import Engine
from typer.testing import CliRunner

from core.db import make_engine, make_sessionmaker
from crm.demo import DEFAULT_AS_OF, generate_demo
from crm.migrate import upgrade
from tools.analysis import ValueChainAnalysis, value_chain_analysis
from tools.analysis.report import FORMATS, render_report
from tools.analysis.report.charts import CHARTS, render_chart, short_id
from tools.analysis.report.document import CRM_HEADING, STEP_HEADINGS, readable
from valuechain.cli.main import app

runner = CliRunner()
HEADINGS = (*STEP_HEADINGS, CRM_HEADING)


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'demo.db'}"
    engine = make_engine(url)
    upgrade(engine)
    generate_demo(engine, accounts=80, seed=5, as_of=DEFAULT_AS_OF)
    engine.dispose()
    yield url


@pytest.fixture(scope="module")
def result(demo_url: str) -> ValueChainAnalysis:
    engine = make_engine(demo_url)
    with make_sessionmaker(engine)() as s:
        r = value_chain_analysis(session=s)
    engine.dispose()
    return r


@pytest.fixture(scope="module")
def pdf_bytes(result: ValueChainAnalysis) -> bytes:
    return render_report(result, "pdf")


def _pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_markdown_has_every_heading_and_the_figures(result: ValueChainAnalysis) -> None:
    md = render_report(result, "md").decode("utf-8")
    for heading in HEADINGS:
        assert f"\n## {heading}\n" in md
    assert md.startswith(f"# Value-chain analysis {result.period}\n")
    top = result.step3_costs.margin_leak[0]
    assert f"| 1 | {top.name} ({short_id(top.id, result.period)}) | ${top.margin_leak:,.0f} |" in md
    for i in result.step4_opportunities.initiatives:
        assert f"{i.id} {i.description}" in md
    assert readable(result.step5_advantage.narrative) in md


def test_html_has_every_heading_and_three_inline_charts(result: ValueChainAnalysis) -> None:
    html = render_report(result, "html").decode("utf-8")
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in html
    assert html.count("<svg") == 3 and "<?xml" not in html
    assert "Trade-show sponsorships" in html and "&amp;" in html  # names are escaped ("R&D")
    assert render_report(result, "html") == html.encode("utf-8")  # byte-stable


def test_pdf_opens_and_contains_every_step_heading(result: ValueChainAnalysis, pdf_bytes: bytes) -> None:
    assert pdf_bytes.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf_bytes))
    assert len(reader.pages) >= 4
    text = _pdf_text(pdf_bytes)
    for heading in HEADINGS:
        assert heading in text
    assert f"{result.step3_costs.total_margin_leak:,.0f}" in text
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    assert all(h in outline for h in HEADINGS)
    assert reader.metadata is not None and reader.metadata.title == f"Value-chain analysis {result.period}"


def test_pdf_is_byte_stable(result: ValueChainAnalysis, pdf_bytes: bytes) -> None:
    assert render_report(result, "pdf") == pdf_bytes


def test_charts_render_as_svg_and_png(result: ValueChainAnalysis) -> None:
    for key in CHARTS:
        svg = render_chart(key, result, "svg")
        assert b"<svg" in svg and svg == render_chart(key, result, "svg")
        assert render_chart(key, result, "png", dpi=50).startswith(b"\x89PNG")


def test_unknown_format_raises(result: ValueChainAnalysis) -> None:
    with pytest.raises(ValueError, match="valid: md, html, pdf"):
        render_report(result, "docx")  # type: ignore[arg-type]


def test_sparse_data_renders_in_every_format(engine: Engine) -> None:
    """No leak, no initiatives, no drivers, no accounts: still a complete report."""
    with make_sessionmaker(engine)() as s:
        f.activity(s, "X1", annual_cost=100.0, value_score=5.0)
        f.activity(s, "X2", annual_cost=100.0, value_score=5.0, kind="support", porter_category="procurement")
        s.commit()
        r = value_chain_analysis(session=s)
    assert r.step3_costs.margin_leak == [] and r.step4_opportunities.initiatives == []
    for fmt in FORMATS:
        data = render_report(r, fmt)
        text = _pdf_text(data) if fmt == "pdf" else data.decode("utf-8")
        assert all(h in text for h in HEADINGS)


# ---------------------------------------------------------------- CLI


def test_cli_markdown_to_stdout(demo_url: str) -> None:
    out = runner.invoke(app, ["analysis", "report", "--database-url", demo_url])
    assert out.exit_code == 0, out.output
    assert all(f"## {h}" in out.stdout for h in HEADINGS)


def test_cli_json_is_the_typed_result(demo_url: str, result: ValueChainAnalysis) -> None:
    out = runner.invoke(app, ["analysis", "report", "--json", "--database-url", demo_url])
    assert out.exit_code == 0, out.output
    assert ValueChainAnalysis.model_validate(json.loads(out.stdout)) == result


@pytest.mark.parametrize(("name", "fmt"), [("report.pdf", None), ("report.html", None), ("r.txt", "md")])
def test_cli_writes_the_format_of_the_file(demo_url: str, tmp_path: Path, name: str, fmt: str | None) -> None:
    target = tmp_path / name
    args = ["analysis", "report", "--out", str(target), "--database-url", demo_url]
    out = runner.invoke(app, [*args, "--format", fmt] if fmt else args)
    assert out.exit_code == 0, out.output
    data = target.read_bytes()
    if name.endswith(".pdf"):
        assert data.startswith(b"%PDF-") and "4. Opportunities" in _pdf_text(data)
    elif name.endswith(".html"):
        assert data.startswith(b"<!doctype html>")
    else:
        assert data.startswith(b"# Value-chain analysis")
    assert f"wrote {target}" in out.stderr.replace("\n", "")


def test_cli_input_errors_exit_2(demo_url: str, tmp_path: Path) -> None:
    base = ["analysis", "report", "--database-url", demo_url]
    bad_period = runner.invoke(app, [*base, "--period", "2031"])
    assert bad_period.exit_code == 2 and "valid: 2026, 2025" in bad_period.stderr
    bad_format = runner.invoke(app, [*base, "--format", "docx"])
    assert bad_format.exit_code == 2 and "valid: md, html, pdf" in bad_format.stderr
    both = runner.invoke(app, [*base, "--json", "--out", str(tmp_path / "x.md")])
    assert both.exit_code == 2


def test_html_from_names_is_escaped_in_markdown_and_html(engine: Engine) -> None:
    """Issue #19 item 11: names in the data are text in every format, never markup a viewer would run."""
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    with make_sessionmaker(engine)() as s:
        f.activity(s, "X1", name=f"Hosting {payload}", annual_cost=900.0, value_score=1.0)
        f.activity(s, "X2", name="Billing & <b>ops</b>", annual_cost=100.0, value_score=9.0, kind="support",
                   porter_category="procurement")
        s.commit()
        r = value_chain_analysis(session=s)
    md = render_report(r, "md").decode("utf-8")
    html = render_report(r, "html").decode("utf-8")
    for text in (md, html):
        assert "<script>alert(1)" not in text and "<img src=x" not in text and "<b>ops</b>" not in text
    assert "Hosting &lt;script&gt;alert(1)&lt;/script&gt;" in md and "Billing & &lt;b&gt;ops&lt;/b&gt;" in md


PAYLOADS = ('<script>alert(1)</script>', '<img src=x onerror="alert(2)">', '<svg onload=alert(3)>',
            '[click me](javascript:alert(4))', '![pixel](https://evil.example/p.png)')


def test_script_and_onerror_payloads_in_account_and_activity_names_stay_text(engine: Engine) -> None:
    """Issue #19 item 11: names, teams and initiative text from the data never become markup (HTML, or a
    Markdown link or image) in the Markdown and HTML reports."""
    import re

    with make_sessionmaker(engine)() as s:
        for i, payload in enumerate(PAYLOADS):
            f.account(s, f"ACME-000{i}", name=f"Acme {payload}")
            f.activity(s, f"X{i}", name=f"Hosting {i} {payload}", owner_team=f"Ops {payload}",
                       annual_cost=900.0 + i, value_score=1.0)
            f.initiative(s, f"INI-{i}", activity_id=f"X{i}", description=f"Automate {payload}")
        f.activity(s, "S1", name="Billing & <b>ops</b>", annual_cost=100.0, value_score=9.0, kind="support",
                   porter_category="procurement")
        s.commit()
        r = value_chain_analysis(session=s)
    md = render_report(r, "md").decode("utf-8")
    html = render_report(r, "html").decode("utf-8")
    assert "Hosting 0 &lt;script&gt;alert(1)&lt;/script&gt;" in md and "Billing & &lt;b&gt;ops&lt;/b&gt;" in md
    assert "\\[click me\\](javascript:alert(4))" in md and "!\\[pixel\\](https://evil.example/p.png)" in md
    assert re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", md) is None  # no Markdown link or image left whole
    for text in (md, html):
        for raw in ("<script", "<img", "<svg onload", "<b>"):
            assert raw not in text, raw
    assert re.search(r"<[^>]*\son(error|load)\s*=", html) is None  # no event handler attribute in any tag
    assert "Hosting 0 &lt;script&gt;" in html  # shown as text, not dropped
