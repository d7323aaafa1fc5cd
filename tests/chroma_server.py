"""A real Chroma server (`chroma run`, shipped with chromadb) for tests of the CHROMA_HOST path.

A module of its own, not conftest, so the knowledge-server tests and the deployment tests can
start one the same way. A server that does not answer its heartbeat fails the test with the
server's own log: the server path must never be skipped quietly (CI sets CI=true and relies on it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ChromaServer:
    host: str
    port: int
    path: Path
    pid: int


def chroma_command() -> str:
    """The `chroma` CLI next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).parent / "chroma"
    found = str(local) if local.is_file() else shutil.which("chroma")
    if not found:
        pytest.fail("the `chroma` command (installed with chromadb) is missing: cannot start a Chroma server")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _heartbeat(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api/v2/heartbeat", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def close_http_clients(port: int) -> None:
    """Close the HTTP sessions of this process's Chroma clients of the server on `port`.

    Each `chromadb.HttpClient` keeps a cached `System` whose httpx session is never closed (a
    process keeps its clients for life); left open, the sockets are reported unclosed at
    the end of the test session, which `filterwarnings = error` turns into a failure."""
    # chromadb internals (1.5.x): the shared-system cache and its FastAPI component
    from chromadb.api.fastapi import FastAPI
    from chromadb.api.shared_system_client import SharedSystemClient

    for identifier, system in list(SharedSystemClient._identifier_to_system.items()):
        if system.settings.chroma_server_http_port == port:
            for component in system._instances.values():
                if isinstance(component, FastAPI):
                    component._session.close()
            SharedSystemClient._identifier_to_system.pop(identifier, None)
            SharedSystemClient._identifier_to_refcount.pop(identifier, None)


@contextmanager
def running_chroma(path: Path, *, host: str = "127.0.0.1") -> Iterator[ChromaServer]:
    """`chroma run --path <path> --port <free>`; yields once its heartbeat answers, stops it after."""
    path.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = path.parent / f"chroma-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [chroma_command(), "run", "--path", str(path / "db"), "--host", host, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _heartbeat(host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"`chroma run` did not answer on {host}:{port} (exit {proc.poll()}); its log:\n{tail}")
            time.sleep(0.2)
        yield ChromaServer(host=host, port=port, path=path, pid=proc.pid)
    finally:
        close_http_clients(port)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
