"""The app's LLM endpoint and agent: started with the service, stopped with it.

`start_llm(settings, sessions=, knowledge=)` runs in the app's lifespan; its result is
`app.state.llm`. With ``LLM_BASE_URL`` set the agent is ready at once. Otherwise (and with
``LLM_AUTOSTART`` on, the default) a background thread starts the embedded model server,
builds the `Copilot` and warms the model's prompt cache, so the API and the UI answer at once
while the model loads; chat answers 503 with the reason until `state.copilot` is set.
`stop_llm(state)` stops the embedded server at shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from agent.llm.runtime import LLMRuntime
from agent.service import build_copilot
from core.settings import Settings

READY_TIMEOUT_S = 2.0
log = logging.getLogger(__name__)


@dataclass
class LLMState:
    """Where the chat model is reached from this process, and the agent once it is ready."""

    base_url: str | None
    """OpenAI-compatible base URL (…/v1); None while the embedded server is not running."""
    model: str | None
    embedded: bool
    api_key: str | None = None
    handle: Any = None
    """The `agent.llm.runtime.LLMRuntime` once opened (shutdown closes it)."""
    copilot: Any = None
    """The `agent.copilot.Copilot` once the model is ready; None before (chat answers 503)."""
    status: str = "not started"
    error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    thread: threading.Thread | None = None
    stopped: bool = False


def start_llm(
    settings: Settings,
    *,
    sessions: sessionmaker[Session] | None = None,
    knowledge: Callable[[], Any] | None = None,
) -> LLMState:
    """Resolve the chat model endpoint; start the embedded one in the background if configured to."""
    if settings.llm_base_url:
        state = LLMState(
            base_url=settings.llm_base_url.rstrip("/"),
            model=settings.llm_model,
            embedded=False,
            api_key=settings.llm_api_key,
        )
        if sessions is not None:
            _open_agent(state, settings, sessions, knowledge)
        return state
    state = LLMState(base_url=None, model=None, embedded=True)
    if settings.llm_autostart and sessions is not None:
        state.status = "starting"
        state.thread = threading.Thread(
            target=_open_agent, args=(state, settings, sessions, knowledge), name="llm-start", daemon=True
        )
        state.thread.start()
    else:
        state.status = "disabled (LLM_AUTOSTART=false)" if not settings.llm_autostart else "not started"
    return state


def _open_agent(
    state: LLMState,
    settings: Settings,
    sessions: sessionmaker[Session],
    knowledge: Callable[[], Any] | None,
) -> None:
    """Open the runtime (embedded server or configured URL), build the Copilot, warm it."""
    try:
        runtime = LLMRuntime.open(settings)
        state.handle = runtime
        if state.stopped:  # shut down while starting
            runtime.close()
            return
        state.base_url, state.model = runtime.base_url, runtime.model
        copilot = build_copilot(settings, runtime, sessions=sessions, knowledge=knowledge)
        if runtime.embedded:
            state.status = "warming"
            copilot.warm(runtime)
        state.copilot = copilot
        state.status = "ready"
        log.info("agent ready: %s at %s (%.1f s)", runtime.model, runtime.base_url,
                 time.monotonic() - state.started_at)
    except Exception as exc:  # reported by /readyz and the chat route, never swallowed silently
        state.status = "failed"
        state.error = f"{type(exc).__name__}: {exc}"
        log.exception("the LLM endpoint could not be started")


def stop_llm(state: LLMState) -> None:
    """Stop what `start_llm` started: closes the runtime (stops the embedded server)."""
    state.stopped = True
    for name in ("close", "stop"):
        method = getattr(state.handle, name, None)
        if callable(method):
            method()
            return


def check_llm(state: LLMState, *, timeout_s: float = READY_TIMEOUT_S) -> tuple[bool, str]:
    """(reachable, detail): one `GET {base_url}/models` with a short timeout; no tokens spent."""
    if state.base_url is None:
        if state.status in ("starting", "warming"):
            return False, f"the embedded LLM server is {state.status} (chat is available when it is ready)"
        if state.error:
            return False, f"the embedded LLM server failed to start: {state.error}"
        return False, (
            "the embedded LLM server is not running in this process (set LLM_BASE_URL to use an "
            "external endpoint); chat is unavailable, everything else works"
        )
    headers = {"Authorization": f"Bearer {state.api_key}"} if state.api_key else {}
    try:
        resp = httpx.get(f"{state.base_url}/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return False, f"{state.base_url} unreachable: {type(exc).__name__}: {exc}"
    if resp.status_code >= 400:
        return False, f"{state.base_url}/models answered HTTP {resp.status_code}"
    if state.copilot is None:
        return False, f"{state.base_url} reachable, agent {state.status}"
    return True, f"{state.base_url} reachable" + (f", model {state.model}" if state.model else "")
