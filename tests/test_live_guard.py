"""The autouse guard: a test without `live` or a cassette cannot reach a model server."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from live_guard import LiveModelBlockedError

from agent.llm.client import make_chat_model
from core.settings import Settings


def test_a_chat_model_call_is_stopped_by_the_guard() -> None:
    settings = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="any")
    model = make_chat_model(settings)
    with pytest.raises(LiveModelBlockedError, match=r"127\.0\.0\.1:9"):
        model.invoke([HumanMessage("hi")])


def test_the_async_path_is_stopped_too() -> None:
    import asyncio

    settings = Settings(llm_base_url="http://127.0.0.1:9/v1", llm_model="any")
    model = make_chat_model(settings)
    with pytest.raises(LiveModelBlockedError):
        asyncio.run(model.ainvoke([HumanMessage("hi")]))
