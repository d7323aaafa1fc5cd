"""The analysis report over HTTP (issue #19 item 11): names from the data are text in the served
Markdown and HTML, and the HTML comes with a policy under which no script runs."""

from __future__ import annotations

import factories as f
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.routes.ui import CSP as UI_CSP

PAYLOAD = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _directives(policy: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in (p.strip() for p in policy.split(";")) if d}


def test_the_served_report_escapes_names_and_runs_no_script(
        client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]) -> None:
    with factory() as s:
        f.account(s, "EVIL-0001", name=f"Evil {PAYLOAD}")
        f.activity(s, "EVIL-ACT", name=f"Hosting {PAYLOAD}", owner_team=f"Ops {PAYLOAD}", annual_cost=5_000.0,
                   value_score=1.0)
        s.commit()
    html = client.get("/api/v1/analysis?format=html", headers=bearer(keys["analyst"]))
    md = client.get("/api/v1/analysis?format=md", headers=bearer(keys["analyst"]))
    assert html.status_code == md.status_code == 200
    assert "Hosting &lt;script&gt;alert(1)&lt;/script&gt;" in html.text
    assert "Hosting &lt;script&gt;alert(1)&lt;/script&gt;" in md.text
    for body in (html.text, md.text):
        assert "<script" not in body and "<img" not in body
    report, ui = _directives(html.headers["content-security-policy"]), _directives(UI_CSP)
    # as strict as the UI's policy or stricter: nothing may load or run but inline styles and data: images
    assert report["default-src"] == "'none'" and "script-src" not in report and "connect-src" not in report
    assert report["base-uri"] == ui["base-uri"] and report["form-action"] == ui["form-action"]
    assert html.headers["x-content-type-options"] == "nosniff" and html.headers["referrer-policy"] == "no-referrer"
    assert md.headers["x-content-type-options"] == "nosniff"
