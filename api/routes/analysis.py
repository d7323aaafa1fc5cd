"""The value-chain analysis report: `GET /api/v1/analysis?period=&format=json|md|html|pdf`.

The same `tools.analysis.value_chain_analysis` result and `tools.analysis.report.render_report`
rendering as `valuechain analysis report` (docs/ANALYSIS.md), so a report downloaded here is
byte-identical to the CLI's for the same database and period.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from api.deps import AUTH_RESPONSES, AnalystDep, SessionDep, SettingsDep
from api.metrics import observe_tool
from tools.analysis import ValueChainAnalysis, value_chain_analysis
from tools.analysis.report import MEDIA_TYPES, render_report

router = APIRouter(prefix="/api/v1/analysis", tags=["analysis"])

AnalysisFormat = Literal["json", "md", "html", "pdf"]
_SUFFIX = {"md": "md", "html": "html", "pdf": "pdf"}


REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'"
)
"""The HTML report runs no script at all (the UI's policy minus scripts and connections); the UI may
frame it (`frame-ancestors 'self'`), and its in-page links work."""
_SECURITY = {"html": {"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff",
                      "Referrer-Policy": "no-referrer"},  # the UI page's headers, with a stricter policy
             "md": {"X-Content-Type-Options": "nosniff"}}


@router.get(
    "",
    response_model=ValueChainAnalysis,
    summary="The five-step value-chain analysis as JSON, or as a Markdown, HTML or PDF report with charts",
    responses={
        **AUTH_RESPONSES,
        200: {
            "description": "`format=json` (default): the `ValueChainAnalysis`; md, html, pdf: the report",
            "content": {
                "text/markdown": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        422: {"description": "Unknown period (the message lists the valid ones) or format"},
    },
)
def analysis_route(
    session: SessionDep,
    settings: SettingsDep,
    _user: AnalystDep,
    period: Annotated[
        str | None, Query(description="Period to analyse; default the latest", examples=["2026"])
    ] = None,
    format: Annotated[AnalysisFormat, Query(description="json, md, html or pdf")] = "json",
    download: Annotated[bool, Query(description="Send as an attachment (save) rather than inline")] = False,
) -> Any:
    with observe_tool("value_chain_analysis"):
        result = value_chain_analysis(session=session, period=period)
    if format == "json":
        return result
    data = render_report(result, format, currency=settings.currency)
    disposition = "attachment" if download else "inline"
    filename = f"value-chain-analysis-{re.sub(r'[^A-Za-z0-9_.-]+', '-', result.period)}.{_SUFFIX[format]}"
    return Response(
        content=data,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'{disposition}; filename="{filename}"', **_SECURITY.get(format, {})},
    )
