"""The agent's policy around each model and tool call: route or answer, validate, retry once, log.

Route vs answer. A turn starts on the *router* (tools bound, the embedded server's route
slot). After tool results come back the router is asked again, so it can chain calls
("top 5 at risk, then what to do about the first"), or it answers in prose. The *answerer*
(no tools, the answer slot) writes the final answer when the tool budget is spent, when the
router repeats a call it already made this turn, or after a failed corrective retry.

Validation. Every call the router returns is checked before anything runs: the tool exists,
the arguments validate against its schema, it is not a repeat. A malformed or unknown call
(or a reply that looks like a broken ```json call) gets one corrective retry with the error;
if that fails too, the answerer replies honestly from what it has.

Logging. Each model call's latency, tokens and error, and each tool call's arguments, full
result, error and latency go to the run log as they happen.

Faults. A tool call the model can fix comes back to it as an error tool message. Any other
exception from a tool (a `DataFault` or a bug) ends the turn: it is logged with its traceback
under an error id and raised as `InternalToolError`, which the copilot turns into a clear
answer naming the id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import httpx
from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command
from pydantic import BaseModel, ValidationError

from agent.deps import RunContext, ToolFixableError, ToolOutcome
from agent.numbers import untraceable, unverified_note
from agent.prompts import load_prompt
from agent.provenance import known_text, tool_ids
from agent.runlog import RunLog
from tools.errors import internal_summary, new_error_id
from tools.registry import tool_named

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_TOOL_CALLS = 6
"""Tool calls one turn may make; then the answerer must reply."""
MAX_FAILED_TOOL_CALLS = 2
"""Tool calls that may fail (unknown value, bad filter) in one turn before the answerer replies."""


class LLMUnavailableError(RuntimeError):
    """The model endpoint failed (down, timeout, error status or an unusable reply)."""


class InternalToolError(RuntimeError):
    """A tool failed with a fault that is not the model's to fix (a `DataFault` or a bug); the
    turn ends. `error_id` names the traceback in the log; `cause` is the tool's exception."""

    def __init__(self, error_id: str, tool: str, cause: BaseException) -> None:
        super().__init__(f"{tool}: {type(cause).__name__}: {cause}")
        self.error_id = error_id
        self.tool = tool
        self.cause = cause


def internal_error_answer(
    error_id: str, cause: BaseException, *, conversation_id: str, run_id: str | None = None
) -> str:
    """What the user is told when an internal error stops a turn, in every chat channel alike."""
    run = f", run {run_id}" if run_id else ""
    return (
        f"Sorry, an internal error stopped this answer (error id {error_id}{run}): {internal_summary(cause)}. "
        f"Your question is saved in conversation {conversation_id}; ask again later, or give the "
        "error id to whoever runs the service."
    )


def internal_error_record(error_id: str, cause: BaseException) -> str:
    """The run log's note of an internal error: the id and the exception with its message."""
    return f"internal error {error_id}: {type(cause).__name__}: {cause}"


class TimedTurn(Protocol):
    """What `timed_model_call` keeps its time and failures on (both agents' per-turn state)."""

    log: RunLog
    llm_s: float


async def timed_model_call(turn: TimedTurn, call: Callable[[], Awaitable[T]], *, timeout_s: float | None,
                           model_name: str) -> tuple[T, float]:
    """Await one model call under a wall-clock cap; its milliseconds are added to `turn.llm_s`.

    An endpoint failure (down, timeout, error status, unreadable reply) is logged as a failed
    LLM call and raised as `LLMUnavailableError` with a sentence for the user; anything else raises.
    """
    t0 = time.perf_counter()
    try:
        # a wall-clock cap per model call: a streamed reply resets the client's read timeout
        # with every token, so only this bounds a reply that goes on and on
        result = await asyncio.wait_for(call(), timeout_s)
    except Exception as exc:
        ms = (time.perf_counter() - t0) * 1000
        turn.llm_s += ms / 1000
        message = describe_llm_error(exc)
        if message is None:
            raise
        turn.log.llm_call(model=model_name, prompt_tokens=None, completion_tokens=None,
                          latency_ms=ms, error=f"{type(exc).__name__}: {exc}")
        raise LLMUnavailableError(message) from exc
    ms = (time.perf_counter() - t0) * 1000
    turn.llm_s += ms / 1000
    return result, ms


@dataclass
class TurnState:
    """Counters of one turn, kept on the run context."""

    log: RunLog
    tool_calls: int = 0
    failed_tool_calls: int = 0
    retries: int = 0
    llm_s: float = 0.0
    tool_s: float = 0.0
    seen_calls: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    """What the policy did (retry, forced answer...), for the run result and the evals."""


