"""Who a Slack user is to the copilot: the name recorded on runs and decisions, and their role.

Approvers are configured, not inferred: `SLACK_APPROVERS="U123:alice,U456:bob"` maps Slack
user ids to names with the approver role. Everyone else in the workspace may ask questions
(recorded as `slack:<user id>`) but not decide; `tools.review.decide_recommendation` checks
the role again, whatever this module says.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings


@dataclass(frozen=True)
class SlackPerson:
    slack_user_id: str
    name: str
    """Recorded as the run's actor, `created_by` of what it files, and `decided_by`."""
    role: str
    """approver for the users in SLACK_APPROVERS, viewer for everyone else."""

    @property
    def may_decide(self) -> bool:
        return self.role == "approver"


def slack_person(settings: Settings, slack_user_id: str) -> SlackPerson:
    name = settings.slack_approver_map.get(slack_user_id)
    if name is not None:
        return SlackPerson(slack_user_id=slack_user_id, name=name, role="approver")
    return SlackPerson(slack_user_id=slack_user_id, name=f"slack:{slack_user_id}", role="viewer")


def slack_user_of(settings: Settings, name: str | None) -> str | None:
    """The Slack user id behind a recorded name (to @-mention a decider), if it is one of ours."""
    if name is None:
        return None
    if name.startswith("slack:"):
        return name.removeprefix("slack:")
    for user_id, mapped in settings.slack_approver_map.items():
        if mapped == name:
            return user_id
    return None
