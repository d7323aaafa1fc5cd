"""Agent-loop unit tests with the scripted fake chat model (no network), on a small demo company.

Each test scripts the model's replies and asserts what the run did through its public
outputs: the `AgentAnswer`, the streamed events and the rows in the run-log tables.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx2
import openai
import pytest
from agent_fakes import Script, ScriptedChatModel, call, calls, say
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import AgentEvent, Copilot
from agent.middleware import MAX_TOOL_CALLS
from crm.models import AgentRun, LlmCall, Message, Recommendation, RecommendationEvent, ToolCall

QUESTION = "Which 5 accounts are most likely to churn and what should we do about the first one?"


@pytest.fixture
def sessions(demo_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    return demo_sessions


def copilot_for(sessions: sessionmaker[Session], script: Script) -> Copilot:
    return Copilot(
        sessions=sessions,
        knowledge=lambda: pytest.fail("this test does not use the knowledge store"),
        router=ScriptedChatModel(script=script, label="router"),
        answerer=ScriptedChatModel(script=script, label="answerer"),
        model_name="scripted",
    )


def top_account(sessions: sessionmaker[Session]) -> str:
    from tools.ranking import rank

    with sessions() as s:
        return rank(session=s, entity="accounts", metric="churn_probability", limit=1).items[0].id


def rows(sessions: sessionmaker[Session], model: type, run_id: str) -> list[Any]:
    with sessions() as s:
        return list(s.scalars(select(model).where(model.run_id == run_id).order_by(model.id)))


def test_rank_then_next_best_action_is_logged_end_to_end(sessions: sessionmaker[Session]) -> None:
    first = top_account(sessions)
    script = Script([
        call("rank", entity="accounts", metric="churn_probability", limit=5),
        call("next_best_action", account_id=first),
        say(f"{first} is most at risk."),
    ])
    result = copilot_for(sessions, script).ask(QUESTION)

    assert result.error is None
    assert result.answer == f"{first} is most at risk."
    assert [(c.name, c.ok) for c in result.tool_calls] == [("rank", True), ("next_best_action", True)]
    assert result.llm_calls == 3 and result.prompt_tokens == 300 and result.completion_tokens == 30
    # the second routing request saw the rank result, which names the account it then asked about
    tool_msgs = [m for m in script.requests[1]["messages"] if m.type == "tool"]
    assert first in str(tool_msgs[0].content)
    assert script.requests[0]["tools"][:3] == ["rank", "churn_risk", "next_best_action"]

    run_rows = rows(sessions, ToolCall, result.run_id)
    assert [(t.name, t.ok, t.error) for t in run_rows] == [("rank", True, None), ("next_best_action", True, None)]
    assert run_rows[0].result["items"][0]["id"] == first  # the full result, not the compact one
    assert run_rows[1].args == {"account_id": first}
    llm = rows(sessions, LlmCall, result.run_id)
    assert [(c.seq, c.prompt_tokens, c.error) for c in llm] == [(1, 100, None), (2, 100, None), (3, 100, None)]
    with sessions() as s:
        run = s.get(AgentRun, result.run_id)
        assert run is not None and run.status == "ok" and run.answer == result.answer and run.llm_calls == 3
        roles = [m.role for m in s.scalars(select(Message).where(Message.run_id == result.run_id).order_by(Message.seq))]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]


def test_unknown_tool_gets_one_corrective_retry(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("churn_score", account_id="ACME-0042"),
        call("churn_risk", account_id="ACME-0042"),
        say("ACME-0042 is at high risk."),
    ])
    result = copilot_for(sessions, script).ask("How likely is ACME-0042 to churn?")

    assert [c.name for c in result.tool_calls] == ["churn_risk"]
    assert result.notes and result.notes[0].startswith("corrective retry: there is no function 'churn_score'")
    retry_prompt = script.requests[1]["messages"][-1].content
    assert "there is no function 'churn_score'" in retry_prompt and "churn_risk" in retry_prompt
    assert len(rows(sessions, ToolCall, result.run_id)) == 1  # the bad call never ran


def test_invalid_arguments_twice_falls_back_to_an_answer_without_tools(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("next_best_action", limit=2),  # account_id missing
        call("next_best_action", account="ACME-0042"),  # still missing
        say("I need an account id to suggest actions."),
    ])
    result = copilot_for(sessions, script).ask("What should we do next?")

    assert result.tool_calls == []
    assert result.answer == "I need an account id to suggest actions."
    assert "account_id: Field required" in result.notes[0]
    assert result.notes[-2].startswith("gave up on calls")
    assert result.notes[-1] == "no tool data: answer must not state figures"
    last_prompt = script.requests[-1]["messages"][-1].content
    assert "Do not state any figures" in last_prompt
    assert script.requests[-1]["model"] == "answerer" and script.requests[-1]["tools"] == []


def test_malformed_json_reply_is_retried(sessions: sessionmaker[Session]) -> None:
    script = Script([
        say('```json\n{"name": "get_account", "arguments": {"account_id": "ACME-0042"\n```'),
        call("get_account", account_id="ACME-0042"),
        say("ACME-0042 is an Enterprise account."),
    ])
    result = copilot_for(sessions, script).ask("Tell me about ACME-0042")

    assert [c.name for c in result.tool_calls] == ["get_account"]
    assert "looks like a function call" in result.notes[0]


def test_a_tool_error_goes_back_to_the_model_and_the_run_goes_on(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("churn_risk", account_id="ACME-42"),
        call("churn_risk", account_id="ACME-0042"),
        say("ACME-0042 is at risk."),
    ])
    result = copilot_for(sessions, script).ask("Churn risk of ACME-42?")

    assert [(c.name, c.ok) for c in result.tool_calls] == [("churn_risk", False), ("churn_risk", True)]
    assert 'no account "ACME-42"' in (result.tool_calls[0].error or "")
    assert "ACME-0042" in (result.tool_calls[0].error or "")  # the core suggests the close id
    logged = rows(sessions, ToolCall, result.run_id)
    assert [t.ok for t in logged] == [False, True] and logged[0].result is None
    assert 'no account "ACME-42"' in (logged[0].error or "")


def test_tool_budget_ends_the_turn_with_an_answer(sessions: sessionmaker[Session]) -> None:
    from tools.accounts import list_accounts

    with sessions() as s:
        ids = [a.id for a in list_accounts(session=s, limit=9).items]
    script = Script([*[call("get_account", account_id=i) for i in ids[: MAX_TOOL_CALLS]], say("Done.")])
    result = copilot_for(sessions, script).ask("Profile " + ", ".join(ids))

    assert len(result.tool_calls) == MAX_TOOL_CALLS
    assert result.answer == "Done."
    assert "tool budget spent" in result.notes
    assert script.requests[-1]["model"] == "answerer" and script.remaining == 0


def test_parallel_calls_over_the_budget_are_dropped(sessions: sessionmaker[Session]) -> None:
    script = Script([
        calls(*[("get_account", {"account_id": f"ACME-{n:04d}"}) for n in range(1, MAX_TOOL_CALLS + 3)]),
        say("Here they are."),
    ])
    result = copilot_for(sessions, script).ask(
        "Profile " + ", ".join(f"ACME-{n:04d}" for n in range(1, MAX_TOOL_CALLS + 3))
    )

    assert len(result.tool_calls) == MAX_TOOL_CALLS
    assert "2 call(s) over the budget dropped" in result.notes


def test_a_repeated_call_hands_over_to_the_answerer(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("score_activities"),
        call("score_activities"),
        say("Product R&D leaks the most margin."),
    ])
    result = copilot_for(sessions, script).ask("Which activities leak the most margin?")

    assert [c.name for c in result.tool_calls] == ["score_activities"]
    assert result.notes == ["repeated call: answering"]
    assert [r["model"] for r in script.requests] == ["router", "router", "answerer"]


def test_propose_recommendation_files_a_pending_one_with_tool_evidence(sessions: sessionmaker[Session]) -> None:
    first = top_account(sessions)
    from tools.nba import next_best_action

    with sessions() as s:
        action = next_best_action(session=s, account_id=first).actions[0]
    script = Script([
        call("next_best_action", account_id=first),
        call("propose_recommendation", account_id=first, action=action.action, rationale="Highest EV."),
        say(f"Filed {action.action} for approval."),
    ])
    result = copilot_for(sessions, script).ask(f"What should we do about {first}? File it.")

    assert [c.ok for c in result.tool_calls] == [True, True]
    with sessions() as s:
        recs = list(s.scalars(select(Recommendation)))
        assert len(recs) == 1
        rec = recs[0]
        assert (rec.status, rec.account_id, rec.action, rec.run_id) == ("pending", first, action.action, result.run_id)
        assert rec.expected_value == pytest.approx(action.expected_value)
        assert rec.evidence["next_best_action"]["account_id"] == first  # evidence from the tool, not the model
        events = [e.event for e in s.scalars(select(RecommendationEvent))]
        assert events == ["proposed"]
        assert rec.decided_at is None and rec.decided_by is None


def test_endpoint_failure_gives_a_clear_message_and_keeps_the_conversation(sessions: sessionmaker[Session]) -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    script = Script([openai.APIConnectionError(request=request), say("ACME-0042 is fine.")])
    copilot = copilot_for(sessions, script)
    events: list[AgentEvent] = []

    async def run() -> None:
        async for event in copilot.astream("Is ACME-0042 at risk?"):
            events.append(event)

    asyncio.run(run())
    assert [e.type for e in events] == ["run_started", "error", "answer"]
    failed = events[-1].result
    assert failed is not None and failed.error is not None
    assert "cannot be reached" in failed.error and failed.conversation_id in failed.error
    with sessions() as s:
        run = s.get(AgentRun, failed.run_id)
        assert run is not None and run.status == "error" and run.question == "Is ACME-0042 at risk?"
    logged = rows(sessions, LlmCall, failed.run_id)
    assert len(logged) == 1 and "APIConnectionError" in (logged[0].error or "")

    again = copilot.ask("Is ACME-0042 at risk?", conversation_id=failed.conversation_id)
    assert again.error is None and again.conversation_id == failed.conversation_id


def test_a_bug_in_a_tool_ends_the_turn_with_an_error_id(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not the model's to fix: no retry, no traceback to the user; the run log keeps the exception."""
    import tools.accounts

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("bug in the core")

    monkeypatch.setattr(tools.accounts, "require_account", broken)  # inside the get_account core
    script = Script([call("get_account", account_id="ACME-0042"), say("unused")])
    copilot = copilot_for(sessions, script)

    async def run() -> list[AgentEvent]:
        return [e async for e in copilot.astream("Tell me about ACME-0042")]

    events = asyncio.run(run())  # nothing escapes the stream
    assert [e.type for e in events] == ["run_started", "tool_start", "error", "answer"]
    failed = events[-1].result
    assert failed is not None and failed.error is not None and failed.answer == failed.error
    match = re.search(r"internal error stopped this answer \(error id ([0-9a-f]{8}), run ([\w-]+)\)", failed.error)
    assert match is not None and match.group(2) == failed.run_id
    error_id = match.group(1)
    assert "RuntimeError" in failed.error and "bug in the core" not in failed.error  # the type, not internals
    assert script.remaining == 1  # the model was not asked again
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "bug in the core" in str(logged[0].exc_info[1])

    with sessions() as s:
        run = s.get(AgentRun, failed.run_id)
        assert run is not None and run.status == "error" and run.question == "Tell me about ACME-0042"
        assert run.error == f"internal error {error_id}: RuntimeError: bug in the core"
        calls = [(t.name, t.ok, t.error) for t in s.scalars(select(ToolCall).where(ToolCall.run_id == run.id))]
    assert calls == [("get_account", False, "RuntimeError: bug in the core")]

    monkeypatch.undo()  # the conversation goes on
    again = copilot_for(sessions, Script([say("ACME-0042 is an account.")])).ask(
        "and now?", conversation_id=failed.conversation_id
    )
    assert again.error is None and again.conversation_id == failed.conversation_id


