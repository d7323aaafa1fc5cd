"""File one of an account's next best actions for approval, as the person who chose it.

The account page's "Propose" button lands here: the action is looked up again in the
playbook's current ranking for the account (so nobody files an action that no longer
applies, or a figure the page made up), and filed through the same `propose_recommendation`
core the agent uses. It is always pending; a human approver decides, and never the proposer.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from tools.errors import ToolInputError
from tools.nba import ActionOption, NextBestActionResult, next_best_action
from tools.outcomes.holdout import DEFAULT_SHARE
from tools.recommendations import ProposedRecommendation, propose_recommendation

_ALL = 20  # next_best_action's maximum: every action the page can show


def plain_why(option: ActionOption) -> str:
    """The action's reason in words, without the expected-value arithmetic (that stays in the evidence)."""
    because = "; ".join(dict.fromkeys(e.phrase for e in option.evidence))
    return f"{option.description}." + (f" Why now: {because}." if because else "")


def propose_account_action(
    *,
    session: Session,
    account_id: str,
    action: str,
    created_by: str,
    playbook_path: str | None = None,
    holdout_share: float = DEFAULT_SHARE,
) -> ProposedRecommendation:
    """File one of the account's current next best actions as a PENDING recommendation.

    Args:
        account_id: the account, e.g. "ACME-0042".
        action: a playbook action id that is among the account's worthwhile actions today.
        created_by: the signed-in user proposing it (set by the system).
        playbook_path: the playbook file (set by the system; default the bundled one).
        holdout_share: share of accounts held out of each action (set by the system). A held-out
            action is refused (`HeldOut`) after its control-group row is added to the session.
    """
    nba: NextBestActionResult = next_best_action(
        session=session, account_id=account_id, limit=_ALL, playbook_path=playbook_path,
        holdout_share=holdout_share,
    )
    if any(h.action == action for h in nba.held_out):
        # records the control unit and raises HeldOut with the reason
        propose_recommendation(
            session=session, account_id=account_id, action=action, rationale="held out",
            evidence={"as_of": nba.as_of.isoformat(), "churn_probability": nba.p_churn},
            created_by=created_by, holdout_share=holdout_share,
        )
    option = next((o for o in nba.actions if o.action == action), None)
    held = next((h for h in nba.suppressed if h.action == action), None)
    if option is None and held is not None:
        raise ToolInputError(
            f"action {action!r} for {account_id!r} is held back: {held.reason} "
            f"(recommendation #{held.recommendation_id}, {held.status})"
        )
    if option is None:
        valid = ", ".join(repr(o.action) for o in nba.actions) or "none"
        raise ToolInputError(
            f"action {action!r} is not among {account_id!r}'s worthwhile, unsuppressed actions today; valid: {valid}"
        )
    evidence = {
        "churn_probability": nba.p_churn,
        "band": nba.band,
        "arr": nba.arr,
        "expected_value": option.expected_value,
        "cost": option.cost,
        "why": [e.phrase for e in option.evidence],
        "formula": option.formula,
        "as_of": nba.as_of.isoformat(),
        "playbook_version": nba.playbook_version,
    }
    return propose_recommendation(
        session=session,
        account_id=account_id,
        action=option.action,
        rationale=plain_why(option),
        evidence=evidence,
        expected_value=option.expected_value,
        created_by=created_by,
        holdout_share=holdout_share,
    )
