"""`POST /slack/events`: Slack's events, slash commands and interactive actions, for the bot in
`api.slack` (signature-verified by slack-bolt; 503 while SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET
are unset, and the rest of the app works without them). Set-up: docs/SLACK.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import Response

from core.settings import Settings

if TYPE_CHECKING:
    from api.slack.bot import SlackBot

router = APIRouter(tags=["slack"])

NOT_CONFIGURED = (
    "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (see docs/SLACK.md); "
    "the rest of the API works without them"
)


def slack_bot(app: FastAPI) -> SlackBot:
    """The app's bot, built on first use (503 when the Slack settings are missing)."""
    bot: SlackBot | None = getattr(app.state, "slack_bot", None)
    if bot is None:
        settings: Settings = app.state.settings
        if not settings.slack_bot_token or not settings.slack_signing_secret:
            raise HTTPException(status_code=503, detail=NOT_CONFIGURED)
        from api.slack.bot import SlackBot  # slack-bolt and aiohttp load only where Slack is used

        bot = app.state.slack_bot = SlackBot(app, settings)
    return bot


@router.post(
    "/slack/events",
    summary="Slack events, slash commands and interactive actions (signed by Slack)",
    response_class=Response,
    responses={
        200: {"description": "Acknowledged; answers follow in the Slack thread"},
        401: {"description": "Missing, wrong or stale (over 5 minutes) Slack signature"},
        503: {"description": "SLACK_BOT_TOKEN / SLACK_SIGNING_SECRET not set"},
    },
)
async def slack_events(request: Request) -> Response:
    return await slack_bot(request.app).handle(request)