def test_a_data_fault_in_a_tool_is_told_to_the_user(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data fault's message says what to do, so the user sees it (with the error id)."""
    import tools.accounts
    from tools.errors import DataFault

    def corrupt(*_: Any, **__: Any) -> None:
        raise DataFault("app_meta 'as_of' is not an ISO date: 'yesterday'; set it to a date")

    monkeypatch.setattr(tools.accounts, "require_account", corrupt)
    answer = copilot_for(sessions, Script([call("get_account", account_id="ACME-0042")])).ask(
        "Tell me about ACME-0042"
    )
    assert answer.error is not None and "error id" in answer.error
    assert "app_meta 'as_of' is not an ISO date" in answer.error


def test_conversation_history_is_sent_on_the_next_turn(sessions: sessionmaker[Session]) -> None:
    script = Script([say("Hello, ask me about accounts."), say("ACME-0042 is an account.")])
    copilot = copilot_for(sessions, script)
    first = copilot.ask("hi")
    second = copilot.ask("and ACME-0042?", conversation_id=first.conversation_id)

    assert second.conversation_id == first.conversation_id
    sent = [(m.type, m.content) for m in script.requests[1]["messages"] if m.type != "system"]
    assert sent == [("human", "hi"), ("ai", "Hello, ask me about accounts."), ("human", "and ACME-0042?")]


def test_streaming_yields_tool_events_then_the_answer(sessions: sessionmaker[Session]) -> None:
    script = Script([call("score_activities", period="2026"), say("R&D leaks the most.")])
    copilot = copilot_for(sessions, script)

    async def collect() -> list[AgentEvent]:
        return [e async for e in copilot.astream("Which activities leak margin in 2026?")]

    events = asyncio.run(collect())
    kinds = [e.type for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "answer"
    start = next(e for e in events if e.type == "tool_start")
    end = next(e for e in events if e.type == "tool_end")
    assert (start.name, start.args, end.name, end.ok) == ("score_activities", {"period": "2026"}, "score_activities", True)
    assert json.loads(end.text or "")["period"] == "2026"
    assert kinds.index("tool_start") < kinds.index("tool_end") < kinds.index("answer")


def test_empty_question_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="empty"):
        copilot_for(sessions, Script([])).ask("   ")


def test_a_stale_pending_recommendation_does_not_block_a_fresh_one(sessions: sessionmaker[Session]) -> None:
    import datetime as dt

    from tools.recommendations import propose_recommendation

    long_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=45)
    with sessions() as s:
        from tools.nba import next_best_action as nba

        old = propose_recommendation(session=s, action=nba(session=s, account_id="ACME-0042").actions[0].action,
                                     rationale="old", evidence={},
                                     account_id="ACME-0042", created_by="someone", now=long_ago)
        s.commit()
    from tools.nba import next_best_action

    with sessions() as s:
        best = next_best_action(session=s, account_id="ACME-0042").actions[0].action
    script = Script([
        call("next_best_action", account_id="ACME-0042"),
        call("propose_recommendation", account_id="ACME-0042", action=best, rationale="Best EV."),
        say("Filed."),
    ])
    result = copilot_for(sessions, script).ask(f"File {best} for ACME-0042.")

    assert [c.ok for c in result.tool_calls] == [True, True]
    with sessions() as s:
        recs = {r.id: r.status for r in s.scalars(select(Recommendation))}
    assert recs[old.id] == "expired"
    assert sorted(recs.values()) == ["expired", "pending"]


