"""Durable chat runs over HTTP: a turn outlives its request, is replayed by id (`Last-Event-ID`),
stopped only by its owner or an admin, queued while another holds the model, marked interrupted
by a restart; feedback on answers; renaming, deleting and searching conversations."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from agent_fakes import Script, ScriptedChatModel, call, say
from apihelp import bearer
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.copilot import Copilot
from agent.runlog import RunLog
from api.app import INTERRUPTED_BY_RESTART, create_app
from core.settings import Settings
from crm.models import AgentRun, Message, Recommendation, RunFeedback

Event = tuple[int | None, str, dict[str, Any]]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds every scripted model reply until set (set at the end so no thread is left waiting)."""
    event = threading.Event()
    yield event
    event.set()


def install(client: TestClient, factory: sessionmaker[Session], *replies: Any, gate: threading.Event | None = None) -> Script:
    script = Script(list(replies), gate=gate)
    client.app.state.llm.copilot = Copilot(  # type: ignore[attr-defined]
        sessions=factory,
        knowledge=lambda: pytest.fail("no knowledge here"),
        router=ScriptedChatModel(script=script, label="router"),
        answerer=ScriptedChatModel(script=script, label="answerer"),
        model_name="scripted",
    )
    return script


def read_sse(lines: Iterator[str], *, until: int | None = None) -> list[Event]:
    """(id, event, data) of each server-sent event; stop after `until` events if given."""
    out: list[Event] = []
    seq: int | None = None
    name: str | None = None
    for line in lines:
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            assert name is not None
            out.append((seq, name, json.loads(line[6:])))
            seq, name = None, None
            if until is not None and len(out) >= until:
                break
    return out


def start_run(client: TestClient, key: str, message: str, **body: Any) -> dict[str, Any]:
    """POST a streamed chat, read its first event and hang up (the client goes away)."""
    with client.stream("POST", "/api/v1/chat", json={"message": message, **body},
                       headers={**bearer(key), "Accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200, resp.read()
        first = read_sse(resp.iter_lines(), until=1)
    assert first[0][0] == 1 and first[0][1] == "run_started"
    assert resp.headers["x-run-id"] == first[0][2]["run_id"]
    return first[0][2]


def replay(client: TestClient, key: str, run_id: str, **headers: str) -> list[Event]:
    with client.stream("GET", f"/api/v1/chat/runs/{run_id}/events", headers={**bearer(key), **headers}) as resp:
        assert resp.status_code == 200, resp.read()
        return read_sse(resp.iter_lines())


def wait_status(client: TestClient, key: str, run_id: str, *states: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = client.get(f"/api/v1/chat/runs/{run_id}", headers=bearer(key)).json()
        if info["status"] in states:
            return info
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} stayed {info['status']}, expected {states}")
        time.sleep(0.05)


def wait_live(client: TestClient, key: str, run_id: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not client.get(f"/api/v1/chat/runs/{run_id}", headers=bearer(key)).json()["live"]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_run_outlives_its_request_and_replays_after_last_event_id(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session], gate: threading.Event
) -> None:
    install(client, factory, call("score_activities"), say("Sales leaks the most."), gate=gate)
    started = start_run(client, keys["approver"], "Which activities leak margin?")
    run_id = started["run_id"]
    assert wait_status(client, keys["approver"], run_id, "running")["status"] == "running"
    # live: streamed from this worker's memory (on PostgreSQL a chat job is listed there once its model place
    # is known, a moment after the run log says `running`)
    assert wait_live(client, keys["approver"], run_id)

    gate.set()  # the model answers after the asking client has gone
    done = wait_status(client, keys["approver"], run_id, "ok")
    events = replay(client, keys["approver"], run_id)
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1)) == list(range(1, done["events"] + 1))
    names = [n for _, n, _ in events]
    assert names[0] == "run_started" and names[-1] == "answer" and "tool_start" in names
    assert events[-1][2]["result"]["answer"] == "Sales leaks the most."

    tail = replay(client, keys["approver"], run_id, **{"Last-Event-ID": "2"})
    assert tail == events[2:]
    assert replay(client, keys["approver"], f"{run_id}", **{"Last-Event-ID": str(len(events))}) == []
    with client.stream("GET", f"/api/v1/chat/runs/{run_id}/events?after=1", headers=bearer(keys["analyst"])) as resp:
        assert read_sse(resp.iter_lines()) == events[1:]  # analysts read every run
    with factory() as s:
        run = s.get(AgentRun, run_id)
        assert run is not None and (run.status, run.answer) == ("ok", "Sales leaks the most.")

    bad = client.get(f"/api/v1/chat/runs/{run_id}/events", headers={**bearer(keys["approver"]), "Last-Event-ID": "x"})
    assert bad.status_code == 422
    assert client.get(f"/api/v1/chat/runs/{run_id}/events", headers=bearer(keys["viewer"])).status_code == 404
    assert client.get("/api/v1/chat/runs/run-nope/events", headers=bearer(keys["approver"])).status_code == 404


