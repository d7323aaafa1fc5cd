"""The chat model the agent talks to: a configured OpenAI-compatible endpoint or the embedded server.

Everything above this module speaks the OpenAI protocol through LangChain's
`ChatOpenAI`; only `resolve_endpoint` knows whether the far end is the embedded
llama.cpp child or a configured service (``LLM_BASE_URL`` / ``LLM_API_KEY`` / ``LLM_MODEL``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from agent.llm.server import embedded_model_name
from core.settings import Settings

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

EMBEDDED_API_KEY = "embedded"
"""The embedded server checks no key; the OpenAI client still wants one."""

NO_API_KEY = "not-set"
"""Sent to a configured endpoint when LLM_API_KEY is unset (local servers ignore it)."""

EMBEDDED_STOP = ("<tool_response>",)
"""The small model sometimes goes on to invent a tool result; nothing after this is useful."""

MAX_RETRIES = 1


class LLMConfigError(ValueError):
    """The LLM settings are inconsistent or the embedded server's address is missing."""


class Endpoint(NamedTuple):
    """Where chat requests go: ``(base_url, model, embedded)``."""

    base_url: str | None
    """None for the embedded server until it is started."""
    model: str
    embedded: bool


def resolve_endpoint(settings: Settings, embedded_base_url: str | None = None) -> Endpoint:
    """The configured endpoint if ``llm_base_url`` is set, else the embedded server."""
    if settings.llm_base_url:
        if not settings.llm_model:
            raise LLMConfigError(
                f"LLM_BASE_URL is set ({settings.llm_base_url!r}) but LLM_MODEL is not; "
                "set the model name the endpoint serves, or unset LLM_BASE_URL to use the embedded model"
            )
        return Endpoint(settings.llm_base_url.rstrip("/"), settings.llm_model, embedded=False)
    return Endpoint(embedded_base_url, embedded_model_name(settings), embedded=True)


def make_chat_model(
    settings: Settings, base_url: str | None = None, *, slot: int | None = None, **overrides: Any
) -> ChatOpenAI:
    """A `ChatOpenAI` for the resolved endpoint.

    With no ``llm_base_url`` configured, `base_url` must be the running embedded
    server's (``EmbeddedLLMServer.base_url``), and `slot` pins the embedded server's
    slot (``server.ROUTE_SLOT`` for requests with tools, ``server.ANSWER_SLOT`` without)
    so each prompt shape keeps its cached prefix; configured endpoints ignore it.
    `overrides` go to `ChatOpenAI` as-is (e.g. ``temperature``, ``streaming``, ``max_tokens``).
    """
    # [llm] extra; langchain_openai loads in ~0.7 s, which importers of LLMConfigError or resolve_endpoint skip
    from langchain_openai import ChatOpenAI

    endpoint = resolve_endpoint(settings, base_url)
    if endpoint.base_url is None:
        raise LLMConfigError(
            "no LLM endpoint: LLM_BASE_URL is unset and the embedded server's base_url was not "
            "given; start agent.llm.server.EmbeddedLLMServer and pass its base_url"
        )
    api_key = EMBEDDED_API_KEY if endpoint.embedded else (settings.llm_api_key or NO_API_KEY)
    kwargs: dict[str, Any] = {
        "model": endpoint.model,
        "base_url": endpoint.base_url,
        "api_key": api_key,
        "timeout": settings.llm_timeout_s,
        "max_retries": MAX_RETRIES,
        "temperature": 0.0,
        # Chat Completions, never the Responses API (which the model name could select).
        "use_responses_api": False,
    }
    if endpoint.embedded:
        # llama.cpp sends usage in the last stream chunk; custom base URLs turn it off by default.
        kwargs["stream_usage"] = True
        kwargs["stop_sequences"] = list(EMBEDDED_STOP)
        if slot is not None:
            kwargs["extra_body"] = {"id_slot": slot}  # llama.cpp extension
    kwargs.update(overrides)
    return ChatOpenAI(**kwargs)
