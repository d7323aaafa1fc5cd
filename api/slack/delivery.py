"""Each Slack delivery answered once (issue #19 item 3).

Slack re-sends an event it thinks we missed (`X-Slack-Retry-Num`: at once, after a minute,
after five), and a signed request can be replayed within its five-minute window. A bolt
middleware (`answer_once`) claims every event, by its `event_id`, and every slash command, by a
fingerprint of team, user, channel, command, text and trigger id (Slack gives each invocation
its own trigger id, so a question typed again is answered again), before any listener runs.

The claim is an INSERT into `slack_deliveries` keyed by that identity: of two copies arriving
at once, or a replay later, exactly one insert succeeds, so there is no check-then-insert race.
A retry is answered when its first delivery never got here (no row) and dropped otherwise. A
delivery taken by a process that died before answering is not answered again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm.models import SlackDelivery

KEY_MAX = 80
RETAIN = dt.timedelta(days=1)
"""How long a claim is kept: far past Slack's last retry and the five-minute signature window."""
log = logging.getLogger(__name__)


def delivery_key(body: dict[str, Any]) -> str | None:
    """The identity of an event or slash command delivery, or None for anything else (clicks, dialogs)."""
    if body.get("type") == "event_callback" and body.get("event_id"):
        key = f"event:{body['event_id']}"
        return key if len(key) <= KEY_MAX else "event#" + hashlib.sha256(key.encode()).hexdigest()
    if body.get("command"):
        parts = [str(body.get(name) or "") for name in
                 ("team_id", "user_id", "channel_id", "command", "text", "trigger_id")]
        return "command:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return None


def claim(sessions: sessionmaker[Session], key: str, *, retry_num: int = 0,
          now: dt.datetime | None = None) -> bool:
    """Take the delivery `key` for answering: True for the one caller whose insert wins."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with sessions() as s:
        try:
            s.add(SlackDelivery(key=key, received_at=now, retry_num=retry_num))
            s.flush()
            s.execute(delete(SlackDelivery).where(SlackDelivery.received_at < now - RETAIN))
            s.commit()
        except IntegrityError:
            s.rollback()
            return False
    return True


def retry_num(req: AsyncBoltRequest) -> int:
    """Slack's `X-Slack-Retry-Num` (0 for a first delivery)."""
    value = (req.headers.get("x-slack-retry-num") or ["0"])[0]
    return int(value) if value.isdigit() else 0


def answer_once(
    sessions: Callable[[], sessionmaker[Session]],
) -> Callable[[AsyncBoltRequest, Callable[[], Awaitable[None]]], Awaitable[BoltResponse | None]]:
    """The bolt middleware: the first delivery goes on to the listeners, a repeat gets an empty 200
    (so Slack stops retrying) and reaches no listener."""

    async def once(req: AsyncBoltRequest, next_: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        key = delivery_key(req.body)
        if key is None:
            await next_()
            return None
        retry = retry_num(req)
        if await asyncio.to_thread(claim, sessions(), key, retry_num=retry):
            if retry:
                log.info("slack: answering %s on retry %d: its first delivery never arrived", key, retry)
            await next_()
            return None
        log.info("slack: %s was already taken; this %s is not answered again", key,
                 f"retry ({retry})" if retry else "copy")
        return BoltResponse(status=200, body="")

    return once
