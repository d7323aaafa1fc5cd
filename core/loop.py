"""The process's one event loop for synchronous callers (CLI, evals, benches, tests)."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_runner: asyncio.Runner | None = None
_runner_lock = threading.Lock()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the process's one event loop.

    One loop for every synchronous call: the OpenAI client pools its connections per loop and
    LangChain caches the client per endpoint, so a second loop (a fresh `asyncio.run`, or a suite
    with its own `asyncio.Runner` after another suite) fails with "Event loop is closed" or "is
    bound to a different event loop" (seen when the tasks suite ran after the plan agent's
    selection suite in one process). Not for use from inside a running loop (the API and the
    Slack bot `await` directly).
    """
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = asyncio.Runner()
            atexit.register(_runner.close)
        runner = _runner
    return runner.run(coro)