def test_an_invented_account_id_is_sent_back_for_correction(sessions: sessionmaker[Session]) -> None:
    first = top_account(sessions)
    script = Script([
        call("churn_risk", account_id="ACME-0042"),  # not in the question: made up
        call("rank", entity="accounts", metric="churn_probability", limit=1),
        call("churn_risk", account_id=first),  # returned by rank: fine
        say(f"{first} is the riskiest."),
    ])
    result = copilot_for(sessions, script).ask("How risky is our riskiest account?")

    assert [c.name for c in result.tool_calls] == ["rank", "churn_risk"]
    assert result.tool_calls[1].args == {"account_id": first}
    assert "'ACME-0042' was not given by the user nor returned by a function" in result.notes[0]


def test_answer_tokens_stream_and_call_json_is_held_back(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("score_activities", period="2026"),
        say('```json\n{"name": "rank"'),  # a broken call written as text: never shown to the user
        say("Product research leaks the most margin."),
    ])
    copilot = copilot_for(sessions, script)

    async def collect() -> list[AgentEvent]:
        return [e async for e in copilot.astream("Which activity leaks the most margin in 2026?")]

    events = asyncio.run(collect())
    tokens = [e.text for e in events if e.type == "token"]
    assert len(tokens) > 3
    assert "".join(t or "" for t in tokens).strip() == "Product research leaks the most margin."
    assert events[-1].result is not None and events[-1].result.answer == "Product research leaks the most margin."


