"""Endpoint resolution from settings and the ChatOpenAI it builds (no network)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from agent.llm.client import (
    EMBEDDED_API_KEY,
    NO_API_KEY,
    Endpoint,
    LLMConfigError,
    make_chat_model,
    resolve_endpoint,
)
from agent.llm.server import DEFAULT_ALIAS
from agent.llm.status import SPEED_MAX_TOKENS, measure_speed
from core.settings import Settings


def _settings(**values: object) -> Settings:
    return Settings.model_validate({"data_dir": Path("unused"), **values})


def _key(model: ChatOpenAI) -> str:
    key = model.openai_api_key
    assert isinstance(key, SecretStr)
    return key.get_secret_value()


def test_unconfigured_means_embedded() -> None:
    assert resolve_endpoint(_settings()) == Endpoint(None, DEFAULT_ALIAS, embedded=True)
    assert resolve_endpoint(_settings(), "http://127.0.0.1:5/v1").base_url == "http://127.0.0.1:5/v1"


def test_embedded_model_name_follows_gguf_override_and_llm_model() -> None:
    assert resolve_endpoint(_settings(llm_gguf_path=Path("/m/phi-mini.Q4.gguf"))).model == "phi-mini.Q4"
    assert resolve_endpoint(_settings(llm_model="local")).model == "local"


def test_configured_endpoint() -> None:
    endpoint = resolve_endpoint(_settings(llm_base_url="https://llm.example/v1/", llm_model="m1"))
    assert endpoint == Endpoint("https://llm.example/v1", "m1", embedded=False)


def test_configured_endpoint_needs_a_model() -> None:
    with pytest.raises(LLMConfigError, match="LLM_MODEL is not"):
        resolve_endpoint(_settings(llm_base_url="https://llm.example/v1"))


def test_chat_model_for_configured_endpoint() -> None:
    model = make_chat_model(
        _settings(llm_base_url="https://llm.example/v1", llm_model="m1", llm_api_key="k-123", llm_timeout_s=7)
    )
    assert model.model_name == "m1"
    assert model.openai_api_base == "https://llm.example/v1"
    assert _key(model) == "k-123"
    assert model.request_timeout == 7
    assert model.max_retries == 1
    assert model.use_responses_api is False
    assert model.stop is None


def test_chat_model_for_configured_endpoint_without_key() -> None:
    model = make_chat_model(_settings(llm_base_url="http://localhost:8080/v1", llm_model="m"))
    assert _key(model) == NO_API_KEY


def test_chat_model_for_embedded_server() -> None:
    model = make_chat_model(_settings(), base_url="http://127.0.0.1:4321/v1", streaming=True)
    assert model.openai_api_base == "http://127.0.0.1:4321/v1"
    assert model.model_name == DEFAULT_ALIAS
    assert _key(model) == EMBEDDED_API_KEY
    assert model.stream_usage is True
    assert model.streaming is True
    assert model.stop == ["<tool_response>"]


def test_slot_pins_the_embedded_server_slot_only() -> None:
    embedded = make_chat_model(_settings(), base_url="http://127.0.0.1:4321/v1", slot=1)
    assert embedded.extra_body == {"id_slot": 1}
    configured = make_chat_model(_settings(llm_base_url="https://llm.example/v1", llm_model="m"), slot=1)
    assert configured.extra_body is None


def test_embedded_without_a_running_server_is_a_clear_error() -> None:
    with pytest.raises(LLMConfigError, match=r"start agent\.llm\.server\.EmbeddedLLMServer"):
        make_chat_model(_settings())


def _transport(body: Mapping[str, Any], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


def test_speed_from_llama_cpp_timings() -> None:
    body = {
        "choices": [{"message": {"role": "assistant", "content": " The margin. "}}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 12},
        "timings": {"prompt_per_second": 31.5, "predicted_per_second": 9.25},
    }
    seen: list[httpx.Request] = []
    sample = measure_speed(
        Endpoint("http://127.0.0.1:1/v1", "m", embedded=True),
        _settings(),
        client=httpx.Client(transport=_transport(body, seen)),
    )
    assert (sample.prompt_tokens_per_s, sample.gen_tokens_per_s) == (31.5, 9.25)
    assert (sample.prompt_tokens, sample.completion_tokens) == (200, 12)
    assert sample.source == "server timings"
    assert sample.reply == "The margin."
    sent = seen[0]
    assert str(sent.url) == "http://127.0.0.1:1/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {EMBEDDED_API_KEY}"
    assert b'"cache_prompt":false' in sent.content
    assert f'"max_tokens":{SPEED_MAX_TOKENS}'.encode() in sent.content


def test_speed_from_wall_clock_for_other_endpoints() -> None:
    body = {
        "choices": [{"message": {"content": "x"}}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 10},
    }
    seen: list[httpx.Request] = []
    sample = measure_speed(
        Endpoint("https://llm.example/v1", "m", embedded=False),
        _settings(llm_api_key="k"),
        client=httpx.Client(transport=_transport(body, seen)),
    )
    assert sample.source == "wall clock"
    assert sample.prompt_tokens_per_s is None
    assert sample.gen_tokens_per_s is not None and sample.gen_tokens_per_s > 0
    assert seen[0].headers["authorization"] == "Bearer k"
    assert b"cache_prompt" not in seen[0].content