def _call_key(name: str, args: dict[str, Any]) -> str:
    return name + json.dumps(args, sort_keys=True, default=str)


def _current_turn(messages: list[AnyMessage]) -> list[AnyMessage]:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return messages[i + 1 :]
    return messages


def looks_like_call(text: str) -> bool:
    """Prose that is really an attempted function call the server could not parse."""
    t = text.strip()
    return t.startswith("```json") or t.startswith('{"name"') or '"arguments"' in t[:200]


ID_ARGS = ("account_id", "activity_id")
"""Arguments whose value must come from the conversation, never from the model's imagination."""


def conversation_text(messages: list[AnyMessage]) -> str:
    """What the user said and the ids the CRM tools returned so far (upper-cased), to check ids against;
    never the free text a tool returned (a note, a passage: `agent.provenance`)."""
    said = [str(m.content) for m in messages if m.type == "human"]
    returned = tool_ids((str(getattr(m, "name", "") or ""), str(m.content)) for m in messages if m.type == "tool")
    return known_text(said, returned)


def squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def named_by_user(value: Any, said: str) -> bool:
    """True when the filter value (or every value of a list) appears in the user's squashed words."""
    values = value if isinstance(value, list) else [value]
    return all(squash(str(v)) and squash(str(v)) in said for v in values)


def user_text(messages: list[AnyMessage]) -> str:
    """What the user wrote in this conversation, squashed (lower-case, letters and digits only)."""
    return squash(" ".join(str(m.content) for m in messages if m.type == "human"))


def check_calls(
    ai: AIMessage, tools: dict[str, BaseTool], known: str | None = None, said: str | None = None
) -> str | None:
    """The first problem with the calls in `ai`, or None when every call is valid.

    With `known` (see `conversation_text`), an account or activity id that neither the user
    gave nor a tool returned is a problem too: the model made it up. With `said` (see
    `user_text`), so is a filter value the user never mentioned ("North America" for a question
    about all accounts).
    """
    if ai.invalid_tool_calls:
        bad = ai.invalid_tool_calls[0]
        return f"the arguments of {bad.get('name')!r} are not valid JSON: {bad.get('error') or bad.get('args')}"
    if not ai.tool_calls and looks_like_call(str(ai.content)):
        return "the reply looks like a function call but is not valid JSON with 'name' and 'arguments'"
    for call in ai.tool_calls:
        tool = tools.get(call["name"])
        if tool is None:
            return f"there is no function {call['name']!r}; the functions are: {', '.join(tools)}"
        schema = tool.tool_call_schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            try:
                schema.model_validate(call["args"])
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
                )
                return f"invalid arguments for {call['name']!r}: {problems}"
        if known is not None:
            for arg in ID_ARGS:
                value = call["args"].get(arg)
                if isinstance(value, str) and value.strip() and value.strip().upper() not in known:
                    return (
                        f"{arg} {value!r} was not given by the user nor returned by a function; "
                        "never invent ids: find accounts with rank or churn_risk first, or ask the user"
                    )
        filters = call["args"].get("filters")
        if said is not None and isinstance(filters, dict):
            for key, value in filters.items():
                if value in (None, "", [], {}):
                    continue
                if not named_by_user(value, said):
                    return (
                        f"the filter {key}={value!r} is not something the user asked for; "
                        "use only filters the user named, or no filters"
                    )
    return None


