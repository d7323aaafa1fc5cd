"""The app's LLM endpoint: the hook where the embedded model server is started and stopped.

`start_llm(settings)` runs in the app's lifespan and its result is `app.state.llm`;
`stop_llm(state)` runs at shutdown. Today `start_llm` starts nothing: with `LLM_BASE_URL`
set it records the configured endpoint, otherwise it records that the embedded server is
not running (`base_url=None`), which `/readyz` reports. The agent wiring replaces the body
of `start_llm` to start `agent.llm.server.EmbeddedLLMServer` when no endpoint is configured
and put the server object in `handle`; chat routes read `request.app.state.llm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from valuechain.config import Settings

READY_TIMEOUT_S = 2.0


@dataclass
class LLMState:
    """Where the chat model is reached from this process."""

    base_url: str | None
    """OpenAI-compatible base URL (…/v1); None while the embedded server is not running."""
    model: str | None
    embedded: bool
    api_key: str | None = None
    handle: Any = None
    """The embedded server object once started (so shutdown can stop it)."""


def start_llm(settings: Settings) -> LLMState:
    """Resolve (and, once wired, start) the chat model endpoint for this app."""
    if settings.llm_base_url:
        return LLMState(
            base_url=settings.llm_base_url.rstrip("/"),
            model=settings.llm_model,
            embedded=False,
            api_key=settings.llm_api_key,
        )
    return LLMState(base_url=None, model=None, embedded=True)


def stop_llm(state: LLMState) -> None:
    """Stop what `start_llm` started (nothing yet): calls `handle.close()` or `handle.stop()`."""
    for name in ("close", "stop"):
        method = getattr(state.handle, name, None)
        if callable(method):
            method()
            return


def check_llm(state: LLMState, *, timeout_s: float = READY_TIMEOUT_S) -> tuple[bool, str]:
    """(reachable, detail): one `GET {base_url}/models` with a short timeout; no tokens spent."""
    if state.base_url is None:
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
    return True, f"{state.base_url} reachable" + (f", model {state.model}" if state.model else "")
