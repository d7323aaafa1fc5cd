"""Follow-up from Slack (issue #21, docs/OUTCOMES.md §1): an approved recommendation's message
carries Start / Mark executed / Abandon buttons; Abandon opens a dialog for the reason (Slack's
modal, like Reject, so the reason is a required choice rather than free text in a thread).

Every click goes through `tools.review.follow_up_and_commit`, the same service as the API and
the CLI: the role is checked there (a Slack approver may; anyone else is refused), the step is
bound to the version on the button (so of two clicks exactly one wins), and it adds one audit
event. A click on a recommendation whose status has moved on (executed, abandoned, or stepped
by someone else) gets an ephemeral message saying its current status, and nothing changes; the
message is then redrawn to its real state.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from api.slack.people import SlackPerson, slack_person, slack_user_of
from api.slack.render import (
    TEXT_MAX,
    _cut,
    _summary,
    button_value,
    decided_line,
    escape,
    parse_button_value,
    reason_modal,
)
from tools.errors import ToolInputError
from tools.review import (
    ABANDON_REASONS,
    DecisionInfo,
    DecisionRefused,
    FollowUpResult,
    RecommendationDetail,
    RecommendationView,
    Transition,
    follow_up_and_commit,
)

if TYPE_CHECKING:
    from api.slack.bot import SlackBot

START_ACTION = "vcc_start"
EXECUTE_ACTION = "vcc_execute"
ABANDON_ACTION = "vcc_abandon"
ABANDON_VIEW = "vcc_abandon"
FOLLOW_UP_ACTIONS = (START_ACTION, EXECUTE_ACTION, ABANDON_ACTION)
OPEN = ("approved", "in_progress")
"""Statuses a follow-up step applies to; executed and abandoned are final."""
STATUS_WORDS = {"approved": "Approved, not started", "in_progress": "In progress", "executed": "Executed",
                "abandoned": "Abandoned"}


class AbandonMeta(BaseModel):
    """What the abandon dialog carries from the click to its submission (`private_metadata`)."""

    id: int
    version: int
    channel: str
    ts: str


def message_of(body: dict[str, Any]) -> tuple[str, str]:
    """(channel, ts) of the message a button sits on."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    if not channel or not ts:
        raise ValueError("the action payload names no message (container.channel_id / message_ts)")
    return str(channel), str(ts)


# ------------------------------------------------------------------------------ rendering (pure)


def approval_of(rec: RecommendationView | RecommendationDetail) -> DecisionInfo:
    """Who approved `rec` (from its audit trail when it has one), whatever its status is now."""
    events = getattr(rec, "events", [])
    event = next((e for e in reversed(events) if e.event == "approved"), None)
    return DecisionInfo(
        recommendation_id=rec.id, status="approved", decided_by=rec.decided_by, decided_at=rec.decided_at,
        reason_code=event.reason_code if event else None, note=event.note if event else None,
    )


def follow_up_line(rec: RecommendationDetail) -> str:
    """ "*In progress* · owner dana · due 2026-10-15", and for a finished one who finished it and why."""
    parts = [f"*{STATUS_WORDS.get(rec.status, rec.status)}*"]
    if rec.owner:
        parts.append(f"owner {escape(rec.owner)}")
    if rec.due_date:
        parts.append(f"due {rec.due_date:%Y-%m-%d}")
    last = next((e for e in reversed(rec.events) if e.event in ("started", "executed", "abandoned")), None)
    if last is not None and rec.status in ("executed", "abandoned"):
        parts.append(f"by {escape(last.actor)} at {last.at:%Y-%m-%d %H:%M} UTC")
        if last.reason_code:
            parts.append(f"reason `{escape(last.reason_code)}`")
        if last.note:
            parts.append(f"“{escape(_cut(last.note, 500))}”")
    return " · ".join(parts)


def follow_up_blocks(rec: RecommendationDetail, approved_line: str) -> list[dict[str, Any]]:
    """The approved recommendation: who approved, where it stands, and the steps still open, each
    button bound to this version."""
    blocks: list[dict[str, Any]] = [
        _summary(rec),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(approved_line, TEXT_MAX)}]},
        {"type": "context", "block_id": f"status-{rec.id}",
         "elements": [{"type": "mrkdwn", "text": _cut(follow_up_line(rec), TEXT_MAX)}]},
    ]
    if rec.status not in OPEN:
        return blocks
    value = button_value(rec)
    buttons = []
    if rec.status == "approved":
        buttons.append({"type": "button", "action_id": START_ACTION, "text": {"type": "plain_text", "text": "Start"},
                        "value": value})
    buttons.append({"type": "button", "action_id": EXECUTE_ACTION, "style": "primary",
                    "text": {"type": "plain_text", "text": "Mark executed"}, "value": value})
    buttons.append({"type": "button", "action_id": ABANDON_ACTION, "style": "danger",
                    "text": {"type": "plain_text", "text": "Abandon"}, "value": value})
    blocks.append({"type": "actions", "block_id": f"follow-{rec.id}", "elements": buttons})
    return blocks


def abandon_modal(rec: RecommendationView, private_metadata: str) -> dict[str, Any]:
    """The dialog an Abandon click opens: a reason code (required) and a note."""
    return reason_modal(rec, private_metadata, callback_id=ABANDON_VIEW, verb="Abandon", reasons=ABANDON_REASONS,
                        label="Why is it abandoned?")


# ------------------------------------------------------------------------------ listeners