class CopilotMiddleware(AgentMiddleware[AgentState[Any], RunContext, Any]):
    """Route/answer switching, call validation with one corrective retry, budgets and logging."""

    def __init__(
        self,
        *,
        router: BaseChatModel,
        answerer: BaseChatModel,
        model_name: str,
        call_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        self.call_timeout_s = call_timeout_s
        self.router = router
        self.answerer = answerer
        self.model_name = model_name
        self.retry_prompt = load_prompt("retry_tool_call.md")
        self.answer_prompt = load_prompt("answer.md")
        self.prose_prompt = load_prompt("answer_prose.md")
        self.no_data_prompt = load_prompt("answer_no_data.md")
        self.figures_prompt = load_prompt("answer_figures.md")
        self.decline = load_prompt("decline.md")

    # --- model calls ---------------------------------------------------------------------
    async def awrap_model_call(
        self,
        request: ModelRequest[RunContext],
        handler: Callable[[ModelRequest[RunContext]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        ctx: RunContext = request.runtime.context
        turn: TurnState = ctx.turn
        tools = {t.name: t for t in request.tools if isinstance(t, BaseTool)}
        known = conversation_text(request.messages)
        said = user_text(request.messages)
        if turn.tool_calls >= MAX_TOOL_CALLS:
            turn.notes.append("tool budget spent")
            return await self._answer(request, handler, turn)
        if turn.failed_tool_calls >= MAX_FAILED_TOOL_CALLS:
            turn.notes.append("too many failed tool calls")
            return await self._answer(request, handler, turn)

        last = ctx.outcomes[-1] if ctx.outcomes else None
        if last is not None and last.name == "search_knowledge" and last.result is not None and _after_tools(request):
            data = [o for o in ctx.outcomes if o.result is not None and o.name != "search_knowledge"]
            if not getattr(last.result, "on_topic", True) and not data:
                # nothing in the knowledge base is about it and no data was asked for: out of scope.
                # Declined in code: told to decline, the model still answered 3 of 6 such questions
                # from memory (a weather forecast among them).
                turn.notes.append("off-topic: declined")
                return ModelResponse(result=[AIMessage(content=self.decline)])
            turn.notes.append("knowledge passages in: answering from them")
            return await self._answer(request, handler, turn)

        ai = self._repair(await self._call(request.override(model=self.router), handler, turn), said, turn)
        problem = check_calls(ai, tools, known, said)
        if problem is not None and turn.retries == 0:
            turn.retries += 1
            turn.notes.append(f"corrective retry: {problem}")
            retry = HumanMessage(self.retry_prompt.format(error=problem))
            ai = self._repair(await self._call(
                request.override(model=self.router, messages=[*request.messages, as_text(ai), retry]),
                handler,
                turn,
            ), said, turn)
            problem = check_calls(ai, tools, known, said)
        if problem is not None:
            turn.notes.append(f"gave up on calls: {problem}")
            return await self._answer(request, handler, turn)

        if ai.tool_calls:
            fresh = [c for c in ai.tool_calls if _call_key(c["name"], c["args"]) not in turn.seen_calls]
            if not fresh:
                turn.notes.append("repeated call: answering")
                return await self._answer(request, handler, turn)
            room = MAX_TOOL_CALLS - turn.tool_calls
            if len(fresh) > room:
                turn.notes.append(f"{len(fresh) - room} call(s) over the budget dropped")
            kept = fresh[:room]
            for c in kept:
                turn.seen_calls.add(_call_key(c["name"], c["args"]))
            if len(kept) != len(ai.tool_calls):
                ai = ai.model_copy(update={"tool_calls": kept})
            return ModelResponse(result=[ai])
        text = await self._vet(str(ai.content), request, handler, turn)  # the router answered in prose
        return ModelResponse(result=[AIMessage(content=text, id=ai.id, usage_metadata=ai.usage_metadata)])

    @staticmethod
    def _repair(ai: AIMessage, said: str, turn: TurnState) -> AIMessage:
        repaired, dropped = drop_unsaid_filters(ai, said)
        if dropped:
            turn.notes.append(f"dropped filters the user never named: {', '.join(dropped)}")
        return repaired

    async def _answer(
        self,
        request: ModelRequest[RunContext],
        handler: Callable[[ModelRequest[RunContext]], Awaitable[ModelResponse[Any]]],
        turn: TurnState,
    ) -> ModelResponse[Any]:
        got_data = any(isinstance(m, ToolMessage) and m.status != "error" for m in _current_turn(request.messages))
        if not got_data:
            turn.notes.append("no tool data: answer must not state figures")
        prompt = self.answer_prompt if got_data else self.no_data_prompt
        messages = [*request.messages, HumanMessage(prompt)]
        ai = await self._call(request.override(model=self.answerer, tools=[], messages=messages), handler, turn)
        text = str(ai.content)
        if ai.tool_calls or looks_like_call(text):  # the answerer has no tools: ask once more for prose
            turn.notes.append("answer was a function call: asked again for prose")
            again = [*messages, as_text(ai), HumanMessage(self.prose_prompt)]
            ai = await self._call(request.override(model=self.answerer, tools=[], messages=again), handler, turn)
            text = str(ai.content)
            if ai.tool_calls or looks_like_call(text):
                turn.notes.append("no prose answer: reported the tool results instead")
                text = fallback_answer(request.runtime.context.outcomes)  # the tools' own words: no vetting
                return ModelResponse(result=[AIMessage(content=text, id=ai.id, usage_metadata=ai.usage_metadata)])
        text = await self._vet(text, request, handler, turn)
        return ModelResponse(result=[AIMessage(content=text, id=ai.id, usage_metadata=ai.usage_metadata)])

    async def _vet(
        self,
        text: str,
        request: ModelRequest[RunContext],
        handler: Callable[[ModelRequest[RunContext]], Awaitable[ModelResponse[Any]]],
        turn: TurnState,
    ) -> str:
        """Every figure in an answer must be in a tool result (or the user's words).

        An answer stating other figures gets one rewrite request naming them; what is still
        untraceable after that is flagged to the user at the end of the answer.
        """
        sources = [str(m.content) for m in request.messages]
        invented = untraceable(text, sources)
        if not invented:
            return text
        turn.notes.append(f"figures in no tool result: {', '.join(invented)}; asked for a rewrite")
        ask = HumanMessage(self.figures_prompt.format(figures=", ".join(invented)))
        again = [*request.messages, AIMessage(content=text), ask]
        ai = await self._call(request.override(model=self.answerer, tools=[], messages=again), handler, turn)
        rewritten = str(ai.content).strip()
        if rewritten and not ai.tool_calls and not looks_like_call(rewritten):
            text = rewritten
        left = untraceable(text, sources)
        if left:
            turn.notes.append(f"unverified figures flagged: {', '.join(left)}")
            text += unverified_note(left)
        return text

    async def _call(
        self,
        request: ModelRequest[RunContext],
        handler: Callable[[ModelRequest[RunContext]], Awaitable[ModelResponse[Any]]],
        turn: TurnState,
    ) -> AIMessage:
        response, ms = await timed_model_call(turn, lambda: handler(request), timeout_s=self.call_timeout_s,
                                              model_name=self.model_name)
        ai = next((m for m in response.result if isinstance(m, AIMessage)), None)
        if ai is None:
            turn.log.llm_call(model=self.model_name, prompt_tokens=None, completion_tokens=None,
                              latency_ms=ms, error="no assistant message in the reply")
            raise LLMUnavailableError("the language model returned no message")
        usage: dict[str, Any] = dict(ai.usage_metadata or {})
        turn.log.llm_call(
            model=self.model_name, prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"), latency_ms=ms,
        )
        return ai

    # --- tool calls ----------------------------------------------------------------------
    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        ctx = cast(RunContext, request.runtime.context)  # ToolCallRequest does not carry ContextT
        turn: TurnState = ctx.turn
        call = request.tool_call
        turn.tool_calls += 1
        t0 = time.perf_counter()
        error: str | None = None
        try:
            gate = (proposal_problem(call, ctx, user_text(request.state["messages"]))
                    if call["name"] == "propose_recommendation" else None)
            if gate is not None:
                raise ToolFixableError(gate)
            out = await handler(request)
        except ToolFixableError as exc:
            error = str(exc)
            out = ToolMessage(content=f"Error: {error}", tool_call_id=call["id"], name=call["name"], status="error")
        except Exception as exc:  # not the model's to fix: logged with its traceback, ends the turn
            ms = (time.perf_counter() - t0) * 1000
            turn.tool_s += ms / 1000
            turn.log.tool_call(name=call["name"], args=call["args"], result=None,
                               error=f"{type(exc).__name__}: {exc}", latency_ms=ms)
            error_id = new_error_id()
            log.error("internal error %s in tool %s (run %s)", error_id, call["name"], turn.log.run_id,
                      exc_info=exc)
            raise InternalToolError(error_id, call["name"], exc) from exc
        ms = (time.perf_counter() - t0) * 1000
        turn.tool_s += ms / 1000
        outcome = ctx.outcome_of(call["id"])
        result = outcome.result.model_dump(mode="json") if outcome and outcome.result is not None else None
        if isinstance(out, ToolMessage) and out.status == "error" and error is None:
            error = str(out.content)
        if error is not None:
            turn.failed_tool_calls += 1
        turn.log.tool_call(name=call["name"], args=call["args"], result=result, error=error, latency_ms=ms)
        return out


def as_text(ai: AIMessage) -> AIMessage:
    """The rejected reply as plain text, so the retry shows the model what it wrote."""
    if ai.tool_calls or ai.invalid_tool_calls:
        calls = [{"name": c.get("name"), "arguments": c.get("args")} for c in [*ai.tool_calls, *ai.invalid_tool_calls]]
        text = "\n".join("```json\n" + json.dumps(c, default=str) + "\n```" for c in calls)
        return AIMessage(content=text)
    return AIMessage(content=str(ai.content))


def fallback_answer(outcomes: list[ToolOutcome]) -> str:
    """A plain answer from the tools' own explanations, when the model wrote none."""
    lines = ["I could not write an answer for this. What the tools reported:"]
    for o in outcomes:
        if o.error is not None:
            lines.append(f"- {o.name} failed: {o.error}")
        elif o.result is not None:
            explanation = getattr(o.result, "explanation", None)
            lines.append(f"- {o.name}: {explanation or tool_named(o.name).view_json(o.result)[:300]}")
    if len(lines) == 1:
        lines.append("- no tool was called")
    return "\n".join(lines)


def _after_tools(request: ModelRequest[RunContext]) -> bool:
    """The model is being called right after tool results came back."""
    return bool(request.messages) and isinstance(request.messages[-1], ToolMessage)


def drop_unsaid_filters(ai: AIMessage, said: str) -> tuple[AIMessage, list[str]]:
    """Remove filter entries whose values the user never wrote (the model's inventions).

    Safe to repair without asking the model again: a filter the user did not name only narrows
    the answer wrongly; without it the call answers the question asked.
    """
    dropped: list[str] = []
    calls = []
    for call in ai.tool_calls:
        filters = call["args"].get("filters")
        if isinstance(filters, dict) and filters:
            kept = {}
            for key, value in filters.items():
                if value in (None, "", [], {}) or named_by_user(value, said):
                    kept[key] = value
                else:
                    dropped.append(f"{key}={value!r}")
            if len(kept) != len(filters):
                call = {**call, "args": {**call["args"], "filters": kept or None}}
        calls.append(call)
    if not dropped:
        return ai, []
    return ai.model_copy(update={"tool_calls": calls}), dropped


ACTION_WORDS = ("should", "recommend", "propose", "file", "whattodo", "doabout", "action", "intervention",
                "save", "retain", "keep", "grow", "next", "plan", "suggest")
"""Words by which a user asks for an intervention; without one, filing a recommendation is overreach."""


def proposal_problem(call: Mapping[str, Any], ctx: RunContext, said: str) -> str | None:
    """Why `propose_recommendation` may not run now, or None.

    The user must have asked for action, and an account recommendation must be one of the
    actions next_best_action returned for that account in this run (so it is a playbook action
    with its expected value and evidence, not the model's own idea).
    """
    if not any(word in said for word in ACTION_WORDS):
        return ("not filed: the user did not ask for an action or recommendation; answer the question "
                "instead (they can ask you to file one)")
    account = call["args"].get("account_id")
    if not account:
        return None
    nba = [o.result for o in ctx.outcomes
           if o.name == "next_best_action" and o.result is not None
           and str(getattr(o.result, "account_id", "")).upper() == str(account).strip().upper()]
    if not nba:
        return f"not filed: call next_best_action for {account!r} first and propose one of its actions"
    actions = [a.action for a in getattr(nba[-1], "actions", [])]
    if call["args"].get("action") not in actions:
        return (f"not filed: {call['args'].get('action')!r} is not among the actions next_best_action found "
                f"for {account!r}: {', '.join(actions) or 'none'}")
    return None


def describe_llm_error(exc: BaseException) -> str | None:
    """A user-facing sentence for an endpoint failure, or None when `exc` is not one."""
    # deferred: openai adds ~0.35 s to the API app's start; only an endpoint failure needs it
    import openai

    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        return "the language model did not answer in time"
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return "the language model endpoint cannot be reached"
    if isinstance(exc, openai.APIStatusError):
        return f"the language model endpoint returned HTTP {exc.status_code}"
    if isinstance(exc, openai.APIError | json.JSONDecodeError) or _raised_reading_reply(exc):
        return "the language model endpoint sent a reply that could not be read"
    return None


READER_MODULES = ("openai.", "langchain_openai.", "langchain_core.language_models.")
"""Where a reply that is no chat completion fails (a 200 with text, HTML, an empty body, a JSON
without `choices`, a stream with no chunk): the client's and LangChain's readers of the reply."""


def _raised_reading_reply(exc: BaseException) -> bool:
    """True for the exceptions the model client raises on a reply it cannot read: LangChain's
    "No generations found in stream." (ValueError), "Unexpected response type" (ValueError),
    "null value for 'choices'" (TypeError), `choices[0]` of an empty list (IndexError), a
    message that is null (AttributeError). Told apart from a bug of ours by where they were
    raised: in the client's code, not in ours."""
    if not isinstance(exc, ValueError | TypeError | KeyError | IndexError | AttributeError):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module.startswith(READER_MODULES)
