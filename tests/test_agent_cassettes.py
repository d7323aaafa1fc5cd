"""The whole agent against recorded traffic from the real embedded model server.

Cassettes in tests/cassettes/test_agent_cassettes/ were recorded from the embedded
llama.cpp server (Qwen2.5-Coder-1.5B) with `make record-cassettes`; CI replays them
(record mode "none"): a request whose method, path and body match no recording fails,
and so does a test that leaves a recorded request unplayed. Requests carry the embedded
endpoint's exact body (slot pin, stop sequence, tool schemas), so changing the system
prompt, a tool docstring or a tool's output changes the bodies and means re-recording.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Copilot
from agent.llm.runtime import LLMRuntime
from agent.llm.server import embedded_model_name
from agent.pipeline import PlanCopilot
from agent.service import build_copilot
from core.settings import get_settings
from crm.models import Recommendation, ToolCall
from knowledge.ingest import ensure_corpus_index
from knowledge.store import KnowledgeStore

pytestmark = pytest.mark.vcr
REPLAY_URL = "http://127.0.0.1:9/v1"
"""Nothing listens here: in replay every response comes from the cassette."""


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    return {
        "match_on": ["method", "path", "body"],
        "filter_headers": ["authorization", "api-key", "x-api-key", "openai-organization", "cookie"],
        "allow_playback_repeats": False,
    }


@pytest.fixture(autouse=True)
def _every_recording_is_played(vcr: Any, record_mode: str) -> Iterator[None]:
    yield
    if record_mode == "none":
        assert vcr.all_played, f"{vcr.play_count} of {len(vcr)} recorded requests were played"


@pytest.fixture(scope="module")
def llm(record_mode: str) -> Iterator[LLMRuntime]:
    settings = get_settings().model_copy(update={"llm_base_url": None, "llm_model": None, "llm_gguf_path": None})
    if record_mode == "none":
        yield LLMRuntime(settings, REPLAY_URL, embedded_model_name(settings))
        return
    with LLMRuntime.open(settings) as runtime:  # recording: the real embedded server
        yield runtime


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeStore:
    store = KnowledgeStore.at_path(tmp_path_factory.mktemp("cassettechroma"))
    ensure_corpus_index(store)
    return store


@pytest.fixture
def sessions(demo_sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    return demo_sessions


@pytest.fixture
def copilot(sessions: sessionmaker[Session], knowledge: KnowledgeStore, llm: LLMRuntime) -> Copilot:
    return Copilot(sessions=sessions, knowledge=lambda: knowledge, router=llm.router(),
                   answerer=llm.answerer(), model_name=llm.model, llm_call_timeout_s=llm.settings.llm_timeout_s)


@pytest.fixture
def planned(sessions: sessionmaker[Session], knowledge: KnowledgeStore, llm: LLMRuntime) -> PlanCopilot:
    """The plan → execute → answer agent as the service builds it (exemplars, similarity gate)."""
    settings = llm.settings.model_copy(update={"agent_design": "plan"})
    agent = build_copilot(settings, llm, sessions=sessions, knowledge=lambda: knowledge)
    assert isinstance(agent, PlanCopilot)
    return agent


def logged(sessions: sessionmaker[Session], run_id: str) -> list[ToolCall]:
    with sessions() as s:
        return list(s.scalars(select(ToolCall).where(ToolCall.run_id == run_id).order_by(ToolCall.seq)))


def test_top_churn_risks_and_what_to_do(copilot: Copilot, sessions: sessionmaker[Session]) -> None:
    result = copilot.ask("Which 5 accounts are most likely to churn and what should we do about the first one?")

    assert result.error is None and result.answer
    names = [c.name for c in result.tool_calls]
    assert names[0] in {"rank", "churn_risk"} and "next_best_action" in names
    assert all(c.ok for c in result.tool_calls)
    rows = logged(sessions, result.run_id)
    assert [r.name for r in rows] == names
    listed = [i["id"] for i in rows[0].result["items"]] if names[0] == "rank" else [
        a["account_id"] for a in rows[0].result["accounts"]]
    nba = rows[names.index("next_best_action")]
    assert nba.args["account_id"] == listed[0]  # it asked about the first account the ranking returned
    with sessions() as s:
        statuses = {r.status for r in s.scalars(select(Recommendation))}
    assert statuses <= {"pending"}  # the agent files, never approves


def test_framework_question_uses_the_knowledge_base(copilot: Copilot) -> None:
    result = copilot.ask("What are the support activities in Porter's value chain?")

    assert [c.name for c in result.tool_calls][:1] == ["search_knowledge"]
    assert result.tool_calls[0].ok and result.error is None


def test_out_of_scope_question_is_declined(copilot: Copilot, sessions: sessionmaker[Session]) -> None:
    result = copilot.ask("What's the weather in Paris tomorrow?")

    assert result.error is None and result.answer
    # the 1.5B model reaches for the knowledge base; its off-topic gate returns no passages
    assert {c.name for c in result.tool_calls} <= {"search_knowledge"}
    for row in logged(sessions, result.run_id):
        assert row.result["on_topic"] is False and row.result["best_similarity"] < 0.28
    assert not any(ch.isdigit() for ch in result.answer)  # no made-up forecast


def test_unknown_account_error_reaches_the_model(copilot: Copilot, sessions: sessionmaker[Session]) -> None:
    result = copilot.ask("How likely is ACME-9999 to churn?")

    first = result.tool_calls[0]
    assert (first.name, first.args.get("account_id"), first.ok) == ("churn_risk", "ACME-9999", False)
    assert 'no account "ACME-9999"' in (first.error or "")
    assert result.error is None
    assert logged(sessions, result.run_id)[0].ok is False


# --------------------------------------------------------------------------- plan → execute → answer


def test_plan_two_steps_with_a_reference_in_two_model_calls(planned: PlanCopilot, sessions: sessionmaker[Session]
                                                             ) -> None:
    result = planned.ask("Which 5 accounts are most likely to churn and what should we do about the first one?")

    assert result.error is None and result.llm_calls == 2
    names = [c.name for c in result.tool_calls]
    assert names[0] in {"rank", "churn_risk"} and "next_best_action" in names and all(c.ok for c in result.tool_calls)
    rows = logged(sessions, result.run_id)
    listed = [i["id"] for i in rows[0].result["items"]] if names[0] == "rank" else [
        a["account_id"] for a in rows[0].result["accounts"]]
    assert len(listed) == 5 and rows[names.index("next_best_action")].args["account_id"] == listed[0]
    assert all(f"({i})" in result.answer for i in listed)  # the list is rendered by code, every item
    with sessions() as s:
        assert s.scalars(select(Recommendation)).all() == []  # advice, not a filing


def test_plan_parallel_comparison_runs_one_step_per_account(planned: PlanCopilot) -> None:
    result = planned.ask("Compare the churn risk of ACME-0042 and DYNE-0036.")

    assert result.error is None and result.llm_calls == 2
    assert sorted((c.name, c.args.get("account_id"), c.ok) for c in result.tool_calls) == [
        ("churn_risk", "ACME-0042", True), ("churn_risk", "DYNE-0036", True)]
    assert "(ACME-0042)" in result.answer and "(DYNE-0036)" in result.answer


def test_plan_framework_question_cites_the_knowledge_base(planned: PlanCopilot) -> None:
    result = planned.ask("What are the support activities in Porter's value chain?")

    assert [c.name for c in result.tool_calls] == ["search_knowledge"] and result.tool_calls[0].ok
    assert result.error is None and "[porter-value-chain §" in result.answer


def test_plan_off_topic_is_declined_without_figures(planned: PlanCopilot) -> None:
    result = planned.ask("What's the weather in Paris tomorrow?")

    assert result.error is None and result.tool_calls == [] and "outside what I cover" in result.answer
    assert not any(ch.isdigit() for ch in result.answer)


def test_plan_files_the_best_action_pending_when_asked(planned: PlanCopilot, sessions: sessionmaker[Session]) -> None:
    result = planned.ask("What should we do about ACME-0042? File the best action for approval.")

    assert result.error is None
    assert [c.name for c in result.tool_calls] == ["next_best_action", "propose_recommendation"]
    assert all(c.ok for c in result.tool_calls)
    with sessions() as s:
        recs = s.scalars(select(Recommendation)).all()
    best = logged(sessions, result.run_id)[0].result["actions"][0]["action"]
    assert [(r.account_id, r.action, r.status) for r in recs] == [("ACME-0042", best, "pending")]


def test_plan_unknown_account_is_said_plainly(planned: PlanCopilot, sessions: sessionmaker[Session]) -> None:
    result = planned.ask("How likely is ACME-9999 to churn?")

    assert result.error is None and result.tool_calls and not any(c.ok for c in result.tool_calls)
    assert result.tool_calls[0].args.get("account_id") == "ACME-9999"
    assert 'no account "ACME-9999"' in result.answer  # what the tool said, not a guess about another account
    assert all(r.ok is False for r in logged(sessions, result.run_id))
