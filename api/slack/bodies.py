"""The shape of what Slack sends, checked before bolt sees a signed body (issue #19 item 4).

bolt and the listeners index into a body (`body["event"]["type"]`, `command["channel_id"]`, the
reject dialog's metadata); a body signed with our secret but not shaped like one Slack sends
raised there: a 500, or a task failing after the ack. `malformed` says why a body is not one,
so the route refuses it with 400 and a log line. Only the fields the bot reads are checked;
whatever else Slack adds passes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.slack.followup import ABANDON_VIEW, FOLLOW_UP_ACTIONS, AbandonMeta
from api.slack.render import APPROVE_ACTION, REJECT_ACTION, REJECT_VIEW, parse_button_value


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Event(_Shape):
    type: str


class EventCallback(_Shape):
    event_id: str = Field(min_length=1)
    event: _Event


class Mention(_Shape):
    channel: str
    ts: str
    text: str = ""
    user: str = ""
    thread_ts: str | None = None


class Command(_Shape):
    command: str
    user_id: str
    channel_id: str
    trigger_id: str
    text: str = ""
    team_id: str = ""


class _User(_Shape):
    id: str


class _Action(_Shape):
    action_id: str
    value: str = ""


class BlockActions(_Shape):
    user: _User
    actions: list[_Action] = Field(min_length=1)


class _State(_Shape):
    values: dict[str, Any]


class _View(_Shape):
    callback_id: str = ""
    private_metadata: str = ""
    state: _State


class ViewSubmission(_Shape):
    user: _User
    view: _View


class RejectMeta(BaseModel):
    """What the reject dialog carries from the click to its submission (`private_metadata`)."""

    id: int
    version: int
    hash: str
    channel: str
    ts: str


def malformed(body: bytes, content_type: str) -> str | None:
    """Why `body` is not one Slack sends (a JSON event envelope, or a form with a command or an
    interaction `payload`), or None."""
    try:
        if content_type.startswith("application/json"):
            return _events_api(json.loads(body))
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        if "payload" in form:
            return _interaction(json.loads(form["payload"][0]))
        if "command" in form:
            Command.model_validate({name: values[0] for name, values in form.items()})
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc})"
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        return f"{exc.title} {where}: {error['msg']}"
    except ValueError as exc:  # a button value that is not one of ours
        return str(exc)
    return None


def _events_api(data: object) -> str | None:
    if not isinstance(data, dict):
        return f"JSON {type(data).__name__}, not an object"
    if data.get("type") == "event_callback":
        envelope = EventCallback.model_validate(data)
        if envelope.event.type == "app_mention":
            Mention.model_validate(data["event"])
    return None


def _interaction(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return f"payload is JSON {type(payload).__name__}, not an object"
    if payload.get("type") == "block_actions":
        for action in BlockActions.model_validate(payload).actions:
            if action.action_id in (APPROVE_ACTION, REJECT_ACTION, *FOLLOW_UP_ACTIONS):
                parse_button_value(action.value)
    elif payload.get("type") == "view_submission":
        view = ViewSubmission.model_validate(payload).view
        if view.callback_id == REJECT_VIEW:
            RejectMeta.model_validate_json(view.private_metadata)
        elif view.callback_id == ABANDON_VIEW:
            AbandonMeta.model_validate_json(view.private_metadata)
    return None
