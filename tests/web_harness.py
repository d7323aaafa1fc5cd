"""What the browser tests share: Debian's Chromium, a real uvicorn server on a free port, and a
page that records console errors and checks horizontal overflow.

`serve(app)` runs an app (built by `api.app.create_app`) in a background thread and yields its
base URL; `launch_chromium()` starts a headless Chromium through Playwright (never Playwright's
own browser download); `Watched` wraps a page with its console errors.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_executable() -> str | None:
    """Debian's chromium (or CHROMIUM_PATH); Playwright's own browser download is not used."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Run `app` under uvicorn (lifespan on, more `uvicorn.Config` options in `config`) on a free
    local port; yields its base URL and stops the server on exit."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the uvicorn server did not start")
        time.sleep(0.05)
    host, port = sock.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def launch_chromium() -> Iterator[Any]:
    executable = chromium_executable()
    if executable is None:
        pytest.fail("no Chromium found (install Debian's `chromium` or set CHROMIUM_PATH): the browser test cannot run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and the console errors, uncaught exceptions and failed requests (HTTP ≥ 400) it produced."""

    page: Any
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, context: Any) -> Watched:
        page = context.new_page()
        watched = cls(page)
        page.on("pageerror", lambda exc: watched.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: watched.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("response", lambda r: watched.errors.append(f"HTTP {r.status} {r.request.method} {r.url}")
                if r.status >= 400 else None)
        return watched

    def overflow(self) -> tuple[int, int]:
        """(document scrollWidth, window innerWidth): the page overflows sideways when the first is larger."""
        width, inner = self.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        return int(width), int(inner)

    def assert_no_overflow(self, where: str) -> None:
        width, inner = self.overflow()
        assert width <= inner, f"{where}: the page is {width} px wide in a {inner} px window (horizontal overflow)"

    def assert_no_errors(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"
