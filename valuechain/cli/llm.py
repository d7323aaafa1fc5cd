"""`valuechain llm ...`: which model answers, how fast, and the embedded server in the foreground."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.llm.model_files import ModelFilesError
from core.settings import Settings, get_settings
from valuechain.cli.common import JsonOption, console, err_console, fail, print_json

if TYPE_CHECKING:
    from agent.llm.model_files import ProgressFn
    from agent.llm.server import EmbeddedLLMServer
    from agent.llm.status import LLMStatus

app = typer.Typer(no_args_is_help=True)


@contextmanager
def _join_progress(enabled: bool) -> Iterator[ProgressFn | None]:
    """A byte progress bar on stderr while the packaged model is joined (first start only)."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("joining the packaged model"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("join", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _embedded_server(settings: Settings, show_progress: bool, **overrides: object) -> EmbeddedLLMServer:
    # [llm] extra: agent.llm.server imports httpx, which the base install lacks
    from agent.llm.server import EmbeddedLLMServer

    try:
        with _join_progress(show_progress) as progress:
            return EmbeddedLLMServer.from_settings(settings, progress=progress, **overrides)
    except ModelFilesError as exc:
        raise fail(str(exc)) from exc


def _print_status(status: LLMStatus) -> None:
    table = Table("", "", show_header=False, box=None)
    table.add_row("endpoint", "embedded llama.cpp server" if status.embedded else "configured (LLM_BASE_URL)")
    table.add_row("base url", status.base_url or "-")
    table.add_row("model", status.model)
    if status.model_path:
        table.add_row("model file", status.model_path)
    if status.cold_start_s is not None:
        table.add_row("cold start", f"{status.cold_start_s:.1f} s (process start → /health)")
    if status.speed is not None:
        s = status.speed
        pp = f"{s.prompt_tokens_per_s:.1f} tokens/s" if s.prompt_tokens_per_s is not None else "-"
        tg = f"{s.gen_tokens_per_s:.1f} tokens/s" if s.gen_tokens_per_s is not None else "-"
        table.add_row("prompt", f"{pp} ({s.prompt_tokens} tokens)")
        table.add_row("generation", f"{tg} ({s.completion_tokens} tokens, {s.source})")
        table.add_row("request", f"{s.wall_s:.1f} s")
    if status.load_average_1m is not None:
        table.add_row("load average", f"{status.load_average_1m:.2f} on {status.cpu_count} cores")
    console.print(table)
    if status.routing is not None:
        probe = Table("question", "expected", "called", "ok", "s", "problems", title="routing probe")
        for r in status.routing:
            probe.add_row(r.question, r.expected_tool, r.tool or "-", "yes" if r.valid else "no",
                          f"{r.seconds:.1f}" if r.seconds is not None else "-", "; ".join(r.problems))
        console.print(probe)
        console.print(f"routing: {sum(r.valid for r in status.routing)} of {len(status.routing)} right")


@app.command("status", help="Show which LLM endpoint and model answer, and measure prompt/generation speed.")
def status_cmd(
    as_json: bool = JsonOption,
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Send one short timed request"),
    routing: bool = typer.Option(
        False, "--routing", help="Also ask the ten routing-probe questions with the product's tools and prompt"
    ),
) -> None:
    # [llm] extra: httpx is not in the base install
    import httpx

    # [llm] extra: client and server import httpx; the probe and status load langchain (~0.45 s)
    from agent.llm.client import LLMConfigError, resolve_endpoint
    from agent.llm.probe import run_routing
    from agent.llm.server import LLMServerError
    from agent.llm.status import LLMStatus, load_average, measure_speed

    settings = get_settings()
    try:
        endpoint = resolve_endpoint(settings)
    except LLMConfigError as exc:
        raise fail(str(exc)) from exc
    status = LLMStatus(embedded=endpoint.embedded, base_url=endpoint.base_url, model=endpoint.model)
    try:
        if endpoint.embedded:
            server = _embedded_server(settings, show_progress=not as_json)
            status.model_path = str(server.config.model_path)
            if measure or routing:
                if not as_json:
                    err_console.print("starting the embedded model server …")
                with server:
                    status.cold_start_s = server.started_s
                    status.base_url = server.base_url
                    running = endpoint._replace(base_url=server.base_url)
                    if measure:
                        status.speed = measure_speed(running, settings)
                    if routing:
                        status.routing = run_routing(running, settings)
        else:
            if measure:
                status.speed = measure_speed(endpoint, settings)
            if routing:
                status.routing = run_routing(endpoint, settings)
    except LLMServerError as exc:
        raise fail(str(exc)) from exc
    except httpx.HTTPError as exc:
        where = status.base_url or "the embedded server"
        raise fail(f"the LLM endpoint {where} did not answer: {type(exc).__name__}: {exc}") from exc
    status.load_average_1m = load_average()
    status.cpu_count = os.cpu_count()
    if as_json:
        print_json(status)
    else:
        _print_status(status)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command("serve", help="Run the embedded model server in the foreground until Ctrl-C.")
def serve_cmd(
    port: int | None = typer.Option(None, "--port", help="Loopback port (default: a free one)"),
    parallel: int | None = typer.Option(
        None, "--parallel", help="Server slots (default 2: one per prompt shape)"
    ),
    ctx: int | None = typer.Option(None, "--ctx", help="Context size in tokens, shared by the slots"),
) -> None:
    # [llm] extra: agent.llm.server imports httpx, which the base install lacks
    from agent.llm.server import LLMServerError

    settings = get_settings()
    overrides: dict[str, object] = {"port": port}
    if parallel is not None:
        overrides["n_parallel"] = parallel
    if ctx is not None:
        overrides["n_ctx"] = ctx
    if settings.llm_base_url:
        err_console.print(
            f"note: LLM_BASE_URL is set ({settings.llm_base_url}); serving the embedded model anyway"
        )
    server = _embedded_server(settings, show_progress=True, **overrides)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the child cleanly on SIGTERM too
    try:
        server.start()
        console.print(f"serving {server.model!r} at {server.base_url} (pid {server.pid}); Ctrl-C stops it")
        console.print(f"  use it elsewhere: LLM_BASE_URL={server.base_url} LLM_MODEL={server.model}")
        while server.running:
            time.sleep(1.0)
        raise fail("the embedded model server exited")
    except LLMServerError as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        server.stop()
