"""`valuechain serve`: run the HTTP API, the web UI at `/` (and, once mounted, the Slack app)."""

from __future__ import annotations

import typer
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from core.runtime import get_sessionmaker
from core.settings import Settings, get_settings
from crm.models import ApiKey
from valuechain.cli.common import console


def _key_hint(settings: Settings) -> str:
    """How to sign in: whether any API key exists yet, and how to make one."""
    make = "`valuechain keys create --name NAME --role admin`"
    try:
        with get_sessionmaker(settings)() as session:
            active = session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None)))
    except (OperationalError, ProgrammingError):
        return "the database is not initialised: run `valuechain init` first (it prints a first admin key)"
    if not active:
        return f"no API key exists yet: create one with {make}"
    return f"sign in with an API key (the first `valuechain init` printed an admin key; more: {make})"


def _llm_hint(settings: Settings, workers: int = 1) -> str:
    if settings.llm_base_url:
        return f"chat model at {settings.llm_base_url}"
    if settings.llm_autostart:
        # the first worker to get the lock in LLMRuntime.open starts it; the rest attach to its URL
        shared = (
            f"; one model server for all {workers} workers (it stops with the worker that started it: "
            "a team server runs `valuechain llm serve` and sets LLM_BASE_URL, docs/DEPLOY.md)"
            if workers > 1 else ""
        )
        return (
            "chat model: the embedded model starts in the background (about a minute on first use); "
            f"everything else answers at once{shared}"
        )
    return "chat is off (LLM_AUTOSTART=false and no LLM_BASE_URL); everything else works"


SHUTDOWN_GRACE_S = 5


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes (each opens its own resources)"
    ),
    log_level: str = typer.Option("info", "--log-level", help="critical, error, warning, info, debug"),
) -> None:
    """Serve the web UI (at /) and the API with uvicorn on `api.app:create_app` (settings from the environment)."""
    # [api] extra: uvicorn
    import uvicorn

    settings = get_settings()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    console.print(f"[bold]Value Chain Copilot UI: {base}/[/bold]", highlight=False)
    console.print(f"API docs: {base}/docs  ·  readiness: {base}/readyz", highlight=False)
    console.print(_key_hint(settings), highlight=False)
    console.print(_llm_hint(settings, workers), highlight=False)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=True,
        # An open chat event stream follows a run that may take minutes: after this grace the
        # server closes such streams, and the shutdown marks their runs interrupted (docs/API.md).
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
