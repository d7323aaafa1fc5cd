"""The agent as plan → execute → answer: two model calls a turn (ReWOO / LLMCompiler style).

A LangGraph graph of three nodes. `plan`: one model call writes the whole plan (`agent.planner`).
`execute`: code checks and runs it (`agent.executor`), independent steps in parallel; when a
step fails with an error the model can fix, the graph goes back to `plan` once with the errors.
`answer`: the data the user asked for is rendered by code from the results (`agent.render`);
one streamed model call writes the short narrative around it (framework questions: from the
retrieved passages, with citations). Clarifying and off-topic replies are written by code.

Events stream as they happen (`run_started`, `plan`, `tool_start`/`tool_end`, `token`, `answer`);
the run log gets every model call, tool call and message, as with the ReAct agent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from sqlalchemy.orm import Session, sessionmaker

from agent.claims import inverted_note, without_inverted
from agent.compare import comparisons
from agent.copilot import (
    AgentAnswer,
    AgentEvent,
    ToolCallInfo,
    close_turn,
    final_answer,
    run_sync,
    unavailable_answer,
)
from agent.coverage import add_asked_steps, replan_feedback
from agent.deps import RunContext
from agent.executor import Execution, Executor, StepRun, step_key
from agent.followup import retarget
from agent.intent import settle_filing, unsupported_action
from agent.middleware import (
    InternalToolError,
    LLMUnavailableError,
    internal_error_answer,
    internal_error_record,
    squash,
    timed_model_call,
)
from agent.narrative import Budget
from agent.numbers import left_out_note, untraceable, without_figures
from agent.plan import MAX_STEPS, Plan, Step
from agent.planner import Gate, Planner, Retrieve
from agent.prompts import load_prompt
from agent.provenance import known_text, tool_ids
from agent.render import ASKED, CURRENCY, render
from agent.runlog import RunLog, conversation_calls, history, last_steps
from knowledge.search import KNOWLEDGE_CHARS, KnowledgeResults
from tools.accounts import scope_values
from tools.errors import new_error_id
from tools.registry import FILTER_KEYS, TOOLS_BY_NAME

if TYPE_CHECKING:
    from agent.llm.runtime import LLMRuntime
    from knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

MAX_REPLANS = 1
DEFINITION_PASSAGES = 3
"""Passages a knowledge search added to a data plan returns (each costs the answer call ~150 prompt
tokens). Searched with the user's question alone, the retrieval suite's 95 questions find an expected
document in the top 2 for 92 and in the top 3 for all 95 (2026-12-06, docs/AGENT.md)."""
CHECK_MARKERS = ("never invent ids", "which does not come before", "which was dropped", "an earlier step it needs failed",
                 "which returned nothing")
"""Errors of the executor's own checks (agent.executor), as opposed to what a tool said."""


class State(TypedDict, total=False):
    plan: Plan | None
    feedback: str | None
    replans: int
    replan: bool
    execution: Execution | None


@dataclass
class Turn:
    """Everything one turn's nodes share (LangGraph's runtime context)."""

    ctx: RunContext
    log: RunLog
    question: str
    history: list[tuple[str, str]]
    executor: Executor
    previous: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)
    """(tool, args, result) the conversation's last turn ran (`agent.runlog.last_steps`)."""
    notes: list[str] = field(default_factory=list)
    llm_s: float = 0.0
    tool_s: float = 0.0
    calls: dict[str, ToolCallInfo] = field(default_factory=dict)
    answer: str = ""
    steps: list[StepRun] = field(default_factory=list)


