"""Slack message content: answers as mrkdwn, recommendations as Block Kit with Approve / Reject
buttons, the decided state that replaces the buttons, and the reject dialog.

Pure functions over the review models; nothing here talks to Slack or the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tools.review import REJECT_REASONS, DecisionInfo, DecisionResult, RecommendationView

APPROVE_ACTION = "vcc_approve"
REJECT_ACTION = "vcc_reject"
REJECT_VIEW = "vcc_reject"
TEXT_MAX = 3000
"""Characters in one section block's text (Slack's limit)."""
MESSAGE_MAX = 39_000
"""Characters of an answer in one message (Slack truncates at 40,000)."""


def escape(text: object) -> str:
    """Text from data or the model as Slack shows it literally: `& < >` escaped, so `<!channel>`,
    `<@U123>` and `<https://evil.example|label>` are text, never a mention or a link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """The model's Markdown as Slack mrkdwn: bold and headings; long answers cut with a note.

    Everything is escaped first (`escape`); a Markdown link stays text (only the product's own
    links are links, and an answer has none)."""
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", escape(markdown))
    text = re.sub(r"__(.+?)__", r"*\1*", text)
    text = re.sub(r"^#{1,6}\s+(.+)$", r"*\1*", text, flags=re.MULTILINE)
    if len(text) > MESSAGE_MAX:
        text = text[:MESSAGE_MAX] + "\n… (answer cut; the whole answer is in the conversation history)"
    return text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def button_value(rec: RecommendationView) -> str:
    """What a button carries: the recommendation and the exact version shown."""
    return json.dumps({"id": rec.id, "version": rec.version, "hash": rec.content_hash}, separators=(",", ":"))


def parse_button_value(value: str) -> tuple[int, int, str]:
    """(id, version, content_hash) from `button_value`; ValueError when it is not one."""
    try:
        data = json.loads(value)
        rid, version, digest = data["id"], data["version"], data["hash"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a recommendation button value: {value!r}") from exc
    if not isinstance(rid, int) or not isinstance(version, int) or not isinstance(digest, str):
        raise ValueError(f"not a recommendation button value: {value!r}")
    return rid, version, digest


def _summary(rec: RecommendationView) -> dict[str, Any]:
    target = f"account `{escape(rec.account_id)}`" if rec.account_id else f"activity `{escape(rec.activity_id)}`"
    facts = [f"version {rec.version}"]
    if rec.expected_value is not None:
        facts.insert(0, f"expected value {rec.expected_value:,.0f}")
    if rec.expires_at is not None:
        facts.append(f"decide by {rec.expires_at:%Y-%m-%d %H:%M} UTC")
    text = (
        f"*Recommendation #{rec.id}*: `{escape(rec.action)}` for {target}\n"
        f">{escape(_cut(rec.rationale, 1500))}\n"
        f"_{' · '.join(facts)} · filed by {escape(rec.created_by)}_"
    )
    return {"type": "section", "block_id": f"rec-{rec.id}", "text": {"type": "mrkdwn", "text": _cut(text, TEXT_MAX)}}


def fallback_text(rec: RecommendationView) -> str:
    target = rec.account_id or rec.activity_id
    return escape(f"Recommendation #{rec.id}: {rec.action} for {target} ({rec.status})")


def recommendation_blocks(rec: RecommendationView) -> list[dict[str, Any]]:
    """A pending recommendation with Approve / Reject buttons (each bound to this version)."""
    value = button_value(rec)
    return [
        _summary(rec),
        {
            "type": "actions",
            "block_id": f"decide-{rec.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": REJECT_ACTION,
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Reject"},
                    "value": value,
                },
            ],
        },
    ]


def decided_line(decision: DecisionResult | DecisionInfo, *, slack_user: str | None) -> str:
    """ "Approved by @user" (or the recorded name when the Slack user is not known)."""
    name = escape(decision.decided_by)
    who = f"<@{escape(slack_user)}> ({name})" if slack_user else name
    verb = {"approved": "Approved", "rejected": "Rejected", "expired": "Expired"}.get(
        decision.status, decision.status.capitalize()
    )
    line = f"*{verb} by {who}*"
    if decision.decided_at is not None:
        line += f" at {decision.decided_at:%Y-%m-%d %H:%M} UTC"
    if decision.reason_code:
        line += f" · reason `{escape(decision.reason_code)}`"
    if decision.note:
        line += f" · “{escape(_cut(decision.note, 500))}”"
    return line


def decided_blocks(rec: RecommendationView, line: str) -> list[dict[str, Any]]:
    """The recommendation with its buttons replaced by who decided."""
    return [_summary(rec), {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(line, TEXT_MAX)}]}]


def reason_modal(rec: RecommendationView, private_metadata: str, *, callback_id: str, verb: str,
                 reasons: Mapping[str, str], label: str = "Reason") -> dict[str, Any]:
    """A dialog asking why (`verb` the recommendation): a reason code from `reasons` (required) and a note."""
    options = [
        {"text": {"type": "plain_text", "text": _cut(f"{code}: {why}", 75)}, "value": code}
        for code, why in reasons.items()
    ]
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": f"{verb} #{rec.id}"},
        "submit": {"type": "plain_text", "text": verb},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(_summary(rec)["text"]["text"], TEXT_MAX)}},
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": label},
                "element": {"type": "static_select", "action_id": "code", "options": options},
            },
            {
                "type": "input",
                "block_id": "note",
                "optional": True,
                "label": {"type": "plain_text", "text": "Note (required for “other”)"},
                "element": {"type": "plain_text_input", "action_id": "text", "multiline": True, "max_length": 2000},
            },
        ],
    }


def reject_modal(rec: RecommendationView, private_metadata: str) -> dict[str, Any]:
    """The dialog a Reject click opens: a reason code (required) and a note."""
    return reason_modal(rec, private_metadata, callback_id=REJECT_VIEW, verb="Reject", reasons=REJECT_REASONS)
