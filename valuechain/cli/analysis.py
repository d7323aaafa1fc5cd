"""`valuechain analysis report`: the five-step value-chain analysis as Markdown, HTML or PDF.

`--json` prints the typed result (`ValueChainAnalysis`) as one JSON document instead. Text
formats go to stdout unless `--out` is given; PDF needs `--out` (or a pipe).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import cast

import typer

from core.runtime import get_sessionmaker
from tools.analysis import ValueChainAnalysis, value_chain_analysis
from tools.analysis.report import FORMATS, ReportFormat, render_report
from valuechain.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    err_console,
    fail,
    print_json,
    settings_for,
    tool_errors,
)

app = typer.Typer(no_args_is_help=True)

_SUFFIXES: dict[str, ReportFormat] = {
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}


@app.callback()
def analysis() -> None:
    """Guided value-chain analysis: the five steps as a generated report."""


def _analyse(database_url: str | None, period: str | None) -> ValueChainAnalysis:
    with tool_errors(), get_sessionmaker(settings_for(database_url))() as session:
        return value_chain_analysis(session=session, period=period)


def _format(fmt: str | None, out: Path | None) -> ReportFormat:
    if fmt is None:
        return _SUFFIXES.get(out.suffix.lower(), "md") if out is not None else "md"
    key = fmt.strip().lower()
    if key not in FORMATS:
        raise fail(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}", code=2)
    return cast(ReportFormat, key)


@app.command("report", help="Five-step value-chain analysis as a report (md, html or pdf) with charts.")
def report_cmd(
    period: str | None = typer.Option(None, "--period", help="Period to analyse (default: the latest)"),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="md, html or pdf (default: from --out's suffix, else md)"
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the report to this file"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    if as_json and (fmt is not None or out is not None):
        raise fail("--json prints the analysis result as JSON; leave out --format and --out", code=2)
    resolved = None if as_json else _format(fmt, out)
    if resolved == "pdf" and out is None and sys.stdout.isatty():
        raise fail("a PDF is binary: give --out FILE.pdf (or pipe the output)", code=2)
    started = time.perf_counter()
    result = _analyse(database_url, period)
    if resolved is None:
        print_json(result)
        return
    data = render_report(result, resolved, currency=settings_for(database_url).currency)
    seconds = time.perf_counter() - started
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {str(out)!r}: {exc.strerror}") from None
    err_console.print(
        f"wrote {out} ({resolved}, {len(data):,} bytes, period {result.period}) in {seconds:.2f} s"
    )
