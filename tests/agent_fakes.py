"""The one scripted chat model for agent-loop unit tests (no network).

`ScriptedChatModel` returns the scripted replies in order, whichever of the router or the
answerer asks, and records every request it got (messages and bound tool names), so a test
can assert what the model was shown. `call(...)` and `say(...)` build replies. A script can
be slow (`delay_s` before each reply, like a real model's latency) or held (`gate`: each reply
waits until the test sets it), so a test can act while a turn is still running.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

_ids = itertools.count(1)


def call(name: str, **args: Any) -> AIMessage:
    """A reply that calls tool `name` with `args`."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{next(_ids)}"}])


def calls(*pairs: tuple[str, dict[str, Any]]) -> AIMessage:
    """A reply with several (parallel) tool calls."""
    return AIMessage(
        content="", tool_calls=[{"name": n, "args": a, "id": f"call_{next(_ids)}"} for n, a in pairs]
    )


def say(text: str) -> AIMessage:
    return AIMessage(content=text)


class Script:
    """Replies shared by every model built from it, plus the log of requests."""

    def __init__(self, replies: Sequence[AIMessage | Exception], *, delay_s: float = 0.0,
                 gate: threading.Event | None = None) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.delay_s = delay_s
        self.gate = gate

    @property
    def remaining(self) -> int:
        return len(self.replies)


class ScriptedChatModel(BaseChatModel):
    """Answers from a `Script`; `bind_tools` records the tool names instead of sending schemas."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    script: Script
    label: str = "scripted"
    tool_names: list[str] = Field(default_factory=list)
    on_request: Callable[[list[BaseMessage]], None] | None = None
    _bound: bool = PrivateAttr(default=False)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        names = [getattr(t, "name", None) or t["function"]["name"] for t in tools]
        return self.model_copy(update={"tool_names": names})

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Text replies arrive a word at a time (as a streaming server sends them); calls in one chunk."""
        reply = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
        assert isinstance(reply, AIMessage)
        if reply.tool_calls:
            chunks = [reply.tool_calls]
            yield ChatGenerationChunk(message=AIMessageChunk(
                content="", tool_call_chunks=[
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(chunks[0])
                ],
            ))
        else:
            words = str(reply.content).split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager is not None:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=reply.usage_metadata))

    async def _wait_turn(self) -> None:
        """The script's gate and delay, awaited on the event loop: cancelling the turn ends the wait at
        once (like a real async HTTP call), instead of leaving a thread asleep."""
        deadline = time.monotonic() + 60
        while self.script.gate is not None and not self.script.gate.is_set():
            if time.monotonic() > deadline:
                raise AssertionError("the script's gate was never opened")
            await asyncio.sleep(0.02)
        if self.script.delay_s:
            await asyncio.sleep(self.script.delay_s)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await self._wait_turn()
        async for chunk in super()._astream(messages, stop, run_manager, _waited=True, **kwargs):
            yield chunk

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await self._wait_turn()
        return await super()._agenerate(messages, stop, run_manager, _waited=True, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if not kwargs.pop("_waited", False):
            if self.script.gate is not None and not self.script.gate.wait(timeout=60):
                raise AssertionError("the script's gate was never opened")
            if self.script.delay_s:
                time.sleep(self.script.delay_s)
        self.script.requests.append({"model": self.label, "tools": list(self.tool_names), "messages": messages})
        if self.on_request is not None:
            self.on_request(messages)
        if not self.script.replies:
            raise AssertionError(f"the script ran out of replies ({self.label} asked)")
        reply = self.script.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        reply = reply.model_copy(update={"usage_metadata": {"input_tokens": 100, "output_tokens": 10, "total_tokens": 110}})
        return ChatResult(generations=[ChatGeneration(message=reply)])


class ScriptedModels:
    """`ChatModels` over one script: the router and the answerer pop from the same queue."""

    model = "scripted"

    def __init__(self, script: Script) -> None:
        self.script = script

    def router(self, **overrides: Any) -> BaseChatModel:
        return ScriptedChatModel(script=self.script, label="router")

    def answerer(self, **overrides: Any) -> BaseChatModel:
        return ScriptedChatModel(script=self.script, label="answerer")

    def planner(self, schema: dict[str, Any], **overrides: Any) -> BaseChatModel:
        return ScriptedChatModel(script=self.script, label="planner")
