"""The web UI at `/`: one HTML page and a small vanilla JS/CSS bundle (`api/static/`).

The page signs in with an API key (kept in the tab's sessionStorage and sent as the usual
`Authorization: Bearer` header: no cookie, so no CSRF surface) and calls the public API:
chat (SSE), the review queue, the tool endpoints and the analysis report. `GET /api/v1/me`
tells the page who the key belongs to and which decisions it may take. See docs/UI.md.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from api.auth import PERMISSIONS, Permission
from api.deps import AUTH_RESPONSES, ReaderDep, SettingsDep
from tools.review import ABANDON_REASONS, APPROVE_REASONS, REJECT_REASONS, Role

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = ("app.js", "pages.js", "revenue.js", "outcomes.js", "chat.js", "app.css")

# The page loads only its own script and styles; the report preview is an inline-styled
# document in a sandboxed frame, downloads are blob: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; frame-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["ui"])


class Me(BaseModel):
    """The caller behind the API key, what their role allows, and the review reason codes."""

    user: str
    role: Role
    permissions: list[Permission]
    approve_reasons: dict[str, str] = Field(description="Reason codes for approving (optional)")
    reject_reasons: dict[str, str] = Field(description="Reason codes for rejecting (required)")
    abandon_reasons: dict[str, str] = Field(description="Reason codes for abandoning an approved one (required)")
    recommendation_ttl_days: int
    currency: str = Field(description="ISO 4217 code the CRM's amounts are in (settings.currency)")


@router.get("/api/v1/me", response_model=Me, summary="Who this API key belongs to and what it may do",
            responses=AUTH_RESPONSES)
def me_route(principal: ReaderDep, settings: SettingsDep) -> Me:
    return Me(
        user=principal.name,
        role=principal.role,
        permissions=sorted(PERMISSIONS[principal.role]),
        approve_reasons=APPROVE_REASONS,
        reject_reasons=REJECT_REASONS,
        abandon_reasons=ABANDON_REASONS,
        recommendation_ttl_days=settings.recommendation_ttl_days,
        currency=settings.currency,
    )


@lru_cache(maxsize=1)
def _index_html() -> str:
    """index.html with the assets' content hash in their URLs, so a new version is never stale."""
    digest = hashlib.sha256()
    for name in ASSETS:
        digest.update((STATIC_DIR / name).read_bytes())
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace("{{v}}", digest.hexdigest()[:12])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request) -> HTMLResponse:
    return HTMLResponse(
        _index_html(),
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"},
    )


@router.get("/ui", include_in_schema=False)
def ui_alias() -> RedirectResponse:
    return RedirectResponse("/", status_code=307)


def mount(app: FastAPI) -> None:
    """Serve the UI at `/` and its assets under `/static`, plus `GET /api/v1/me`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