def test_a_model_call_over_its_time_limit_ends_the_turn_clearly(sessions: sessionmaker[Session]) -> None:
    import time as _time

    script = Script([say("never mind")])
    slow = ScriptedChatModel(script=script, on_request=lambda _m: _time.sleep(0.5))
    copilot = Copilot(sessions=sessions, knowledge=lambda: None, router=slow, answerer=slow,
                      model_name="scripted", llm_call_timeout_s=0.05)
    result = copilot.ask("Is ACME-0042 at risk?")

    assert result.error is not None and "did not answer in time" in result.error
    with sessions() as s:
        run = s.get(AgentRun, result.run_id)
        assert run is not None and run.status == "error"


def test_a_filter_the_user_never_named_is_dropped(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("rank", entity="accounts", metric="arr", filters={"region": "North America", "segment": "SMB"}, limit=3),
        say("Here are the top SMB accounts."),
    ])
    result = copilot_for(sessions, script).ask("Top 3 smb accounts by ARR")

    assert [c.args.get("filters") for c in result.tool_calls] == [{"segment": "SMB"}]
    assert result.notes[0] == "dropped filters the user never named: region='North America'"
    assert result.tool_calls[0].ok


def test_repeated_tool_failures_hand_over_to_the_answerer(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("rank", entity="accounts", metric="popularity"),
        call("rank", entity="accounts", metric="fame"),
        say("I could not rank by that; valid metrics are listed."),
    ])
    result = copilot_for(sessions, script).ask("Rank accounts by popularity")

    assert [c.ok for c in result.tool_calls] == [False, False]
    assert "too many failed tool calls" in result.notes
    assert script.requests[-1]["model"] == "answerer"


