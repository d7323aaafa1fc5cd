"""The Slack bot: `/valuechain <question>` and @mentions answered in a thread by the agent, and
the recommendations a run files posted with Approve / Reject buttons for configured approvers.

Every request is verified by slack-bolt with the signing secret (HMAC-SHA256 over
`v0:<timestamp>:<body>`, timestamps older than 5 minutes refused with 401). Slack wants an
answer within 3 s, so each listener acknowledges at once and the agent run goes on in a
background task that posts to the thread when done (`SlackBot.spawn`).

One Slack thread is one conversation: its id is derived from team, channel and thread
timestamp (`conversation_id`), and `RunLog.start` creates it on the first question, so a
thread needs no table of its own. Decisions go through `tools.review.decide_and_commit`
(role checked again inside, bound to the version on the button, one winner).

A signed body not shaped like one Slack sends is refused with 400 (`api.slack.bodies`); each
event and slash command is answered once, retries and replays included (`api.slack.delivery`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent.copilot import AgentAnswer, final_answer
from agent.middleware import internal_error_answer
from api.chat_jobs import ChatJobs, prepare
from api.metrics import record_agent_run, record_decision
from api.runs import ActiveRun, RunRegistry
from api.slack.bodies import RejectMeta, malformed
from api.slack.delivery import answer_once
from api.slack.followup import OPEN, FollowUpListeners, approved_blocks
from api.slack.followup import message_of as _message_of
from api.slack.people import SlackPerson, slack_person, slack_user_of
from api.slack.render import (
    APPROVE_ACTION,
    REJECT_ACTION,
    REJECT_VIEW,
    decided_blocks,
    decided_line,
    escape,
    fallback_text,
    parse_button_value,
    recommendation_blocks,
    reject_modal,
    to_mrkdwn,
)
from api.slack.resume import Asked, remember, thread_of
from core.settings import Settings
from crm.models import Recommendation, ToolCall
from tools.errors import ToolInputError, new_error_id
from tools.review import (
    AlreadyDecided,
    Decision,
    DecisionInfo,
    DecisionRefused,
    DecisionResult,
    RecommendationDetail,
    decide_and_commit,
    get_recommendation,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api.llm import LLMState

COMMAND = "/valuechain"
CONVERSATION_ID_MAX = 64
log = logging.getLogger(__name__)


def conversation_id(team: str, channel: str, thread_ts: str) -> str:
    """The conversation of one Slack thread: readable when it fits the column, hashed otherwise."""
    cid = f"slack-{team}-{channel}-{thread_ts}"
    if len(cid) <= CONVERSATION_ID_MAX:
        return cid
    return "slack-" + hashlib.sha256(cid.encode()).hexdigest()[:40]


def unavailable_message(state: LLMState | None) -> str:
    """What the thread is told while the agent is not ready."""
    if state is not None and state.status in ("starting", "warming"):
        waited = time.monotonic() - state.started_at
        return (
            f"The model is starting ({state.status}, {waited:.0f} s so far); ask again in a minute. "
            "Your question was not run."
        )
    reason = (state.error or state.status) if state is not None else "the service is not started"
    return f"The model is unavailable: {reason}. Your question was not run; everything else works."


def question_from_mention(text: str, bot_user_id: str | None) -> str:
    """The mention's text without the bot's own @-mention."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    else:
        text = re.sub(r"^\s*<@[^>]+>", " ", text)
    return " ".join(text.split())