def test_stop_is_for_the_owner_or_an_admin_and_stores_no_partial_answer(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session], gate: threading.Event
) -> None:
    install(client, factory, say("never sent"), say("never sent either"), gate=gate)
    run_id = start_run(client, keys["approver"], "Is ACME-0001 at risk?")["run_id"]
    url = f"/api/v1/chat/runs/{run_id}/stop"

    assert client.post(url, headers=bearer(keys["viewer"])).status_code == 404  # cannot even see it
    other = client.post(url, headers=bearer(keys["approver2"]))
    assert other.status_code == 403 and "owner or an admin" in other.json()["detail"]
    stopped = client.post(url, headers=bearer(keys["approver"]))
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert client.post(url, headers=bearer(keys["approver"])).status_code == 409

    events = replay(client, keys["approver"], run_id)
    assert [n for _, n, _ in events] == ["run_started", "stopped"]
    assert events[-1][2]["status"] == "stopped" and "stopped by approver1" in events[-1][2]["text"]
    with factory() as s:
        run = s.get(AgentRun, run_id)
        assert run is not None
        assert (run.status, run.answer) == ("stopped", None) and "stopped by approver1" in (run.error or "")
        roles = list(s.scalars(select(Message.role).where(Message.run_id == run_id)))
    assert roles == ["user"]  # the question stays, nothing half-written

    second = start_run(client, keys["approver"], "And ACME-0002?")["run_id"]
    by_admin = client.post(f"/api/v1/chat/runs/{second}/stop", headers=bearer(keys["admin"]))
    assert by_admin.status_code == 200 and by_admin.json()["status"] == "stopped"


def test_turns_queue_for_the_model_and_the_status_says_busy(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session], gate: threading.Event
) -> None:
    install(client, factory, say("First."), say("Second."), gate=gate)
    first = start_run(client, keys["approver"], "first question")["run_id"]
    wait_status(client, keys["approver"], first, "running")
    second = start_run(client, keys["analyst"], "second question")["run_id"]
    queued = wait_status(client, keys["analyst"], second, "queued")
    assert queued["queue_position"] == 1

    status = client.get("/api/v1/chat/status", headers=bearer(keys["analyst"])).json()
    assert (status["status"], status["running"], status["queued"], status["turns_at_once"]) == ("busy", 1, 1, 1)
    assert status["your_runs"] == [second] and "waits its turn" in status["detail"]
    mine = client.get("/api/v1/chat/runs", headers=bearer(keys["viewer"])).json()
    assert mine == []  # a viewer sees only their own runs

    gate.set()
    wait_status(client, keys["analyst"], second, "ok")
    events = replay(client, keys["analyst"], second)
    queue = [(d["position"], d["text"]) for _, n, d in events if n == "queue"]
    assert [p for p, _ in queue] == [1, 0] and "1 turn ahead" in queue[0][1]
    assert events[-1][2]["result"]["answer"] == "Second."
    assert client.get("/api/v1/chat/status", headers=bearer(keys["analyst"])).json()["status"] == "ready"


