"""Follow-up from Slack (api/slack/followup.py): signed clicks on an approved recommendation's
Start / Mark executed / Abandon buttons, through the same review service as the API, each an
audit event; a late click on a finished recommendation is an ephemeral refusal that changes
nothing. Same harness as tests/api/test_slack.py (real signatures, a fake Slack Web API)."""

from __future__ import annotations

import json
from typing import Any

from slack_harness import (
    ALICE,
    BOB,
    CAROL,
    FORM,
    Env,
    click_body,
    env_fixture,  # noqa: F401 (the `env` fixture)
    fake_slack_fixture,  # noqa: F401 (the `fake_slack` fixture)
    submit_body,
)
from sqlalchemy import select
from test_slack import Filed, filed  # noqa: F401 (the `filed` fixture: a pending recommendation posted)

from crm.models import Recommendation, RecommendationEvent


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """action_id → value of the message's buttons."""
    return {e["action_id"]: e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


def status_line(message: dict[str, Any]) -> str:
    block = next(b for b in message["blocks"] if str(b.get("block_id", "")).startswith("status-"))
    return str(block["elements"][0]["text"])


def steps(env: Env, rid: int) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """(event, actor, reason code, data) of every follow-up event, in order."""
    with env.sessions() as s:
        return [(e.event, e.actor, e.reason_code, dict(e.data or {})) for e in s.scalars(
            select(RecommendationEvent).where(RecommendationEvent.recommendation_id == rid,
                                              RecommendationEvent.event.in_(("started", "executed", "abandoned")))
            .order_by(RecommendationEvent.id))]


def status(env: Env, rid: int) -> tuple[str, int]:
    with env.sessions() as s:
        rec = s.get(Recommendation, rid)
        assert rec is not None
        return rec.status, rec.version


def approve(env: Env, filed: Filed) -> dict[str, Any]:  # noqa: F811
    env.post(click_body(env.fake, "vcc_approve", filed.button("vcc_approve"), user=ALICE,
                        message_ts=filed.message_ts), FORM)
    return env.fake.wait("chat.update")[0]


def test_start_then_executed_each_an_audit_event_and_a_late_click_changes_nothing(env: Env, filed: Filed) -> None:  # noqa: F811
    approved = approve(env, filed)
    assert list(buttons(approved)) == ["vcc_start", "vcc_execute", "vcc_abandon"]
    assert status_line(approved).startswith("*Approved, not started*")
    _, version = status(env, filed.id)
    assert json.loads(buttons(approved)["vcc_start"])["version"] == version  # bound to the version shown

    env.post(click_body(env.fake, "vcc_start", buttons(approved)["vcc_start"], user=BOB,
                        message_ts=filed.message_ts), FORM)
    started = env.fake.wait("chat.update", 2)[1]
    assert status(env, filed.id) == ("in_progress", version + 1)
    assert list(buttons(started)) == ["vcc_execute", "vcc_abandon"]  # started: no Start any more
    assert status_line(started).startswith("*In progress*")
    assert started["blocks"][1]["elements"][0]["text"].startswith(f"*Approved by <@{ALICE}> (alice)*")

    env.post(click_body(env.fake, "vcc_execute", buttons(started)["vcc_execute"], user=BOB,
                        message_ts=filed.message_ts), FORM)
    done = env.fake.wait("chat.update", 3)[2]
    assert status(env, filed.id) == ("executed", version + 2)
    assert buttons(done) == {}  # finished: no buttons
    assert status_line(done).startswith("*Executed* · owner bob · by bob at ")
    trail = steps(env, filed.id)
    assert [(e, actor) for e, actor, _, _ in trail] == [("started", "bob"), ("executed", "bob")]
    assert all(d["credential"] == {"channel": "slack", "kind": "slack_user", "slack_user_id": BOB} for *_, d in trail)
    assert env.fake.responses() == []

    # a second click on the (stale) Mark executed and on Abandon: ephemeral refusals, nothing changes
    env.post(click_body(env.fake, "vcc_execute", buttons(started)["vcc_execute"], user=ALICE,
                        message_ts=filed.message_ts), FORM)
    late = env.fake.wait_response()[0]
    assert late["response_type"] == "ephemeral" and late["replace_original"] is False
    assert late["text"].startswith(f"recommendation #{filed.id} is executed; execute applies only to")
    assert late["text"].endswith("Nothing was changed.")
    env.post(click_body(env.fake, "vcc_abandon", buttons(started)["vcc_abandon"], user=ALICE,
                        message_ts=filed.message_ts), FORM)
    assert env.fake.wait_response(2)[1]["text"] == f"recommendation #{filed.id} is already executed; nothing was changed"
    assert env.fake.of("views.open") == []
    assert status(env, filed.id) == ("executed", version + 2)
    assert len(steps(env, filed.id)) == 2
    assert buttons(env.fake.wait("chat.update", 5)[-1]) == {}  # the message redrawn as it stands


def test_abandon_asks_for_a_reason_then_records_it(env: Env, filed: Filed) -> None:  # noqa: F811
    approved = approve(env, filed)
    env.post(click_body(env.fake, "vcc_abandon", buttons(approved)["vcc_abandon"], user=ALICE,
                        message_ts=filed.message_ts), FORM)
    opened = env.fake.wait("views.open")[0]
    view = opened["view"]
    assert view["callback_id"] == "vcc_abandon"
    reasons = next(b for b in view["blocks"] if b.get("block_id") == "reason")["element"]["options"]
    assert [o["value"] for o in reasons] == ["customer_unreachable", "account_churned", "superseded",
                                             "no_capacity", "other"]

    # "other" without a note: the dialog says what is missing, nothing is recorded
    resp = env.post(submit_body(view, user=ALICE, reason="other", note=None), FORM)
    assert resp.status_code == 200
    answer = json.loads(resp.text)
    assert answer["response_action"] == "errors" and "note" in answer["errors"]
    assert status(env, filed.id)[0] == "approved" and steps(env, filed.id) == []

    resp = env.post(submit_body(view, user=ALICE, reason="customer_unreachable", note="No answer in 3 weeks"), FORM)
    assert resp.status_code == 200 and resp.text == ""  # the dialog closes
    redrawn = env.fake.wait("chat.update", 2)[1]
    assert buttons(redrawn) == {}
    line = status_line(redrawn)
    assert line.startswith("*Abandoned*") and "reason `customer_unreachable`" in line and "No answer in 3 weeks" in line
    assert [(e, a, r) for e, a, r, _ in steps(env, filed.id)] == [("abandoned", "alice", "customer_unreachable")]

    # the same dialog submitted again (a double submit): refused in the dialog, nothing changes
    resp = env.post(submit_body(view, user=ALICE, reason="superseded", note=None), FORM)
    again = json.loads(resp.text)
    assert again["response_action"] == "errors" and "is abandoned" in again["errors"]["reason"]
    assert len(steps(env, filed.id)) == 1


def test_someone_who_is_not_an_approver_is_refused(env: Env, filed: Filed) -> None:  # noqa: F811
    approved = approve(env, filed)
    before = status(env, filed.id)
    env.post(click_body(env.fake, "vcc_execute", buttons(approved)["vcc_execute"], user=CAROL,
                        message_ts=filed.message_ts), FORM)
    refusal = env.fake.wait_response()[0]
    assert refusal["response_type"] == "ephemeral"
    assert "'slack:UCAROL' (viewer) may not execute" in refusal["text"] and "Nothing was changed." in refusal["text"]
    assert status(env, filed.id) == before and steps(env, filed.id) == []


def test_a_follow_up_button_with_a_value_not_ours_is_400(env: Env) -> None:
    resp = env.post(click_body(env.fake, "vcc_execute", "not-json", user=ALICE, message_ts="1.2"), FORM)
    assert resp.status_code == 400