class SlackBot:
    """The bolt app for one FastAPI app; listeners reach the agent and database through it."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        if not settings.slack_bot_token or not settings.slack_signing_secret:
            raise ValueError("SlackBot needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET")
        self.app = app
        self.settings = settings
        base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
        client = AsyncWebClient(token=settings.slack_bot_token, base_url=base_url, logger=log)
        self.bolt = AsyncApp(
            name="valuechain-copilot",
            client=client,
            signing_secret=settings.slack_signing_secret,
            process_before_response=False,
            logger=log,
        )
        self.handler = AsyncSlackRequestHandler(self.bolt)
        self.verifier = SignatureVerifier(settings.slack_signing_secret)
        self._tasks: set[asyncio.Task[None]] = set()
        self.bolt.use(answer_once(lambda: self.sessions))
        self.bolt.command(COMMAND)(self.on_command)
        self.bolt.event("app_mention")(self.on_mention)
        self.bolt.action(APPROVE_ACTION)(self.on_approve)
        self.bolt.action(REJECT_ACTION)(self.on_reject_click)
        self.bolt.view(REJECT_VIEW)(self.on_reject_submit)
        self.follow_up = FollowUpListeners(self)  # Start / Mark executed / Abandon (api/slack/followup.py)

    async def handle(self, request: Request) -> Response:
        timestamp = request.headers.get("x-slack-request-timestamp")
        if timestamp is not None and not timestamp.isdigit():  # bolt's int() would make it a 500
            return JSONResponse({"error": "invalid request"}, status_code=401)
        body = await request.body()  # Starlette keeps it: bolt reads the same bytes
        if not self.verifier.is_valid_request(body, dict(request.headers)):
            # bolt parses a body before it checks the signature: an unsigned JSON array would be a 500
            return JSONResponse({"error": "invalid request"}, status_code=401)
        problem = malformed(body, request.headers.get("content-type", ""))
        if problem is not None:  # signed by Slack but not a body Slack sends: bolt would raise (a 500)
            log.warning("slack: refused a signed but malformed body (%s)", problem)
            return JSONResponse({"error": "malformed body", "detail": problem}, status_code=400)
        return await self.handler.handle(request)

    # -------------------------------------------------------------------------- plumbing

    @property
    def sessions(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.app.state.sessionmaker
        return factory

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` after the 200 went back to Slack; keep a reference until it ends, log failures."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("slack task %s failed", task.get_name(), exc_info=exc)

    @property
    def pending(self) -> int:
        """Background tasks still running (answers being written, clicks being decided)."""
        return len(self._tasks)

    # -------------------------------------------------------------------------- questions

    async def on_command(self, ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient,
                         respond: AsyncRespond) -> None:
        question = " ".join((command.get("text") or "").split())
        if not question:
            await ack(f"Ask a question, e.g. `{COMMAND} where do we lose margin?`")
            return
        await ack(f"Working on it: _{escape(question)}_ (the answer comes in a thread)")
        self.spawn(self._answer_command(command, question, client, respond), name="slack-command")

    async def _answer_command(self, command: dict[str, Any], question: str, client: AsyncWebClient,
                              respond: AsyncRespond) -> None:
        channel, user = command["channel_id"], command["user_id"]
        try:
            asked = await client.chat_postMessage(channel=channel, text=f"<@{escape(user)}> asked: {escape(question)}")
        except SlackApiError as exc:
            await respond(
                text=f"I cannot post in this channel ({escape(exc.response.get('error'))}); invite me to it, "
                "or mention me in a channel I am in.",
                response_type="ephemeral",
            )
            return
        await self._answer(client, team=command.get("team_id") or "", channel=channel,
                           thread_ts=str(asked["ts"]), user=user, question=question)

    async def on_mention(self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        channel, user = event["channel"], event.get("user") or ""
        thread_ts = event.get("thread_ts") or event["ts"]
        question = question_from_mention(event.get("text") or "", context.bot_user_id)
        if not question:
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                          text="Ask me a question about the value chain, e.g. "
                                          "“which accounts are most likely to churn?”")
            return
        team = context.team_id or event.get("team") or ""
        self.spawn(self._answer(client, team=team, channel=channel, thread_ts=thread_ts, user=user,
                                question=question), name="slack-mention")

    async def resume(self, asked: Asked) -> None:
        """Answer again, in its thread, a Slack question whose run was interrupted (`api.slack.resume`)."""
        client = self.bolt.client
        await client.chat_postMessage(channel=asked.channel, thread_ts=asked.thread_ts,
                                      text="The server answering this stopped before the answer; answering again.")
        self.spawn(self._answer(client, team=asked.team, channel=asked.channel, thread_ts=asked.thread_ts,
                                user=asked.user, question=asked.question, resumed_from=asked.run_id),
                   name="slack-resume")

    async def _answer(self, client: AsyncWebClient, *, team: str, channel: str, thread_ts: str, user: str,
                      question: str, resumed_from: str | None = None) -> None:
        """Run the agent for the thread's conversation; post the answer and what the run filed.

        The run's thread is kept (`api.slack.resume.remember`) so that another worker answers again
        if this one dies before the answer."""
        state: LLMState | None = getattr(self.app.state, "llm", None)
        copilot = state.copilot if state is not None else None
        if copilot is None:
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=escape(unavailable_message(state)))
            return
        person = slack_person(self.settings, user)
        jobs: ChatJobs | None = getattr(self.app.state, "chat_jobs", None)
        if jobs is not None:  # a job any worker takes; that worker posts the answer (`deliver`)
            queued = await run_in_threadpool(prepare, self.sessions, question=question,
                                             conversation_id=conversation_id(team, channel, thread_ts),
                                             user_id=None, channel="slack", model=str(copilot.model_name))
            await run_in_threadpool(remember, self.sessions, queued.run_id, team=team, channel=channel,
                                    thread_ts=thread_ts, user=user, resumed_from=resumed_from)
            await jobs.defer(queued.run_id, user_id=None, actor=person.name, channel="slack")
            return
        t0 = time.perf_counter()
        runs: RunRegistry | None = getattr(self.app.state, "runs", None)
        try:
            events = copilot.astream(question, conversation_id=conversation_id(team, channel, thread_ts),
                                     actor=person.name, channel="slack")
            if runs is None:
                answer = await final_answer(events)
            else:  # queued with the web's turns, so the model runs one turn at a time
                async def keep_thread(run: ActiveRun) -> None:
                    try:
                        await run_in_threadpool(remember, self.sessions, run.run_id, team=team, channel=channel,
                                                thread_ts=thread_ts, user=user, resumed_from=resumed_from)
                    except Exception as exc:  # the answer still comes; only a second answer after a crash is lost
                        log.warning("slack run %s: thread not kept (%s)", run.run_id, type(exc).__name__)

                run, answered = await runs.answer(events, question=question, user_id=None, channel="slack",
                                                  started=keep_thread)
                if answered is None:
                    await client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                                  text=f"No answer: {escape(run.end_reason)}.")
                    return
                answer = answered
        except Exception as exc:  # a bug in the run: the thread hears about it, the log keeps the traceback
            record_agent_run(status="error", seconds=time.perf_counter() - t0, channel="slack")
            error_id = new_error_id()
            log.error("internal error %s in the slack question %r", error_id, question, exc_info=exc)
            text = internal_error_answer(error_id, exc, conversation_id=conversation_id(team, channel, thread_ts))
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=escape(text))
            return
        record_agent_run(status="error" if answer.error else "ok", seconds=time.perf_counter() - t0,
                         channel="slack")
        await self._post(client, channel=channel, thread_ts=thread_ts, answer=answer)

    async def _post(self, client: AsyncWebClient, *, channel: str, thread_ts: str, answer: AgentAnswer) -> None:
        """The answer in the thread, then each recommendation it filed with its buttons."""
        await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=to_mrkdwn(answer.answer))
        for rec in await asyncio.to_thread(self._filed_by, answer.run_id):
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=fallback_text(rec),
                                          blocks=recommendation_blocks(rec))

    async def deliver(self, run: ActiveRun) -> None:
        """Post, in its thread, the end of a Slack turn this worker took as a chat job (`api.chat_jobs`)."""
        if run.channel != "slack":
            return
        asked = await run_in_threadpool(thread_of, self.sessions, run.run_id)
        if asked is None:
            return
        if run.answer is None:
            await self.bolt.client.chat_postMessage(channel=asked.channel, thread_ts=asked.thread_ts,
                                                    text=f"No answer: {escape(run.end_reason)}.")
            return
        await self._post(self.bolt.client, channel=asked.channel, thread_ts=asked.thread_ts, answer=run.answer)

    def _filed_by(self, run_id: str) -> list[RecommendationDetail]:
        """The recommendations a run filed, or found already waiting (a duplicate proposal)."""
        with self.sessions() as s:
            ids = set(s.scalars(select(Recommendation.id).where(Recommendation.run_id == run_id)))
            for result in s.scalars(select(ToolCall.result).where(
                ToolCall.run_id == run_id, ToolCall.name == "propose_recommendation", ToolCall.ok.is_(True)
            )):
                if isinstance(result, dict) and isinstance(result.get("id"), int):
                    ids.add(result["id"])
            ttl = self.settings.recommendation_ttl_days
            recs = [get_recommendation(session=s, recommendation_id=rid, ttl_days=ttl) for rid in sorted(ids)]
        return [r for r in recs if r.decidable]

    # -------------------------------------------------------------------------- decisions

    async def on_approve(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                         respond: AsyncRespond) -> None:
        await ack()
        self.spawn(self._approve(body, client, respond), name="slack-approve")

    async def _approve(self, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        person = slack_person(self.settings, body["user"]["id"])
        rid, version, digest = parse_button_value(body["actions"][0]["value"])
        where = _message_of(body)
        if not person.may_decide:
            record_decision(decision="approved", outcome="forbidden")
            await respond(text=_not_an_approver(person), response_type="ephemeral", replace_original=False)
            return
        outcome = await asyncio.to_thread(self._decide, rid, "approved", person, version, digest, None, None)
        if isinstance(outcome, DecisionResult):
            await self._show_decision(client, where, rid, outcome)
            return
        await respond(text=escape(outcome.message if isinstance(outcome, DecisionRefused) else str(outcome)),
                      response_type="ephemeral", replace_original=False)
        if isinstance(outcome, AlreadyDecided):
            await self._show_decision(client, where, rid, outcome.winner)

    async def on_reject_click(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                              respond: AsyncRespond) -> None:
        """Open the reject dialog (a rejection needs a reason); the trigger id lives 3 s, so no task."""
        await ack()
        person = slack_person(self.settings, body["user"]["id"])
        rid, version, digest = parse_button_value(body["actions"][0]["value"])
        if not person.may_decide:
            record_decision(decision="rejected", outcome="forbidden")
            await respond(text=_not_an_approver(person), response_type="ephemeral", replace_original=False)
            return
        rec = await asyncio.to_thread(self._view, rid)
        channel, ts = _message_of(body)
        if rec is None or not rec.decidable:
            text = f"recommendation #{rid} " + (
                "no longer exists" if rec is None else f"was already {rec.status}"
                + (f" by {escape(rec.decided_by)}" if rec.decided_by else "")
            ) + "; nothing was changed"
            await respond(text=text, response_type="ephemeral", replace_original=False)
            if rec is not None and rec.status in ("approved", "rejected"):
                await self._show_decision(client, (channel, ts), rid, _decision_of(rec))
            return
        meta = RejectMeta(id=rid, version=version, hash=digest, channel=channel, ts=ts)
        await client.views_open(trigger_id=body["trigger_id"], view=reject_modal(rec, meta.model_dump_json()))

    async def on_reject_submit(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                               client: AsyncWebClient) -> None:
        """Reject as the dialog says; a refusal is shown in the dialog (decided in ms, inside the 3 s)."""
        meta = RejectMeta.model_validate_json(view["private_metadata"])  # its shape was checked on arrival
        values = view["state"]["values"]
        selected = (values.get("reason", {}).get("code", {}) or {}).get("selected_option") or {}
        code, note = selected.get("value"), (values.get("note", {}).get("text", {}) or {}).get("value")
        person = slack_person(self.settings, body["user"]["id"])
        if not person.may_decide:
            record_decision(decision="rejected", outcome="forbidden")
            await ack(response_action="errors", errors={"reason": _not_an_approver(person)})
            return
        outcome = await asyncio.to_thread(
            self._decide, meta.id, "rejected", person, meta.version, meta.hash, code, note
        )
        where = (meta.channel, meta.ts)
        if isinstance(outcome, DecisionResult):
            await ack()
            await self._show_decision(client, where, meta.id, outcome)
            return
        field = "note" if isinstance(outcome, ToolInputError) and "note" in str(outcome) else "reason"
        message = outcome.message if isinstance(outcome, DecisionRefused) else str(outcome)
        await ack(response_action="errors", errors={field: message[:1000]})
        if isinstance(outcome, AlreadyDecided):
            await self._show_decision(client, where, meta.id, outcome.winner)

    def _decide(self, rid: int, decision: Decision, person: SlackPerson, version: int, digest: str,
                reason_code: str | None, note: str | None) -> DecisionResult | DecisionRefused | ToolInputError:
        """One decision through the review core, committed; a refusal is returned, not raised."""
        ttl = self.settings.recommendation_ttl_days
        with self.sessions() as s:
            try:
                result = decide_and_commit(
                    session=s, recommendation_id=rid, decision=decision, actor=person.name, role=person.role,
                    expected_version=version, content_hash=digest, reason_code=reason_code, note=note,
                    ttl_days=ttl,
                )
            except DecisionRefused as exc:
                record_decision(decision=decision, outcome=exc.error)
                return exc
            except ToolInputError as exc:
                record_decision(decision=decision, outcome="invalid")
                return exc
        record_decision(decision=decision, outcome="decided")
        return result

    def _view(self, rid: int) -> RecommendationDetail | None:
        with self.sessions() as s:
            try:
                return get_recommendation(session=s, recommendation_id=rid,
                                          ttl_days=self.settings.recommendation_ttl_days)
            except DecisionRefused:
                return None

    async def _show_decision(self, client: AsyncWebClient, where: tuple[str, str], rid: int,
                             decision: DecisionResult | DecisionInfo) -> None:
        """Replace the buttons with "Approved by @user" (or who won, for a late click); an approved
        one gets its follow-up buttons (api/slack/followup.py) in their place."""
        rec = await asyncio.to_thread(self._view, rid)
        if rec is None:
            return
        line = decided_line(decision, slack_user=slack_user_of(self.settings, decision.decided_by))
        channel, ts = where
        text = escape(f"Recommendation #{rid} {decision.status} by {decision.decided_by}")
        followed = decision.status == "approved" and (rec.status in OPEN or rec.status in ("executed", "abandoned"))
        blocks = approved_blocks(self, rec) if followed else decided_blocks(rec, line)
        await client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)


def _decision_of(rec: RecommendationDetail) -> DecisionInfo:
    """Who decided `rec`, with the reason from its audit trail."""
    event = next((e for e in reversed(rec.events) if e.event == rec.status), None)
    return DecisionInfo(
        recommendation_id=rec.id, status=rec.status, decided_by=rec.decided_by, decided_at=rec.decided_at,
        reason_code=event.reason_code if event else None, note=event.note if event else None,
    )


def _not_an_approver(person: SlackPerson) -> str:
    return (
        f"Only approvers may decide recommendations, and <@{escape(person.slack_user_id)}> is not one "
        "(approvers are listed in the SLACK_APPROVERS setting). Nothing was changed."
    )
