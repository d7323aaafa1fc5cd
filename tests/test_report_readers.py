"""The analysis report reads for a business reader: amounts in the configured currency, no
formula shorthand, tool names or snake_case ids before the "How it is computed" appendix (which
keeps the formulas), one defined win rate, and contents links that point at sections that exist."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from tools.analysis import ValueChainAnalysis, value_chain_analysis
from tools.analysis.report import render_report
from tools.analysis.report.document import NOTES_HEADING, WIN_RATE_LABEL, readable

# what a business reader should not meet in the narrative
JARGON = [r"SQ·SP", r"\bAQ\b", r"\bSQ\b", r"\bSP\b", r"eliminate_or_restructure", r"score_activities",
          r"value_chain_analysis", r"next_best_action", r"propose_recommendation", r"\b[a-z]+_[a-z_]+\b"]


@pytest.fixture(scope="module")
def result(demo_db: Path) -> ValueChainAnalysis:
    engine = make_engine(f"sqlite:///{demo_db}")
    sessions: sessionmaker[Session] = make_sessionmaker(engine)
    with sessions() as s:
        out = value_chain_analysis(session=s)
    engine.dispose()
    return out


def _text(fragment: str) -> str:
    fragment = re.sub(r"<svg.*?</svg>", " ", fragment, flags=re.S)
    fragment = re.sub(r"<style>.*?</style>", " ", fragment, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _split(report: str) -> tuple[str, str]:
    head, appendix = report.split(f"<h2>{NOTES_HEADING}</h2>")
    return _text(head), _text(appendix)


@pytest.mark.parametrize("currency", ["USD", "EUR"])
def test_the_narrative_has_no_jargon_and_amounts_carry_the_currency(
    result: ValueChainAnalysis, currency: str
) -> None:
    narrative, appendix = _split(render_report(result, "html", currency=currency).decode("utf-8"))
    found = {p: re.findall(p, narrative)[:3] for p in JARGON if re.search(p, narrative)}
    assert found == {}, f"jargon in the narrative: {found}"
    symbol = {"USD": "$", "EUR": "€"}[currency]
    assert f"total cost {symbol}" in narrative
    # no bare grouped amount (19,255,500) left without its currency in the narrative paragraphs
    assert not re.search(r"(?<![\w.,$€])\d{1,3}(?:,\d{3})+(?![\d,]*\s*%)", readable("cost 19,255,500 today"))
    # the appendix keeps the formulas and says which currency
    assert "SQ·SP" in appendix and "(AQ − SQ)·SP" in appendix and f"Amounts are in {currency}" in appendix


def test_one_defined_win_rate(result: ValueChainAnalysis) -> None:
    narrative, appendix = _split(render_report(result, "html").decode("utf-8"))
    assert narrative.count(WIN_RATE_LABEL) == 1
    assert "opportunities won ÷ opportunities closed" in narrative
    assert "Win rate (CRM) = closed-won / (closed-won + closed-lost)" in appendix


def test_contents_links_point_at_sections(result: ValueChainAnalysis) -> None:
    report = render_report(result, "html").decode("utf-8")
    links = re.findall(r'<a href="#([^"]+)">', report)
    assert len(links) >= 8
    for target in links:
        assert f'<section id="{target}">' in report


def test_markdown_and_pdf_use_the_currency_too(result: ValueChainAnalysis) -> None:
    md = render_report(result, "md", currency="GBP").decode("utf-8")
    assert "total cost £" in md and "Amounts are in GBP" in md
    assert render_report(result, "pdf", currency="GBP").startswith(b"%PDF")
