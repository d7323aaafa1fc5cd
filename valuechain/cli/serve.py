"""`valuechain serve`: run the HTTP API (and, once mounted, the chat UI and Slack app)."""

from __future__ import annotations

import typer

from valuechain.cli.common import console


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes (each opens its own resources)"
    ),
    log_level: str = typer.Option("info", "--log-level", help="critical, error, warning, info, debug"),
) -> None:
    """Serve the API with uvicorn on `api.app:create_app` (settings from the environment)."""
    import uvicorn

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(
        f"Value Chain Copilot API on http://{shown}:{port}  "
        f"(OpenAPI docs: http://{shown}:{port}/docs, readiness: /readyz)"
    )
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=True,
    )
