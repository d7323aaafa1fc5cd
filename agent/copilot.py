"""The agent entry point every interface uses: `Copilot.astream` (events) and `Copilot.ask` (one answer).

One turn: store the question, run the LangChain agent (`create_agent` with the tools of
`agent.tools` and the policy of `agent.middleware`), stream tokens and tool events, store the
answer. When the model endpoint fails, or a tool fails with an internal error, the user gets a
clear message, the question and the calls made so far stay in the run log, and the
conversation can go on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, HumanMessage, ToolMessage
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from agent.deps import RunContext
from agent.middleware import (
    CopilotMiddleware,
    InternalToolError,
    LLMUnavailableError,
    TurnState,
    internal_error_answer,
    internal_error_record,
)
from agent.prompts import load_prompt
from agent.runlog import RunLog, history
from agent.tools import react_tools
from core.loop import run_sync

if TYPE_CHECKING:
    from knowledge.store import KnowledgeStore

T = TypeVar("T")
RECURSION_LIMIT = 40
"""LangGraph steps per turn; the middleware's tool budget ends a turn long before this."""


class ToolCallInfo(BaseModel):
    name: str
    args: dict[str, Any]
    ok: bool
    error: str | None = None


class AgentAnswer(BaseModel):
    """The outcome of one turn (`valuechain ask --json`, the API's non-streaming chat)."""

    answer: str
    conversation_id: str
    run_id: str
    model: str
    tool_calls: list[ToolCallInfo]
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    llm_s: float = Field(description="Seconds spent waiting for the model")
    tool_s: float = Field(description="Seconds spent in tools")
    error: str | None = Field(default=None, description="Why the turn failed, if it did")
    notes: list[str] = Field(default_factory=list, description="Policy events: retries, forced answers")


class AgentEvent(BaseModel):
    """One streamed event: tokens of the answer, tool start/end, and the final answer or error."""

    type: Literal["run_started", "plan", "token", "tool_start", "tool_end", "error", "answer"]
    text: str | None = None
    name: str | None = None
    args: dict[str, Any] | None = None
    ok: bool | None = None
    call_id: str | None = None
    result: AgentAnswer | None = None
    plan: dict[str, Any] | None = Field(default=None, description="`plan`: the steps the agent will run")
    run_id: str | None = None
    conversation_id: str | None = None


class Agent(Protocol):
    """What every interface needs of an agent: `Copilot` (ReAct) and `agent.pipeline.PlanCopilot`."""

    model_name: str

    def astream(self, question: str, *, conversation_id: str | None = None, actor: str = "agent",
                channel: str = "cli", user_id: int | None = None,
                run: RunLog | None = None) -> AsyncIterator[AgentEvent]: ...

    async def aask(self, question: str, **kwargs: Any) -> AgentAnswer: ...

    def ask(self, question: str, **kwargs: Any) -> AgentAnswer: ...

    def warm(self, runtime: Any) -> float: ...


