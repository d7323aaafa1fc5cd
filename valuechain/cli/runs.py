"""`valuechain runs ...`: follow or stop a chat run on a running server, by id, over its HTTP API.

A chat turn runs in the server (docs/API.md, "Durable chat runs"); these commands reattach to
one from a terminal (the same events the web page shows, replayed from the start or after an
event id) or stop it. Only the standard library talks HTTP here, so the base install suffices.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import typer

from valuechain.cli.common import console, err_console

app = typer.Typer(no_args_is_help=True)

UrlOption = typer.Option("http://127.0.0.1:8000", "--url", help="The server (valuechain serve)")
KeyOption = typer.Option(..., "--key", envvar="VALUECHAIN_API_KEY", help="Your API key (or VALUECHAIN_API_KEY)")


def _request(url: str, key: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {key}", **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=600)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        try:
            detail = json.loads(body).get("detail", body)
        except ValueError:
            detail = body
        err_console.print(f"[red]HTTP {exc.code}[/red]: {detail}")
        raise typer.Exit(3) from None
    except urllib.error.URLError as exc:
        err_console.print(f"[red]cannot reach {url}[/red]: {exc.reason}; is `valuechain serve` running?")
        raise typer.Exit(2) from None


def sse_events(lines: Iterator[bytes]) -> Iterator[tuple[int | None, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event in a byte-line stream."""
    seq: int | None = None
    name = "message"
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield seq, name, json.loads("\n".join(data))
            seq, name, data = None, "message", []
        elif line.startswith("id:"):
            seq = int(line[3:].strip())
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


@app.command("follow", help="Reattach to a chat run: print its events from the start (or after --after) until it ends.")
def follow_cmd(
    run_id: str = typer.Argument(..., help="The run id (run-…)"),
    after: int = typer.Option(0, "--after", min=0, help="Only the events after this event id (Last-Event-ID)"),
    url: str = UrlOption,
    key: str = KeyOption,
    as_json: bool = typer.Option(False, "--json", help="One JSON line per event, with its id"),
) -> None:
    resp = _request(f"{url.rstrip('/')}/api/v1/chat/runs/{run_id}/events", key,
                    headers={"Accept": "text/event-stream", "Last-Event-ID": str(after)})
    with resp:
        for seq, event, data in sse_events(iter(resp.readline, b"")):
            if as_json:
                console.print_json(json.dumps({"id": seq, **data}))
            elif event == "token":
                console.out(data.get("text", ""), end="", highlight=False)
            elif event == "tool_start":
                console.print(f"[dim]→ {data.get('name')} {json.dumps(data.get('args') or {})}[/dim]")
            elif event == "tool_end":
                console.print(f"[dim]← {data.get('name')} {'ok' if data.get('ok') else 'error'}[/dim]")
            elif event == "queue" and data.get("position"):
                console.print(f"[dim]{data.get('text')}[/dim]")
            elif event == "error":
                err_console.print(f"[red]{data.get('text')}[/red]")
            elif event == "answer":
                console.print()
                console.print(data.get("text", ""), highlight=False)
            elif event == "stopped":
                console.print(f"[yellow]{data.get('text')}[/yellow]")


@app.command("stop", help="Stop a chat run (yours, or any as an admin); it ends `stopped`, with no partial answer.")
def stop_cmd(
    run_id: str = typer.Argument(..., help="The run id (run-…)"),
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    with _request(f"{url.rstrip('/')}/api/v1/chat/runs/{run_id}/stop", key, method="POST") as resp:
        info = json.loads(resp.read())
    console.print(f"run {info['run_id']} {info['status']} after {info['elapsed_s']} s")