def test_json_chat_still_answers_and_names_the_run(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    install(client, factory, say("Hello."))
    resp = client.post("/api/v1/chat", json={"message": "hi"}, headers=bearer(keys["analyst"]))
    assert resp.status_code == 200 and resp.json()["answer"] == "Hello."
    assert resp.headers["x-run-id"] == resp.json()["run_id"]


def test_a_restart_marks_runs_left_running_interrupted(
    settings: Settings, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    log = RunLog.start(factory, question="What leaks?", conversation_id=None, model="scripted", channel="web")
    log.message("tool", '{"partial": true}')
    cli = RunLog.start(factory, question="Asked in a terminal", conversation_id=None, model="scripted", channel="cli")
    with TestClient(create_app(settings)) as fresh:  # the next server process
        info = fresh.get(f"/api/v1/chat/runs/{log.run_id}", headers=bearer(keys["admin"])).json()
        assert (info["status"], info["live"]) == ("interrupted", False)
        gone = fresh.get(f"/api/v1/chat/runs/{log.run_id}/events", headers=bearer(keys["admin"]))
        assert gone.status_code == 410 and log.conversation_id in gone.json()["detail"]
        history = fresh.get(f"/api/v1/conversations/{log.conversation_id}", headers=bearer(keys["admin"])).json()
    run = history["runs"][0]
    assert (run["status"], run["answer"], run["error"]) == ("interrupted", None, INTERRUPTED_BY_RESTART)
    with factory() as s:
        terminal = s.get(AgentRun, cli.run_id)
        assert terminal is not None and terminal.status == "running"  # a CLI chat beside the server goes on
    assert [m["role"] for m in history["messages"]] == ["user", "tool"]


def test_feedback_is_stored_once_per_user_and_shown_in_the_run_log(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    install(client, factory, say("Hello."))
    answer = client.post("/api/v1/chat", json={"message": "hi"}, headers=bearer(keys["approver"])).json()
    url = f"/api/v1/chat/runs/{answer['run_id']}/feedback"

    first = client.put(url, json={"rating": "down", "note": "  Missed the ARR figure. "}, headers=bearer(keys["approver"]))
    assert first.status_code == 200 and first.json()["note"] == "Missed the ARR figure."
    again = client.put(url, json={"rating": "up"}, headers=bearer(keys["approver"]))
    assert again.status_code == 200 and (again.json()["rating"], again.json()["note"]) == ("up", None)
    client.put(url, json={"rating": "down", "note": "too vague"}, headers=bearer(keys["analyst"]))
    assert client.put(url, json={"rating": "meh"}, headers=bearer(keys["approver"])).status_code == 422
    assert client.put(url, json={"rating": "up", "note": "x" * 2001}, headers=bearer(keys["approver"])).status_code == 422
    assert client.put(url, json={"rating": "up"}, headers=bearer(keys["viewer"])).status_code == 404

    run = client.get(f"/api/v1/conversations/{answer['conversation_id']}", headers=bearer(keys["analyst"])).json()["runs"][0]
    assert [(f["user"], f["rating"], f["note"]) for f in run["feedback"]] == [
        ("approver1", "up", None), ("analyst1", "down", "too vague")]
    with factory() as s:
        assert len(s.scalars(select(RunFeedback)).all()) == 2


def test_rename_search_and_delete_own_conversations(
    client: TestClient, keys: dict[str, str], factory: sessionmaker[Session]
) -> None:
    from tools.nba import next_best_action

    with factory() as s:
        action = next_best_action(session=s, account_id="ACME-0001").actions[0].action
    install(client, factory,
            call("next_best_action", account_id="ACME-0001"),
            call("propose_recommendation", account_id="ACME-0001", action=action, rationale="Highest EV."),
            say(f"Filed {action} for ACME-0001."),
            say("Procurement leaks the most margin."))
    mine = client.post("/api/v1/chat", json={"message": "File the best action for ACME-0001"}, headers=bearer(keys["approver"])).json()
    theirs = client.post("/api/v1/chat", json={"message": "Where do we leak margin?"}, headers=bearer(keys["analyst"])).json()
    assert [c["ok"] for c in mine["tool_calls"]] == [True, True], mine["tool_calls"]
    cid, other = mine["conversation_id"], theirs["conversation_id"]

    renamed = client.patch(f"/api/v1/conversations/{cid}", json={"title": "  ACME renewal  "}, headers=bearer(keys["approver"]))
    assert renamed.status_code == 200 and renamed.json()["title"] == "ACME renewal"
    assert client.patch(f"/api/v1/conversations/{other}", json={"title": "x"}, headers=bearer(keys["approver"])).status_code == 403
    assert client.patch(f"/api/v1/conversations/{cid}", json={"title": "x"}, headers=bearer(keys["viewer"])).status_code == 404
    assert client.patch(f"/api/v1/conversations/{cid}", json={"title": " "}, headers=bearer(keys["approver"])).status_code == 422

    def search(q: str, key: str = "approver", **params: str) -> list[str]:
        page = client.get("/api/v1/conversations", params={"q": q, **params}, headers=bearer(keys[key])).json()
        return [c["id"] for c in page["items"]]

    assert search("renewal") == [cid]  # the title
    assert search("procurement") == [other]  # an answer
    assert search("procurement", mine="true") == []
    assert search("leak margin") == [other]  # every word
    assert search("100%") == [] and search("zzz") == []
    assert search("procurement", key="viewer") == []

    assert client.delete(f"/api/v1/conversations/{other}", headers=bearer(keys["approver"])).status_code == 403
    assert client.delete(f"/api/v1/conversations/{cid}", headers=bearer(keys["approver"])).status_code == 204
    assert client.get(f"/api/v1/conversations/{cid}", headers=bearer(keys["approver"])).status_code == 404
    assert client.delete(f"/api/v1/conversations/{cid}", headers=bearer(keys["approver"])).status_code == 404
    with factory() as s:
        rec = s.scalars(select(Recommendation)).one()  # the review queue keeps what the run filed
        assert (rec.account_id, rec.action, rec.run_id) == ("ACME-0001", action, None)
        assert s.get(AgentRun, mine["run_id"]) is None


def test_the_cli_follows_and_stops_a_run_on_a_running_server(
    settings: Settings, keys: dict[str, str], factory: sessionmaker[Session], gate: threading.Event
) -> None:
    from typer.testing import CliRunner
    from web_harness import serve

    from valuechain.cli.main import app as cli

    server_app = create_app(settings)
    with serve(server_app) as url:
        script = Script([call("score_activities"), say("Sales leaks the most."), say("never sent")], gate=gate)
        server_app.state.llm.copilot = Copilot(
            sessions=factory, knowledge=lambda: pytest.fail("no knowledge here"),
            router=ScriptedChatModel(script=script, label="router"),
            answerer=ScriptedChatModel(script=script, label="answerer"), model_name="scripted")
        first = httpx_post(url, keys["analyst"], "Which activities leak margin?")
        gate.set()
        runner = CliRunner()
        whole = runner.invoke(cli, ["runs", "follow", first, "--url", url, "--key", keys["analyst"]])
        assert whole.exit_code == 0, whole.output
        assert "→ score_activities" in whole.output and whole.output.rstrip().endswith("Sales leaks the most.")
        tail = runner.invoke(cli, ["runs", "follow", first, "--after", "3", "--json", "--url", url],
                             env={"VALUECHAIN_API_KEY": keys["analyst"]})
        assert tail.exit_code == 0, tail.output
        assert '"id": 4' in tail.output and '"id": 3' not in tail.output and "score_activities" not in tail.output.split('"id": 4')[0]

        gate.clear()
        second = httpx_post(url, keys["analyst"], "And the next one?")
        stopped = runner.invoke(cli, ["runs", "stop", second, "--url", url, "--key", keys["analyst"]])
        assert stopped.exit_code == 0 and f"run {second} stopped" in stopped.output
        again = runner.invoke(cli, ["runs", "stop", second, "--url", url, "--key", keys["analyst"]])
        assert again.exit_code == 3 and "HTTP 409" in again.output
        gate.set()


def httpx_post(url: str, key: str, message: str) -> str:
    """Start a streamed chat over real HTTP, read its first event, hang up; the run id."""
    import httpx

    with httpx.stream("POST", f"{url}/api/v1/chat", json={"message": message}, timeout=30,
                      headers={**bearer(key), "Accept": "text/event-stream"}) as resp:
        assert resp.status_code == 200
        return str(read_sse(resp.iter_lines(), until=1)[0][2]["run_id"])


def test_a_server_shutdown_interrupts_the_runs_it_holds(
    settings: Settings, keys: dict[str, str], factory: sessionmaker[Session], gate: threading.Event
) -> None:
    import httpx
    from web_harness import serve

    from valuechain.cli.serve import SHUTDOWN_GRACE_S

    server_app = create_app(settings)
    events: list[str] = []
    with serve(server_app, timeout_graceful_shutdown=1) as url:
        script = Script([say("never sent")], gate=gate)
        server_app.state.llm.copilot = Copilot(
            sessions=factory, knowledge=lambda: pytest.fail("no knowledge here"),
            router=ScriptedChatModel(script=script, label="router"),
            answerer=ScriptedChatModel(script=script, label="answerer"), model_name="scripted")
        run_id = httpx_post(url, keys["analyst"], "A long question")

        def watch() -> None:  # a client still following the run when the server stops
            with contextlib.suppress(httpx.HTTPError), httpx.stream(
                "GET", f"{url}/api/v1/chat/runs/{run_id}/events", headers=bearer(keys["analyst"]), timeout=30
            ) as resp:
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        events.append(line[7:])

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(0.3)
    watcher.join(timeout=10)
    assert SHUTDOWN_GRACE_S <= 10  # `valuechain serve` closes open streams after this grace
    with factory() as s:
        run = s.get(AgentRun, run_id)
        assert run is not None and (run.status, run.answer) == ("interrupted", None)
        assert run.error == "the server shut down before the answer"
    assert events[0] == "run_started"