class Copilot:
    """The agent over one database, knowledge store and model endpoint."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        knowledge: Callable[[], KnowledgeStore],
        router: BaseChatModel,
        answerer: BaseChatModel,
        model_name: str,
        recommendation_ttl_days: int | None = 30,
        tool_settings: Mapping[str, Any] | None = None,
        llm_call_timeout_s: float | None = None,
    ) -> None:
        self.sessions = sessions
        self.recommendation_ttl_days = recommendation_ttl_days
        self.tool_settings = dict(tool_settings or {})
        self.knowledge = knowledge
        self.model_name = model_name
        self.system_prompt = load_prompt("system.md")
        self.tools = react_tools()
        self.graph = create_agent(
            router,
            self.tools,
            system_prompt=self.system_prompt,
            middleware=[CopilotMiddleware(router=router, answerer=answerer, model_name=model_name,
                                          call_timeout_s=llm_call_timeout_s)],
            context_schema=RunContext,
        )

    def warm(self, runtime: Any) -> float:
        """Fill the router's and the answerer's prompt caches (`LLMRuntime.warm`)."""
        warmed: float = runtime.warm(self.system_prompt, self.tools)
        return warmed

    async def astream(
        self,
        question: str,
        *,
        conversation_id: str | None = None,
        actor: str = "agent",
        channel: str = "cli",
        user_id: int | None = None,
        run: RunLog | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn, yielding events; the last event is always `answer` (with `error` set on failure).

        `user_id` (the caller's `users.id`) owns a new conversation, so the API shows it to them."""
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        t0 = time.perf_counter()
        if run is not None:  # a chat job's run, stored when it was asked (`RunLog.claim`)
            conversation_id = run.conversation_id
        prior = history(self.sessions, conversation_id)
        log = run or RunLog.start(self.sessions, question=question, conversation_id=conversation_id,
                                  model=self.model_name, channel=channel, user_id=user_id)
        ctx = RunContext(sessions=self.sessions, knowledge=self.knowledge, run_id=log.run_id,
                         conversation_id=log.conversation_id, actor=actor,
                         recommendation_ttl_days=self.recommendation_ttl_days, system=self.tool_settings)
        ctx.turn = TurnState(log=log)
        yield AgentEvent(type="run_started", run_id=log.run_id, conversation_id=log.conversation_id)

        messages: list[AnyMessage] = [
            HumanMessage(c) if role == "user" else AIMessage(c) for role, c in prior
        ]
        messages.append(HumanMessage(question))
        calls: dict[str, ToolCallInfo] = {}
        final: AIMessage | None = None
        error: str | None = None
        fault: str | None = None  # what the run log keeps of an internal error
        streamer = _TokenFilter()
        try:
            graph: Any = self.graph  # astream's overloads want TypedDict input and Literal modes
            async for mode, data in graph.astream(
                {"messages": messages}, context=ctx, stream_mode=["messages", "updates"],
                config={"recursion_limit": RECURSION_LIMIT},
            ):
                if mode == "messages":
                    chunk, _meta = data
                    if isinstance(chunk, AIMessageChunk) and (text := streamer.feed(chunk)):
                        yield AgentEvent(type="token", text=text)
                    continue
                for update in (data or {}).values():
                    for msg in (update or {}).get("messages", []) if isinstance(update, dict) else []:
                        if isinstance(msg, AIMessage):
                            streamer.reset()
                            for c in msg.tool_calls:
                                calls[c["id"] or c["name"]] = ToolCallInfo(name=c["name"], args=c["args"], ok=False)
                                log.message("assistant", "", tool_calls=[{"name": c["name"], "args": c["args"]}])
                                yield AgentEvent(type="tool_start", name=c["name"], args=c["args"], call_id=c["id"])
                            if not msg.tool_calls:
                                final = msg
                        elif isinstance(msg, ToolMessage):
                            info = calls.get(msg.tool_call_id)
                            ok = msg.status != "error"
                            if info is not None:
                                info.ok = ok
                                info.error = None if ok else str(msg.content)
                            log.message("tool", str(msg.content))
                            yield AgentEvent(type="tool_end", name=msg.name, ok=ok, text=str(msg.content),
                                             call_id=msg.tool_call_id)
        except LLMUnavailableError as exc:
            error = unavailable_answer(exc, log.conversation_id)
            yield AgentEvent(type="error", text=error)
        except InternalToolError as exc:  # the traceback is in the log under exc.error_id
            error = internal_error_answer(exc.error_id, exc.cause, conversation_id=log.conversation_id,
                                          run_id=log.run_id)
            fault = internal_error_record(exc.error_id, exc.cause)
            yield AgentEvent(type="error", text=error)

        answer = error or (str(final.content).strip() if final is not None else "")
        turn: TurnState = ctx.turn
        yield close_turn(log, answer=answer, error=error, fault=fault, model=self.model_name,
                         calls=list(calls.values()), llm_s=turn.llm_s, tool_s=turn.tool_s, notes=turn.notes,
                         started=t0)

    async def aask(self, question: str, **kwargs: Any) -> AgentAnswer:
        return await final_answer(self.astream(question, **kwargs))

    def ask(self, question: str, **kwargs: Any) -> AgentAnswer:
        """One turn, blocking: the answer with its tool calls, counts and timings."""
        return run_sync(self.aask(question, **kwargs))


def unavailable_answer(exc: LLMUnavailableError, conversation_id: str) -> str:
    """What the user is told when the model endpoint fails, in every agent alike."""
    return (f"Sorry, {exc}, so I cannot answer right now. Your question is saved in "
            f"conversation {conversation_id}; ask again when the model is back.")


def close_turn(log: RunLog, *, answer: str, error: str | None, fault: str | None, model: str,
               calls: list[ToolCallInfo], llm_s: float, tool_s: float, notes: list[str],
               started: float) -> AgentEvent:
    """Store the answer, close the run with its latency, and build the turn's last event.

    `error` is what the user was told when the turn failed (then `answer` is that message too);
    `fault` what the run log keeps of an internal error instead."""
    answer = answer or "I could not produce an answer to that."
    if not error:
        log.message("assistant", answer)
    latency = time.perf_counter() - started
    log.finish(answer=None if error else answer, error=fault or error, latency_ms=latency * 1000)
    result = AgentAnswer(
        answer=answer, conversation_id=log.conversation_id, run_id=log.run_id, model=model,
        tool_calls=calls, llm_calls=log.llm_seq,
        prompt_tokens=log.prompt_tokens, completion_tokens=log.completion_tokens,
        latency_s=round(latency, 3), llm_s=round(llm_s, 3), tool_s=round(tool_s, 3),
        error=error, notes=notes,
    )
    return AgentEvent(type="answer", text=answer, result=result, run_id=log.run_id,
                      conversation_id=log.conversation_id)


async def final_answer(events: AsyncIterator[AgentEvent]) -> AgentAnswer:
    """The result of a turn's event stream (its last event is always `answer`)."""
    result: AgentAnswer | None = None
    async for event in events:
        if event.type == "answer":
            result = event.result
    if result is None:  # astream always ends with an answer event
        raise RuntimeError("the agent run ended without an answer")
    return result


class _TokenFilter:
    """Passes answer tokens through; holds back a reply that starts like a ```json call."""

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.reset()

    def reset(self) -> None:
        self.buffer = ""
        self.open = False
        self.held = False

    def feed(self, chunk: AIMessageChunk) -> str:
        if chunk.id != self.call_id:  # a new model call (e.g. the corrective retry) starts afresh
            self.call_id = chunk.id
            self.reset()
        if chunk.tool_call_chunks or self.held:
            self.held = self.held or bool(chunk.tool_call_chunks)
            return ""
        text = chunk.content if isinstance(chunk.content, str) else ""
        if self.open:
            return text
        self.buffer += text
        head = self.buffer.lstrip()
        if not head:
            return ""
        if head.startswith(("`", "{")) and (len(head) < 8 or head.startswith(("```json", '{"'))):
            self.held = len(head) >= 8
            return ""
        self.open = True
        out, self.buffer = self.buffer, ""
        return out