class FollowUpListeners:
    """The follow-up buttons and the abandon dialog, registered on the bot's bolt app."""

    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot
        bot.bolt.action(START_ACTION)(self.on_start)
        bot.bolt.action(EXECUTE_ACTION)(self.on_execute)
        bot.bolt.action(ABANDON_ACTION)(self.on_abandon_click)
        bot.bolt.view(ABANDON_VIEW)(self.on_abandon_submit)

    async def on_start(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                       respond: AsyncRespond) -> None:
        await ack()
        self.bot.spawn(self._step("start", body, client, respond), name="slack-start")

    async def on_execute(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                         respond: AsyncRespond) -> None:
        await ack()
        self.bot.spawn(self._step("execute", body, client, respond), name="slack-execute")

    async def _step(self, transition: Transition, body: dict[str, Any], client: AsyncWebClient,
                    respond: AsyncRespond) -> None:
        person = slack_person(self.bot.settings, body["user"]["id"])
        rid, version, _ = parse_button_value(body["actions"][0]["value"])
        where = message_of(body)
        outcome = await asyncio.to_thread(self._follow_up, transition, rid, person, version, None, None)
        if not isinstance(outcome, FollowUpResult):
            await respond(text=_refusal(rid, outcome), response_type="ephemeral", replace_original=False)
        await self.redraw(client, where, rid)

    async def on_abandon_click(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                               respond: AsyncRespond) -> None:
        """Open the abandon dialog (abandoning needs a reason); the trigger id lives 3 s, so no task.
        A click on a finished recommendation is refused here, before any dialog opens."""
        await ack()
        rid, version, _ = parse_button_value(body["actions"][0]["value"])
        channel, ts = message_of(body)
        rec = await asyncio.to_thread(self.bot._view, rid)
        if rec is None or rec.status not in OPEN:
            text = f"recommendation #{rid} " + (
                "no longer exists" if rec is None else f"is already {rec.status}") + "; nothing was changed"
            await respond(text=text, response_type="ephemeral", replace_original=False)
            if rec is not None:
                await self.redraw(client, (channel, ts), rid)
            return
        meta = AbandonMeta(id=rid, version=version, channel=channel, ts=ts)
        await client.views_open(trigger_id=body["trigger_id"], view=abandon_modal(rec, meta.model_dump_json()))

    async def on_abandon_submit(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                                client: AsyncWebClient) -> None:
        """Abandon as the dialog says; a refusal is shown in the dialog (recorded in ms, inside the 3 s)."""
        meta = AbandonMeta.model_validate_json(view["private_metadata"])  # its shape was checked on arrival
        values = view["state"]["values"]
        selected = (values.get("reason", {}).get("code", {}) or {}).get("selected_option") or {}
        code, note = selected.get("value"), (values.get("note", {}).get("text", {}) or {}).get("value")
        person = slack_person(self.bot.settings, body["user"]["id"])
        outcome = await asyncio.to_thread(self._follow_up, "abandon", meta.id, person, meta.version, code, note)
        if isinstance(outcome, FollowUpResult):
            await ack()
            await self.redraw(client, (meta.channel, meta.ts), meta.id)
            return
        field = "note" if isinstance(outcome, ToolInputError) and "note" in str(outcome) else "reason"
        await ack(response_action="errors", errors={field: _refusal(meta.id, outcome)[:1000]})
        if isinstance(outcome, DecisionRefused):
            await self.redraw(client, (meta.channel, meta.ts), meta.id)

    def _follow_up(self, transition: Transition, rid: int, person: SlackPerson, version: int,
                   reason_code: str | None, note: str | None) -> FollowUpResult | DecisionRefused | ToolInputError:
        """One step through the review core, committed; a refusal is returned, not raised."""
        with self.bot.sessions() as s:
            try:
                return follow_up_and_commit(
                    session=s, recommendation_id=rid, transition=transition, actor=person.name, role=person.role,
                    expected_version=version, reason_code=reason_code, note=note,
                    credential={"channel": "slack", "kind": "slack_user", "slack_user_id": person.slack_user_id},
                )
            except (DecisionRefused, ToolInputError) as exc:
                return exc

    async def redraw(self, client: AsyncWebClient, where: tuple[str, str], rid: int) -> None:
        """Draw the message as the recommendation now stands (buttons only for the steps still open)."""
        rec = await asyncio.to_thread(self.bot._view, rid)
        if rec is None:
            return
        channel, ts = where
        await client.chat_update(channel=channel, ts=ts, text=status_text(rec),
                                 blocks=approved_blocks(self.bot, rec))


def status_text(rec: RecommendationDetail) -> str:
    """The message's fallback text: "Recommendation #12 in_progress (owner dana)"."""
    owner = f" (owner {rec.owner})" if rec.owner else ""
    return escape(f"Recommendation #{rec.id} {rec.status}{owner}")


def approved_blocks(bot: SlackBot, rec: RecommendationDetail) -> list[dict[str, Any]]:
    """follow_up_blocks with the approver @-mentioned when they are one of the bot's approvers."""
    approval = approval_of(rec)
    line = decided_line(approval, slack_user=slack_user_of(bot.settings, approval.decided_by))
    return follow_up_blocks(rec, line)


def _refusal(rid: int, outcome: DecisionRefused | ToolInputError) -> str:
    text = outcome.message if isinstance(outcome, DecisionRefused) else str(outcome)
    return escape(f"{text}. Nothing was changed." if not text.endswith(".") else f"{text} Nothing was changed.")
