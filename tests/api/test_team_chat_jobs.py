"""Issue #22, chat turns as jobs (`CHAT_JOBS=true`, PostgreSQL): API workers on one PostgreSQL database with a
fake OpenAI-compatible model endpoint, where the worker that receives a question need not be the
one that answers it.

`front` takes no chat jobs (`CHAT_JOBS_PER_WORKER=0`): it only receives and streams. A question
posted to it is answered by `back` and streamed through `front` to its end (a Slack mention sent
to it is answered in its thread by `back`); a question asked while
no worker takes turns waits `queued` and is answered by a worker started after the receiving one
was killed; a Stop ends a queued turn at once, and the job then runs nothing; killing the worker
that holds a turn leaves the run `interrupted` and procrastinate's job finished `failed`.
Runs in `.ci/run` (PostgreSQL up); fails there when PostgreSQL is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from slack_harness import ALICE, BOB, CHANNEL, SECRET, TOKEN, FakeSlack, mention_body, signed_headers
from sqlalchemy import text
from team_harness import FakeModel, Stream, TeamDatabase, Worker, postgres_url

from core.db import make_engine, make_sessionmaker
from crm.models import AgentRun

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STALE_S = "3"
WAIT_S = 60.0


@dataclass
class Team:
    db: TeamDatabase
    model: FakeModel
    slack: FakeSlack
    data_dir: Path
    workers: list[Worker]

    def start(self, name: str, *, takes: int) -> Worker:
        worker = Worker(name, self.db.url, self.data_dir / name, self.model.url, RUN_STALE_S=STALE_S,
                        CHAT_JOBS="true", CHAT_JOBS_PER_WORKER=str(takes),
                        SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=f"{self.slack.url}/api/",
                        SLACK_APPROVERS=f"{ALICE}:alice, {BOB}:bob").wait_ready()
        self.workers.append(worker)

        def available() -> bool:
            status = httpx.get(f"{worker.url}/api/v1/chat/status", headers=self.headers(), timeout=5)
            return bool(status.json()["available"])

        _wait(available, f"{name}'s model")
        return worker

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.db.keys['analyst']}"}

    def chat(self, worker: Worker, message: str) -> Stream:
        return Stream("POST", f"{worker.url}/api/v1/chat", json={"message": message},
                      headers={**self.headers(), "Accept": "text/event-stream"})

    def run(self, run_id: str) -> AgentRun:
        engine = make_engine(self.db.url)
        try:
            with make_sessionmaker(engine)() as s:
                row = s.get(AgentRun, run_id)
                assert row is not None
                s.expunge(row)
                return row
        finally:
            engine.dispose()

    def procrastinate_statuses(self, run_id: str) -> list[str]:
        engine = make_engine(self.db.url)
        try:
            with engine.connect() as conn:
                return list(conn.scalars(text("SELECT status FROM procrastinate_jobs WHERE args->>'run_id' = :id"),
                                         {"id": run_id}).all())
        finally:
            engine.dispose()


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    db = TeamDatabase(postgres_url()).create()
    model, slack = FakeModel(), FakeSlack()
    slack.thread.start()
    team = Team(db, model, slack, tmp_path, [])
    try:
        yield team
    finally:
        for w in team.workers:
            w.stop()
        model.close()
        slack.server.shutdown()
        slack.server.server_close()
        db.drop()


def _wait(until: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if until():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_question_posted_to_a_worker_that_takes_no_turns_is_answered_by_another(team: Team) -> None:
    front, back = team.start("front", takes=0), team.start("back", takes=2)
    events = team.chat(front, "Which accounts are most at risk?").finish()

    stored = [(seq, name) for seq, name, _ in events if seq is not None]  # not the place of a job not yet taken
    names = [name for _, name in stored]
    assert names[0] == "run_started" and names[-1] == "answer" and "token" in names
    assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))
    assert "most at risk" in events[-1][2]["result"]["answer"]
    run = team.run(events[0][2]["run_id"])
    assert run.status == "ok" and run.owner is not None and f"pid {back.proc.pid}" in run.owner
    # a finished chat job is not kept in the queue's table (it ends just after the answer is stored)
    _wait(lambda: team.procrastinate_statuses(run.id) == [], "the finished job to leave the queue")
    # the JSON form (no event stream) waits for the answer the other worker writes
    answered = httpx.post(f"{front.url}/api/v1/chat", json={"message": "And now?"}, headers=team.headers(),
                          timeout=WAIT_S)
    assert answered.status_code == 200 and "most at risk" in answered.json()["answer"]
    assert team.run(answered.headers["X-Run-Id"]).status == "ok"


def test_a_turn_queued_when_its_worker_dies_is_answered_by_a_worker_started_later(team: Team) -> None:
    front = team.start("front", takes=0)
    waiting = team.chat(front, "Which accounts are most at risk?")
    run_id = waiting.wait_for("run_started")[2]["run_id"]
    place = waiting.wait_for("queue")  # no worker takes turns: first in line, sent unnumbered (not stored)
    assert place[0] is None and place[2]["position"] == 1 and "1 turn ahead" in place[2]["text"]
    second = team.chat(front, "And which ones grew?")
    assert second.wait_for("queue")[2]["position"] == 2
    listed = httpx.get(f"{front.url}/api/v1/chat/runs", headers=team.headers(), timeout=10).json()
    assert [(r["status"], r["queue_position"]) for r in listed] == [("queued", 1), ("queued", 2)]
    assert listed[0]["run_id"] == run_id
    status = httpx.get(f"{front.url}/api/v1/chat/status", headers=team.headers(), timeout=10).json()
    assert (status["status"], status["running"], status["queued"]) == ("busy", 0, 2)
    assert status["detail"].startswith("2 turns wait for an API worker") and len(status["your_runs"]) == 2
    assert team.run(run_id).status == "queued" and team.procrastinate_statuses(run_id) == ["todo"]
    front.kill()  # nobody has the turn: it is a row in the queue, not a task in a process
    assert team.run(run_id).status == "queued"

    back = team.start("back", takes=2)
    follower = Stream("GET", f"{back.url}/api/v1/chat/runs/{run_id}/events", headers=team.headers())
    events = follower.finish()
    assert events[0][1] == "run_started" and events[-1][1] == "answer"
    assert all(seq is not None for seq, name, _ in events if name != "queue")
    assert "most at risk" in events[-1][2]["result"]["answer"]
    run = team.run(run_id)
    assert run.status == "ok" and f"pid {back.proc.pid}" in (run.owner or "")


def test_a_stop_ends_a_queued_turn_at_once_and_its_job_then_runs_nothing(team: Team) -> None:
    front = team.start("front", takes=0)
    waiting = team.chat(front, "Which accounts are most at risk?")
    run_id = waiting.wait_for("run_started")[2]["run_id"]
    stop = httpx.post(f"{front.url}/api/v1/chat/runs/{run_id}/stop", headers=team.headers(), timeout=30)
    assert stop.status_code == 200 and stop.json()["status"] == "stopped"
    events = waiting.finish()
    assert events[-1][1] == "stopped" and events[-1][2]["status"] == "stopped"
    asked = team.model.requests
    team.start("back", takes=2)  # takes the job, finds the run stopped, runs nothing
    _wait(lambda: team.procrastinate_statuses(run_id) == [], "the stopped turn's job to be taken")
    run = team.run(run_id)
    assert (run.status, run.answer, team.model.requests) == ("stopped", None, asked)
    assert run.error is not None and run.error.startswith("stopped by team-analyst")


def test_killing_the_worker_that_holds_a_turn_leaves_it_interrupted_and_its_job_failed(team: Team) -> None:
    front, back = team.start("front", takes=0), team.start("back", takes=2)
    team.model.hold.clear()  # the turn is in the middle of its answer when `back` dies
    try:
        started = team.chat(front, "Which accounts are most at risk?")
        run_id = started.wait_for("run_started")[2]["run_id"]
        started.wait_for("token")
        back.kill()
        events = started.finish()
    finally:
        team.model.hold.set()
    assert "answer" not in [name for _, name, _ in events]
    assert events[-1][1] == "stopped" and events[-1][2]["status"] == "interrupted"
    assert f"pid {back.proc.pid}" in events[-1][2]["text"]
    run = team.run(run_id)
    assert (run.status, run.answer) == ("interrupted", None)
    # procrastinate's record of the dead worker's job is finished by a live worker, not left `doing`
    rescuer = team.start("rescuer", takes=1)
    _wait(lambda: team.procrastinate_statuses(run_id) == ["failed"], "the dead worker's job to be failed",
          timeout_s=WAIT_S)
    assert rescuer.proc.poll() is None


def test_a_slack_question_received_by_one_worker_is_answered_in_its_thread_by_the_one_that_takes_it(
        team: Team) -> None:
    front, back = team.start("front", takes=0), team.start("back", takes=2)
    ts = "1700009200.000100"
    body = mention_body("which accounts are most at risk?", ts=ts)
    sent = httpx.post(f"{front.url}/slack/events", content=body, timeout=10,
                      headers=signed_headers(body, "application/json"))
    assert sent.status_code == 200

    def in_thread() -> list[str]:
        return [str(m.get("text")) for m in team.slack.of("chat.postMessage") if m.get("thread_ts") == ts]

    _wait(lambda: any("most at risk" in t for t in in_thread()), "the answer in the thread")
    time.sleep(1.0)  # long enough for a second answer, had the receiving worker answered too
    assert len(in_thread()) == 1 and [m.get("channel") for m in team.slack.of("chat.postMessage")
                                      if m.get("thread_ts") == ts] == [CHANNEL]
    engine = make_engine(team.db.url)
    try:
        with engine.connect() as conn:
            owner = conn.scalar(text("SELECT r.owner FROM agent_runs r JOIN slack_questions q ON q.run_id = r.id "
                                     "WHERE q.thread_ts = :ts AND r.status = 'ok'"), {"ts": ts})
    finally:
        engine.dispose()
    assert owner is not None and f"pid {back.proc.pid}" in owner  # answered by the worker that took it