class PlanCopilot:
    """The plan → execute → answer agent over one database, knowledge store and model endpoint."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        knowledge: Callable[[], KnowledgeStore],
        planner: Runnable[Any, Any],
        answerer: BaseChatModel,
        model_name: str,
        retrieve: Retrieve | None = None,
        gate: Gate | None = None,
        ground: Gate | None = None,
        passages: Callable[[str], float | None] | None = None,
        recommendation_ttl_days: int | None = 30,
        tool_settings: Mapping[str, Any] | None = None,
        llm_call_timeout_s: float | None = None,
        currency: str = "USD",
    ) -> None:
        self.sessions = sessions
        self.knowledge = knowledge
        self.model_name = model_name
        self.recommendation_ttl_days = recommendation_ttl_days
        self.tool_settings = dict(tool_settings or {})
        self.timeout_s = llm_call_timeout_s
        with sessions() as session:
            scopes = scope_values(session=session, keys=FILTER_KEYS)
        self.planner = Planner(planner, retrieve=retrieve, scopes=scopes, gate=gate, passages=passages)
        self.ground = ground
        self.currency = currency
        self.answerer = answerer
        self.answer_prompt = load_prompt("answer_plan.md")
        self.knowledge_prompt = load_prompt("answer_knowledge.md")
        self.figures_prompt = load_prompt("answer_figures.md")
        self.decline = load_prompt("decline.md")
        self.decline_action = load_prompt("decline_action.md")
        self.clarify = load_prompt("clarify.md")
        graph = StateGraph(State, context_schema=Turn)
        graph.add_node("plan", self._plan_node)
        graph.add_node("execute", self._execute_node)
        graph.add_node("answer", self._answer_node)
        graph.add_edge(START, "plan")
        graph.add_conditional_edges("plan", self._after_plan, ["execute", "answer"])
        graph.add_conditional_edges("execute", self._after_execute, ["plan", "answer"])
        graph.add_edge("answer", END)
        self.graph = graph.compile()

    # ------------------------------------------------------------------ warm-up
    def warm(self, runtime: LLMRuntime) -> float:
        """Fill the planner's and the answerer's prompt caches with their fixed prefixes."""
        return warm_prefixes(runtime, self.planner.system)

    # ------------------------------------------------------------------ model calls
    async def _model(self, turn: Turn, call: Callable[[], Any]) -> Any:
        result, _ms = await timed_model_call(turn, call, timeout_s=self.timeout_s, model_name=self.model_name)
        return result

    # ------------------------------------------------------------------ nodes
    async def _plan_node(self, state: State, runtime: Runtime[Turn]) -> State:
        turn = runtime.context
        write = get_stream_writer()
        t0 = time.perf_counter()
        reply = await self._model(turn, lambda: self.planner.plan(turn.question, turn.history, state.get("feedback"),
                                                                  turn.previous))
        if reply.gated:
            turn.notes.append("declined: an action the tools cannot take (no model call)"
                              if unsupported_action(turn.question) else
                              "off-topic: no answerable question is near it (no model call)")
        else:
            turn.log.llm_call(model=self.model_name, prompt_tokens=reply.prompt_tokens,
                              completion_tokens=reply.completion_tokens,
                              latency_ms=(time.perf_counter() - t0) * 1000, error=reply.error)
        if reply.plan is None:
            turn.notes.append(f"no usable plan: {reply.error}")
            return {"plan": None, "replan": False}
        if reply.fanned_out:
            turn.notes.append(f"the plan's per-account steps repeated for {', '.join(reply.fanned_out)} (named, unused)")
        plan = self._with_definitions(turn, self._with_asked(turn, self._settle_filing(turn, reply.plan)))
        turn.notes.append(f"plan: {plan.compact()}")
        write({"type": "plan", "plan": plan.model_dump()})
        return {"plan": plan, "replan": False}

    @staticmethod
    def _settle_filing(turn: Turn, plan: Plan) -> Plan:
        """The plan's intent where the user's words settle it (`agent.intent.settle_filing`), and a
        follow-up's target where it points back at the last turn's account (`agent.followup`)."""
        plan, note = settle_filing(turn.question, plan)
        if note:
            turn.notes.append(note)
        if turn.previous:
            plan, note = retarget(plan, turn.question, turn.previous)
            if note:
                turn.notes.append(note)
        return plan

    @staticmethod
    def _with_asked(turn: Turn, plan: Plan) -> Plan:
        """The plan with the account reads whose facts the user asks for and no step returns
        (`agent.coverage.add_asked_steps`: "open tickets and days until renewal" needs the profile)."""
        plan, added = add_asked_steps(turn.question, plan)
        if added:
            turn.notes.append(f"added {', '.join(added)}: the question asks for facts only that tool returns")
        return plan

    def _with_definitions(self, turn: Turn, plan: Plan) -> Plan:
        """A data-only plan with a knowledge search added when the question also asks how something
        is defined or works (`agent.exemplar_library.definition_asked`): the answer can then say how,
        and cite the passage. Searched with the user's own words; at most `DEFINITION_PASSAGES`."""
        if (self.ground is None or plan.intent not in ("answer", "file") or not plan.steps
                or len(plan.steps) >= MAX_STEPS or any(s.tool == "search_knowledge" for s in plan.steps)
                or not self.ground(turn.question)):
            return plan
        turn.notes.append("added a knowledge search: the question also asks how something is defined or works")
        step = Step(tool="search_knowledge", args={"query": turn.question, "k": DEFINITION_PASSAGES})
        return plan.model_copy(update={"steps": [*plan.steps, step]})

    @staticmethod
    def _after_plan(state: State) -> str:
        plan = state.get("plan")
        return "execute" if plan is not None and plan.intent in ("answer", "file") and plan.steps else "answer"

    async def _execute_node(self, state: State, runtime: Runtime[Turn]) -> State:
        turn = runtime.context
        plan = state["plan"]
        assert plan is not None  # _after_plan routes here only with a plan
        write = get_stream_writer()
        replans = state.get("replans", 0)
        feedback = replan_feedback(turn.question, plan) if replans < MAX_REPLANS else None
        if feedback:  # replan before running anything: the steps would leave part of the question out
            turn.notes.append(f"replanning: {feedback}")
            return {"feedback": feedback, "replans": replans + 1, "replan": True}

        async def on_event(kind: str, step: StepRun) -> None:
            call_id = f"{turn.log.run_id}-{len(turn.steps)}-{step.index}"
            if kind == "tool_start":
                turn.calls[call_id] = ToolCallInfo(name=step.tool, args=dict(step.args), ok=False)
                turn.log.message("assistant", "", tool_calls=[{"name": step.tool, "args": step.args}])
                write({"type": "tool_start", "name": step.tool, "args": dict(step.args), "call_id": call_id})
                return
            info = turn.calls.setdefault(call_id, ToolCallInfo(name=step.tool, args=dict(step.args), ok=False))
            info.ok, info.error = step.error is None, step.error
            turn.tool_s += step.seconds
            result = step.result.model_dump(mode="json") if step.result is not None else None
            # logged in plan order, not finishing order: a follow-up's planner prompt lists these steps
            turn.log.tool_call(name=step.tool, args=step.args, result=result, error=step.error,
                               latency_ms=step.seconds * 1000, seq=len(turn.steps) + step.index)
            text = TOOLS_BY_NAME[step.tool].view_json(step.result) if step.result is not None else f"Error: {step.error}"
            write({"type": "tool_end", "name": step.tool, "ok": step.error is None, "text": text, "call_id": call_id})

        try:
            execution = await turn.executor.run(plan, on_event)
        except Exception as exc:  # a fault in a tool (a DataFault or a bug): not the model's to fix
            error_id = new_error_id()
            log.exception("internal error %s in run %s", error_id, turn.log.run_id)
            failed = next((s for s in turn.executor.last.steps if s.error and not s.fixable), None)
            raise InternalToolError(error_id, failed.tool if failed else "executor", exc) from exc
        turn.notes += execution.notes
        turn.steps += execution.steps
        fixable = [s for s in execution.failed if s.fixable]
        if fixable and replans < MAX_REPLANS:
            feedback = "; ".join(f"step {s.index} {s.tool}({json.dumps(s.args, default=str)}): {s.error}"
                                 for s in fixable)
            turn.notes.append(f"replanning: {feedback}")
            return {"execution": execution, "feedback": feedback, "replans": replans + 1, "replan": True}
        return {"execution": execution}

    @staticmethod
    def _after_execute(state: State) -> str:
        return "plan" if state.get("replan") else "answer"

    async def _answer_node(self, state: State, runtime: Runtime[Turn]) -> State:
        turn = runtime.context
        write = get_stream_writer()
        ex = state.get("execution")
        token = CURRENCY.set(self.currency)  # this node's task only: amounts rendered in the CRM's currency
        asked = ASKED.set(turn.question)  # and the fields the question names shown beside a ranking
        try:
            turn.answer = await self._compose(turn, state.get("plan"), ex.steps if ex else [], write)
        finally:
            CURRENCY.reset(token)
            ASKED.reset(asked)
        return {}

    async def _compose(self, turn: Turn, plan: Plan | None, steps: list[StepRun],
                       write: Callable[[Any], None]) -> str:
        if plan is None:
            return self._say(write, "I could not work out how to answer that. Could you rephrase it, or name the "
                             "account, activity or year you mean?")
        if plan.intent == "off_topic":
            turn.notes.append("off-topic: declined")
            return self._say(write, self.decline_action if unsupported_action(turn.question) else self.decline)
        if plan.intent == "clarify" or not plan.steps:
            turn.notes.append("asked the user to clarify")
            return self._say(write, self.clarify)
        ok = [s for s in steps if s.result is not None]
        # what the tools said about the user's request, across a replan (a replan's refused guesses
        # are the agent's, not the user's concern: shown only when nothing else failed)
        done = {s.tool for s in ok}
        tried = [s for s in turn.steps if s.error is not None and s.result is None and s.tool not in done]
        failed = [s for s in tried if not any(m in (s.error or "") for m in CHECK_MARKERS)] or [
            s for s in steps if s.error is not None]
        if not ok:
            reasons = "; ".join(dict.fromkeys(f"{s.tool}: {s.error}" for s in failed or tried))
            return self._say(write, f"I could not get the data for that ({reasons}).")
        off_topic = [s for s in ok if isinstance(s.result, KnowledgeResults) and not s.result.on_topic]
        if off_topic and len(off_topic) == len(ok):
            if all(s.result.best_similarity is None for s in off_topic):  # type: ignore[union-attr]
                turn.notes.append("the knowledge base is empty")
                return self._say(write, "The knowledge base is empty, so I cannot answer framework questions yet: "
                                        "run `valuechain knowledge build` (the bundled corpus) and ask again.")
            turn.notes.append("off-topic: nothing in the knowledge base; declined")
            return self._say(write, self.decline)
        compared = comparisons([s.result for s in _unique(ok) if s.result is not None])
        blocks = compared + [b for s in _unique(ok) if (b := render(s.result))]  # type: ignore[arg-type]
        narrative = await self._narrate(turn, ok, failed, write, compared)
        tail = "\n\n".join(blocks)
        if failed:
            tail += ("\n\n" if tail else "") + "Not available: " + "; ".join(
                dict.fromkeys(f"{s.tool} ({s.error})" for s in failed))
        if tail:
            write({"type": "token", "text": "\n\n" + tail})
        return (narrative + "\n\n" + tail).strip()

    @staticmethod
    def _say(write: Callable[[Any], None], text: str) -> str:
        write({"type": "token", "text": text})
        return text

    async def _narrate(self, turn: Turn, ok: list[StepRun], failed: list[StepRun], write: Callable[[Any], None],
                       compared: list[str]) -> str:
        knowledge = [s for s in ok if isinstance(s.result, KnowledgeResults)]
        data = [s for s in ok if not isinstance(s.result, KnowledgeResults)]
        lines = [f"Question: {turn.question}"]
        if knowledge and not data:
            system = self.knowledge_prompt
            for s in knowledge:
                assert isinstance(s.result, KnowledgeResults)  # filtered above
                for h in s.result.results:
                    lines.append(f"[{h.source} § {h.section}] {h.text}")
        else:
            system = self.answer_prompt
            lines += compared  # which is higher, worked out by code: copy it, do not work it out
            for s in _unique(ok):
                assert s.result is not None  # ok steps have results
                if isinstance(s.result, KnowledgeResults):  # how something is defined or works, to cite
                    lines += [f"[{h.source} § {h.section}] {h.text[:KNOWLEDGE_CHARS]}" for h in s.result.results
                              if s.result.on_topic]
                    continue
                # what the user will see, figures formatted as shown: the model copies them instead of
                # regrouping digits of raw JSON numbers (31428 became "314,280" in a trial)
                lines.append(render(s.result) or f"{s.tool} result: {TOOLS_BY_NAME[s.tool].view_json(s.result)}")
        for s in failed:
            lines.append(f"{s.tool} failed: {s.error}")
        messages = [SystemMessage(system), HumanMessage("\n".join(lines))]
        text = await self._stream(turn, messages, write)
        sources = [json.dumps(s.result.model_dump(mode="json"), default=str) for s in ok if s.result is not None]
        sources += [render(s.result) for s in ok if s.result is not None] + compared
        sources.append(turn.question)
        invented = untraceable(text, sources)
        if invented:
            turn.notes.append(f"figures in no tool result: {', '.join(invented)}; asked for a rewrite")
            ask = HumanMessage(self.figures_prompt.format(figures=", ".join(invented)))
            again = [*messages, AIMessage(content=text), ask]
            t0 = time.perf_counter()
            reply = await self._model(turn, lambda: self.answerer.ainvoke(again))
            self._log_reply(turn, reply, t0)
            rewritten = str(reply.content).strip()
            if rewritten:
                text = rewritten
            left = untraceable(text, sources)
            if left:  # never shown: the sentences that state them go, and the answer says so
                text, n = without_figures(text, left)
                turn.notes.append(f"left out {n} sentence(s) with figures in no tool result: {', '.join(left)}")
                text += left_out_note(n)
        text, n = without_inverted(text)
        if n:  # both figures are the tools', the order the model gave them is not: the computed comparison stays
            turn.notes.append(f"left out {n} sentence(s) comparing figures the wrong way round")
            text += inverted_note(n)
        return text.strip()

    async def _stream(self, turn: Turn, messages: list[Any], write: Callable[[Any], None]) -> str:
        t0 = time.perf_counter()
        total: AIMessageChunk | None = None

        budget = Budget()

        async def run() -> AIMessageChunk | None:
            nonlocal total
            # closed as soon as the budget is spent: the server stops generating
            async with aclosing(cast(AsyncGenerator[Any, None], self.answerer.astream(messages))) as chunks:
                async for chunk in chunks:
                    if not isinstance(chunk, AIMessageChunk):
                        continue
                    total = chunk if total is None else total + chunk
                    if isinstance(chunk.content, str) and chunk.content and (kept := budget.take(chunk.content)):
                        write({"type": "token", "text": kept})
                    if budget.full:
                        break
            return total

        await self._model(turn, run)
        self._log_reply(turn, total, t0)
        if budget.full:
            turn.notes.append(f"the narrative stopped at the first sentence end after {budget.limit} characters")
            return budget.text.strip()
        return str(total.content).strip() if total is not None else ""

    def _log_reply(self, turn: Turn, reply: Any, t0: float) -> None:
        usage = dict(getattr(reply, "usage_metadata", None) or {})
        turn.log.llm_call(model=self.model_name, prompt_tokens=usage.get("input_tokens"),
                          completion_tokens=usage.get("output_tokens"), latency_ms=(time.perf_counter() - t0) * 1000)

    # ------------------------------------------------------------------ the turn
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
        """Run one turn, yielding events; the last event is always `answer` (with `error` set on failure)."""
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        t0 = time.perf_counter()
        if run is not None:  # a chat job's run, stored when it was asked (`RunLog.claim`)
            conversation_id = run.conversation_id
        prior = history(self.sessions, conversation_id)
        runlog = run or RunLog.start(self.sessions, question=question, conversation_id=conversation_id,
                                     model=self.model_name, channel=channel, user_id=user_id)
        ctx = RunContext(sessions=self.sessions, knowledge=self.knowledge, run_id=runlog.run_id,
                         conversation_id=runlog.conversation_id, actor=actor,
                         recommendation_ttl_days=self.recommendation_ttl_days, system=self.tool_settings)
        said = squash(" ".join([*(t for r, t in prior if r == "user"), question]))
        # ids may come from the user's words and the CRM tools' id fields, never from free text a
        # tool returned or an answer quoted (a note, a passage): agent/provenance.py
        known = known_text([*(t for r, t in prior if r == "user"), question],
                           tool_ids(conversation_calls(self.sessions, conversation_id)))
        turn = Turn(ctx=ctx, log=runlog, question=question, history=prior,
                    executor=Executor(ctx, said=said, known=known, asked=question),
                    previous=last_steps(self.sessions, conversation_id))
        yield AgentEvent(type="run_started", run_id=runlog.run_id, conversation_id=runlog.conversation_id)

        error: str | None = None
        fault: str | None = None  # what the run log keeps of an internal error
        try:
            graph: Any = self.graph
            async for item in graph.astream({"replans": 0}, context=turn, stream_mode="custom"):
                yield AgentEvent(**item)
        except LLMUnavailableError as exc:
            error = unavailable_answer(exc, runlog.conversation_id)
            yield AgentEvent(type="error", text=error)
        except InternalToolError as exc:
            error = internal_error_answer(exc.error_id, exc.cause, conversation_id=runlog.conversation_id,
                                          run_id=runlog.run_id)
            fault = internal_error_record(exc.error_id, exc.cause)
            yield AgentEvent(type="error", text=error)

        yield close_turn(runlog, answer=error or turn.answer, error=error, fault=fault, model=self.model_name,
                         calls=list(turn.calls.values()), llm_s=turn.llm_s, tool_s=turn.tool_s, notes=turn.notes,
                         started=t0)

    async def aask(self, question: str, **kwargs: Any) -> AgentAnswer:
        return await final_answer(self.astream(question, **kwargs))

    def ask(self, question: str, **kwargs: Any) -> AgentAnswer:
        """One turn, blocking: the answer with its tool calls, counts and timings."""
        return run_sync(self.aask(question, **kwargs))


def warm_prefixes(runtime: LLMRuntime, planner_system: str) -> float:
    """Fill the embedded server's planner slot and answer slot with their fixed prompt prefixes."""
    if not runtime.embedded:
        return 0.0
    t0 = time.perf_counter()
    runtime.router(max_tokens=1).invoke([SystemMessage(planner_system), HumanMessage("hello")])  # same slot
    runtime.answerer(max_tokens=1).invoke([SystemMessage(load_prompt("answer_plan.md")), HumanMessage("hello")])
    runtime.warm_s = time.perf_counter() - t0
    return runtime.warm_s


def _unique(steps: list[StepRun]) -> list[StepRun]:
    """Steps with distinct calls, first of each (a replan or a plan may repeat a call; show it once)."""
    seen: set[str] = set()
    out = []
    for s in steps:
        if (key := step_key(s)) not in seen:
            seen.add(key)
            out.append(s)
    return out


__all__ = ["PlanCopilot", "warm_prefixes"]
