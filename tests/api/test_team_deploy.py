"""Issue #22, a team deployment: two `valuechain serve` workers on one PostgreSQL database and one
`chroma run` server, with a fake OpenAI-compatible model endpoint and a fake Slack Web API.

A document uploaded through worker 1 is found by a search through worker 2 (one knowledge index);
A chat started through worker 1 is streamed to its end through worker 2 with the same events; a
Slack event and its retry delivered to different workers are answered once; a Stop sent to
worker 2 stops the run worker 1 holds; worker 1 killed
with SIGKILL in the middle of a turn leaves the run `interrupted` (seen through worker 2), with
no answer stored. Runs in `.ci/run` (PostgreSQL up); fails there when PostgreSQL is down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from chroma_server import running_chroma
from slack_harness import ALICE, BOB, CHANNEL, SECRET, TEAM, TOKEN, FakeSlack, mention_body, signed_headers
from sqlalchemy import select
from team_harness import FakeModel, Stream, TeamDatabase, Worker, postgres_url, start_workers

from core.db import make_engine, make_sessionmaker
from crm.models import AgentRun, Conversation, RunEvent, SlackQuestion

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STALE_S = "3"
WAIT_S = 60.0


@dataclass
class Team:
    db: TeamDatabase
    model: FakeModel
    slack: FakeSlack
    workers: list[Worker]
    env: dict[str, str]
    data_dir: Path

    def another_worker(self, name: str) -> Worker:
        """One more worker like the others, stopped with them."""
        worker = Worker(name, self.db.url, self.data_dir / name, self.model.url, **self.env).wait_ready()
        self.workers.append(worker)
        return worker

    def headers(self, role: str = "analyst") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.db.keys[role]}"}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    db = TeamDatabase(postgres_url()).create()
    model, slack = FakeModel(), FakeSlack()
    slack.thread.start()
    chroma_cm = running_chroma(tmp_path_factory.mktemp("chroma"))
    chroma = chroma_cm.__enter__()
    try:
        # CHAT_JOBS=false: the receiving worker runs the turn (turns as jobs: test_team_chat_jobs.py)
        env = {"RUN_STALE_S": STALE_S, "CHAT_JOBS": "false", "CHROMA_HOST": chroma.host, "CHROMA_PORT": str(chroma.port),
               "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": f"{slack.url}/api/",
               "SLACK_APPROVERS": f"{ALICE}:alice, {BOB}:bob"}
        data_dir = tmp_path_factory.mktemp("team")
        workers = start_workers(2, db.url, data_dir, model.url, **env)
        try:
            team = Team(db, model, slack, workers, env, data_dir)
            for w in workers:
                _wait_model(w, team.headers())
            yield team
        finally:
            for w in workers:
                w.stop()
    finally:
        chroma_cm.__exit__(None, None, None)
        model.close()
        slack.server.shutdown()
        slack.server.server_close()
        db.drop()


def _wait_model(worker: Worker, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if httpx.get(f"{worker.url}/api/v1/chat/status", headers=headers, timeout=5).json()["available"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"{worker.name}: chat never became available:\n{worker.log()}")


def _chat(team: Team, worker: Worker, message: str) -> Stream:
    return Stream("POST", f"{worker.url}/api/v1/chat", json={"message": message},
                  headers={**team.headers(), "Accept": "text/event-stream"})


def _follow(team: Team, worker: Worker, run_id: str, after: int | None = None) -> Stream:
    extra = {"Last-Event-ID": str(after)} if after is not None else {}
    return Stream("GET", f"{worker.url}/api/v1/chat/runs/{run_id}/events", headers={**team.headers(), **extra})


def test_a_chat_started_on_worker_1_streams_to_its_end_through_worker_2(team: Team) -> None:
    one, two = team.workers
    team.model.hold.clear()  # the turn waits in the middle of its answer until worker 2 follows it
    started = _chat(team, one, "Which accounts are most at risk?")
    run_id = started.wait_for("run_started")[2]["run_id"]
    follower = _follow(team, two, run_id)
    assert follower.started.wait(WAIT_S) and follower.status == 200
    follower.wait_for("run_started")  # live: worker 2 sees the run before it has ended
    assert not follower.done.is_set()
    team.model.hold.set()
    through_one, through_two = started.finish(), follower.finish()

    assert through_two == through_one
    assert [seq for seq, _, _ in through_two] == list(range(1, len(through_two) + 1))
    assert through_two[-1][1] == "answer" and "most at risk" in through_two[-1][2]["result"]["answer"]
    assert any(name == "token" for _, name, _ in through_two)
    # after the end, from a point: exactly the events after Last-Event-ID, as from the worker that ran it
    assert _follow(team, two, run_id, after=2).finish() == through_one[2:]
    info = httpx.get(f"{two.url}/api/v1/chat/runs/{run_id}", headers=team.headers(), timeout=10).json()
    assert (info["status"], info["live"], info["events"]) == ("ok", False, len(through_one))


def test_a_slack_retry_delivered_to_the_other_worker_is_answered_once(team: Team) -> None:
    one, two = team.workers
    ts = "1700009000.000100"
    body = mention_body("which accounts are most at risk?", ts=ts)
    first = httpx.post(f"{one.url}/slack/events", content=body, timeout=10,
                       headers=signed_headers(body, "application/json"))
    retry = httpx.post(f"{two.url}/slack/events", content=body, timeout=10,
                       headers={**signed_headers(body, "application/json"), "X-Slack-Retry-Num": "1",
                                "X-Slack-Retry-Reason": "http_timeout"})
    assert first.status_code == retry.status_code == 200

    def answers() -> list[dict[str, Any]]:
        return [m for m in team.slack.of("chat.postMessage") if "most at risk" in str(m.get("text"))]

    deadline = time.monotonic() + WAIT_S
    while not answers() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # long enough for a second answer, had the other worker taken the retry too
    assert len(answers()) == 1, team.slack.calls
    engine = make_engine(team.db.url)
    try:
        with make_sessionmaker(engine)() as s:
            runs = s.scalars(select(AgentRun).where(AgentRun.conversation_id == f"slack-{TEAM}-{CHANNEL}-{ts}")).all()
    finally:
        engine.dispose()
    assert [r.status for r in runs] == ["ok"]


def test_a_stop_sent_to_worker_2_stops_the_run_worker_1_holds(team: Team) -> None:
    one, two = team.workers
    team.model.hold.clear()
    try:
        started = _chat(team, one, "Which accounts are most at risk?")
        run_id = started.wait_for("run_started")[2]["run_id"]
        started.wait_for("token")
        stop = httpx.post(f"{two.url}/api/v1/chat/runs/{run_id}/stop", headers=team.headers(), timeout=30)
        events = started.finish()
    finally:
        team.model.hold.set()
    assert stop.status_code == 200 and (stop.json()["status"], stop.json()["live"]) == ("stopped", False)
    assert events[-1][1] == "stopped" and events[-1][2]["status"] == "stopped"
    assert events[-1][2]["text"].startswith("stopped by team-analyst")
    again = httpx.post(f"{two.url}/api/v1/chat/runs/{run_id}/stop", headers=team.headers(), timeout=30)
    assert again.status_code == 409 and "already ended (stopped)" in again.json()["detail"]


def test_a_turn_on_worker_2_waits_behind_the_one_worker_1_holds_the_model_for(team: Team) -> None:
    """One model endpoint for the deployment: CHAT_TURNS_AT_ONCE (1) counts both workers' turns, and
    the status either worker reports counts them too."""
    one, two = team.workers
    team.model.hold.clear()
    try:
        first = _chat(team, one, "Which accounts are most at risk?")
        first.wait_for("token")  # holds the model
        second = _chat(team, two, "Which accounts are most at risk now?")
        waiting = second.wait_for("queue")[2]
        status = httpx.get(f"{one.url}/api/v1/chat/status", headers=team.headers(), timeout=10).json()
        listed = httpx.get(f"{one.url}/api/v1/chat/runs", headers=team.headers(), timeout=10).json()
    finally:
        team.model.hold.set()
    assert waiting["position"] == 1 and "1 turn ahead" in waiting["text"]
    assert (status["status"], status["running"], status["queued"]) == ("busy", 1, 1)
    first_id, second_id = first.events[0][2]["run_id"], second.events[0][2]["run_id"]
    assert status["your_runs"] == [first_id, second_id]  # the one worker 2 holds too
    assert [(r["run_id"], r["status"], r["live"], r["queue_position"]) for r in listed] == [
        (first_id, "running", True, 0), (second_id, "queued", False, 1)]
    assert first.finish()[-1][1] == "answer"
    events = second.finish()
    assert [d["position"] for _, n, d in events if n == "queue"] == [1, 0] and events[-1][1] == "answer"


DOC = (b"# Widget returns\n\n## Return policy\n\nA zorblatt widget may be returned within 45 days of delivery "
       b"when its seal is unbroken.\n")


def test_a_document_uploaded_through_one_worker_is_found_through_the_other(team: Team) -> None:
    """Both workers use the one Chroma server: what worker 1 indexes, worker 2 retrieves."""
    w1, w2 = team.workers
    up = httpx.post(f"{w1.url}/api/v1/knowledge/documents", headers=team.headers(),
                    files={"files": ("Widget Returns.md", DOC, "text/markdown")}, timeout=120)
    assert up.status_code == 200, up.text
    assert up.json()["added"] >= 1
    hits = httpx.get(f"{w2.url}/api/v1/knowledge/search", headers=team.headers(), timeout=120,
                     params={"q": "how long can a zorblatt widget be returned", "k": 3})
    assert hits.status_code == 200, hits.text
    top = hits.json()["results"][0]
    assert (top["source"], top["section"]) == ("Widget-Returns", "Return policy") and "45 days" in top["text"]
    ready = httpx.get(f"{w2.url}/readyz", params={"skip": "llm"}, timeout=30).json()
    assert ready["components"]["vector_store"]["status"] == "ok"


def test_a_worker_killed_mid_run_leaves_the_run_interrupted_with_no_answer(team: Team) -> None:
    one, two = team.workers
    team.model.hold.clear()  # worker 1's turn is in the middle of its answer when it dies
    try:
        started = _chat(team, one, "Which accounts are most at risk?")
        run_id = started.wait_for("run_started")[2]["run_id"]
        follower = _follow(team, two, run_id)
        follower.wait_for("token")  # the answer has begun streaming
        one.kill()
        killed = time.monotonic()
        events = follower.finish()
        took = time.monotonic() - killed
    finally:
        team.model.hold.set()

    assert follower.error is None and [name for _, name, _ in events].count("answer") == 0
    last = events[-1]
    assert last[0] == len(events) and last[1] == "stopped" and last[2]["status"] == "interrupted"
    assert f"pid {one.proc.pid}" in last[2]["text"]
    assert took < float(STALE_S) + 5, took  # marked within seconds by the live worker, not at the next restart
    info = httpx.get(f"{two.url}/api/v1/chat/runs/{run_id}", headers=team.headers(), timeout=10).json()
    assert (info["status"], info["live"]) == ("interrupted", False)
    engine = make_engine(team.db.url)
    try:
        with make_sessionmaker(engine)() as s:
            run = s.get(AgentRun, run_id)
            assert run is not None and run.conversation_id == events[0][2]["conversation_id"]
            stored = s.scalars(select(RunEvent.event).where(RunEvent.run_id == run_id)).all()
            conversation = s.get(Conversation, run.conversation_id)
            assert (run.status, run.answer, conversation is not None) == ("interrupted", None, True)
    finally:
        engine.dispose()
    assert "answer" not in stored and "token" in stored  # what was streamed stayed; nothing half-written
    conv = httpx.get(f"{two.url}/api/v1/conversations/{run.conversation_id}", headers=team.headers(role="admin"),
                     timeout=10).json()
    assert [(r["status"], r["answer"]) for r in conv["runs"]] == [("interrupted", None)]



def test_a_slack_question_whose_worker_is_killed_is_answered_again_by_another_worker(team: Team) -> None:
    """Killed mid-answer, the Slack thread still gets its answer: a live worker marks the run
    interrupted, claims it once and asks again in the same thread, saying why."""
    victim = team.workers[1]
    rescuer = team.another_worker("worker3")
    ts = "1700009100.000100"
    conversation = f"slack-{TEAM}-{CHANNEL}-{ts}"
    body = mention_body("which accounts are most at risk?", ts=ts)
    engine = make_engine(team.db.url)
    sessions = make_sessionmaker(engine)

    def streamed() -> bool:
        with sessions() as s:
            return "token" in s.scalars(select(RunEvent.event).join(AgentRun, AgentRun.id == RunEvent.run_id)
                                        .where(AgentRun.conversation_id == conversation)).all()

    def in_thread() -> list[str]:
        return [str(m.get("text")) for m in team.slack.of("chat.postMessage") if m.get("thread_ts") == ts]

    team.model.hold.clear()  # the victim's answer has begun when it dies
    try:
        sent = httpx.post(f"{victim.url}/slack/events", content=body, timeout=10,
                          headers=signed_headers(body, "application/json"))
        assert sent.status_code == 200
        deadline = time.monotonic() + WAIT_S
        while not streamed() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert streamed(), victim.log()
        victim.kill()
    finally:
        team.model.hold.set()
    deadline = time.monotonic() + WAIT_S
    while not any("most at risk" in t for t in in_thread()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # long enough for a third message, had two workers both answered again
    try:
        with sessions() as s:
            runs = s.scalars(select(AgentRun).where(AgentRun.conversation_id == conversation)
                             .order_by(AgentRun.started_at)).all()
            kept = {q.run_id: q for q in s.scalars(select(SlackQuestion).where(
                SlackQuestion.run_id.in_([r.id for r in runs])))}
    finally:
        engine.dispose()
    posted = in_thread()
    assert len(posted) == 2, (posted, rescuer.log())
    assert posted[0].startswith("The server answering this stopped before the answer; answering again")
    assert "most at risk" in posted[1]
    assert [r.status for r in runs] == ["interrupted", "ok"]
    assert f"pid {victim.proc.pid}" in (runs[0].error or "")
    assert kept[runs[1].id].resumed_from == runs[0].id and kept[runs[0].id].resumed_at is not None