def test_an_answer_written_as_a_call_gets_a_prose_retry_then_a_plain_fallback(
    sessions: sessionmaker[Session],
) -> None:
    call_text = '```json\n{"name": "churn_risk", "arguments": {"account_id": "ACME-0042"}}\n```'
    script = Script([
        call("churn_risk", account_id="ACME-0042"),
        call("churn_risk", account_id="ACME-0042"),  # a repeat: the answerer takes over
        say(call_text),
        say(call_text),
    ])
    result = copilot_for(sessions, script).ask("Churn risk of ACME-0042?")

    assert result.answer.startswith("I could not write an answer for this. What the tools reported:")
    logged = rows(sessions, ToolCall, result.run_id)[0].result
    assert f"- churn_risk: {logged['explanation']}" in result.answer
    assert result.notes[-2:] == ["answer was a function call: asked again for prose",
                                 "no prose answer: reported the tool results instead"]


def test_an_answer_with_invented_figures_is_rewritten_or_flagged(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("churn_risk", account_id="ACME-0042"),
        say("ACME-0042 will churn with 93% probability and lose 1,234,567."),  # invented figures
        say("ACME-0042 is in the high band."),  # the rewrite, no figures
    ])
    result = copilot_for(sessions, script).ask("Is ACME-0042 at risk?")
    assert result.answer == "ACME-0042 is in the high band."
    assert result.notes == ["figures in no tool result: 93%, 1,234,567; asked for a rewrite"]
    assert "93%, 1,234,567" in script.requests[-1]["messages"][-1].content

    script = Script([
        call("churn_risk", account_id="ACME-0042"),
        say("It will churn with 93% probability."),
        say("It will still churn with 93% probability."),
    ])
    flagged = copilot_for(sessions, script).ask("Is ACME-0042 at risk?")
    assert flagged.answer.endswith("(Unverified: 93% does not come from a tool result.)")
    assert flagged.notes[-1] == "unverified figures flagged: 93%"


def test_parallel_calls_are_logged_with_their_own_results(sessions: sessionmaker[Session]) -> None:
    from tools.accounts import list_accounts

    with sessions() as s:
        ids = [a.id for a in list_accounts(session=s, limit=4).items]
    script = Script([calls(*[("get_account", {"account_id": i}) for i in ids]), say("Four profiles.")])
    result = copilot_for(sessions, script).ask("Profile " + ", ".join(ids))

    logged = rows(sessions, ToolCall, result.run_id)
    assert sorted(t.args["account_id"] for t in logged) == sorted(ids)
    assert all(t.result["id"] == t.args["account_id"] for t in logged)


def test_a_recommendation_needs_the_users_request_and_a_next_best_action(sessions: sessionmaker[Session]) -> None:
    script = Script([
        call("churn_risk", account_id="ACME-0042"),
        call("propose_recommendation", account_id="ACME-0042", action="champion_rebuild", rationale="risky"),
        say("ACME-0042 is at risk."),
    ])
    result = copilot_for(sessions, script).ask("How likely is ACME-0042 to churn?")
    assert [(c.name, c.ok) for c in result.tool_calls] == [("churn_risk", True), ("propose_recommendation", False)]
    assert "the user did not ask for an action" in (result.tool_calls[1].error or "")

    script = Script([
        call("propose_recommendation", account_id="ACME-0042", action="discount_everything", rationale="x"),
        say("I could not file that."),
    ])
    result = copilot_for(sessions, script).ask("What should we do about ACME-0042?")
    assert "call next_best_action for 'ACME-0042' first" in (result.tool_calls[0].error or "")
    with sessions() as s:
        assert list(s.scalars(select(Recommendation))) == []


class OffTopicStore:
    """A knowledge store where nothing is close to the query (best similarity 0.05)."""

    def search(self, query: str, k: int) -> list[Any]:
        from knowledge.store import Hit

        return [Hit("c1", "porter-value-chain", "Porter", "Intro", "text", 0.6)]

    def vector_search(self, query: str, k: int) -> list[Any]:
        from knowledge.store import Hit

        return [Hit("c1", "porter-value-chain", "Porter", "Intro", "text", 0.05)]


def test_an_off_topic_question_is_declined_in_code(sessions: sessionmaker[Session]) -> None:
    script = Script([call("search_knowledge", query="weather in Paris"), say("Sunny and 25 degrees.")])
    copilot = copilot_for(sessions, script)
    copilot.knowledge = OffTopicStore
    result = copilot.ask("What's the weather in Paris tomorrow?")

    assert result.answer.startswith("I can only help with value-chain analysis")
    assert result.notes == ["off-topic: declined"] and result.llm_calls == 1
    assert script.remaining == 1  # the model was not asked to answer from memory
